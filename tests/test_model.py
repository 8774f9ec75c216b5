"""LLaDAVLA end to end: sequence layout, losses by mode, exact caching, the overfit check."""

import pytest
import torch

from vla.decoders import DECODERS, MASK, DecodeConfig
from vla.model import LLaDAVLA, Observation, VLAConfig, preset_fields

from .conftest import INSTRUCTIONS, TINY, small_config


def make_obs(tokenizer, bsz=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids, mask = tokenizer([INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(bsz)])
    return Observation({"front": torch.rand(bsz, 3, size, size, generator=g)}, ids, mask)


def test_prefix_is_never_masked_or_scored(tokenizer):
    model = LLaDAVLA(small_config(tokenizer))
    obs = make_obs(tokenizer)
    seen = []
    hook = model.backbone.wte.register_forward_hook(lambda m, i, o: seen.append(i[0].clone()))
    actions = torch.rand(3, 3, 4) * 2 - 1
    loss, metrics = model.compute_loss(obs, actions, generator=torch.Generator().manual_seed(0))
    hook.remove()
    *prefix_ids, action_ids = seen  # instruction tokens and SEP, then the action block
    assert not any((ids == tokenizer.mask_id).any() for ids in prefix_ids)  # the prefix holds no [MASK]
    assert (action_ids == tokenizer.mask_id).any()  # the action block does
    assert torch.isfinite(loss) and 0 < metrics["masked_frac"] <= 1
    # gradients reach the prefix (it conditions the prediction) but only through action slots
    loss.backward()
    assert model.vision.projector.fc1.weight.grad.abs().sum() > 0


def test_causal_mode_predicts_each_slot_from_the_ones_before(tokenizer):
    cfg = small_config(tokenizer, attention="causal", decoder="ar", decode_steps=None)
    model = LLaDAVLA(cfg).eval()
    obs = make_obs(tokenizer)
    prefix, valid = model.embed_prefix(obs)
    bins = torch.randint(0, cfg.num_bins, (3, cfg.action_len))
    changed = bins.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % cfg.num_bins
    a, b = model.forward_full(prefix, valid, bins), model.forward_full(prefix, valid, changed)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6)  # slot j sees slots < j only
    assert not torch.allclose(a[:, 6:], b[:, 6:])
    loss, _ = model.compute_loss(obs, torch.rand(3, 3, 4) * 2 - 1)
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="decoder='ar' and decode_steps=null"):
        small_config(tokenizer, attention="causal")


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("attention", ["prefix", "full"])
def test_prefix_cache_gives_identical_actions(tokenizer, name, attention):
    model = LLaDAVLA(small_config(tokenizer, attention=attention)).eval()
    obs = make_obs(tokenizer)
    dec = DecodeConfig(name, steps=None if name == "ar" else 4, temperature=0.5)
    a1, r1 = model.sample_actions(obs, dec, generator=torch.Generator().manual_seed(3), use_cache=True)
    a2, r2 = model.sample_actions(obs, dec, generator=torch.Generator().manual_seed(3), use_cache=False)
    assert torch.equal(r1.bins, r2.bins) and torch.equal(a1, a2) and r1.nfe == r2.nfe
    assert (r1.bins != MASK).all() and a1.shape == (3, 3, 4)


def test_batch_padding_does_not_change_actions(tokenizer):
    model = LLaDAVLA(small_config(tokenizer)).eval()
    obs = make_obs(tokenizer, bsz=4)
    _, full = model.sample_actions(obs)
    single = Observation({"front": obs.images["front"][1:2]}, *tokenizer([INSTRUCTIONS[1]]))
    _, one = model.sample_actions(single)
    assert torch.equal(full.bins[1:2], one.bins)


def test_state_token_and_validation(tokenizer):
    model = LLaDAVLA(small_config(tokenizer, state_dim=4))
    obs = make_obs(tokenizer)
    with pytest.raises(ValueError, match="state has shape None"):
        model.compute_loss(obs, torch.zeros(3, 3, 4))
    obs.state = torch.zeros(3, 4)
    assert torch.isfinite(model.compute_loss(obs, torch.zeros(3, 3, 4))[0])
    with pytest.raises(ValueError, match=r"expected \(B, 3, 4\)"):
        model.compute_loss(obs, torch.zeros(3, 5, 4))


def test_config_round_trip_and_errors(tokenizer):
    cfg = small_config(tokenizer)
    assert VLAConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown VLAConfig fields"):
        VLAConfig.from_dict({"chunk": 5})
    with pytest.raises(ValueError, match="choose from"):
        small_config(tokenizer, attention="sparse")
    with pytest.raises(ValueError, match="unknown preset"):
        preset_fields("huge")
    with pytest.raises(ValueError, match="unknown model fields"):
        small_config(tokenizer, hidden_size=64)


def test_tiny_preset_size(tokenizer):
    model = LLaDAVLA(VLAConfig.from_flat(TINY, **tokenizer.config_fields()))
    assert 1e6 < model.num_parameters() <= 20e6


def test_paper_scale_preset_builds_on_meta_device():
    """SigLIP so400m + LLaDA-8B: built without memory, parameter count as published (~8.4B)."""
    cfg = VLAConfig.from_flat(preset_fields("llada8b_paper"), pad_token_id=126081, sep_token_id=126081,
                              mask_token_id=126336)
    with torch.device("meta"):
        model = LLaDAVLA(cfg)
    n = model.num_parameters()
    backbone = sum(p.numel() for p in model.backbone.parameters())
    assert 7.9e9 < backbone < 8.1e9  # LLaDA-8B with 32 extra rows
    assert 8.2e9 < n < 8.5e9


def test_tiny_preset_overfits_a_fixed_batch(tokenizer):
    """The mission's smallest promise: the model can learn (>= 95% HAD token accuracy)."""
    torch.manual_seed(0)
    model = LLaDAVLA(VLAConfig.from_flat(TINY, **tokenizer.config_fields()))
    g = torch.Generator().manual_seed(0)
    obs = make_obs(tokenizer, bsz=8, size=96)
    actions = torch.rand(8, 5, 7, generator=g) * 2 - 1
    targets = model.action_tokenizer.to_bins(actions).flatten(1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    acc = 0.0
    for step in range(1, 301):
        loss, _ = model.compute_loss(obs, actions)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            model.eval()
            _, result = model.sample_actions(obs)  # HAD, 10 steps
            model.train()
            acc = (result.bins == targets).float().mean().item()
            if acc >= 0.95:
                break
    assert acc >= 0.95, f"HAD token accuracy {acc:.3f} after {step} steps"
    assert result.nfe == 10
