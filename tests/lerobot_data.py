"""Write small LeRobotDataset v3 datasets for tests (the real format, via lerobot's writer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vla.bench.synthetic import make_scenes
from vla.policies.stats import recompute_quantiles


def write_reach_dataset(root: Path, episodes: int = 4, frames: int = 8, size: int = 32, use_videos: bool = False,
                        paraphrases: bool = True, seed: int = 0):
    """Synthetic reaching episodes: each frame shows the scene, the state moves to the goal.

    action (2,) = next waypoint; observation.state (2,) = current position; task = instruction.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = {
        "observation.images.front": {"dtype": "video" if use_videos else "image", "shape": (size, size, 3),
                                     "names": ["height", "width", "channel"]},
        "observation.state": {"dtype": "float32", "shape": (2,), "names": ["x", "y"]},
        "action": {"dtype": "float32", "shape": (2,), "names": ["x", "y"]},
    }
    ds = LeRobotDataset.create("local/reach", fps=10, features=features, root=root, use_videos=use_videos)
    scenes = make_scenes(episodes, chunk_size=frames, image_size=size, square=max(4, size // 7), seed=seed)
    for e in range(episodes):
        img = (scenes.images[e].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        pos = np.zeros(2, dtype=np.float32)
        for t in range(frames):
            action = scenes.actions[e, t].numpy().astype(np.float32)
            ds.add_frame({"observation.images.front": img, "observation.state": pos.copy(), "action": action,
                          "task": scenes.instructions[e]})
            pos = action
        ds.save_episode()
    ds.finalize()
    recompute_quantiles(root)
    if paraphrases:
        tasks = sorted(set(scenes.instructions))
        (Path(root) / "meta" / "paraphrases.json").write_text(
            json.dumps({t: [t.replace("move to", "go to"), t + " please"] for t in tasks}))
    return ds
