#!/usr/bin/env python
"""Collect scripted-expert demonstrations into a LeRobotDataset v3 (resumable, parallel).

    python scripts/collect_demos.py --suite tabletop --tasks all --episodes-per-task 50 \
        --out data/tabletop_demos
    python scripts/collect_demos.py --suite metaworld --tasks MT10 --episodes-per-task 20 \
        --out data/mt10_demos

Re-running the same command after an interruption continues where it stopped. Instruction
paraphrases are stored in <out>/meta/paraphrases.json. See docs/simulation.md. Bad input fails
with one line and exit code 2 before anything is rolled out (`--debug`: the traceback; docs/errors.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import vla.envs  # noqa: F401  (sets MUJOCO_GL=egl unless set: the one place, before anything loads mujoco)
from vla import cli
from vla.envs.recorder import STORAGES

os.environ.setdefault("SVT_LOG", "1")  # the AV1 encoder: errors only


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--suite", required=True, choices=["metaworld", "tabletop"])
    p.add_argument(
        "--tasks",
        required=True,
        help="metaworld: task names, MT10, MT50, easy/medium/hard/very_hard "
        "(comma-separated); tabletop: push,touch,reach or all",
    )
    p.add_argument("--episodes-per-task", type=int, required=True)
    p.add_argument("--out", required=True, help="dataset folder (resumed if it exists)")
    p.add_argument("--repo-id", default="local/vla_demos")
    p.add_argument(
        "--workers", type=int, default=None, help="rollout processes (0: roll out in the writer process; default: "
        "one per CPU core)"
    )
    p.add_argument("--camera", default=None, help="default: corner4 (metaworld), front (tabletop)")
    p.add_argument("--height", type=int, default=None, help="default: 128 / 96")
    p.add_argument("--width", type=int, default=None, help="default: 128 / 96")
    p.add_argument("--episode-length", type=int, default=None, help="default: 500 / 100")
    p.add_argument("--noise-std", type=float, default=0.0, help="expert action noise (xyz), executed and recorded")
    p.add_argument("--perturb-std", type=float, default=0.0,
                   help="DART: noise on the executed xyz actions while the clean expert action is recorded")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--one-goal-per-scene", action="store_true",
                   help="tabletop: record each scene with its seed's own goal only (default: once per goal)")
    p.add_argument("--storage", choices=sorted(STORAGES), default=None,
                   help="how images are stored: png (lossless), h264_444 (h264 yuv444p crf 0, near-lossless), av1 "
                   "(LeRobot's default video, lossy); default: the suite's (tabletop png, metaworld h264_444)")
    p.add_argument("--png", action="store_const", const="png", dest="storage", help="same as --storage png")
    p.add_argument("--keep-failed", action="store_true", help="also write failed episodes")
    p.add_argument("--commit-every", type=int, default=20,
                   help="episodes per dataset transaction (a kill loses at most these; they are re-run)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    from vla.envs.collection import CollectConfig, collect, dataset_summary, default_workers, task_list

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise cli.UsageError(f"--out {args.out} is a file; pass a folder (created if missing, resumed if it "
                             "holds a dataset)")
    with cli.user_errors(ValueError):
        task_list(args.suite, args.tasks)
        cfg = CollectConfig(
            suite=args.suite, tasks=args.tasks, episodes_per_task=args.episodes_per_task, out=args.out,
            repo_id=args.repo_id, workers=default_workers() if args.workers is None else args.workers,
            camera=args.camera, height=args.height, width=args.width, episode_length=args.episode_length,
            noise_std=args.noise_std, perturb_std=args.perturb_std, seed=args.seed,
            every_goal=not args.one_goal_per_scene, storage=args.storage,
            keep_failed=args.keep_failed, commit_every=args.commit_every, progress_bar=not args.no_progress,
        )
    progress = collect(cfg)
    summary = dataset_summary(args.out)
    summary["attempts"] = sum(progress["attempts"].values())
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    cli.run(main)
