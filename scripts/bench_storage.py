#!/usr/bin/env python
"""Demonstration image storage: bytes per frame and goal-pixel fidelity -> BENCHMARKS.md.

    python scripts/bench_storage.py [--episodes 4] [--steps 25] [--benchmarks BENCHMARKS.md]
    python scripts/bench_storage.py --render-only

Stores scripted-expert frames of each suite as LeRobot's default AV1 video, as h264 yuv444p
crf 0 and as PNG images, reads them back and compares them with the raw renders evaluation
feeds the policy (see vla/bench/storage.py). Raw figures: outputs/bench/storage.json.
"""

import argparse
import shlex
import sys
from pathlib import Path

import vla.envs  # noqa: F401  (sets MUJOCO_GL=egl unless set: the one place, before anything loads mujoco)

SECTION = "## Demonstration image storage"
RAW = Path("outputs/bench/storage.json")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=4, help="expert episodes per suite")
    p.add_argument("--steps", type=int, default=25, help="frames per episode (at most)")
    p.add_argument("--benchmarks", default="BENCHMARKS.md")
    p.add_argument("--render-only", action="store_true", help=f"re-render from {RAW}, measure nothing")
    a = p.parse_args(argv)
    from vla.bench import storage
    from vla.bench.report import measured_section

    command = None if a.render_only else "python scripts/bench_storage.py " + shlex.join(argv)
    print(measured_section(SECTION, RAW, command, lambda: storage.measure(a.episodes, a.steps),
                           storage.render_section, a.benchmarks))


if __name__ == "__main__":
    main(sys.argv[1:])
