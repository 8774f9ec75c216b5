"""How faithfully each way of storing demonstration frames keeps the pixels a task needs.

Evaluation feeds the policy raw renders; training feeds it frames decoded from the dataset.
Where storage loses the goal (Meta-World's goal is a dot of a few pixels) the two differ and
the policy learns from images it will never see. This measures, per suite, on scripted-expert
frames: bytes per frame and the error on the *colored* pixels (channel spread > `SPREAD`: goal
dots, blocks, zones), where chroma subsampling and quantization hurt most, for

- `av1`: LeRobot's default video (libsvtav1, yuv420p, crf 30, gop 2);
- `h264_444`: h264 at crf 0 in yuv444p (no chroma subsampling; only the RGB <-> YUV rounding);
- `png`: LeRobot's image storage (`use_videos=False`), lossless.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import av
import numpy as np
from lerobot.datasets.video_utils import encode_video_frames
from PIL import Image

from vla.envs import make_env
from vla.envs.experts import make_expert
from vla.envs.recorder import STORAGES

SPREAD = 80  # max - min over RGB above this: a colored pixel
LABELS = {  # the storages of vla.envs.recorder.STORAGES, as the table names them
    "av1": "LeRobot's default video: AV1 (libsvtav1) yuv420p, crf 30",
    "h264_444": "h264 yuv444p, crf 0",
    "png": "PNG images (LeRobot `use_videos=False`)",
}
SUITES = {"tabletop": {"task": "all", "height": 96, "width": 96},
          "metaworld": {"task": "reach-v3,push-v3,pick-place-v3", "height": 128, "width": 128}}


def expert_frames(suite: str, episodes: int, steps: int) -> np.ndarray:
    """(episodes * steps, H, W, 3) uint8 raw renders along scripted-expert rollouts."""
    kwargs = SUITES[suite]
    env, expert = make_env(suite, **kwargs), make_expert(suite)
    frames = []
    try:
        for seed in range(episodes):
            obs, _ = env.reset(seed=seed)
            if hasattr(expert, "reset"):
                expert.reset(env, seed)
            for _ in range(steps):
                pixels = obs["pixels"]
                frames.append(next(iter(pixels.values())) if isinstance(pixels, dict) else pixels)
                obs, _, terminated, truncated, _ = env.step(expert(env))
                if terminated or truncated:
                    break
    finally:
        env.close()
    return np.stack(frames)


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def stored_frames(frames: np.ndarray, storage: str, fps: int = 10) -> tuple[np.ndarray, int]:
    """-> (frames as training would read them back, bytes on disk)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp / f"frame-{i:06d}.png")
        options = STORAGES[storage]
        if options is None:
            return frames.copy(), sum(p.stat().st_size for p in tmp.glob("*.png"))
        video = tmp / "episode.mp4"
        encode_video_frames(tmp, video, fps, overwrite=True, **options)
        return _decode(video)[: len(frames)], video.stat().st_size


def fidelity(raw: np.ndarray, stored: np.ndarray) -> dict[str, float]:
    """Errors (0-255 scale) on the colored pixels of the raw frames, and over all pixels."""
    colored = (raw.max(-1).astype(int) - raw.min(-1).astype(int)) > SPREAD
    err = np.abs(stored.astype(int) - raw.astype(int)).max(-1)  # worst channel per pixel
    return {"colored_mae": float(err[colored].mean()), "colored_p99": float(np.percentile(err[colored], 99)),
            "colored_max": int(err[colored].max()), "all_mae": float(err.mean()),
            "colored_share": float(colored.mean())}


def measure(episodes: int = 4, steps: int = 25) -> dict:
    out = {}
    for suite in SUITES:
        frames = expert_frames(suite, episodes, steps)
        rows = {}
        for storage in LABELS:
            stored, size = stored_frames(frames, storage)
            rows[storage] = {"bytes_per_frame": size / len(frames), **fidelity(frames, stored)}
        out[suite] = {"frames": len(frames), "size": f"{frames.shape[2]}x{frames.shape[1]}", "rows": rows}
    return out


def render_section(heading: str, results: dict, command: str, machine: str, date: str) -> str:
    lines = [heading, "",
             f"`{command}` on {date} (CPU here: {machine}); raw figures in `outputs/bench/storage.json`. "
             "Scripted-expert frames of each suite, stored each way and read back as training reads them; "
             f"errors on a 0-255 scale (worst channel per pixel) over the colored pixels (RGB spread > {SPREAD}: "
             "goal dots, blocks, zones), which chroma subsampling and quantization hurt most.", "",
             "| suite | frames | storage | bytes per frame | colored-pixel error: mean | p99 | max | all pixels: mean |",
             "|---|---|---|---|---|---|---|---|"]
    for suite, r in results.items():
        for storage, row in r["rows"].items():
            lines.append(f"| {suite} | {r['frames']} at {r['size']} | {LABELS[storage]} | "
                         f"{row['bytes_per_frame']:.0f} | {row['colored_mae']:.1f} | {row['colored_p99']:.0f} | "
                         f"{row['colored_max']} | {row['all_mae']:.1f} |")
    return "\n".join(lines) + "\n"
