import pytest
import torch

from vla.lsc import causal_action_loss, lsc_logits, masked_diffusion_loss, sample_mask


def test_lsc_logits_are_a_slice_of_the_head():
    head = torch.randn(100, 16)
    h = torch.randn(2, 6, 16)
    logits = lsc_logits(h, head, offset=60, num_bins=32)
    assert logits.shape == (2, 6, 32) and logits.dtype == torch.float32
    assert torch.allclose(logits, h @ head[60:92].T, atol=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        lsc_logits(h, head, offset=90, num_bins=32)


def test_mask_rate_follows_t():
    p, m = sample_mask(4000, 35, eps=1e-3, generator=torch.Generator().manual_seed(0))
    assert p.min() >= 1e-3 and p.max() <= 1.0
    rate = m.float().mean(1)
    assert torch.corrcoef(torch.stack([rate, p]))[0, 1] > 0.95
    assert abs(m.float().mean().item() - 0.5) < 0.02  # E[t] = 1/2


def test_loss_only_counts_masked_slots_and_weightings():
    logits = torch.randn(2, 5, 8)
    targets = torch.randint(0, 8, (2, 5))
    mask = torch.tensor([[1, 0, 0, 1, 0], [0, 0, 1, 0, 0]], dtype=torch.bool)
    p = torch.tensor([0.5, 0.25])
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    mean_loss, metrics = masked_diffusion_loss(logits, targets, mask, p, "mean")
    assert torch.allclose(mean_loss, ce[mask].mean())
    inv_t, _ = masked_diffusion_loss(logits, targets, mask, p, "inv_t")
    expected = ((ce[0, 0] + ce[0, 3]) / 0.5 / 5 + ce[1, 2] / 0.25 / 5) / 2
    assert torch.allclose(inv_t, expected)
    # unmasked slots do not influence the loss
    logits2 = logits.clone()
    logits2[~mask] = 100.0
    assert torch.allclose(masked_diffusion_loss(logits2, targets, mask, p, "mean")[0], mean_loss)
    assert 0.0 <= metrics["masked_acc"] <= 1.0
    with pytest.raises(ValueError, match="choose from"):
        masked_diffusion_loss(logits, targets, mask, p, "sum")


def test_causal_loss_is_plain_ce():
    logits, targets = torch.randn(3, 7, 8), torch.randint(0, 8, (3, 7))
    loss, _ = causal_action_loss(logits, targets)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits.reshape(-1, 8), targets.reshape(-1)))


def test_seeded_masks_depend_on_the_sample_seed_only():
    seeds = torch.tensor([5, 9, 11, 5])
    p, m = sample_mask(4, 35, seeds=seeds)
    p2, m2 = sample_mask(2, 35, seeds=seeds[[3, 1]])  # another batch composition
    assert torch.equal(m[0], m[3]) and torch.equal(m[3], m2[0]) and torch.equal(m[1], m2[1])
    assert p[0] == p2[0] and not torch.equal(m[0], m[1])


def test_full_mask_share_masks_every_slot_of_that_share():
    g = torch.Generator().manual_seed(0)
    p, m = sample_mask(4000, 20, eps=1e-3, generator=g, full_prob=0.5)
    full = p == 1.0
    assert 0.45 < full.float().mean() < 0.55 and m[full].all()  # half the samples: every slot masked
    rest = p[~full]
    assert 0.45 < rest.mean() < 0.55 and rest.min() >= 1e-3  # the others: LLaDA's uniform t
    seeds = torch.tensor([5, 9, 11])
    assert torch.equal(sample_mask(3, 20, seeds=seeds, full_prob=0.5)[1], sample_mask(3, 20, seeds=seeds, full_prob=0.5)[1])
    assert sample_mask(3, 20, seeds=seeds, full_prob=1.0)[1].all()
    with pytest.raises(ValueError, match="full_prob"):
        sample_mask(3, 20, full_prob=1.5)
