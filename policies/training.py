"""Training through LeRobot's own loop (`lerobot-train`), made crash-safe.

`run_lerobot_train(argv)` runs lerobot 0.4.4's `lerobot_train.main` (accelerate, resume,
logging all LeRobot's) with two changes that make a crash never leave a checkpoint that
resume would pick half-written:

- a checkpoint is written into `<step>.partial/`, fsynced, then renamed to `<step>/`;
- the `last` link is replaced with an atomic `os.replace` of a fresh symlink (LeRobot
  unlinks it first, so a crash between the two calls loses `last`).

Leftover `*.partial` directories from a killed run are removed when the next run starts.

A resumed run replays the data order of an uninterrupted one (`epoch_cycle`): LeRobot
starts a fresh shuffle at the resumed step, so the rest of the interrupted epoch was
lost and the order differed; here epoch e is shuffled by a generator seeded with
(seed, e) and the batches the interrupted run already took are skipped. With
`--seed=null`, or a sampler other than torch's RandomSampler, LeRobot's order is kept.

Bad input fails with one line before the heavy work (`preflight`, `vla.cli`): the
config file, the dataset root and the checkpoint to resume are checked before LeRobot is
imported; invalid config values come back as their validation message, not a draccus
traceback.

`time_budget_s` bounds the training loop by wall clock instead of steps (model comparisons
"at the same wall-clock budget"): the update that crosses the budget becomes the run's last
step, checkpointed as LeRobot checkpoints its final step, and the run ends there. The
seconds trained travel with the checkpoints (a resumed run spends what is left), and the
learning rate can anneal over the budget itself (`install_time_budget`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

from vla import cli
from vla.cli import UsageError, user_errors
from vla.policies import preflight

LAST = "last"


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(save_checkpoint):
    """Wrap LeRobot's `save_checkpoint(checkpoint_dir, ...)` to write then rename."""

    def save(checkpoint_dir: Path, *args, **kwargs):
        checkpoint_dir = Path(checkpoint_dir)
        partial = checkpoint_dir.with_name(checkpoint_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        save_checkpoint(partial, *args, **kwargs)
        _fsync_tree(partial)
        if checkpoint_dir.exists():  # same step saved again (e.g. a resumed run's final step)
            shutil.rmtree(checkpoint_dir)
        os.replace(partial, checkpoint_dir)

    return save


def atomic_update_last(checkpoint_dir: Path) -> Path:
    """Point `checkpoints/last` at `checkpoint_dir` without a moment where it is missing."""
    checkpoint_dir = Path(checkpoint_dir)
    link, tmp = checkpoint_dir.parent / LAST, checkpoint_dir.parent / f".{LAST}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(checkpoint_dir.name)
    os.replace(tmp, link)
    return link


def remove_partial_checkpoints(output_dir: Path) -> list[Path]:
    removed = sorted((Path(output_dir) / "checkpoints").glob("*.partial"))
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def install_atomic_checkpointing() -> None:
    from lerobot.scripts import lerobot_train

    if not getattr(lerobot_train.save_checkpoint, "_vla_atomic", False):
        lerobot_train.save_checkpoint = atomic_save(lerobot_train.save_checkpoint)
        lerobot_train.save_checkpoint._vla_atomic = True
        lerobot_train.update_last_checkpoint = atomic_update_last


def _output_dir_from(argv: list[str]) -> Path | None:
    for arg in argv:
        if arg.startswith("--output_dir="):
            return Path(arg.split("=", 1)[1])
        if arg.startswith("--config_path=") and arg.endswith("train_config.json"):
            return Path(arg.split("=", 1)[1]).parents[3]  # <out>/checkpoints/<step>/pretrained_model/
    return None


class TimeBudgetReached(Exception):
    """Raised inside lerobot-train's loop after the final (budget-crossing) step was saved."""


_BUDGET: dict = {}  # the running time budget: seconds, cfg (captured), last (clock), stop


def budget_lr(peak: float, floor: float, warmup_steps: int, step: int, progress: float) -> float:
    """LR of a cosine schedule whose decay spans a wall-clock budget: linear warm-up over
    `warmup_steps` updates, then peak -> floor as `progress` (seconds trained / budget) goes 0 -> 1."""
    warm = min(1.0, (step + 1) / max(1, warmup_steps))
    return warm * (floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress)))))


def install_time_budget() -> None:
    """Hook lerobot-train's `make_dataset` (to see the run's config) and `update_policy` (to
    watch the clock); inert until `_BUDGET['seconds']` is set (see `run_lerobot_train`).

    Seconds trained accumulate in the policy's `train_seconds` buffer (an update plus the data
    loading before the next one), which checkpoints carry, so a resumed run spends only what
    is left of the budget. With the policy's `anneal_over_budget`, the learning rate follows
    `budget_lr` over those seconds instead of LeRobot's step-based scheduler, so it has
    decayed when the budget ends, however many steps this machine fits into it."""
    from lerobot.scripts import lerobot_train

    if getattr(lerobot_train.update_policy, "_vla_budget", False):
        return
    make_dataset, update_policy = lerobot_train.make_dataset, lerobot_train.update_policy

    def capture_cfg(cfg):
        _BUDGET["cfg"] = cfg
        return make_dataset(cfg)

    def timed_update(train_tracker, policy, batch, optimizer, *args, **kwargs):
        seconds = _BUDGET.get("seconds")
        if seconds is None:
            return update_policy(train_tracker, policy, batch, optimizer, *args, **kwargs)
        if _BUDGET.get("stop"):
            raise TimeBudgetReached
        inner = getattr(policy, "module", policy)  # unwrap DistributedDataParallel
        now = time.monotonic()
        elapsed = now - _BUDGET["last"] if "last" in _BUDGET else 0.0
        _BUDGET["last"] = now
        if hasattr(inner, "train_seconds"):  # ours: saved with the checkpoint
            inner.train_seconds += elapsed
            done = float(inner.train_seconds)
        else:  # other policy types (e.g. ACT baselines): this run only
            done = _BUDGET["done"] = _BUDGET.get("done", 0.0) + elapsed
        config = getattr(inner, "config", None)
        if getattr(config, "anneal_over_budget", False):
            for group in optimizer.param_groups:
                peak = group.get("initial_lr", config.optimizer_lr)
                floor = peak * config.scheduler_decay_lr / config.optimizer_lr
                group["lr"] = budget_lr(peak, floor, config.scheduler_warmup_steps, train_tracker.steps, done / seconds)
            kwargs["lr_scheduler"] = None
        out = update_policy(train_tracker, policy, batch, optimizer, *args, **kwargs)
        if done + time.monotonic() - now >= seconds:
            _BUDGET["stop"] = True
            _BUDGET["cfg"].steps = train_tracker.steps + 1  # this step is the last: LeRobot saves it
        return out

    capture_cfg.__dict__.update(make_dataset.__dict__)  # keep the frame cache's marker
    timed_update._vla_budget = True
    lerobot_train.make_dataset, lerobot_train.update_policy = capture_cfg, timed_update


def run_lerobot_train(argv: list[str], cache_frames: bool = True, time_budget_s: float | None = None) -> None:
    """Run `lerobot-train` with our plugin discovered, offline, atomic checkpoints and
    (by default) decoded video frames cached in memory. `time_budget_s`: stop after this many
    seconds of training updates (the last step is checkpointed), whatever `--steps` says."""
    if time_budget_s is not None and not time_budget_s > 0:
        raise ValueError(f"time budget must be a positive number of seconds, got {time_budget_s}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    install_atomic_checkpointing()
    if cache_frames:
        install_frame_cache()
    install_time_budget()
    install_resumable_data_order()
    install_config_checks()
    _BUDGET.clear()
    _BUDGET["seconds"] = time_budget_s
    out = _output_dir_from(argv)
    if out is not None and (out / "checkpoints").exists():
        remove_partial_checkpoints(out)
    if not any(a.startswith("--policy.discover_packages_path") for a in argv):
        argv = [*argv, "--policy.discover_packages_path=vla.policies"]
    from draccus.utils import ParsingError
    from lerobot.scripts import lerobot_train

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


def _random_sampler(loader):
    """The torch RandomSampler under a DataLoader, through accelerate's wrappers (None if there is none)."""
    from torch.utils.data import RandomSampler

    node = getattr(loader, "batch_sampler", None)
    for _ in range(4):  # BatchSamplerShard -> BatchSampler -> RandomSampler
        if node is None or isinstance(node, RandomSampler):
            return node
        node = getattr(node, "batch_sampler", None) or getattr(node, "sampler", None)
    return None


def epoch_cycle(dataloader, seed: int, start_step: int):
    """Batches forever, like LeRobot's `cycle`, but epoch e is shuffled by a generator seeded with
    (seed, e), and a run resumed at `start_step` first skips the batches of its epoch already taken
    (without loading them): the same batches, in the same order, as an uninterrupted run."""
    import torch
    from accelerate import skip_first_batches

    sampler = _random_sampler(dataloader)
    epoch, skip = divmod(start_step, len(dataloader))
    while True:
        if sampler.generator is None:
            sampler.generator = torch.Generator()
        sampler.generator.manual_seed(seed * 100_003 + epoch)
        yield from skip_first_batches(dataloader, skip) if skip else dataloader
        epoch, skip = epoch + 1, 0


def install_resumable_data_order() -> None:
    """Make lerobot-train's data order depend on (seed, epoch) only, so a resumed run replays it
    (`epoch_cycle`); LeRobot's own `cycle` where that cannot hold (no seed, another sampler)."""
    from lerobot.scripts import lerobot_train

    if getattr(lerobot_train.cycle, "_vla_epochs", False):
        return
    cycle = lerobot_train.cycle

    def seeded_cycle(dataloader):
        cfg = _BUDGET.get("cfg")
        if cfg is None or cfg.seed is None or _random_sampler(dataloader) is None:
            return cycle(dataloader)
        start = 0
        if cfg.resume:
            start = json.loads((Path(cfg.checkpoint_path) / "training_state" / "training_step.json").read_text())["step"]
        return epoch_cycle(dataloader, cfg.seed, start)

    seeded_cycle._vla_epochs = True
    lerobot_train.cycle = seeded_cycle


def install_config_checks() -> None:
    """LeRobot's own config validation (output dir exists, resume without a config, ...) as one-line errors."""
    from lerobot.configs.train import TrainPipelineConfig

    validate = TrainPipelineConfig.validate
    if getattr(validate, "_vla_checked", False):
        return

    def checked(self):
        with user_errors(ValueError, OSError):
            validate(self)

    checked._vla_checked = True
    TrainPipelineConfig.validate = checked


def config_error(err: Exception) -> UsageError:
    """A draccus parsing error as one line: the innermost cause's message (a config's
    validation, e.g. "decoder='beam'; choose from [...]"), after the option it came from."""
    from draccus.utils import DecodingError

    path, cause = None, err
    while cause is not None:
        if isinstance(cause, DecodingError) and cause.key_path:  # the innermost names the option
            path = ".".join(cause.key_path)
        inner = cause.__cause__ or cause.__context__
        if inner is None:
            break
        cause = inner
    message = cause.message if isinstance(cause, DecodingError) else str(cause)
    return UsageError(f"--{path}: {message}" if path else message)


def install_frame_cache() -> None:
    """Make lerobot-train's dataset decode every video frame only once (see frame_cache)."""
    from lerobot.scripts import lerobot_train

    from vla.policies.frame_cache import cache_decoded_frames

    make_dataset = lerobot_train.make_dataset
    if getattr(make_dataset, "_vla_cached", False):
        return

    def make_cached(cfg):
        return cache_decoded_frames(make_dataset(cfg))

    make_cached._vla_cached = True
    lerobot_train.make_dataset = make_cached


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
