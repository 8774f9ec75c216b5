"""Exact caches: the incremental AR KV cache (causal mode) and the prefix cache give the uncached actions."""

import pytest
import torch

from vla.decoders import DecodeConfig
from vla.model import LLaDAVLA

from .conftest import small_config
from .test_model import make_obs


def causal_model(tokenizer):
    return LLaDAVLA(small_config(tokenizer, attention="causal", decoder="ar", decode_steps=None)).eval()


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_incremental_ar_cache_gives_identical_actions(tokenizer, temperature):
    model = causal_model(tokenizer)
    obs = make_obs(tokenizer, bsz=3)
    dec = DecodeConfig("ar", steps=None, temperature=temperature)
    outs = [model.sample_actions(obs, dec, generator=torch.Generator().manual_seed(5), use_cache=c) for c in (True, False)]
    (a1, r1), (a2, r2) = outs
    assert torch.equal(r1.bins, r2.bins) and torch.equal(a1, a2)
    assert r1.nfe == r2.nfe == model.cfg.action_len
    assert torch.equal(r1.commit_step[0], torch.arange(model.cfg.action_len))  # strictly left to right


def test_incremental_ar_runs_one_token_per_step_with_exact_logits(tokenizer):
    model = causal_model(tokenizer)
    obs = make_obs(tokenizer, bsz=2)
    seen, past_len, recording = [], [], [True]

    def record(module, inputs, output):
        if recording[0]:
            seen.append(inputs[0].shape[1])
            past_len.append(None if inputs[4] is None else inputs[4][0].shape[2])

    hook = model.backbone.blocks[0].register_forward_hook(record)
    predictor = model.make_predictor(obs, use_cache=True)
    prefix, valid = model.embed_prefix(obs)
    bins = torch.full((2, model.cfg.action_len), -1)
    target = torch.randint(0, model.cfg.num_bins, bins.shape)
    for j in range(model.cfg.action_len):
        recording[0] = True
        got = predictor(bins)
        recording[0] = False
        want = model.forward_full(prefix, valid, bins)
        assert torch.allclose(got[:, : j + 1], want[:, : j + 1], atol=1e-5)  # exact up to the frontier
        bins[:, j] = target[:, j]
    hook.remove()
    # one prefix pass, then the first step runs no new token and every later step exactly one
    assert seen[0] == prefix.shape[1] and seen[1:] == [1] * (model.cfg.action_len - 1)
    # every step attends over the same preallocated P+L cache: one shape, one compiled graph
    assert past_len[0] is None and past_len[1:] == [prefix.shape[1] + model.cfg.action_len] * (model.cfg.action_len - 1)


def test_incremental_ar_rejects_out_of_order_commits(tokenizer):
    model = causal_model(tokenizer)
    predictor = model.make_predictor(make_obs(tokenizer, bsz=1), use_cache=True)
    bins = torch.full((1, model.cfg.action_len), -1)
    bins[0, 3] = 0  # a hole before a committed slot
    with pytest.raises(RuntimeError, match="left-to-right"):
        predictor(bins)


def test_causal_model_with_other_schedules_uses_the_exact_prefix_cache(tokenizer):
    """Secondary remasking or several slots per step fall back to the prefix-only cache."""
    model = causal_model(tokenizer)
    obs = make_obs(tokenizer)
    dec = DecodeConfig("ar", steps=None, temperature=0.5, remask=0.3)
    a1, r1 = model.sample_actions(obs, dec, generator=torch.Generator().manual_seed(1), use_cache=True)
    a2, r2 = model.sample_actions(obs, dec, generator=torch.Generator().manual_seed(1), use_cache=False)
    assert torch.equal(r1.bins, r2.bins) and r1.nfe == r2.nfe
