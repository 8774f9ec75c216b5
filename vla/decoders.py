"""Decoders: fill a masked block of H*D action slots with K-way action tokens.

Every decoder is a pure `@torch.no_grad()` function with one signature:

    decoder(predictor, batch_size, chunk_size, action_dim, cfg, generator) -> DecodeResult

`predictor(bins)` takes the current block (B, L) of bin indices, MASK (-1) where a slot is
still masked, and returns logits (B, L, K) for every slot (for a causal model, slot j's
logits come from the position before it), or a logits-free `LSCHidden` (hidden states and
the head's K action rows) that `propose` hands to the fused epilogue (`vla.kernels`). Decoders never see the model, so they can be
compared on the same model and tested with a mock predictor.

Shared loop (LLaDA `generate.py`, low-confidence remasking): each step runs one forward,
takes for every masked slot its proposal x0 = argmax(logits + temperature * Gumbel) and
its confidence p(x0) = softmax(logits)[x0], then commits a subset of masked slots chosen
by the decoder's rule; the rest stay masked. The number committed per row at a step is
ceil(masked / steps_left) (LLaDA's even split), so exactly `steps` forwards fill the block.

- `had` (LLaDA-VLA section 3.3, Hierarchical Action-Structured Decoding): action level
  first: score each of the H actions by the sum of its D slot confidences (committed
  slots add `cfg.committed_score`, default 1: a started action is finished before others
  are begun; the paper does not say) and rank the actions
  still holding masked slots; token level: commit the most confident masked slots of
  the best action, spilling into the next-ranked action only if it has too few left.
- `low_confidence` (LLaDA): commit the top confidences over all masked slots (flat).
- `threshold` (Fast-dLLM, arXiv 2505.22618): commit every masked slot with confidence
  >= `cfg.threshold`, and at least the schedule's count (>= 1), so it ends in <= steps.
- `ar`: left to right, the OpenVLA order (one slot per step when steps = L).

Optional secondary remasking (Discrete Diffusion VLA, arXiv 2508.20072): after a step,
earlier-committed slots whose current probability falls below a threshold that rises
linearly over steps to `cfg.remask` are masked again (never at the last step).

Any logits finish: `propose` maps a NaN confidence to 0 and clamps proposals into
[0, K), so every selection key of a masked slot is finite and each step commits exactly
the scheduled count; a model that emits NaN or +-inf still yields a full block of valid
tokens (garbage in, but never a stuck decoder). The model keeps its inputs finite so
that this never happens for a finite observation (`vla.model.LLaDAVLA.embed_prefix`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vla.kernels.lsc_epilogue import LSCHidden, lsc_epilogue

MASK = -1
Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class DecodeConfig:
    name: str = "had"  # one of DECODERS
    steps: int | None = 10  # forward passes per chunk; None = one per slot (H*D)
    temperature: float = 0.0  # Gumbel noise scale on the proposals; 0 = greedy
    threshold: float = 0.9  # confidence needed by the `threshold` decoder
    remask: float | None = None  # final secondary-remasking threshold; None = off
    committed_score: float = 1.0  # HAD: what a committed slot adds to its action's score

    def __post_init__(self):
        if self.name not in DECODERS:
            raise ValueError(f"unknown decoder '{self.name}'; choose from {sorted(DECODERS)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps={self.steps}; need at least 1 forward pass per chunk")
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature} must be >= 0")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold={self.threshold} must lie in (0, 1]")
        if self.remask is not None and not 0.0 < self.remask < 1.0:
            raise ValueError(f"remask={self.remask} must lie in (0, 1) or be None")
        if not 0.0 <= self.committed_score <= 1.0:
            raise ValueError(f"committed_score={self.committed_score} must lie in [0, 1]")


@dataclass
class DecodeResult:
    bins: torch.Tensor  # (B, L) long, every slot committed, values in [0, K)
    nfe: int  # forward passes (number of function evaluations)
    commit_step: torch.Tensor  # (B, L) long, step at which each slot was (last) committed

    @property
    def tokens_per_forward(self) -> float:
        return self.bins.shape[1] / max(self.nfe, 1)


def propose(logits: torch.Tensor | LSCHidden, temperature: float, generator: torch.Generator | None,
            need_probs: bool = True):
    """logits (B, L, K) -> proposals x0 (B, L), confidences p(x0) (B, L), probs (B, L, K).

    Gumbel-max sampling in float64 as in LLaDA's `add_gumbel_noise`: argmax(l + tau * G)
    samples softmax(l / tau); tau = 0 is greedy. Confidences use the noise-free softmax.
    Given an `LSCHidden` and `need_probs=False`, the fused LSC epilogue computes x0 and
    p(x0) without materializing probabilities (probs is then None); the same Gumbel
    draws are taken from `generator`, added in fp32 instead of float64.

    Non-finite logits (NaN, +-inf) give NaN softmaxes; confidences are returned with NaN
    as 0 and clamped to [0, 1], proposals clamped to [0, K), so the selection rules of
    `_loop` always see finite keys and commit their scheduled count.
    """
    fused = isinstance(logits, LSCHidden)
    if fused and need_probs:  # secondary remasking reads probabilities of committed slots
        logits, fused = logits.logits(), False
    if fused:
        shape, device = (*logits.hidden.shape[:-1], logits.weight.shape[0]), logits.hidden.device
    else:
        shape, device = logits.shape, logits.device
    gumbel = None
    if temperature > 0:
        dev = generator.device if generator is not None else device
        u = torch.rand(shape, generator=generator, device=dev, dtype=torch.float64).to(device)
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-20)))
    if fused:
        noise = None if gumbel is None else (temperature * gumbel).float()
        x0, conf = lsc_epilogue(logits.hidden, logits.weight, noise, logits.backend)
        return _sanitize(x0, conf, shape[-1]) + (None,)
    probs = logits.float().softmax(-1)
    x0 = logits.argmax(-1) if gumbel is None else (logits.double() + temperature * gumbel).argmax(-1)
    x0, conf = _sanitize(x0, probs.gather(-1, x0.clamp(0, shape[-1] - 1)[..., None]).squeeze(-1), shape[-1])
    return x0, conf, probs


def _sanitize(x0: torch.Tensor, conf: torch.Tensor, num_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Proposals clamped into [0, K) and confidences into [0, 1], NaN read as 0 (see `propose`)."""
    return x0.clamp(0, num_bins - 1), torch.nan_to_num(conf, nan=0.0).clamp(0.0, 1.0)


def select_lowest(key: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Per row, mark the `count[b]` entries of `key` (B, L) with the smallest values."""
    order = key.argsort(dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(key.shape[1], device=key.device).expand_as(order))
    return rank < count[:, None]


def _had_key(masked, conf, chunk_size, action_dim, committed_score=1.0):
    """Priority (lower first): rank of the slot's action, then 1 - confidence inside it."""
    bsz = masked.shape[0]
    slot_conf = torch.where(masked, conf, committed_score).view(bsz, chunk_size, action_dim)
    score = slot_conf.sum(-1)  # (B, H): action-level confidence
    score = torch.where(masked.view(bsz, chunk_size, action_dim).any(-1), score, float("-inf"))
    action_rank = (-score).argsort(dim=1, stable=True).argsort(dim=1).float()  # (B, H), 0 = best
    key = action_rank.repeat_interleave(action_dim, 1) + 0.5 * (1.0 - conf)
    return torch.where(masked, key, float("inf"))


def _loop(predictor, batch_size, chunk_size, action_dim, cfg, generator, device, rule) -> DecodeResult:
    length = chunk_size * action_dim
    steps = min(cfg.steps or length, length)
    x = torch.full((batch_size, length), MASK, dtype=torch.long, device=device)
    commit_step = torch.full_like(x, -1)
    nfe = 0
    for step in range(steps):
        masked = x == MASK
        if not masked.any():
            break
        logits = predictor(x)  # (B, L, K) or LSCHidden
        nfe += 1
        x0, conf, probs = propose(logits, cfg.temperature, generator, need_probs=cfg.remask is not None)
        steps_left = steps - step
        count = (masked.sum(1) + steps_left - 1) // steps_left  # ceil: even split (LLaDA)
        chosen = rule(masked, conf, count) & masked
        if cfg.remask is not None and steps_left > 1:
            # Secondary remasking of earlier commits whose probability has dropped.
            current = probs.gather(-1, x.clamp_min(0)[..., None]).squeeze(-1)
            weak = ~masked & (current < cfg.remask * (step + 1) / steps)
            x = torch.where(weak, MASK, x)
            commit_step = torch.where(weak, -1, commit_step)
        x = torch.where(chosen, x0, x)
        commit_step = torch.where(chosen, step, commit_step)
    if (x == MASK).any():  # unreachable: keys of masked slots are finite, so each rule commits its count
        raise RuntimeError("decoder left masked slots; this is a bug in the selection rule")
    return DecodeResult(bins=x, nfe=nfe, commit_step=commit_step)


@torch.no_grad()
def had(predictor, batch_size, chunk_size, action_dim, cfg, generator=None, device=None) -> DecodeResult:
    """Hierarchical Action-Structured Decoding: best action first, then its best tokens."""

    def rule(masked, conf, count):
        return select_lowest(_had_key(masked, conf, chunk_size, action_dim, cfg.committed_score), count)

    return _loop(predictor, batch_size, chunk_size, action_dim, cfg, generator, device, rule)


@torch.no_grad()
def low_confidence(predictor, batch_size, chunk_size, action_dim, cfg, generator=None, device=None) -> DecodeResult:
    """LLaDA low-confidence remasking: keep the top confidences over all masked slots."""

    def rule(masked, conf, count):
        return select_lowest(torch.where(masked, -conf, float("inf")), count)

    return _loop(predictor, batch_size, chunk_size, action_dim, cfg, generator, device, rule)


@torch.no_grad()
def threshold(predictor, batch_size, chunk_size, action_dim, cfg, generator=None, device=None) -> DecodeResult:
    """Fast-dLLM parallel decoding: commit all slots above the threshold (>= schedule count)."""
    if cfg.steps is None:  # budget defaults to one slot per step: the threshold sets the pace
        cfg = dataclasses.replace(cfg, steps=chunk_size * action_dim)

    def rule(masked, conf, count):
        return select_lowest(torch.where(masked, -conf, float("inf")), count) | (conf >= cfg.threshold)

    return _loop(predictor, batch_size, chunk_size, action_dim, cfg, generator, device, rule)


@torch.no_grad()
def ar(predictor, batch_size, chunk_size, action_dim, cfg, generator=None, device=None) -> DecodeResult:
    """Left-to-right decoding (autoregressive baseline when steps = H*D)."""

    def rule(masked, conf, count):
        index = torch.arange(masked.shape[1], device=masked.device, dtype=torch.float32).expand_as(conf)
        return select_lowest(torch.where(masked, index, float("inf")), count)

    return _loop(predictor, batch_size, chunk_size, action_dim, cfg, generator, device, rule)


DECODERS: dict[str, Callable[..., DecodeResult]] = {
    "had": had,
    "low_confidence": low_confidence,
    "threshold": threshold,
    "ar": ar,
}


def decode(predictor: Predictor, batch_size: int, chunk_size: int, action_dim: int, cfg: DecodeConfig,
           generator: torch.Generator | None = None, device=None) -> DecodeResult:
    """Run the decoder named by `cfg.name` (see module docstring)."""
    return DECODERS[cfg.name](predictor, batch_size, chunk_size, action_dim, cfg, generator, device)
