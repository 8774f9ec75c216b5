#!/usr/bin/env python
"""Benchmark the simulation suites and write BENCHMARKS.md's `## Simulation` section.

    python scripts/bench_envs.py                 # MT50 x 3 episodes, tabletop x 50, ...
    python scripts/bench_envs.py --quick         # a smoke run (MT10 x 1, tabletop x 10)

Measures scripted-expert success per task (MT50 and the tabletop families), env steps/s
with and without a render per step, and demos collected per minute. See vla.bench.envs_benchmark.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

import vla.envs  # noqa: F401  (sets MUJOCO_GL=egl unless set: the one place, before anything loads mujoco)

os.environ.setdefault("SVT_LOG", "1")

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--metaworld-tasks", default="MT50")
    p.add_argument("--metaworld-episodes", type=int, default=3)
    p.add_argument("--tabletop-episodes", type=int, default=50)
    p.add_argument("--workers", type=int, default=1, help="rollout processes for collection")
    p.add_argument("--quick", action="store_true", help="small smoke run (MT10 x 1, tabletop x 10)")
    p.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--json", default="outputs/bench/envs.json", help="raw figures (written; read by --render-only)")
    p.add_argument("--render-only", action="store_true", help="re-render the section from --json, measure nothing")
    args = p.parse_args(argv)
    from vla.bench import envs_benchmark as bench

    if args.render_only:
        bench.write_section(args.out, bench.render_section(json.loads(Path(args.json).read_text())))
        print(f"wrote the Simulation section of {args.out} from {args.json}")
        return 0
    if args.quick:
        args.metaworld_tasks, args.metaworld_episodes, args.tabletop_episodes = "MT10", 1, 10

    from vla.envs.metaworld_suite import resolve_tasks
    from vla.envs.tabletop import FAMILIES

    mw_tasks = resolve_tasks(args.metaworld_tasks)
    results = {
        "date": datetime.date.today().isoformat(),
        "machine": bench.machine(),
        "success": {
            f"metaworld {args.metaworld_tasks}": {
                "episodes": args.metaworld_episodes,
                "rates": bench.expert_success("metaworld", mw_tasks, args.metaworld_episodes),
            },
            "tabletop": {
                "episodes": args.tabletop_episodes,
                "rates": bench.expert_success("tabletop", list(FAMILIES), args.tabletop_episodes),
            },
        },
        "speed": [],
        "collection": [],
    }
    for suite, task, size in (("metaworld", "push-v3", 128), ("tabletop", "push", 96)):
        results["speed"].append(
            {
                "suite": suite,
                "task": task,
                "image": f"{size}x{size}",
                "no_render": bench.steps_per_second(suite, task, render=False, steps=1000),
                "render": bench.steps_per_second(suite, task, render=True, steps=300, height=size, width=size),
            }
        )
    for suite, tasks, n in (("tabletop", "all", 5), ("metaworld", "reach-v3,push-v3,drawer-open-v3", 2)):
        row = bench.demos_per_minute(suite, tasks, n, args.workers)
        results["collection"].append({"suite": suite, "tasks": tasks, **row})

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1))
    bench.write_section(args.out, bench.render_section(results))
    print(json.dumps(results, indent=1))
    print(f"wrote the Simulation section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
