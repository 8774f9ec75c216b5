"""Parallel, resumable collection of scripted demonstrations into a LeRobotDataset.

This module owns the collection loop behind `scripts/collect_demos.py`: which (task, seed)
attempts to run, fanning them out to worker processes, and handing finished episodes to the
single writer (`vla.envs.recorder.DemoWriter`) in this process.

- Workers (spawned processes, `workers` of them; 0 = roll out in this process) each keep
  one env per task and roll out the expert; episodes come back as numpy arrays.
- Results are consumed in submission order, so a run is deterministic for given
  arguments: attempt i of a task always uses seed `seed + 100_000 * task_id + i // G`,
  where task_id is the task's position in MT50 order (Meta-World) or in `FAMILIES`
  (tabletop), with goal `i % G` of that scene forced.
- Tabletop scenes hold several goals (G = 9 for push, 3 otherwise; `every_goal`): each scene
  layout (seed) is recorded once per goal, with the same layout and a different instruction
  and demonstration, so the instruction is the only thing that tells them apart. The
  episode count per task is rounded up to whole scenes. Meta-World tasks have G = 1.
- Only successful episodes are written unless `keep_failed`; a task is given up (with a
  warning) after `max_attempts_factor * episodes_per_task + 5` attempts.
- Resuming: re-running with the same `out` continues from the committed progress (the
  writer rolls back a half-written transaction first). Episodes are committed
  `commit_every` at a time, so a kill loses at most that many; they are re-run with the
  same seeds on resume. Settings that change the data format
  (suite, camera, image size, fps, video vs png) must match the existing dataset.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vla.envs import make_env
from vla.envs.experts import make_expert
from vla.envs.recorder import DemoWriter, dataset_features, storage_options
from vla.envs.rollout import Episode, run_episode
from vla.envs.suites import get_suite
from vla.envs.tabletop import all_goals
from vla.policies.stats import recompute_quantiles

log = logging.getLogger(__name__)

_FORMAT_KEYS = ("suite", "camera", "height", "width", "fps", "storage", "every_goal", "privileged_target")


@dataclass
class CollectConfig:
    """Arguments of a collection run (see the module docstring)."""

    suite: str  # 'metaworld' or 'tabletop'
    tasks: str  # Meta-World task spec ('MT10', 'push-v3,easy') or tabletop families ('all')
    episodes_per_task: int
    out: str  # dataset folder
    repo_id: str = "local/vla_demos"
    workers: int = 2  # rollout processes; 0 rolls out in the writer process
    camera: str | None = None  # None: the suite's default
    height: int | None = None
    width: int | None = None
    episode_length: int | None = None
    noise_std: float = 0.0  # Gaussian noise on the expert's xyz actions (executed and recorded)
    perturb_std: float = 0.0  # DART: noise on the executed xyz actions only; the clean action is recorded
    seed: int = 0
    every_goal: bool = True  # tabletop: each scene once per goal (False: one goal per scene, drawn from its seed)
    storage: str | None = None  # how images are stored (vla.envs.recorder.STORAGES); None: the suite's
    privileged_target: bool = False  # tabletop: the named target in the state (diagnostic; TabletopEnv)
    keep_failed: bool = False
    max_attempts_factor: int = 3
    commit_every: int = 20  # episodes per dataset transaction; a kill loses at most these (they are re-run)
    progress_bar: bool = True

    def __post_init__(self) -> None:
        spec = get_suite(self.suite)
        self.fps = spec.fps
        self.camera = self.camera or spec.camera
        self.height = self.height or spec.image_size[0]
        self.width = self.width or spec.image_size[1]
        self.episode_length = self.episode_length or spec.episode_length
        self.storage = self.storage or spec.storage
        storage_options(self.storage)  # unknown names fail here
        if self.privileged_target and not spec.privileged_names:
            raise ValueError(f"privileged_target: suite {self.suite!r} has no such option (tabletop has)")
        if self.episodes_per_task < 1:
            raise ValueError(f"episodes_per_task must be >= 1, got {self.episodes_per_task}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.perturb_std < 0 or self.noise_std < 0:
            raise ValueError(f"noise_std={self.noise_std} and perturb_std={self.perturb_std} must be >= 0")
        if self.commit_every < 1:
            raise ValueError(f"commit_every must be >= 1, got {self.commit_every}")

    @property
    def use_videos(self) -> bool:
        return storage_options(self.storage) is not None


def task_list(suite: str, spec: str) -> list[tuple[int, str]]:
    """(stable task id, task name) for a suite's task spec; raises on unknown names."""
    return get_suite(suite).task_ids(spec)


def scene_goals(cfg: CollectConfig, task_name: str) -> list[dict[str, str] | None]:
    """Reset options forcing each goal of a scene, in order (G entries; [None] = the seed's own goal)."""
    if cfg.suite != "tabletop" or not cfg.every_goal:
        return [None]
    return [{k: v for k, v in (("family", g.family), ("block", g.block), ("zone", g.zone)) if v}
            for g in all_goals(task_name)]


def episodes_target(cfg: CollectConfig, task_name: str) -> int:
    """Episodes to record for a task: `episodes_per_task` rounded up to whole scenes."""
    n_goals = len(scene_goals(cfg, task_name))
    return -(-cfg.episodes_per_task // n_goals) * n_goals


def make_suite_env(cfg: CollectConfig, task_name: str):
    """The env a worker rolls out for one task (images on, suite defaults filled in)."""
    return make_env(
        cfg.suite,
        task=task_name,
        obs_type="pixels_agent_pos",
        camera=cfg.camera,
        height=cfg.height,
        width=cfg.width,
        episode_length=cfg.episode_length,
        **({"privileged_target": True} if cfg.privileged_target else {}),
    )


_WORKER_ENVS: dict[str, Any] = {}


def _rollout(cfg: CollectConfig, task_name: str, seed: int, options: dict[str, str] | None) -> Episode:
    """Worker entry point: one expert episode of `task_name` from `seed` (goal forced by `options`)."""
    if task_name not in _WORKER_ENVS:
        _WORKER_ENVS[task_name] = make_suite_env(cfg, task_name)
    expert = make_expert(cfg.suite, cfg.noise_std, seed=seed)
    return run_episode(_WORKER_ENVS[task_name], expert, seed, cfg.suite, task_name, options=options,
                       perturb_std=cfg.perturb_std)


class _Inline:
    """A stand-in for a process pool that runs jobs in this process (workers=0)."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, cancel_futures: bool = False) -> None:
        pass


def collect(cfg: CollectConfig) -> dict[str, Any]:
    """Collect demonstrations per `cfg` into `cfg.out`; returns the progress record."""
    tasks = task_list(cfg.suite, cfg.tasks)
    image_key = get_suite(cfg.suite).image_key(cfg.camera)
    features = dataset_features(cfg.suite, cfg.camera, cfg.height, cfg.width, cfg.use_videos, cfg.privileged_target)
    settings = {k: v for k, v in asdict(cfg).items() if k != "progress_bar"}
    writer = DemoWriter(cfg.out, cfg.repo_id, cfg.fps, features, image_key, cfg.storage, settings)
    _check_format(writer.progress["settings"], settings, cfg.out)

    target = {name: episodes_target(cfg, name) for _, name in tasks}
    written = {name: writer.progress["written"].get(name, 0) for _, name in tasks}
    attempts = {name: writer.progress["attempts"].get(name, 0) for _, name in tasks}
    in_flight: collections.deque[tuple[str, Future]] = collections.deque()
    inflight_count = collections.Counter()
    pool = _make_pool(cfg.workers)
    bar = tqdm(
        total=sum(target.values()),
        initial=sum(written.values()),
        desc=f"{cfg.suite} demos",
        disable=not cfg.progress_bar,
        unit="ep",
    )
    pending: list = []  # finished episodes not yet committed (one transaction per commit_every)
    try:
        while True:
            _fill(pool, cfg, tasks, target, written, attempts, inflight_count, in_flight)
            if not in_flight:
                break
            task_name, future = in_flight.popleft()
            inflight_count[task_name] -= 1
            episode = future.result()
            writer.note_attempt(task_name)
            if (episode.success or cfg.keep_failed) and written[task_name] < target[task_name]:
                pending.append(episode)
                written[task_name] += 1
                bar.update(1)
            if len(pending) >= cfg.commit_every:
                writer.write(pending)
                pending = []
            bar.set_postfix(attempts=sum(writer.progress["attempts"].values()))
        writer.write(pending)
    finally:
        bar.close()
        pool.shutdown(cancel_futures=True)
    for _, name in tasks:
        if written[name] < target[name]:
            log.warning("%s: only %d of %d episodes after %d attempts", name, written[name], target[name],
                        attempts[name])
    if writer.num_episodes > 0:
        # LeRobot averages per-episode quantiles; action tokenization needs the dataset's own.
        recompute_quantiles(cfg.out)
    return writer.progress


def _fill(pool, cfg, tasks, target, written, attempts, inflight_count, in_flight) -> None:
    """Submit attempts, round-robin over tasks, until ~2 per worker are in flight."""
    capacity = max(1, 2 * cfg.workers)
    progressed = True
    while len(in_flight) < capacity and progressed:
        progressed = False
        for task_id, name in tasks:
            if len(in_flight) >= capacity:
                break
            if written[name] + inflight_count[name] >= target[name]:
                continue
            if attempts[name] >= cfg.max_attempts_factor * target[name] + 5:
                continue
            goals = scene_goals(cfg, name)
            scene, goal = divmod(attempts[name], len(goals))
            seed = cfg.seed + 100_000 * task_id + scene
            attempts[name] += 1
            inflight_count[name] += 1
            in_flight.append((name, pool.submit(_rollout, cfg, name, seed, goals[goal])))
            progressed = True


def _make_pool(workers: int):
    if workers == 0:
        return _Inline()
    # spawn: workers start clean (no inherited OpenGL contexts or torch thread pools).
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _check_format(existing: dict[str, Any], requested: dict[str, Any], out: str) -> None:
    if "use_videos" in existing and "storage" not in existing:  # recorded before storage had a name
        existing = {**existing, "storage": "av1" if existing["use_videos"] else "png"}
    mismatched = {
        k: (existing.get(k), requested[k]) for k in _FORMAT_KEYS if k in existing and existing.get(k) != requested[k]
    }
    if mismatched:
        raise ValueError(
            f"{out} was recorded with different settings {mismatched} (existing, requested); "
            "use the same settings to resume, or a new --out folder"
        )


def default_workers() -> int:
    """Rollout processes to use by default: one per CPU core."""
    return max(1, os.cpu_count() or 1)


def dataset_summary(root: str | Path) -> dict[str, Any]:
    """Episodes and frames of a finished dataset, read back through LeRobot."""
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata  # lazy: workers import this module torch-free

    meta = LeRobotDatasetMetadata("local/summary", root=root)
    return {"episodes": meta.total_episodes, "frames": meta.total_frames, "tasks": meta.total_tasks}
