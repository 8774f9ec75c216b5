"""Training through LeRobot's own loop (`lerobot-train`), made crash-safe and time-boxed.

`run_lerobot_train(argv)` runs lerobot 0.4.4's `lerobot_train.main` (accelerate, resume,
logging all LeRobot's) with our plugin discovered, offline, and the changes of
`vla.policies.lerobot_patches` (the one module that touches lerobot's internals):

- checkpoints are atomic (written into `<step>.partial/`, fsynced, renamed; the `last`
  link replaced in one `os.replace`), so a crash never leaves one that resume would pick
  half-written; leftover `*.partial` directories of a killed run are removed when the next
  run starts;
- decoded video frames are cached in memory (`--no-frame-cache` turns it off);
- a resumed run replays the data order of an uninterrupted one (`epoch_cycle`: epoch e is
  shuffled by a generator seeded with (seed, e), and the batches already taken are skipped);
- `time_budget_s` (`--max-minutes`) bounds the loop by wall clock instead of steps (model
  comparisons "at the same wall-clock budget"): the update that crosses the budget becomes
  the run's last step, checkpointed as LeRobot checkpoints its final step. The seconds
  trained travel with the checkpoints (a resumed run spends what is left), and the learning
  rate can anneal over the budget itself.

Bad input fails with one line before the heavy work (`preflight`, `vla.cli`): the config
file, the dataset root and the checkpoint to resume are checked before LeRobot is imported;
invalid config values come back as their validation message, not a draccus traceback.

Run it as `python -m vla.policies.training` (scripts/train.py is the same), or call
`run_lerobot_train` / `main` from Python; never by a script path.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from vla import cli
from vla.cli import UsageError
from vla.policies import preflight


def remove_partial_checkpoints(output_dir: Path) -> list[Path]:
    removed = sorted((Path(output_dir) / "checkpoints").glob("*.partial"))
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _output_dir_from(argv: list[str]) -> Path | None:
    for arg in argv:
        if arg.startswith("--output_dir="):
            return Path(arg.split("=", 1)[1])
        if arg.startswith("--config_path=") and arg.endswith("train_config.json"):
            return Path(arg.split("=", 1)[1]).parents[3]  # <out>/checkpoints/<step>/pretrained_model/
    return None


def run_lerobot_train(argv: list[str], cache_frames: bool = True, time_budget_s: float | None = None) -> None:
    """Run `lerobot-train` with our plugin discovered, offline, atomic checkpoints and
    (by default) decoded video frames cached in memory. `time_budget_s`: stop after this many
    seconds of training updates (the last step is checkpointed), whatever `--steps` says."""
    if time_budget_s is not None and not time_budget_s > 0:
        raise ValueError(f"time budget must be a positive number of seconds, got {time_budget_s}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # lazy: lerobot (seconds to import) loads only after `main`'s preflight has checked the input
    from draccus.utils import ParsingError
    from lerobot.scripts import lerobot_train

    from vla.policies.lerobot_patches import _BUDGET, TimeBudgetReached, config_error, install

    install(cache_frames)
    _BUDGET.clear()
    _BUDGET["seconds"] = time_budget_s
    out = _output_dir_from(argv)
    if out is not None and (out / "checkpoints").exists():
        remove_partial_checkpoints(out)
    if not any(a.startswith("--policy.discover_packages_path") for a in argv):
        argv = [*argv, "--policy.discover_packages_path=vla.policies"]
    sys.argv = ["lerobot-train", *argv]
    try:
        lerobot_train.main()
    except ParsingError as err:
        raise config_error(err) from err
    except TimeBudgetReached:
        cfg = _BUDGET["cfg"]
        logging.info(f"time budget of {time_budget_s:.0f} s reached: stopped after step {cfg.steps} "
                     f"(checkpoint {cfg.output_dir}/checkpoints/last)")
    finally:
        _BUDGET.clear()


def main(argv: list[str]) -> None:
    """`python -m vla.policies.training` (and scripts/train.py): parse our own flags, check the
    inputs (one-line errors, `vla.cli`), then run `lerobot-train` with the rest (flags: scripts/train.py)."""
    cache_frames = "--no-frame-cache" not in argv
    argv = [a for a in argv if a != "--no-frame-cache"]
    budget = [a for a in argv if a.startswith("--max-minutes")]
    argv = [a for a in argv if not a.startswith("--max-minutes")]
    minutes = None
    if budget:
        try:
            minutes = float(budget[-1].split("=", 1)[1])
        except (IndexError, ValueError):
            raise UsageError(f"{budget[-1]!r}: write --max-minutes=M with M a number of minutes, "
                             "e.g. --max-minutes=15") from None
        if not minutes > 0:
            raise UsageError(f"--max-minutes={minutes}: give a positive number of minutes, e.g. --max-minutes=15")
    argv = preflight.joined(argv)
    config = preflight.config_file(argv)
    argv, warning = preflight.resume_checkpoint(argv)
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
        config = preflight.config_file(argv)
    preflight.dataset_root(argv, config)
    run_lerobot_train(argv, cache_frames=cache_frames, time_budget_s=None if minutes is None else minutes * 60)


if __name__ == "__main__":
    cli.run(main)
