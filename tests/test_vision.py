import pytest
import timm
import torch
from safetensors.torch import save_file

from vla.vision import VisionConfig, VisionTower

VIT = dict(encoder="vit_tiny_patch16_224", image_size=32, encoder_kwargs={"depth": 1})


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_load_from_a_local_timm_file(tmp_path, suffix):
    src = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1, num_classes=10)
    sd = {k: v.contiguous() for k, v in src.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    save_file(sd, str(path)) if suffix == ".safetensors" else torch.save(sd, path)
    tower = VisionTower(VisionConfig(**VIT, weights_path=str(path)), d_model=48)
    enc = tower.encoder.state_dict()
    for key in ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "pos_embed"):
        assert torch.equal(enc[key], sd[key]), key
    fresh = VisionTower(VisionConfig(**VIT), d_model=48)
    assert not torch.equal(fresh.encoder.state_dict()["patch_embed.proj.weight"], sd["patch_embed.proj.weight"])


def test_multi_camera_tokens_concatenate_and_cameras_differ():
    tower = VisionTower(VisionConfig(**VIT, cameras=("front", "wrist")), d_model=48)
    assert tower.tokens_per_camera == 4  # (32 / 16)^2 patches, CLS dropped
    with torch.no_grad():
        tower.camera_embed.normal_()
    img = torch.rand(2, 3, 32, 32)
    out = tower({"front": img, "wrist": img})
    assert out.shape == (2, 8, 48)
    assert not torch.allclose(out[:, :4], out[:, 4:])  # camera embeddings tell them apart
    # images of another size are resized to the configured resolution
    assert tower({"front": torch.rand(2, 3, 64, 48), "wrist": img}).shape == (2, 8, 48)


def test_cnn_encoder_gives_flattened_feature_map():
    tower = VisionTower(VisionConfig(encoder="resnet10t", image_size=64), d_model=32)
    assert tower({"front": torch.rand(1, 3, 64, 64)}).shape == (1, 4, 32)  # 64 / 32 = 2x2


def test_freeze_keeps_projector_trainable():
    tower = VisionTower(VisionConfig(**VIT, freeze=True), d_model=48)
    assert not any(p.requires_grad for p in tower.encoder.parameters())
    assert all(p.requires_grad for p in tower.projector.parameters())


def test_bad_inputs_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="unknown timm encoder"):
        VisionTower(VisionConfig(encoder="vit_nonexistent_xyz"), d_model=8)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VisionTower(VisionConfig(**VIT, weights_path=str(tmp_path / "none.pth")), d_model=8)
    tower = VisionTower(VisionConfig(**VIT), d_model=8)
    with pytest.raises(ValueError, match=r"image 'front' has shape \(2, 32, 32, 3\)"):
        tower({"front": torch.rand(2, 32, 32, 3)})
    with pytest.raises(KeyError, match="lack cameras"):
        tower({"wrist": torch.rand(1, 3, 32, 32)})
    with pytest.raises(ValueError, match="unique"):
        VisionConfig(cameras=("a", "a"))


def test_token_grid_pools_image_tokens_while_keypoints_read_the_full_map():
    cnn = dict(encoder="resnet10t", image_size=32, encoder_kwargs={"features_only": True, "out_indices": [1]})
    torch.manual_seed(0)
    full = VisionTower(VisionConfig(**cnn, keypoints=2), d_model=16)
    pooled = VisionTower(VisionConfig(**cnn, keypoints=2, token_grid=2), d_model=16)
    assert full.tokens_per_camera == 64  # stride 4: 8x8 cells at 32 px
    assert pooled.tokens_per_camera == 4 and pooled.num_tokens == 4 + 2 + 1
    pooled.load_state_dict({k: v for k, v in full.state_dict().items() if k != "pos_embed"}, strict=False)
    img = {"front": torch.rand(2, 3, 32, 32)}
    with torch.no_grad():
        a, b = full(img), pooled(img)
    assert b.shape == (2, 7, 16)
    assert torch.allclose(a[:, -3:], b[:, -3:], atol=1e-5)  # keypoints from the same 8x8 map either way
    with pytest.raises(ValueError, match="token_grid=9 exceeds the 8x8"):
        VisionTower(VisionConfig(**cnn, token_grid=9), d_model=16)
