#!/usr/bin/env python
"""Meta-World MT10 results into BENCHMARKS.md: LLaDA-VLA (HAD) vs the AR baseline vs LeRobot ACT.

    python scripts/results_metaworld.py [--minutes 12] [--eval-episodes 10] [--out outputs/results/metaworld_mt10]

Collects 50 scripted-expert demos per MT10 task (128 px), trains each policy on them for the
same wall-clock budget on this machine, evaluates all on the same unseen seeds (expert and
random anchors alongside), then rewrites the "Results: Meta-World MT10" section of
BENCHMARKS.md. Re-running with the same --out skips finished stages. See vla/bench/compare.py. Bad input fails with one line and exit code 2 before any work (`--debug`: the
traceback; docs/errors.md).
"""

import argparse
import json
import os
import shlex
import sys

import vla.envs  # noqa: F401  (sets MUJOCO_GL=egl unless set: the one place, before anything loads mujoco)
from vla import cli

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str]) -> None:
    from vla.bench.compare import POLICIES, SECTION, CompareConfig, compare, compare_section
    from vla.bench.report import machine_line, write_section

    d = CompareConfig()
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=d.out)
    p.add_argument("--tasks", default=d.tasks, help="Meta-World task spec (MT10, easy, push-v3,...)")
    p.add_argument("--episodes-per-task", type=int, default=d.episodes_per_task)
    p.add_argument("--minutes", type=float, default=d.minutes, help="training wall clock per policy")
    p.add_argument("--eval-episodes", type=int, default=d.eval_episodes)
    p.add_argument("--policies", default=",".join(d.policies), help=f"comma-separated, from {list(POLICIES)}")
    p.add_argument("--benchmarks", default="BENCHMARKS.md", help="file whose results section is rewritten")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    cli.writable_file(a.benchmarks, "--benchmarks")
    with cli.user_errors(ValueError):
        cfg = CompareConfig(out=a.out, tasks=a.tasks, episodes_per_task=a.episodes_per_task, minutes=a.minutes,
                            eval_episodes=a.eval_episodes, policies=tuple(a.policies.split(",")),
                            progress=not a.no_progress)
    machine = machine_line()
    r = compare(cfg)
    command = ("python scripts/results_metaworld.py " + shlex.join(sys.argv[1:])).strip()
    section = compare_section(r, command, machine)
    write_section(a.benchmarks, SECTION, section)
    print(section)
    print(json.dumps({k: {"steps": v["steps"], "pc_success": r["evals"][k]["overall"]["pc_success"]}
                      for k, v in r["trained"].items()}, indent=2))


if __name__ == "__main__":
    cli.run(main)
