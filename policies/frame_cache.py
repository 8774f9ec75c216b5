"""Decode each video frame once: an in-memory cache of decoded frames for LeRobotDataset.

Training revisits every frame once per epoch; decoding the same AV1 frames again each time
dominates a small policy's step on CPU. `cache_decoded_frames(dataset)` wraps the
dataset's `_query_videos` (LeRobot 0.4.4) so a (camera, episode, timestamps) query is
decoded once and kept as uint8 (decoded frames are uint8 / 255, so this is exact).
Image augmentations still run on every access (they apply after this call).

Memory: H*W*3 bytes per frame and camera (27 KB at 96 px; 10k frames ~ 0.3 GB). With
DataLoader workers each worker holds its own cache.
"""

from __future__ import annotations

import torch


def cache_decoded_frames(dataset, max_frames: int | None = None):
    """Install the cache on `dataset` (a LeRobotDataset) in place and return it."""
    if not hasattr(dataset, "_query_videos"):
        raise TypeError(f"{type(dataset).__name__} has no _query_videos; expected a lerobot 0.4.4 LeRobotDataset")
    if getattr(dataset, "_vla_frame_cache", None) is not None:
        return dataset
    original = dataset._query_videos
    cache: dict[tuple, torch.Tensor] = {}
    dataset._vla_frame_cache = cache

    def query(query_timestamps: dict[str, list[float]], ep_idx: int) -> dict[str, torch.Tensor]:
        out, missing = {}, {}
        for key, ts in query_timestamps.items():
            entry = cache.get((key, int(ep_idx), tuple(round(float(t), 5) for t in ts)))
            if entry is None:
                missing[key] = ts
            else:
                out[key] = entry.float().div_(255.0)
        if missing:
            for key, frames in original(missing, ep_idx).items():
                if max_frames is None or len(cache) < max_frames:
                    k = (key, int(ep_idx), tuple(round(float(t), 5) for t in missing[key]))
                    cache[k] = (frames * 255.0).round_().to(torch.uint8)
                out[key] = frames
        return out

    dataset._query_videos = query
    return dataset
