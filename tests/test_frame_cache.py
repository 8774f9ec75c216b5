"""Decoded-frame cache: exact, and it stops re-decoding."""

import torch
from lerobot.datasets import lerobot_dataset
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from vla.policies.frame_cache import cache_decoded_frames

from .lerobot_data import write_reach_dataset


def test_cached_frames_equal_decoded_frames_and_skip_decoding(tmp_path, monkeypatch):
    root = tmp_path / "videos"
    write_reach_dataset(root, episodes=2, frames=6, use_videos=True)
    plain = LeRobotDataset("local/reach", root=root)
    cached = cache_decoded_frames(LeRobotDataset("local/reach", root=root))
    decodes = []
    real_decode = lerobot_dataset.decode_video_frames

    def counting_decode(*args, **kwargs):
        decodes.append(1)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(lerobot_dataset, "decode_video_frames", counting_decode)
    first = [cached[i]["observation.images.front"] for i in range(len(cached))]
    assert len(decodes) == len(cached)  # first epoch decodes every frame once
    decodes.clear()
    for i in range(len(cached)):
        assert torch.equal(cached[i]["observation.images.front"], first[i])
    assert decodes == []  # later epochs read the cache
    for i in range(len(cached)):
        assert torch.equal(first[i], plain[i]["observation.images.front"])  # and it is exact
