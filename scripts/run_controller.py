"""Drive a simulation suite through the policy server, as a robot controller would.

    python scripts/serve.py --policy.path=DIR --port 8000 &
    python scripts/run_controller.py --url ws://127.0.0.1:8000 --suite tabletop --episodes 10
    python scripts/run_controller.py --policy.path=DIR --episodes 10   # starts a loopback server itself

Reports per-episode success, control-rate jitter (how late each tick ran) and round-trip
latency. --mode realtime (default) runs the fixed-rate loop with inference overlapped
with execution, watchdog and safety layer; --mode lockstep waits for every chunk (the
simulator pauses), which reproduces in-process `select_action` exactly.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from vla.envs.robot_sim import SUITE_FPS, run_sim_episodes, suite_safety_config
from vla.policies.client import PolicyClient
from vla.policies.controller import ENSEMBLE_MODES, ControllerConfig


def start_server(policy_path: str, token: str | None, extra: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    """scripts/serve.py on 127.0.0.1 with a free port (plus `extra` flags, e.g. --compile); -> (process, ws url)."""
    cmd = [sys.executable, str(Path(__file__).with_name("serve.py")), f"--policy.path={policy_path}", "--port", "0",
           *(extra or [])]
    proc = subprocess.Popen(cmd + (["--token", token] if token else []), stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("serving"):
            return proc, line.split(" on ")[1].split()[0]
    raise RuntimeError(f"scripts/serve.py exited with {proc.wait()} before serving; see its output above")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="ws://HOST:PORT of a running scripts/serve.py")
    p.add_argument("--policy.path", dest="policy_path", help="start a loopback server for this policy instead")
    p.add_argument("--token", default=None)
    p.add_argument("--suite", default="tabletop", choices=sorted(SUITE_FPS))
    p.add_argument("--task", default="all")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed + i")
    p.add_argument("--episode-length", type=int, default=None)
    p.add_argument("--mode", choices=["realtime", "lockstep"], default="realtime")
    p.add_argument("--hz", type=float, default=None, help="control rate (default: the server's metadata)")
    p.add_argument("--prefetch-steps", type=int, default=2)
    p.add_argument("--ensemble", choices=ENSEMBLE_MODES, default="latest")
    p.add_argument("--deadline-s", type=float, default=0.5)
    p.add_argument("--max-delta", type=float, default=None, help="largest action change per step (default: off)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if bool(args.url) == bool(args.policy_path):
        p.error("pass exactly one of --url (a running server) or --policy.path (start one on loopback)")

    proc, url = start_server(args.policy_path, args.token) if args.policy_path else (None, args.url)
    try:
        with PolicyClient(url, token=args.token, timeout_s=10) as client:
            meta = client.metadata
            config = ControllerConfig(control_hz=args.hz or meta.control_hz, n_action_steps=meta.n_action_steps,
                                      prefetch_steps=min(args.prefetch_steps, meta.n_action_steps - 1),
                                      ensemble=args.ensemble, deadline_s=args.deadline_s,
                                      lockstep=args.mode == "lockstep")
            env_kwargs = {"episode_length": args.episode_length} if args.episode_length else {}
            seeds = [args.seed + i for i in range(args.episodes)]
            episodes, report = run_sim_episodes(client, args.suite, seeds, config, suite_safety_config(args.max_delta),
                                                task=args.task, **env_kwargs)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    summary = report.summary()
    result = {"url": url, "mode": args.mode, "control_hz": config.control_hz, "episodes": episodes,
              "success_rate": sum(e["success"] for e in episodes) / len(episodes), **summary}
    for e in episodes:
        print(f"seed {e['seed']:>4}  {'success' if e['success'] else 'failure'}  {e['steps']:>3} steps  "
              f"{e['holds']:>3} holds  {e['task']}")
    jit, rtt = summary["jitter_ms"], summary["rtt_ms"]
    print(f"success {result['success_rate']:.0%} over {len(episodes)} episodes ({args.mode}, {config.control_hz:g} Hz)\n"
          f"jitter ms  p50 {jit['p50']:.2f}  p99 {jit['p99']:.2f}  max {jit['max']:.2f}\n"
          f"rtt ms     p50 {rtt['p50']:.2f}  p99 {rtt['p99']:.2f}  max {rtt['max']:.2f}  "
          f"({summary['requests']} requests, {summary['failed_requests']} failed)\n"
          f"holds {summary['holds']} / {summary['ticks']} ticks, watchdog fired {summary['watchdog_fired']} times")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()
