"""Writing episodes into a LeRobotDataset v3, one crash-safe transaction per episode.

This module owns the on-disk dataset: its features, the paraphrase and progress files we
keep next to LeRobot's metadata, and crash safety.

Why transactions: lerobot 0.4.4 keeps parquet writers open between `save_episode` calls
and only writes their footers in `finalize()`; a process killed before that leaves
unreadable parquet files and an `info.json` that already counts the lost episodes. So every
episode is its own session, run in a staging folder `<root>/.vla_staging`:

1. stage: hard-link the committed files into the staging folder (copying the three metadata
   files LeRobot rewrites: info.json, stats.json, tasks.parquet); the first episode
   `create()`s the dataset there instead;
2. write: re-open it the way `lerobot-record --resume` does (new episodes then go to *new*
   data, video and episode-metadata files), `add_frame` x T, `save_episode()`, `finalize()`;
3. publish: journal the new file names (and back up the files about to be replaced), move
   the new files into `<root>`, replace tasks/stats/paraphrases, then `meta/info.json` (the
   commit point: LeRobot reads the episode count from it), then our progress file.

Until step 3 replaces info.json, `<root>` is the previous, complete dataset (extra,
unreferenced files are ignored by LeRobot). So a killed recorder loses at most the episode
in progress and `<root>` loads at any moment; the next `DemoWriter` on the folder finishes
or rolls back an interrupted publish and deletes the staging folder. Cost per transaction:
re-opening the dataset and finalizing it (~1-2 s on 2 cores), so the collector commits
several episodes per transaction (`DemoWriter.write([...])`) and a kill loses at most those.

Files we add under `meta/` (LeRobot ignores them):
- `paraphrases.json`: {canonical task string: [paraphrases]} for instruction augmentation.
- `vla_recorder.json`: collection progress (attempts and episodes written per task, one
  record per episode, the settings), which `vla.envs.collection` uses to resume.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vla.envs.rollout import Episode
from vla.envs.suites import get_suite

# The AV1 encoder (SVT-AV1) prints ~10 info lines per episode; keep its errors only.
os.environ.setdefault("SVT_LOG", "1")

PROGRESS_FILE = "meta/vla_recorder.json"
PARAPHRASE_FILE = "meta/paraphrases.json"
INFO_FILE = "meta/info.json"
_STAGING = ".vla_staging"
_JOURNAL = ".vla_publish"
_REWRITTEN = ("meta/info.json", "meta/stats.json", "meta/tasks.parquet")  # copied, not linked
# Replaced at publish, in this order; info.json is the commit point, progress comes last.
_PUBLISH_ORDER = ("meta/tasks.parquet", "meta/stats.json", PARAPHRASE_FILE, INFO_FILE, PROGRESS_FILE)


# How a dataset stores its camera images: None is LeRobot's image dtype (PNG, lossless); otherwise video encoded
# with these options of LeRobot's `encode_video_frames`. Each suite's choice and why: `SuiteSpec.storage`; the
# measurement behind it: BENCHMARKS.md "Demonstration image storage" (`python scripts/bench_storage.py`).
STORAGES: dict[str, dict[str, Any] | None] = {
    "png": None,
    "av1": {"vcodec": "libsvtav1"},  # LeRobot's default video: yuv420p, crf 30
    "h264_444": {"vcodec": "h264", "pix_fmt": "yuv444p", "crf": 0},  # no chroma subsampling, no quantization
}


def storage_options(storage: str) -> dict[str, Any] | None:
    """Encoder options of a storage name (None: PNG images); raises listing the valid names."""
    if storage not in STORAGES:
        raise ValueError(f"unknown storage {storage!r}; choose from {sorted(STORAGES)}")
    return STORAGES[storage]


@contextlib.contextmanager
def video_encoder(options: dict[str, Any] | None) -> Iterator[None]:
    """LeRobot passes only `vcodec` on to `encode_video_frames` when it saves an episode; within this
    context it also passes the other options (pixel format, crf). Checks the call it relies on first."""
    from lerobot.datasets import lerobot_dataset

    extra = {k: v for k, v in (options or {}).items() if k != "vcodec"}
    if not extra:
        yield
        return
    original = lerobot_dataset.encode_video_frames
    params = inspect.signature(original).parameters
    if "encode_video_frames(" not in inspect.getsource(lerobot_dataset._encode_video_worker) or any(
            k not in params for k in extra):
        raise RuntimeError("lerobot.datasets.lerobot_dataset no longer encodes episodes through "
                           f"encode_video_frames({', '.join(extra)}=...); vla.envs.recorder.video_encoder is "
                           "written for lerobot 0.4.4 (install it, or store png / av1)")
    lerobot_dataset.encode_video_frames = functools.partial(original, **extra)
    try:
        yield
    finally:
        lerobot_dataset.encode_video_frames = original


def dataset_features(suite: str, camera: str, height: int, width: int, use_videos: bool = True,
                     privileged_target: bool = False) -> dict[str, dict]:
    """LeRobot feature spec of a demo dataset (image, observation.state, action); the image key
    is the suite's (`SuiteSpec.image_key`: Meta-World uses LeRobot's single-camera `observation.image`);
    `privileged_target` adds the suite's `privileged_names` to the state."""
    spec = get_suite(suite)
    if privileged_target and not spec.privileged_names:
        raise ValueError(f"suite {suite!r} has no privileged_target option (tabletop has)")
    state_names = list(spec.state_names) + (list(spec.privileged_names) if privileged_target else [])
    return {
        spec.image_key(camera): {
            "dtype": "video" if use_videos else "image",
            "shape": (height, width, 3),
            "names": ["height", "width", "channels"],
        },
        "observation.state": {"dtype": "float32", "shape": (len(state_names),), "names": state_names},
        "action": {"dtype": "float32", "shape": (spec.action_dim,), "names": list(spec.action_names)},
    }


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _files(root: Path) -> list[str]:
    """Relative paths of the dataset's files (our hidden folders and LeRobot's temporary
    images excluded)."""
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and not rel.parts[0].startswith(".vla_") and rel.parts[0] != "images":
            out.append(str(rel))
    return sorted(out)


def read_progress(root: str | Path) -> dict[str, Any] | None:
    """The committed progress record of a recorder dataset, or None if there is none."""
    path = Path(root) / PROGRESS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def read_paraphrases(root: str | Path) -> dict[str, list[str]]:
    """{canonical task string: paraphrases} stored with a dataset ({} if absent)."""
    path = Path(root) / PARAPHRASE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def recover(root: str | Path) -> None:
    """Finish or roll back an interrupted publish and drop the staging folder, so `root`
    holds exactly the committed episodes and our progress file agrees with them."""
    root = Path(root)
    if not root.exists():
        return
    done = root / f"{_JOURNAL}.done"
    if done.exists():
        shutil.rmtree(done)
    journal = root / _JOURNAL
    if journal.exists():
        record = json.loads((journal / "journal.json").read_text())
        info = root / INFO_FILE
        committed = info.is_file() and (json.loads(info.read_text())["total_episodes"] == record["total_episodes"])
        staged_progress = root / _STAGING / PROGRESS_FILE
        if committed and staged_progress.is_file():
            os.replace(staged_progress, root / PROGRESS_FILE)  # roll forward
        elif not committed:  # roll back
            for rel in record["new_files"]:
                (root / rel).unlink(missing_ok=True)
            for rel in _PUBLISH_ORDER:
                backup = journal / "backup" / rel
                if backup.is_file():
                    shutil.copy2(backup, root / rel)
                else:
                    (root / rel).unlink(missing_ok=True)  # did not exist before
        shutil.rmtree(journal)
    staging = root / _STAGING
    if staging.exists():
        shutil.rmtree(staging)


class DemoWriter:
    """Appends `Episode`s to a LeRobotDataset v3 at `root`, one transaction per episode.

    Args:
        root: dataset folder (created on the first episode; resumed if it holds one).
        repo_id: the dataset's repo id (LeRobot needs one; nothing is pushed).
        fps: frames per second of the episodes.
        features: LeRobot features, see `dataset_features`.
        image_key: the image feature fed from `Episode.images` (its only camera).
        storage: how images are stored, a name of `STORAGES` (must agree with the image feature's dtype).
        settings: anything to record in the progress file (e.g. the collection arguments).
    """

    def __init__(
        self,
        root: str | Path,
        repo_id: str,
        fps: int,
        features: dict[str, dict],
        image_key: str,
        storage: str = "av1",
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.repo_id = repo_id
        self.fps = fps
        self.features = features
        self.image_key = image_key
        self.use_videos = features[image_key]["dtype"] == "video"
        self.video_options = storage_options(storage)
        if (self.video_options is not None) != self.use_videos:
            raise ValueError(f"storage {storage!r} does not match the image feature's dtype "
                             f"{features[image_key]['dtype']!r}")
        self.vcodec = (self.video_options or STORAGES["av1"])["vcodec"]
        if self.root.is_dir() and not (self.root / PROGRESS_FILE).is_file():
            foreign = [p.name for p in self.root.iterdir() if not p.name.startswith(".vla_")]
            if foreign:
                raise FileExistsError(
                    f"{self.root} is not empty and holds no demo dataset written by vla.envs "
                    f"(found {sorted(foreign)}); choose a new or empty output folder"
                )
        recover(self.root)
        self.progress: dict[str, Any] = read_progress(self.root) or {
            "settings": settings or {},
            "attempts": {},
            "written": {},
            "episodes": [],
        }
        self.paraphrases = read_paraphrases(self.root)

    @property
    def num_episodes(self) -> int:
        return len(self.progress["episodes"])

    def note_attempt(self, task_name: str) -> None:
        """Count an attempt (committed with the next written episode)."""
        attempts = self.progress["attempts"]
        attempts[task_name] = attempts.get(task_name, 0) + 1

    def write(self, episode: Episode | list[Episode]) -> None:
        """Append one episode, or several as one transaction; on return they are committed
        (survive a kill). Several per call amortize the per-transaction cost (re-opening the
        dataset, finalizing, publishing: ~1-2 s on 2 cores), at the price of losing up to
        that many uncommitted episodes on a crash (the collector re-runs them)."""
        # lazy: collection's rollout workers import this module and stay torch-free
        import datasets
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        episodes = [episode] if isinstance(episode, Episode) else list(episode)
        if not episodes:
            return
        for ep in episodes:
            if len(ep.images) != 1:
                raise ValueError(
                    f"episode has cameras {sorted(ep.images)}; this dataset stores exactly one "
                    f"image feature ({self.image_key}); record with obs_type='pixels_agent_pos'"
                )
        staging = self.root / _STAGING
        if staging.exists():
            shutil.rmtree(staging)
        if not (self.root / INFO_FILE).is_file():
            dataset = LeRobotDataset.create(
                self.repo_id,
                self.fps,
                self.features,
                root=staging,
                use_videos=self.use_videos,
                vcodec=self.vcodec,
            )
        else:
            self._stage(staging)
            dataset = LeRobotDataset(self.repo_id, root=staging, vcodec=self.vcodec)
        # After opening: LeRobot's loader re-enables progress bars on its way out, and
        # save_episode would print one "Map" bar per episode.
        datasets.disable_progress_bars()
        first = dataset.meta.total_episodes
        for ep in episodes:
            frames = next(iter(ep.images.values()))
            for t in range(ep.length):
                dataset.add_frame(
                    {
                        self.image_key: frames[t],
                        "observation.state": ep.states[t],
                        "action": ep.actions[t],
                        "task": ep.instruction,
                    }
                )
            with video_encoder(self.video_options):
                dataset.save_episode()
        dataset.finalize()
        total = dataset.meta.total_episodes

        written = self.progress["written"]
        for index, ep in enumerate(episodes, start=first):
            self.paraphrases[ep.instruction] = sorted(set(self.paraphrases.get(ep.instruction, [])) | set(ep.paraphrases))
            written[ep.task_name] = written.get(ep.task_name, 0) + 1
            self.progress["episodes"].append(
                {
                    "episode_index": index,
                    "task_name": ep.task_name,
                    "seed": ep.seed,
                    "instruction": ep.instruction,
                    "success": ep.success,
                    "length": ep.length,
                }
            )
        _write_json_atomic(staging / PARAPHRASE_FILE, self.paraphrases)
        _write_json_atomic(staging / PROGRESS_FILE, self.progress)
        self._publish(staging, total)

    def _stage(self, staging: Path) -> None:
        """Mirror the committed dataset into `staging`: hard links for files LeRobot never
        rewrites when resuming, copies for those it does."""
        for rel in _files(self.root):
            src, dst = self.root / rel, staging / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if rel in _REWRITTEN:
                shutil.copy2(src, dst)
                continue
            try:
                os.link(src, dst)
            except OSError:  # a filesystem without hard links: copy instead
                shutil.copy2(src, dst)

    def _publish(self, staging: Path, total_episodes: int) -> None:
        """Move the staged episode into `root` (see the module docstring, step 3)."""
        new_files = [rel for rel in _files(staging) if rel not in _PUBLISH_ORDER and not (self.root / rel).exists()]
        tmp = self.root / f"{_JOURNAL}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        (tmp / "backup").mkdir(parents=True)
        for rel in _PUBLISH_ORDER:
            if (self.root / rel).is_file():
                (tmp / "backup" / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.root / rel, tmp / "backup" / rel)
        record = {"new_files": new_files, "total_episodes": total_episodes}
        (tmp / "journal.json").write_text(json.dumps(record))
        os.replace(tmp, self.root / _JOURNAL)  # from here on, recover() can finish or undo
        for rel in new_files + [r for r in _PUBLISH_ORDER if (staging / r).is_file()]:
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, self.root / rel)
        done = self.root / f"{_JOURNAL}.done"
        os.replace(self.root / _JOURNAL, done)
        shutil.rmtree(done)
        shutil.rmtree(staging)
