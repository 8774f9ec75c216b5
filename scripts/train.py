"""Train LLaDA-VLA with LeRobot's training loop from a named preset.

    python scripts/train.py --config configs/tabletop_tiny_cpu.json --dataset.root=DIR [--key=value ...]
    python scripts/train.py --config_path=OUT/checkpoints/last/pretrained_model/train_config.json --resume=true

Any `lerobot-train` option may follow as an override. `--max-minutes=M` stops training after
M minutes of updates (the last step is checkpointed) whatever `--steps` says: comparisons at
an equal wall-clock budget. Checkpoints are written atomically
(see vla.policies.training); the resolved config is saved with every checkpoint. Decoded
video frames are cached in memory after the first epoch (`--no-frame-cache` to disable).
"""

import sys

from vla.policies.training import run_lerobot_train


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return
    cache_frames = "--no-frame-cache" not in argv
    argv = [a for a in argv if a != "--no-frame-cache"]
    budget = [a for a in argv if a.startswith("--max-minutes")]
    argv = [a for a in argv if not a.startswith("--max-minutes")]
    minutes = None
    if budget:
        try:
            minutes = float(budget[-1].split("=", 1)[1])
        except (IndexError, ValueError):
            sys.exit(f"{budget[-1]!r}: write --max-minutes=M with M a number of minutes, e.g. --max-minutes=15")
    if argv and argv[0] == "--config":
        if len(argv) < 2:
            sys.exit("--config needs a preset path, e.g. configs/tabletop_tiny_cpu.json")
        argv = [f"--config_path={argv[1]}", *argv[2:]]
    elif argv and argv[0].startswith("--config="):
        argv = [f"--config_path={argv[0].split('=', 1)[1]}", *argv[1:]]
    run_lerobot_train(argv, cache_frames=cache_frames, time_budget_s=None if minutes is None else minutes * 60)


if __name__ == "__main__":
    main()
