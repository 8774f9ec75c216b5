"""Every change this project makes to lerobot 0.4.4's training script internals, in one place.

`lerobot-train` offers no hooks for what `vla.policies.training` needs, so `install()`
replaces four globals of `lerobot.scripts.lerobot_train` with wrappers around the originals
(`functools.wraps`, so the originals stay reachable as `__wrapped__`):

- `save_checkpoint`, `update_last_checkpoint`: atomic checkpoints (write `<step>.partial/`,
  fsync, rename; replace the `last` link with one `os.replace`), so a crash never leaves a
  checkpoint that resume would pick half-written;
- `make_dataset`: decoded video frames cached in memory (`vla.policies.frame_cache`), and
  the run's config captured for the time budget;
- `update_policy`: the wall-clock budget (`_BUDGET`, set by `run_lerobot_train`): seconds
  trained accumulate in the policy's `train_seconds` buffer, the learning rate can anneal
  over the budget (`budget_lr`), and the update that crosses it becomes the last step;
- `cycle`: data order that depends on (seed, epoch) only (`epoch_cycle`), so a resumed run
  replays the batches of an uninterrupted one (LeRobot starts a fresh shuffle at the resumed
  step, losing the rest of the interrupted epoch);

and wraps `TrainPipelineConfig.validate` so that LeRobot's own config checks (output dir
exists, resume without a config, ...) come back as one-line `vla.cli.UsageError`s.

`check_lerobot_internals()` runs before anything is replaced (and in
tests/test_lerobot_patches.py): it fails loudly, naming what moved, when lerobot's
functions, their parameters or the call sites these wrappers rely on change.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import shutil
import time
from pathlib import Path

import lerobot
import torch
from accelerate import skip_first_batches
from draccus.utils import DecodingError
from lerobot.configs.train import TrainPipelineConfig
from lerobot.scripts import lerobot_train
from torch.utils.data import RandomSampler

from vla.cli import UsageError, user_errors
from vla.policies.frame_cache import cache_decoded_frames

LAST = "last"
# the replaced globals and the parameters our wrappers read or pass on by name
PATCHED = {
    "save_checkpoint": ("checkpoint_dir", "step", "cfg", "policy", "optimizer"),
    "update_last_checkpoint": ("checkpoint_dir",),
    "make_dataset": ("cfg",),
    "update_policy": ("train_metrics", "policy", "batch", "optimizer", "lr_scheduler"),
    "cycle": ("iterable",),
    "tqdm": ("total", "desc"),
}
# code of lerobot_train that the wrappers rely on: the scheduler passed by keyword (the budget
# replaces it), the final step saved when step == cfg.steps (the budget sets cfg.steps), the link update
CALL_SITES = ("dataset = make_dataset(cfg)", "lr_scheduler=lr_scheduler", "step == cfg.steps",
              "update_last_checkpoint(checkpoint_dir)", "cycle(dataloader)",
              "total=cfg.steps - step")


def check_lerobot_internals() -> None:
    """Raise if lerobot's training internals differ from what `install` wraps (see the module doc)."""
    problems = []
    for name, params in PATCHED.items():
        fn = getattr(lerobot_train, name, None)
        if fn is None:
            problems.append(f"lerobot_train.{name} is gone")
            continue
        fn = inspect.unwrap(fn)
        fn = fn.__init__ if inspect.isclass(fn) else fn  # tqdm: its __new__ takes (*_, **__)
        missing = [p for p in params if p not in inspect.signature(fn).parameters]
        if missing:
            problems.append(f"lerobot_train.{name} has no parameter(s) {missing}")
    source = inspect.getsource(lerobot_train)
    problems += [f"lerobot_train no longer contains {site!r}" for site in CALL_SITES if site not in source]
    if problems:
        raise RuntimeError(f"lerobot {lerobot.__version__}'s training internals changed: {'; '.join(problems)}. "
                           "vla.policies.lerobot_patches wraps them for lerobot 0.4.4 (the pinned version); "
                           "install lerobot==0.4.4, or port the wrappers to the new internals")


def install(cache_frames: bool = True) -> None:
    """Replace the globals (idempotent): atomic checkpoints, the frame cache (optional), the time budget."""
    check_lerobot_internals()
    install_atomic_checkpointing()
    if cache_frames:
        install_frame_cache()
    install_time_budget()
    install_resumable_data_order()
    install_config_checks()


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

    @functools.wraps(save_checkpoint)
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


def install_atomic_checkpointing() -> None:
    if not getattr(lerobot_train.save_checkpoint, "_vla_atomic", False):
        lerobot_train.save_checkpoint = atomic_save(lerobot_train.save_checkpoint)
        lerobot_train.save_checkpoint._vla_atomic = True
        lerobot_train.update_last_checkpoint = atomic_update_last


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
    if getattr(lerobot_train.update_policy, "_vla_budget", False):
        return
    make_dataset, update_policy = lerobot_train.make_dataset, lerobot_train.update_policy

    @functools.wraps(make_dataset)  # keeps the frame cache's marker too
    def capture_cfg(cfg):
        _BUDGET["cfg"] = cfg
        return make_dataset(cfg)

    @functools.wraps(update_policy)
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

    timed_update._vla_budget = True
    lerobot_train.make_dataset, lerobot_train.update_policy = capture_cfg, timed_update

    progress_bar = lerobot_train.tqdm

    @functools.wraps(progress_bar)
    def budget_progress_bar(*args, **kwargs):
        seconds = _BUDGET.get("seconds")
        if seconds is not None:  # cfg.steps is a placeholder the budget ends early: no total, no hour-long ETA
            kwargs["total"] = None
            kwargs["desc"] = f"{kwargs.get('desc', 'Training')} ({seconds / 60:g}-min budget)"
        return progress_bar(*args, **kwargs)

    lerobot_train.tqdm = budget_progress_bar


def install_frame_cache() -> None:
    """Make lerobot-train's dataset decode every video frame only once (see frame_cache)."""
    make_dataset = lerobot_train.make_dataset
    if getattr(make_dataset, "_vla_cached", False):
        return

    @functools.wraps(make_dataset)
    def make_cached(cfg):
        return cache_decoded_frames(make_dataset(cfg))

    make_cached._vla_cached = True
    lerobot_train.make_dataset = make_cached


def _random_sampler(loader):
    """The torch RandomSampler under a DataLoader, through accelerate's wrappers (None if there is none)."""
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
    if getattr(lerobot_train.cycle, "_vla_epochs", False):
        return
    cycle = lerobot_train.cycle

    @functools.wraps(cycle)
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
    validate = TrainPipelineConfig.validate
    if getattr(validate, "_vla_checked", False):
        return

    @functools.wraps(validate)
    def checked(self):
        with user_errors(ValueError, OSError):
            validate(self)

    checked._vla_checked = True
    TrainPipelineConfig.validate = checked


def config_error(err: Exception) -> UsageError:
    """A draccus parsing error as one line: the innermost cause's message (a config's
    validation, e.g. "unknown decoder 'beam'; choose from [...]"), after the option it came from."""
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
