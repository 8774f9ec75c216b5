"""Inference always finishes: every decoder commits every slot for any logits, and the model turns
any finite observation (huge state values included) into a finite action chunk."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vla.decoders import DECODERS, MASK, DecodeConfig, decode
from vla.kernels.lsc_epilogue import LSCHidden
from vla.model import STATE_CLIP, LLaDAVLA, Observation, finite_inputs

from .conftest import INSTRUCTIONS, small_config

F32_MAX = float(torch.finfo(torch.float32).max)  # 3.4e38
EXTREMES = [math.nan, math.inf, -math.inf, F32_MAX, -F32_MAX, 1e30, -1e30, 0.0, 1e-40, 88.0, -88.0]

# the values one predictor output is made of: a palette of extremes, and whether ordinary values mix in
palettes = st.lists(st.sampled_from(EXTREMES), min_size=1, max_size=4, unique_by=str)


def extreme_predictor(bsz, length, num_bins, palette, mix, seed, fused):
    """A predictor whose outputs (logits, or hidden states for the fused epilogue) hold `palette` values."""
    gen = torch.Generator().manual_seed(seed)
    width = 6
    values = torch.tensor(palette, dtype=torch.float32)
    weight = torch.randn(num_bins, width, generator=gen)

    def predictor(bins):
        assert bins.shape == (bsz, length)
        shape = (bsz, length, width if fused else num_bins)
        out = values[torch.randint(len(palette), shape, generator=gen)]
        if mix:  # ordinary values in some entries, extremes in the others
            ordinary = torch.randn(shape, generator=gen)
            out = torch.where(torch.rand(shape, generator=gen) < 0.5, ordinary, out)
        return LSCHidden(out, weight, backend="reference") if fused else out

    return predictor


@settings(max_examples=250, deadline=None)
@given(name=st.sampled_from(sorted(DECODERS)), bsz=st.integers(1, 3), chunk=st.integers(1, 4), dim=st.integers(1, 3),
       num_bins=st.sampled_from([2, 5, 32]), steps=st.sampled_from([None, 1, 2, 3, 7]),
       temperature=st.sampled_from([0.0, 1.0]), remask=st.sampled_from([None, 0.5]),
       palette=palettes, mix=st.booleans(), fused=st.booleans(), seed=st.integers(0, 2**16))
def test_every_decoder_commits_every_slot_for_any_logits(name, bsz, chunk, dim, num_bins, steps, temperature, remask,
                                                         palette, mix, fused, seed):
    cfg = DecodeConfig(name, steps=steps, temperature=temperature, remask=remask)
    length = chunk * dim
    predictor = extreme_predictor(bsz, length, num_bins, palette, mix, seed, fused)
    result = decode(predictor, bsz, chunk, dim, cfg, generator=torch.Generator().manual_seed(seed))
    budget = min(steps or length, length)
    assert result.bins.shape == (bsz, length) and (result.bins != MASK).all()
    assert ((result.bins >= 0) & (result.bins < num_bins)).all()
    assert 1 <= result.nfe <= budget
    assert ((result.commit_step >= 0) & (result.commit_step < result.nfe)).all()


def test_finite_inputs_clamps_only_what_is_out_of_range():
    images = torch.rand(2, 3, 8, 8)
    state = torch.tensor([[0.5, -2.0, 3.0], [F32_MAX, -math.inf, math.nan]])
    obs = finite_inputs(Observation({"front": images}, torch.ones(2, 3, dtype=torch.long),
                                    torch.ones(2, 3, dtype=torch.bool), state))
    assert torch.equal(obs.images["front"], images)  # valid values pass unchanged
    assert torch.equal(obs.state[0], state[0])
    assert obs.state[1].tolist() == [STATE_CLIP, -STATE_CLIP, 0.0]
    bad = finite_inputs(Observation({"front": torch.full((1, 3, 2, 2), math.nan)}, obs.text_ids[:1],
                                    obs.text_mask[:1]))
    assert torch.equal(bad.images["front"], torch.zeros(1, 3, 2, 2)) and bad.state is None


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("value", [F32_MAX, -F32_MAX, 1e30, math.inf, math.nan])
def test_model_gives_finite_actions_for_extreme_states(tokenizer, name, value):
    attention = "causal" if name == "ar" else "prefix"
    cfg = small_config(tokenizer, state_dim=4, attention=attention,
                       decoder=name, decode_steps=None if name == "ar" else 3)
    torch.manual_seed(0)
    model = LLaDAVLA(cfg).eval()
    ids, mask = tokenizer(INSTRUCTIONS[:2])
    state = torch.tensor([[value, 0.0, -1.0, 2.0], [1.0, value, value, -value]])
    obs = Observation({"front": torch.rand(2, 3, 32, 32)}, ids, mask, state)
    actions, result = model.sample_actions(obs)
    assert actions.shape == (2, cfg.chunk_size, cfg.action_dim) and torch.isfinite(actions).all()
    assert (result.bins != MASK).all()
    # a state beyond the clip acts as the clip itself: the model sees the same (finite) input
    clipped = Observation(obs.images, ids, mask, torch.nan_to_num(state, nan=0.0).clamp(-STATE_CLIP, STATE_CLIP))
    assert torch.equal(model.sample_actions(clipped)[0], actions)
