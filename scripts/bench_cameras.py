#!/usr/bin/env python
"""Meta-World cameras and image sizes: goal, object and gripper pixels per frame -> BENCHMARKS.md.

    python scripts/bench_cameras.py [--tasks MT10] [--sizes 64,96,128] [--seeds 3] [--benchmarks BENCHMARKS.md]
    python scripts/bench_cameras.py --render-only

Along scripted-expert rollouts of each task, renders every camera of the suite at each size and
counts what MuJoCo's segmentation shows of the goal, the objects and the gripper, and how much
of the frame the task occupies (see vla/bench/cameras.py). Raw figures: outputs/bench/cameras.json.
"""

import argparse
import shlex
from pathlib import Path

import vla.envs  # noqa: F401  (sets MUJOCO_GL=egl unless set: the one place, before anything loads mujoco)
from vla import cli

SECTION = "## Meta-World cameras and image size"
RAW = Path("outputs/bench/cameras.json")


def main(argv: list[str]) -> None:
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="MT10", help="Meta-World task spec")
    p.add_argument("--sizes", default="64,96,128", help="square image sizes, comma-separated")
    p.add_argument("--seeds", type=int, default=3, help="episodes per task")
    p.add_argument("--steps", default="0,30,60", help="expert steps at which frames are measured")
    p.add_argument("--benchmarks", default="BENCHMARKS.md")
    p.add_argument("--render-only", action="store_true", help=f"re-render from {RAW}, measure nothing")
    a = p.parse_args(argv)
    from vla.bench import cameras
    from vla.bench.report import measured_section

    if not a.render_only:
        with cli.user_errors(ValueError):
            sizes = tuple(int(v) for v in a.sizes.split(","))
            steps = tuple(int(v) for v in a.steps.split(","))
            if a.seeds < 1 or min(sizes) < 8 or min(steps) < 0:
                raise ValueError(f"--seeds {a.seeds} must be >= 1, --sizes {a.sizes} >= 8, --steps {a.steps} >= 0")
            from vla.envs.suites import get_suite

            get_suite("metaworld").task_ids(a.tasks)
    command = None if a.render_only else "python scripts/bench_cameras.py " + shlex.join(argv)
    print(measured_section(SECTION, RAW, command, lambda: cameras.measure(a.tasks, sizes=sizes, seeds=a.seeds,
                                                                          steps=steps),
                           cameras.render_section, a.benchmarks))


if __name__ == "__main__":
    cli.run(main)
