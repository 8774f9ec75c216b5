"""Measure serving latency and control-loop timing; write BENCHMARKS.md's Deployment section.

    python scripts/bench_serve.py [--requests 200] [--episodes 3] [--no-write]

Builds the tiny tabletop preset (configs/tabletop_tiny_cpu.json, untrained: latency does
not depend on the weights), serves it with scripts/serve.py on loopback, and measures
from a client in this process: infer round trips (client send -> reply), the server's
share and the model's share, empty pings, then real-time controller episodes in the
tabletop suite (tick jitter, latency under control). Waits for a quiet machine first
(1-min load < 0.7, no other busy python process; up to 15 min) and records the load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from run_controller import start_server  # sibling script (scripts/ is sys.path[0])

from vla.envs import make_env
from vla.envs.robot_sim import run_sim_episodes, save_untrained_policy, suite_safety_config
from vla.policies.client import PolicyClient, pack
from vla.policies.controller import ControllerConfig

ROOT = Path(__file__).parents[1]


def busy_processes() -> list[str]:
    """Other python processes using > 20% CPU (ps aux --sort=-%cpu)."""
    out = subprocess.run(["ps", "aux", "--sort=-%cpu"], capture_output=True, text=True).stdout.splitlines()[1:]
    return [line[:160] for line in out if "python" in line and float(line.split()[2]) > 20
            and int(line.split()[1]) != os.getpid()]


def wait_for_quiet(max_wait_s: float = 900) -> tuple[float, bool]:
    """-> (1-min load when measuring starts, whether the machine was quiet)."""
    start = time.time()
    while True:
        load, busy = os.getloadavg()[0], busy_processes()
        if load < 0.7 and not busy:
            return load, True
        if time.time() - start >= max_wait_s:
            print(f"machine still busy after {max_wait_s:.0f} s (load {load:.2f}); measuring anyway")
            return load, False
        print(f"waiting for a quiet machine: load {load:.2f}, busy: {busy[:2]}", flush=True)
        time.sleep(60)


def pct(values: list[float]) -> str:
    a = np.asarray(values)
    return f"{np.percentile(a, 50):.1f} | {np.percentile(a, 99):.1f}"


def measure(url: str, n: int, episodes: int) -> dict:
    env = make_env("tabletop", task="all")
    observations = []
    for seed in range(8):
        obs, _ = env.reset(seed=seed)
        observations.append({"images": dict(obs["pixels"]), "state": obs["agent_pos"], "task": env.task_description})
    env.close()
    with PolicyClient(url, timeout_s=30) as client:
        for i in range(10):
            client.infer(observations[i % 8])
        results = [client.infer(observations[i % 8]) for i in range(n)]
        pings = [client.ping() for _ in range(n)]
        meta = client.metadata
        config = ControllerConfig(control_hz=meta.control_hz, n_action_steps=meta.n_action_steps, prefetch_steps=2)
        records, report = run_sim_episodes(client, "tabletop", list(range(episodes)), config, suite_safety_config(0.5))
    return {"rtt": [r.rtt_ms for r in results], "server": [r.server_ms for r in results],
            "infer": [r.infer_ms for r in results], "ping": pings, "meta": meta, "records": records,
            "control": report.summary(), "request_bytes": len(pack({"type": "infer", "id": 1,
                                                                     "observation": observations[0]}))}


def section(m: dict, load: float, quiet: bool, preset: dict, flags: str = "") -> str:
    meta, c = m["meta"], m["control"]
    jit, crtt = c["jitter_ms"], c["rtt_ms"]
    over = np.asarray(m["rtt"]) - np.asarray(m["infer"])
    return f"""## Deployment

Written by `scripts/bench_serve.py{(' --server-flags="' + flags + '"') if flags else ''}` on {date.today()} ({platform.machine()}, {os.cpu_count()} CPU cores, \
{platform.system()}; 1-min load {load:.2f} when measuring started{'' if quiet else ', NOT quiet: numbers are upper bounds'}). \
Do not edit by hand; re-run the script.

Tiny tabletop preset (`configs/tabletop_tiny_cpu.json`: d_model {preset['d_model']}, {preset['n_layers']} layers, \
{preset['decoder']} decoding with {preset['decode_steps']} steps, chunk {meta.chunk_size}x{meta.action_dim}, \
96x96 image), untrained, served by `scripts/serve.py{(' ' + flags) if flags else ''}` on CPU; client in another process over loopback \
(websocket + msgpack, {m['request_bytes']:,} bytes per request). Server and client share the same 2 cores.

| measurement ({len(m['rtt'])} requests) | p50 ms | p99 ms |
|---|---|---|
| round trip, client send -> reply (`rtt_ms`) | {pct(m['rtt'])} |
| server receive -> send (`server_ms`) | {pct(m['server'])} |
| model call alone (`infer_ms`) | {pct(m['infer'])} |
| transport + decode + validation (rtt - infer) | {pct(list(over))} |
| empty ping round trip | {pct(m['ping'])} |

Controller (`ControlLoop`, real time at {meta.control_hz:g} Hz, prefetch 2, {len(m['records'])} tabletop episodes, \
{c['ticks']} ticks): tick lateness p50 {jit['p50']:.2f} / p99 {jit['p99']:.2f} / max {jit['max']:.2f} ms; \
round trip under control p50 {crtt['p50']:.1f} / p99 {crtt['p99']:.1f} ms over {c['requests']} requests; \
{c['holds']} held ticks, watchdog fired {c['watchdog_fired']} times.
"""


def write_section(text: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Replace (or append) the `## Deployment` section, leaving every other section as it is,
    then refresh README.md's results block."""
    doc = path.read_text()
    pattern = re.compile(r"^## Deployment\n.*?(?=^## |\Z)", re.S | re.M)
    doc = pattern.sub(lambda _: text + "\n", doc) if pattern.search(doc) else doc.rstrip("\n") + "\n\n" + text
    path.write_text(doc)
    from vla.bench.readme_results import refresh_readme

    refresh_readme(path)  # README.md's "Results today" block quotes this section


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--no-write", action="store_true", help="print the section without writing BENCHMARKS.md")
    p.add_argument("--no-wait", action="store_true", help="measure now even on a busy machine")
    p.add_argument("--server-flags", default="", help='extra scripts/serve.py flags, e.g. "--bf16-weights --compile"')
    args = p.parse_args()
    preset = json.loads((ROOT / "configs" / "tabletop_tiny_cpu.json").read_text())["policy"]
    fields = {k: v for k, v in preset.items() if k not in ("type", "device", "push_to_hub")}
    with tempfile.TemporaryDirectory() as tmp:
        policy_dir = save_untrained_policy(Path(tmp) / "tiny", suite="tabletop", **fields)
        load, quiet = (os.getloadavg()[0], False) if args.no_wait else wait_for_quiet()
        proc, url = start_server(str(policy_dir), None, args.server_flags.split())
        try:
            m = measure(url, args.requests, args.episodes)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    text = section(m, load, quiet, preset, args.server_flags)
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
