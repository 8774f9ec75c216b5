"""Drive a simulation suite through the policy server, as a robot controller would.

    python scripts/serve.py --policy.path=DIR --port 8000 &
    python scripts/run_controller.py --url ws://127.0.0.1:8000 --suite tabletop --episodes 10
    python scripts/run_controller.py --policy.path=DIR --episodes 10   # starts a loopback server itself

Prints each episode's result as it ends, a line when the connection drops or comes back and
at the first hold of each reason (with the fix to try), then control-rate jitter (how late
each tick ran), round-trip latency and what to change if the robot held. Once no chunk
arrived for --give-up-s it stops with exit code 1 (a dead server does not run every
remaining episode). --mode realtime (default) runs the fixed-rate loop with inference overlapped
with execution, watchdog and safety layer; --mode lockstep waits for every chunk (the
simulator pauses), which reproduces in-process `select_action` exactly. Bad input (options, a
--url nothing answers, a wrong --token) fails with one line and exit code 2 (`--debug`: the
traceback; docs/errors.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from vla import cli
from vla.envs.evaluation import EVAL_SEED_BASE
from vla.envs.robot_sim import SUITE_FPS, run_sim_episodes, suite_safety_config
from vla.policies.client import PolicyClient, PolicyConnectionError
from vla.policies.controller import ENSEMBLE_MODES, ControllerConfig, diagnose
from vla.policies.preflight import pretrained_dir


def start_server(policy_path: str, token: str | None, extra: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    """scripts/serve.py on 127.0.0.1 with a free port (plus `extra` flags, e.g. --compile); -> (process, ws url)."""
    cmd = [sys.executable, str(Path(__file__).with_name("serve.py")), f"--policy.path={policy_path}", "--port", "0",
           *(extra or [])]
    proc = subprocess.Popen(cmd + (["--token", token] if token else []), stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("serving"):
            return proc, line.split(" on ")[1].split()[0]
    raise RuntimeError(f"scripts/serve.py exited with {proc.wait()} before serving; see its output above")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help: this docstring as written, and every option's default."""


def say(line: str) -> None:
    print(f"[controller] {line}", flush=True)


def print_episode(record: dict, total: int, index: list[int]) -> None:
    """One line per episode, as soon as it ends."""
    index[0] += 1
    held = ", ".join(f"{k} {v}" for k, v in sorted(record["hold_reasons"].items(), key=lambda kv: -kv[1]))
    print(f"episode {index[0]}/{total}  seed {record['seed']}  {'success' if record['success'] else 'failure'}  "
          f"{record['steps']:>3} steps  {record['ticks']:>3} ticks  {record['holds']:>3} held"
          f"{f' ({held})' if held else ''}  {record['task']}", flush=True)


def main(argv: list[str] | None = None) -> dict:
    p = cli.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--url", help="ws://HOST:PORT of a running scripts/serve.py")
    p.add_argument("--policy.path", dest="policy_path", help="start a loopback server for this policy instead")
    p.add_argument("--token", default=None, help="the server's shared secret")
    p.add_argument("--suite", default="tabletop", choices=sorted(SUITE_FPS), help="simulation suite")
    p.add_argument("--task", default="all", help="task (family) of the suite, or all")
    p.add_argument("--episodes", type=int, default=5, help="episodes to run")
    p.add_argument("--seed", type=int, default=EVAL_SEED_BASE,
                   help="episode i uses seed + i; the default is evaluation's base, disjoint from demonstration seeds")
    p.add_argument("--episode-length", type=int, default=None, help="env steps per episode (default: the suite's)")
    p.add_argument("--mode", choices=["realtime", "lockstep"], default="realtime",
                   help="realtime: fixed rate, inference overlapped; lockstep: wait for every chunk")
    p.add_argument("--hz", type=float, default=None, help="control rate (default: the server's metadata)")
    p.add_argument("--prefetch-steps", type=int, default=2,
                   help="request the next chunk when this many planned actions remain (< n_action_steps)")
    p.add_argument("--ensemble", choices=ENSEMBLE_MODES, default="latest", help="how overlapping chunks merge")
    p.add_argument("--deadline-s", type=float, default=0.5, help="watchdog: hold once no fresh chunk for this long")
    p.add_argument("--give-up-s", type=float, default=10.0,
                   help="stop with exit code 1 once no fresh chunk arrived for this long (0: never)")
    p.add_argument("--max-delta", type=float, default=None, help="largest action change per step (default: off)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if bool(args.url) == bool(args.policy_path):
        p.error("pass exactly one of --url (a running server) or --policy.path (start one on loopback)")
    if args.url and not args.url.startswith(("ws://", "wss://")):
        p.error(f"--url {args.url}: expected ws://HOST:PORT (wss:// behind TLS), e.g. ws://127.0.0.1:8000")
    cli.require_positive(args, "episodes", "hz", "deadline_s", "give_up_s", zero_ok=("give_up_s",))
    if args.policy_path:
        pretrained_dir(args.policy_path)

    proc, client = None, None
    try:
        with cli.user_errors(RuntimeError, PolicyConnectionError):  # nothing at --url, a wrong --token
            proc, url = start_server(args.policy_path, args.token) if args.policy_path else (None, args.url)
            client = PolicyClient(url, token=args.token, timeout_s=10)
            meta = client.connect()
        config = ControllerConfig(control_hz=args.hz or meta.control_hz, n_action_steps=meta.n_action_steps,
                                  prefetch_steps=min(args.prefetch_steps, meta.n_action_steps - 1),
                                  ensemble=args.ensemble, deadline_s=args.deadline_s,
                                  lockstep=args.mode == "lockstep", give_up_s=args.give_up_s or None)
        env_kwargs = {"episode_length": args.episode_length} if args.episode_length else {}
        seeds = [args.seed + i for i in range(args.episodes)]
        counter = [0]
        episodes, report = run_sim_episodes(
            client, args.suite, seeds, config, suite_safety_config(args.max_delta), task=args.task,
            on_episode=lambda record: print_episode(record, len(seeds), counter), on_event=say, **env_kwargs)
    except PolicyConnectionError as exc:
        p.exit(1, f"run_controller.py: error: {exc}\n")
    finally:
        if client is not None:
            client.close()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    summary = report.summary()
    result = {"url": url, "mode": args.mode, "control_hz": config.control_hz, "episodes": episodes,
              "success_rate": sum(e["success"] for e in episodes) / len(episodes), **summary}
    jit, rtt = summary["jitter_ms"], summary["rtt_ms"]
    print(f"success {result['success_rate']:.0%} over {len(episodes)} episodes ({args.mode}, {config.control_hz:g} Hz)\n"
          f"jitter ms  p50 {jit['p50']:.2f}  p99 {jit['p99']:.2f}  max {jit['max']:.2f}\n"
          f"rtt ms     p50 {rtt['p50']:.2f}  p99 {rtt['p99']:.2f}  max {rtt['max']:.2f}  "
          f"({summary['requests']} requests, {summary['failed_requests']} failed)\n"
          f"holds {summary['holds']} / {summary['ticks']} ticks, watchdog fired {summary['watchdog_fired']} times")
    for line in diagnose(summary, config.control_hz, config.n_action_steps, config.prefetch_steps, config.lockstep):
        print(f"  {line}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))
    if report.stopped:
        print(f"stopped after {len(episodes)} of {len(seeds)} episodes: {report.stopped}", file=sys.stderr, flush=True)
    return result


if __name__ == "__main__":
    cli.run(lambda argv: 1 if main(argv)["stopped"] else 0)
