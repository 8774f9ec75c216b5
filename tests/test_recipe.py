"""The training-recipe levers each do what they claim (docs/training.md, "Recipe")."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from lerobot.configs.types import FeatureType, PolicyFeature

from vla.lsc import masked_diffusion_loss, sample_mask
from vla.model import MASK, LLaDAVLA
from vla.vision import random_shift

from .conftest import small_config
from .test_model import make_obs


def test_random_shift_moves_pixels_by_at_most_pad_and_is_seeded_per_sample():
    images = torch.rand(6, 3, 16, 16)
    seeds = torch.arange(6)
    shifted = random_shift(images, 3, seeds)
    assert shifted.shape == images.shape and not torch.equal(shifted, images)
    assert torch.equal(random_shift(images, 3, seeds), shifted)  # a sample's shift depends on its seed
    assert torch.equal(random_shift(images[2:4], 3, seeds[2:4]), shifted[2:4])  # ... not on its batch
    for b in range(6):  # each output is the input moved by one (dy, dx) with |dy|, |dx| <= 3
        found = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                 if torch.equal(shifted[b, :, 3:-3, 3:-3], images[b, :, 3 - dy:13 - dy, 3 - dx:13 - dx])]
        assert found, b
    assert torch.equal(random_shift(images, 0, seeds), images)


@pytest.mark.parametrize("extra", [{}, {"vision_keypoints": 2, "fusion_token": True, "fusion_slots": True}])
def test_the_multi_masking_loss_is_the_mean_of_single_masking_losses_on_the_same_masks(tokenizer, extra):
    """num_maskings=M scores M maskings of each block against one prefix encoding; the loss
    equals the mean of M ordinary (one-masking) losses, each with its masks given explicitly."""
    torch.manual_seed(0)
    model = LLaDAVLA(small_config(tokenizer, num_maskings=3, **extra))
    obs = make_obs(tokenizer)
    actions = torch.rand(3, 3, 4) * 2 - 1
    seeds = torch.tensor([5, 6, 7])
    loss, metrics = model.compute_loss(obs, actions, sample_seeds=seeds)
    targets = model.action_tokenizer.to_bins(actions).flatten(1)
    prefix, valid = model.embed_prefix(obs)
    singles = []
    for m in range(3):
        p_mask, mask = sample_mask(3, targets.shape[1], model.cfg.mask_eps, seeds=seeds + m * 1_000_000_007)
        logits = model.forward_full(prefix, valid, torch.where(mask, MASK, targets))  # no cache, full pass
        singles.append(masked_diffusion_loss(logits, targets, mask, p_mask)[0])
    assert loss.item() == pytest.approx(torch.stack(singles).mean().item(), rel=1e-5, abs=1e-6)
    one = LLaDAVLA(small_config(tokenizer, **extra))
    one.load_state_dict(model.state_dict())
    first, _ = one.compute_loss(obs, actions, sample_seeds=seeds)  # M=1 is the first of those maskings
    assert first.item() == pytest.approx(singles[0].item(), rel=1e-5)
    loss.backward()
    assert model.vision.projector.fc1.weight.grad.abs().sum() > 0


def test_film_starts_as_identity_and_then_makes_vision_read_the_instruction(tokenizer):
    torch.manual_seed(0)
    plain = LLaDAVLA(small_config(tokenizer))
    film = LLaDAVLA(small_config(tokenizer, vision_film=True))
    film.load_state_dict(plain.state_dict(), strict=False)
    obs = make_obs(tokenizer, bsz=2)
    obs.images["front"][1] = obs.images["front"][0]  # one image, two instructions
    assert torch.allclose(film.embed_prefix(obs)[0], plain.embed_prefix(obs)[0], atol=1e-6)
    with torch.no_grad():
        for head in film.vision.film.heads:
            head.weight.normal_(0, 0.1)
    n_img = film.vision.num_tokens
    img = film.embed_prefix(obs)[0][:, :n_img]
    assert not torch.allclose(img[0], img[1], atol=1e-4)  # same pixels, different instruction
    plain_img = plain.embed_prefix(obs)[0][:, :n_img]
    assert torch.allclose(plain_img[0], plain_img[1], atol=1e-6)  # without FiLM vision never reads it


def test_constant_action_dims_get_no_slots_and_come_back_as_their_value(tokenizer):
    model = LLaDAVLA(small_config(tokenizer, constant_dims=(3,), constant_values=(-1.0,))).eval()
    assert model.cfg.action_len == 3 * 3  # H=3 actions x 3 predicted dims (of 4)
    obs = make_obs(tokenizer)
    actions, result = model.sample_actions(obs)
    assert actions.shape == (3, 3, 4) and result.bins.shape == (3, 9)
    assert torch.all(actions[..., 3] == -1.0)
    loss, _ = model.compute_loss(obs, torch.rand(3, 3, 4) * 2 - 1)
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="constant_dims"):
        small_config(tokenizer, constant_dims=(0, 1, 2, 3), constant_values=(0.0,) * 4)


def _policy(stats_max: float = 1.0, **overrides):
    from vla.envs.tabletop import FAMILIES, all_goals
    from vla.policies import LLaDAVLAConfig
    from vla.policies.modeling_llada_vla import LLaDAVLAPolicy
    from vla.text_tokenizer import TextTokenizer

    cfg = LLaDAVLAConfig(**{**dict(device="cpu", push_to_hub=False, image_size=32, vision_kwargs={"depth": 1},
                                   d_model=64, n_layers=2, n_heads=4, mlp_hidden=128, use_bf16=False, chunk_size=3,
                                   n_action_steps=3, decode_steps=3), **overrides})
    cfg.input_features = {"observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 32, 32))}
    cfg.output_features = {"action": PolicyFeature(FeatureType.ACTION, (4,))}
    cfg.tokenizer_json = TextTokenizer.train([g.instruction for f in FAMILIES for g in all_goals(f)], 128).to_json()
    stats = {"action": {"q01": np.array([-1, -1, -1, 1.0]), "q99": np.array([1, 1, 1, 1.0]),
                        "min": np.array([-1, -1, -1, 1.0]), "max": np.array([1, 1, 1, stats_max])}}
    return LLaDAVLAPolicy(cfg, dataset_stats=stats)


def test_the_policy_reads_constant_dims_from_the_dataset_stats_and_keeps_them_in_its_config():
    policy = _policy(drop_constant_actions=True)
    assert policy.config.constant_action_dims == [3] and policy.config.constant_action_values == [-1.0]
    assert policy.model.cfg.action_len == 3 * 3
    assert _policy().model.cfg.action_len == 3 * 4  # off: every dim has slots


def test_ema_follows_the_weights_and_predicts():
    policy = _policy(ema_decay=0.9)
    before = [p.detach().clone() for p in policy.model_ema.parameters()]
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(1.0)
    policy.train_forwards.fill_(1000)  # past the warm-up: decay 0.9
    policy.update()
    for ema, old in zip(policy.model_ema.parameters(), before, strict=True):
        assert torch.allclose(ema, old + 0.1, atol=1e-5)
    assert policy.inference_model is policy.model_ema
    assert {id(p) for p in policy.get_optim_params()}.isdisjoint({id(p) for p in policy.model_ema.parameters()})
    batch = {"observation.images.front": torch.rand(2, 3, 32, 32), "task": ["touch the red block"] * 2}
    with torch.no_grad():
        for p in policy.model.parameters():
            p.mul_(0.0)  # wreck the live weights: predictions must not change
    a = policy.predict_action_chunk(batch)
    policy.model_ema.load_state_dict(policy.model.state_dict())
    assert not torch.equal(a, policy.predict_action_chunk(batch))


def test_the_budget_schedule_warms_up_then_anneals_to_its_floor_when_the_budget_ends():
    from vla.policies.lerobot_patches import budget_lr

    assert budget_lr(1e-3, 1e-4, 10, 0, 0.0) == pytest.approx(1e-4)  # warm-up step 1 of 10
    assert budget_lr(1e-3, 1e-4, 10, 50, 0.0) == pytest.approx(1e-3)
    assert budget_lr(1e-3, 1e-4, 10, 50, 0.5) == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert budget_lr(1e-3, 1e-4, 10, 50, 1.0) == pytest.approx(1e-4)
    assert budget_lr(1e-3, 1e-4, 10, 50, 3.0) == pytest.approx(1e-4)  # past the budget: the floor


def test_bf16_autocast_only_where_the_cpu_multiplies_bf16(monkeypatch):
    from vla import device

    assert not device.native_bf16("flags : fpu sse2 fma avx2 avx512f")  # AVX2 / AVX-512 without bf16
    assert device.native_bf16("flags : fpu avx2 avx512f avx512_bf16")  # AMD Zen 4
    assert device.native_bf16("flags : fpu avx512f amx_bf16 amx_tile")  # Intel AMX
    for native in (False, True):
        monkeypatch.setattr(device, "cpu_has_native_bf16", lambda n=native: n)
        assert device.use_bf16_autocast(torch.device("cpu")) is native
        assert device.use_bf16_autocast(torch.device("cpu"), requested=not native) is (not native)
        # eval.py --bf16-weights and bench_decode.py's bf16 rows warn on such CPUs (serve.py refuses)
        warning = device.emulated_bf16_warning("--bf16-weights", "cpu")
        assert warning is None if native else "emulated" in warning and "slower than fp32" in warning
        assert device.emulated_bf16_warning("--bf16-weights", "cuda") is None


def test_soft_labels_score_a_near_miss_better_than_a_far_miss():
    from vla.lsc import bin_cross_entropy

    targets = torch.tensor([[10]])
    near, far = torch.full((1, 1, 32), -5.0), torch.full((1, 1, 32), -5.0)
    near[0, 0, 11], far[0, 0, 25] = 5.0, 5.0  # confident, one bin off / fifteen bins off
    hard = [bin_cross_entropy(x, targets).item() for x in (near, far)]
    soft = [bin_cross_entropy(x, targets, label_sigma=1.5).item() for x in (near, far)]
    assert hard[0] == pytest.approx(hard[1])  # one-hot CE: every miss is the same miss
    assert soft[0] < soft[1] - 1.0  # soft targets know the bins are ordered
    logits = torch.randn(2, 5, 32)
    bins = torch.randint(0, 32, (2, 5))
    assert torch.allclose(bin_cross_entropy(logits, bins, 0.0),
                          torch.nn.functional.cross_entropy(logits.transpose(1, 2), bins, reduction="none"))


def test_slot_embeddings_tell_masked_slots_apart_and_keep_every_cache_exact(tokenizer):
    torch.manual_seed(0)
    model = LLaDAVLA(small_config(tokenizer, slot_embeddings=True)).eval()
    masked = model.embed_actions(torch.full((1, model.cfg.action_len), MASK))
    assert not torch.allclose(masked[0, 0], masked[0, 1])  # [MASK] at slot 0 != [MASK] at slot 1
    obs = make_obs(tokenizer)
    a1, _ = model.sample_actions(obs, use_cache=True)
    a2, _ = model.sample_actions(obs, use_cache=False)
    assert torch.equal(a1, a2)
    causal = LLaDAVLA(small_config(tokenizer, slot_embeddings=True, attention="causal",
                                   decoder="ar", decode_steps=None)).eval()
    b1, r1 = causal.sample_actions(obs, use_cache=True)  # the incremental KV cache embeds slot by slot
    b2, r2 = causal.sample_actions(obs, use_cache=False)
    assert torch.equal(r1.bins, r2.bins)


def test_keypoints_are_the_expected_position_of_each_heat_map(tokenizer):
    from vla.vision import SpatialSoftmax

    kp = SpatialSoftmax(channels=2, keypoints=2, d_model=8)
    with torch.no_grad():
        kp.heat.weight.copy_(torch.eye(2)[:, :, None, None] * 50)  # heat map k = channel k, sharp
        kp.heat.bias.zero_()
    fmap = torch.zeros(1, 2, 5, 5)
    fmap[0, 0, 0, 4] = 1.0  # channel 0 peaks top right
    fmap[0, 1, 4, 0] = 1.0  # channel 1 peaks bottom left
    prob = (kp.heat(fmap).flatten(2) / kp.log_temperature.exp()).softmax(-1)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 5), torch.linspace(-1, 1, 5), indexing="ij")
    xy = prob @ torch.stack([xs.flatten(), ys.flatten()], -1)
    assert torch.allclose(xy[0], torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), atol=1e-3)
    assert kp(fmap).shape == (1, 2 + 1, 8)  # 2 keypoint tokens + the layout token
    model = LLaDAVLA(small_config(tokenizer, vision_keypoints=4))
    assert model.vision.num_tokens == 4 + 4 + 1  # 32 px / 16 px patches = 4 tokens, 4 keypoints, 1 layout
    obs = make_obs(tokenizer)
    assert model.embed_prefix(obs)[0].shape[1] == model.vision.num_tokens + obs.text_ids.shape[1] + 1  # + SEP


def test_language_keypoints_follow_the_instruction_to_the_cell_it_asks_for(tokenizer):
    from vla.vision import SpatialSoftmax

    torch.manual_seed(0)
    kp = SpatialSoftmax(channels=2, keypoints=0, d_model=4, lang_keypoints=1, head_dim=2)
    with torch.no_grad():  # the cell's key is its features; the query picks channel 0 or 1
        kp.key.weight.copy_(torch.eye(2) * 50)
        kp.key.bias.zero_()
        kp.query.weight.zero_()
        kp.query.bias.zero_()
        kp.query.weight[0, 0] = kp.query.weight[1, 1] = 1.0
    fmap = torch.zeros(2, 2, 5, 5)
    fmap[:, 0, 0, 4] = 1.0  # "red" top right
    fmap[:, 1, 4, 0] = 1.0  # "blue" bottom left
    ask = torch.tensor([[1.0, -1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0]])  # asks for channel 0, then 1
    tokens = kp(fmap, ask)
    layout = kp.layout  # the layout token is a linear map of the coordinates: recover them
    xy = torch.linalg.lstsq(layout.weight, (tokens[:, -1] - layout.bias).T).solution.T
    assert torch.allclose(xy, torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), atol=1e-2)
    with pytest.raises(ValueError, match="instruction"):
        kp(fmap)
    model = LLaDAVLA(small_config(tokenizer, vision_keypoints=2, vision_lang_keypoints=2, fusion_token=True))
    assert model.vision.num_tokens == 4 + 2 + 2 + 1
    obs = make_obs(tokenizer)
    prefix, _ = model.embed_prefix(obs)
    n_state = int(model.cfg.state_dim > 0)
    assert prefix.shape[1] == model.vision.num_tokens + n_state + 1 + obs.text_ids.shape[1] + 1  # + fusion, SEP
    with pytest.raises(ValueError, match="lang_keypoints"):
        small_config(tokenizer, vision_lang_keypoints=-1)


def test_fusion_slots_give_each_slot_its_own_view_and_keep_every_cache_exact(tokenizer):
    torch.manual_seed(0)
    kw = dict(vision_keypoints=2, vision_lang_keypoints=1, fusion_token=True, fusion_slots=True)
    model = LLaDAVLA(small_config(tokenizer, **kw)).eval()
    obs = make_obs(tokenizer)
    prefix, _ = model.embed_prefix(obs)
    cond = model.slot_conditions(prefix)
    assert cond.shape == (obs.batch_size, model.cfg.action_len, model.cfg.backbone.d_model)
    assert not torch.allclose(cond[:, 0], cond[:, 1])  # slot 0 and slot 1 read different projections
    a1, _ = model.sample_actions(obs, use_cache=True)
    a2, _ = model.sample_actions(obs, use_cache=False)
    assert torch.equal(a1, a2)
    causal = LLaDAVLA(small_config(tokenizer, **kw, attention="causal", decoder="ar", decode_steps=None)).eval()
    b1, r1 = causal.sample_actions(obs, use_cache=True)  # the incremental cache embeds slot by slot
    b2, r2 = causal.sample_actions(obs, use_cache=False)
    assert torch.equal(r1.bins, r2.bins)
    with pytest.raises(ValueError, match="fusion_slots"):
        small_config(tokenizer, fusion_slots=True)


def test_a_saved_policy_reloads_without_stats_whether_or_not_a_dim_was_constant(tmp_path):
    from vla.policies.modeling_llada_vla import LLaDAVLAPolicy

    # the dims found at build time live in the saved config: [] (none constant) must not be
    # mistaken for "not computed yet", which would ask for stats that from_pretrained never has
    for stats_max, dims in ((1.0, [3]), (2.0, [])):
        policy = _policy(drop_constant_actions=True, stats_max=stats_max)
        assert policy.config.constant_action_dims == dims
        policy.save_pretrained(tmp_path / str(stats_max))
        again = LLaDAVLAPolicy.from_pretrained(tmp_path / str(stats_max))
        assert again.config.constant_action_dims == dims
        assert again.model.cfg.action_len == policy.model.cfg.action_len == 3 * (4 - len(dims))


def test_tabletop_demos_are_stored_lossless_and_the_png_lever_collects_an_av1_copy_on_the_same_seeds():
    from vla.bench.recipe import RecipeAblationConfig, demo_folder, variant_collect, variant_overrides
    from vla.envs.collection import CollectConfig

    assert CollectConfig(suite="tabletop", tasks="all", episodes_per_task=1, out="x").storage == "png"
    assert CollectConfig(suite="metaworld", tasks="MT10", episodes_per_task=1, out="x").storage == "h264_444"
    assert CollectConfig(suite="tabletop", tasks="all", episodes_per_task=1, out="x", storage="av1").use_videos
    with pytest.raises(ValueError, match="unknown storage 'jpeg'"):
        CollectConfig(suite="tabletop", tasks="all", episodes_per_task=1, out="x", storage="jpeg")
    assert "no_png" in RecipeAblationConfig().variants
    assert variant_overrides("no_png") == {}  # the policy is the recipe's; only the data differs
    assert variant_collect("no_png") == variant_collect("previous") == {"storage": "av1"}
    assert variant_collect("recipe") == variant_collect("no_film") == {}
    out = Path("ablation")
    assert demo_folder(out, {}) == out / "demos"  # the shared set, as before the data levers
    assert demo_folder(out, variant_collect("no_png")) not in (out / "demos", demo_folder(out, {"storage": "png"}))


def test_a_candidate_variant_turns_its_change_on_and_replaces_nested_preset_values():
    from vla.bench.recipe import CANDIDATES, RecipeAblationConfig, variant_collect, variant_overrides, variant_preset

    assert variant_overrides("with_pretrained_cnn") == CANDIDATES["pretrained_cnn"][1]
    assert variant_collect("with_pretrained_cnn") == {}
    cfg = RecipeAblationConfig()
    recipe, candidate = variant_preset(cfg, "recipe")["policy"], variant_preset(cfg, "with_pretrained_cnn")["policy"]
    assert recipe["vision_kwargs"] == {"depth": 4}  # the ViT's
    assert candidate["vision_kwargs"] == {"features_only": True, "out_indices": [2]}  # replaced, not merged
    assert {k: v for k, v in candidate.items() if k not in CANDIDATES["pretrained_cnn"][1]} == {
        k: v for k, v in recipe.items() if k not in CANDIDATES["pretrained_cnn"][1]}
    assert variant_preset(cfg, "no_ema")["policy"]["ema_decay"] is None
    with pytest.raises(Exception, match="with_<candidate> in \\['pretrained_cnn', 'pretrained_lang_keypoints', 'privileged_target'\\]"):
        variant_overrides("with_magic")


def test_the_privileged_diagnostic_collects_the_target_into_the_state_and_keeps_the_recipe():
    from vla.bench.recipe import DIAGNOSTICS, variant_collect, variant_overrides
    from vla.envs.collection import CollectConfig
    from vla.envs.evaluation import EvalConfig
    from vla.envs.recorder import dataset_features

    assert variant_overrides("with_privileged_target") == {}
    assert variant_collect("with_privileged_target") == DIAGNOSTICS["privileged_target"][1] == {"privileged_target": True}
    state = dataset_features("tabletop", "front", 96, 96, False, privileged_target=True)["observation.state"]
    assert state["shape"] == (9,) and state["names"][4:] == ["target_block_x", "target_block_y", "target_block_z",
                                                             "target_zone_x", "target_zone_y"]
    with pytest.raises(ValueError, match="suite 'metaworld' has no such option"):
        CollectConfig(suite="metaworld", tasks="MT10", episodes_per_task=1, out="x", privileged_target=True)
    with pytest.raises(ValueError, match="suite 'metaworld' has no such option"):
        EvalConfig(suite="metaworld", tasks="MT10", privileged_target=True)
