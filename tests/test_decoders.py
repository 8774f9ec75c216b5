"""Decoder orders, proven with mock predictors (no model involved)."""

import pytest
import torch

from vla.decoders import DECODERS, MASK, DecodeConfig, decode

H, D, K = 5, 4, 8
L = H * D


def fixed_predictor(conf: torch.Tensor, tokens: torch.Tensor | None = None):
    """Predictor whose slot j proposes token tokens[b, j] with probability ~conf[b, j]."""
    bsz = conf.shape[0]
    tokens = torch.zeros(bsz, L, dtype=torch.long) if tokens is None else tokens
    # logit gap g gives p = e^g / (e^g + K - 1)  ->  g = log(p (K-1) / (1-p))
    gap = torch.log(conf * (K - 1) / (1 - conf))
    logits = torch.zeros(bsz, L, K).scatter(-1, tokens[..., None], gap[..., None])
    calls = []

    def predictor(bins):
        assert bins.shape == (bsz, L)
        calls.append(bins.clone())
        return logits.clone()

    predictor.calls = calls
    return predictor


def action_of(slot):
    return slot // D


def random_conf(seed, bsz=1):
    g = torch.Generator().manual_seed(seed)
    return 0.2 + 0.75 * torch.rand(bsz, L, generator=g)


def test_had_commits_inside_most_confident_action_first():
    conf = random_conf(0)
    conf[0, 2 * D : 3 * D] = torch.tensor([0.96, 0.97, 0.98, 0.95])  # action 2 is the best
    res = decode(fixed_predictor(conf), 1, H, D, DecodeConfig("had", steps=10))
    cs = res.commit_step[0]
    assert res.nfe == 10 and (res.bins != MASK).all()
    # step 0: the two most confident slots of action 2; step 1: the rest of action 2
    assert sorted(torch.nonzero(cs == 0).flatten().tolist()) == [2 * D + 1, 2 * D + 2]
    assert sorted(torch.nonzero(cs == 1).flatten().tolist()) == [2 * D + 0, 2 * D + 3]
    # every step commits inside a single action, and actions are finished one by one
    for step in range(10):
        actions = {action_of(s) for s in torch.nonzero(cs == step).flatten().tolist()}
        assert len(actions) == 1
    order = [action_of(int(torch.nonzero(cs == s).flatten()[0])) for s in range(0, 10, 2)]
    sums = conf[0].view(H, D).sum(-1)
    assert order[0] == 2 and order[1:] == sorted(order[1:], key=lambda a: -sums[a])


def test_low_confidence_is_flat_top_k():
    conf = random_conf(1)
    res = decode(fixed_predictor(conf), 1, H, D, DecodeConfig("low_confidence", steps=5))
    first = torch.nonzero(res.commit_step[0] == 0).flatten()
    assert set(first.tolist()) == set(conf[0].topk(4).indices.tolist())  # ceil(20 / 5) = 4
    assert res.nfe == 5


def test_threshold_commits_everything_above_threshold_and_at_least_one():
    conf = random_conf(2)
    conf[0, :3] = 0.99
    res = decode(fixed_predictor(conf), 1, H, D, DecodeConfig("threshold", steps=None, threshold=0.9))
    above = set(torch.nonzero(conf[0] >= 0.9).flatten().tolist())
    assert set(torch.nonzero(res.commit_step[0] == 0).flatten().tolist()) == above
    # below the threshold it still commits one slot per step (the most confident)
    low = torch.full((1, L), 0.5)
    res = decode(fixed_predictor(low), 1, H, D, DecodeConfig("threshold", steps=None, threshold=0.9))
    assert res.nfe == L and (res.bins != MASK).all()
    assert res.tokens_per_forward == pytest.approx(1.0)


def test_threshold_reaches_high_parallelism_on_confident_model():
    res = decode(fixed_predictor(torch.full((1, L), 0.99)), 1, H, D, DecodeConfig("threshold", steps=None))
    assert res.nfe == 1 and res.tokens_per_forward == L


def test_ar_is_left_to_right():
    res = decode(fixed_predictor(random_conf(3)), 1, H, D, DecodeConfig("ar", steps=None))
    assert res.commit_step[0].tolist() == list(range(L)) and res.nfe == L


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("steps", [1, 3, 10, None])
def test_every_slot_committed_with_proposed_tokens(name, steps):
    g = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, K, (3, L), generator=g)
    pred = fixed_predictor(random_conf(5, bsz=3), tokens)
    res = decode(pred, 3, H, D, DecodeConfig(name, steps=steps))
    assert torch.equal(res.bins, tokens)  # greedy: the argmax token of every slot
    assert (res.commit_step >= 0).all()
    if name in ("had", "low_confidence", "ar"):
        assert res.nfe == min(steps or L, L)
    # the predictor saw masks shrink monotonically
    masked = [int((c == MASK).sum()) for c in pred.calls]
    assert masked == sorted(masked, reverse=True) and masked[0] == 3 * L


def test_batched_rows_decode_independently():
    conf = random_conf(6, bsz=2)
    conf[0, 0:D] = 0.99  # row 0 prefers action 0
    conf[1, 4 * D : 5 * D] = 0.99  # row 1 prefers action 4
    res = decode(fixed_predictor(conf), 2, H, D, DecodeConfig("had", steps=10))
    assert {action_of(s) for s in torch.nonzero(res.commit_step[0] == 0).flatten().tolist()} == {0}
    assert {action_of(s) for s in torch.nonzero(res.commit_step[1] == 0).flatten().tolist()} == {4}


def test_sampling_is_deterministic_under_a_seed():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, L, K, generator=g)

    def run(seed):
        return decode(lambda b: logits, 2, H, D, DecodeConfig("had", temperature=1.0),
                      generator=torch.Generator().manual_seed(seed)).bins

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))
    greedy = decode(lambda b: logits, 2, H, D, DecodeConfig("had")).bins
    assert torch.equal(greedy, logits.argmax(-1))


def test_secondary_remasking_revisits_weak_commits():
    """Slot 0 is committed to token 1 first; later the model doubts it and prefers token 2."""
    state = {"calls": 0}

    def predictor(bins):
        state["calls"] += 1
        logits = torch.zeros(1, L, K)
        logits[..., 0] = 3.0  # every other slot: token 0, confident
        if state["calls"] == 1:
            logits[0, 0, 1] = 10.0  # slot 0 first looks certain of token 1
        else:
            logits[0, 0, 2] = 10.0  # then the model moves to token 2
        return logits

    on = decode(predictor, 1, H, D, DecodeConfig("low_confidence", steps=5, remask=0.5))
    assert on.bins[0, 0] == 2 and on.commit_step[0, 0] > 0
    state["calls"] = 0
    off = decode(predictor, 1, H, D, DecodeConfig("low_confidence", steps=5))
    assert off.bins[0, 0] == 1 and off.commit_step[0, 0] == 0
    assert on.nfe == off.nfe == 5


def test_config_validation_lists_choices():
    with pytest.raises(ValueError, match="choose from"):
        DecodeConfig("beam")
    with pytest.raises(ValueError, match="steps"):
        DecodeConfig("had", steps=0)


def test_had_committed_score_zero_ranks_actions_by_masked_slots_only():
    """With committed_score=0 a half-done action competes on its remaining slots alone."""
    conf = torch.full((1, L), 0.5)
    conf[0, 0:D] = torch.tensor([0.99, 0.99, 0.99, 0.3])  # action 0: best, with one weak slot
    conf[0, D : 2 * D] = 0.8  # action 1: uniformly good
    finish = decode(fixed_predictor(conf), 1, H, D, DecodeConfig("had", steps=10))
    assert set(torch.nonzero(finish.commit_step[0] == 1).flatten().tolist()) == {2, 3}  # finish action 0
    fresh = decode(fixed_predictor(conf), 1, H, D, DecodeConfig("had", steps=10, committed_score=0.0))
    assert {action_of(s) for s in torch.nonzero(fresh.commit_step[0] == 1).flatten().tolist()} == {1}
