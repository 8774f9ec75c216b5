"""Localized Special-token Classification (LSC): the action head and the training losses.

LLaDA-VLA (arXiv 2509.06932, section 3.2): at action slots the model classifies only
among the K action special tokens. Logits are `hidden @ W[offset:offset+K].T`, a slice of
the output embedding `ff_out`, never the full vocabulary; labels outside the action-token
set do not exist in this formulation (prefix positions are never scored).

Losses:
- `masked_diffusion_loss`: LLaDA's objective restricted to the action block. Per sample
  t ~ U(eps, 1); each action slot is masked with probability t; cross-entropy over K
  classes at the masked slots. Two weightings (the paper's exact choice is unknown):
  `"mean"` (default): mean CE over all masked slots of the batch (the paper notes' 1/|M|);
  `"inv_t"`: LLaDA's ELBO weighting, sum_masked CE / t / L per sample, mean over batch.
- `causal_action_loss`: next-action-token cross-entropy (OpenVLA's objective) for the
  `causal` attention mode, through the same K-way head.

Both take `label_sigma` (in bins): 0 = plain cross-entropy on the true bin; > 0 = the target
is a discretized Gaussian around the true bin (HL-Gauss, Imani & White 2018; "Stop
Regressing", Farebrother et al. 2024). Action bins are ordered, which one-hot targets
ignore: a prediction one bin off is scored as wrong as one 20 bins off. Soft targets give
the classifier that order, which measurably speeds up learning where a slot's value
must be read from the image (docs/training.md); argmax decoding is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_WEIGHTINGS = ("mean", "inv_t")


def bin_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_sigma: float = 0.0) -> torch.Tensor:
    """Per-slot cross-entropy (B, L) of logits (B, L, K) against target bins (B, L): one-hot when
    `label_sigma` is 0, else a Gaussian over bins with that std (in bins), normalized over the K bins."""
    if label_sigma <= 0:
        return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    k = torch.arange(logits.shape[-1], device=logits.device, dtype=torch.float32)
    soft = torch.exp(-0.5 * ((k - targets[..., None].float()) / label_sigma) ** 2)  # (B, L, K)
    soft = soft / soft.sum(-1, keepdim=True)
    return -(soft * logits.float().log_softmax(-1)).sum(-1)


def lsc_logits(hidden: torch.Tensor, head_weight: torch.Tensor, offset: int, num_bins: int) -> torch.Tensor:
    """hidden (B, L, d) at action slots -> logits (B, L, K) over the K action tokens, fp32.

    Computed in fp32 even from bf16 weights (K rows: negligible cost), so confidences and
    argmaxes are not rounded to bf16's 8-bit mantissa; under autocast the matmul follows
    autocast's dtype as every other linear does.
    """
    w = head_weight[offset : offset + num_bins]  # (K, d): the action rows of ff_out
    if w.shape[0] != num_bins:
        raise ValueError(f"head has {head_weight.shape[0]} rows; action tokens [{offset}, {offset + num_bins}) do not fit")
    return F.linear(hidden.float(), w.float()).float()


def sample_mask(
    batch: int, length: int, eps: float = 1e-3, generator: torch.Generator | None = None, device=None,
    seeds: torch.Tensor | None = None, full_prob: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward process: p_mask = (1 - eps) u + eps, u ~ U(0, 1) per sample (LLaDA eq. 3).

    full_prob: chance that a sample's masking ratio is 1 instead (every slot masked), a
    point mass at t = 1 mixed into the uniform schedule. Decoding always starts from the
    fully masked block, and an action chunk's slots are so alike (the same velocity five
    times) that partly masked samples mostly teach copying from unmasked neighbours; the
    point mass keeps the observation -> first-step prediction, where language and vision
    must be read, in a fixed share of the batch. 0 = LLaDA's schedule.

    Returns p_mask (B,) and the mask (B, L) bool (True = slot replaced by [MASK]). With
    `seeds` (B,), sample b's draw depends on seeds[b] only, so a sample is masked the same
    way whatever batch, process count or resume it is seen in.
    """
    if not 0.0 <= full_prob <= 1.0:
        raise ValueError(f"full_prob={full_prob} must lie in [0, 1]")
    if seeds is not None:
        draws = []
        for seed in seeds.tolist():
            g = torch.Generator().manual_seed(int(seed) % (2**63))
            draws.append(torch.rand(2 + length, generator=g))
        draws = torch.stack(draws).to(device)
        u, r, f = draws[:, 0], draws[:, 1:-1], draws[:, -1]
    else:
        u = torch.rand(batch, generator=generator, device=device)
        r = torch.rand(batch, length, generator=generator, device=device)
        f = torch.rand(batch, generator=generator, device=device)
    p_mask = torch.where(f < full_prob, torch.ones_like(u), (1.0 - eps) * u + eps)
    return p_mask, r < p_mask[:, None]


def masked_diffusion_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, p_mask: torch.Tensor, weighting: str = "mean",
    label_sigma: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CE over K classes at masked slots. logits (B, L, K); targets (B, L) bins; mask (B, L)."""
    if weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"unknown loss weighting '{weighting}'; choose from {LOSS_WEIGHTINGS}")
    ce = bin_cross_entropy(logits, targets, label_sigma)  # (B, L)
    m = mask.float()
    n_masked = m.sum().clamp_min(1.0)
    if weighting == "mean":
        loss = (ce * m).sum() / n_masked
    else:
        loss = ((ce * m).sum(1) / p_mask / targets.shape[1]).mean()
    with torch.no_grad():
        acc = ((logits.argmax(-1) == targets).float() * m).sum() / n_masked
    return loss, {"masked_acc": acc, "masked_frac": m.mean(), "ce": (ce * m).sum() / n_masked}


def causal_action_loss(
    logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None, label_sigma: float = 0.0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Next-token CE over valid slots: logits (B, L, K) aligned so slot j is read before slot j."""
    ce = bin_cross_entropy(logits, targets, label_sigma)  # (B, L)
    w = torch.ones_like(ce) if valid is None else valid.float()
    n = w.sum().clamp_min(1.0)
    loss = (ce * w).sum() / n
    with torch.no_grad():
        acc = ((logits.argmax(-1) == targets).float() * w).sum() / n
    return loss, {"masked_acc": acc, "masked_frac": w.mean(), "ce": loss.detach()}
