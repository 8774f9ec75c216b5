"""Action tokenizer: continuous action chunks <-> discrete action tokens.

Owns the mapping of DESIGN.md section 2 ("Action tokens"):

    action (B, H, D) --q01/q99--> [-1, 1] (clipped) --K uniform bins--> bin (B, H, D)
    bin --+offset--> token id in [offset, offset + K)   (K special tokens, shared by all D dims)
    token id --bin center--> [-1, 1] --inverse q01/q99--> action

The K action tokens are appended after the text vocabulary, so `offset` is the size of the
text vocabulary (the backbone's embedding rows before the action rows were added). A
chunk of H actions of D dims is flattened row-major into H*D slots: slot = h * D + d.

Round-trip error is at most half a bin width (in normalized units) for values inside
[q01, q99]; values outside are clipped to the range first.
"""

from __future__ import annotations

import torch
from torch import nn


class ActionTokenizer(nn.Module):
    """Quantile-normalized uniform binning of actions into K shared special tokens.

    The low/high quantiles are registered buffers, so they travel with the model's
    state_dict (a saved policy detokenizes with the statistics it was trained on).
    """

    def __init__(self, low: torch.Tensor, high: torch.Tensor, num_bins: int = 32, offset: int = 0):
        super().__init__()
        low = torch.as_tensor(low, dtype=torch.float32).flatten()
        high = torch.as_tensor(high, dtype=torch.float32).flatten()
        if num_bins < 2:
            raise ValueError(f"num_bins={num_bins}; need at least 2 bins (the paper uses 32)")
        if low.shape != high.shape:
            raise ValueError(f"low has shape {tuple(low.shape)} but high has {tuple(high.shape)}")
        if not low.is_meta:  # values exist (not a shape-only build on the meta device)
            if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
                raise ValueError("action statistics contain NaN/inf; recompute the dataset stats")
            if (high < low).any():
                bad = (high < low).nonzero().flatten().tolist()
                raise ValueError(f"high < low for action dims {bad}; check the q01/q99 statistics")
        if offset < 0:
            raise ValueError(f"offset={offset} must be >= 0 (the text vocabulary size)")
        self.num_bins = int(num_bins)
        self.offset = int(offset)
        self.register_buffer("low", low)
        self.register_buffer("high", high)

    @classmethod
    def from_stats(cls, stats: dict, num_bins: int = 32, offset: int = 0) -> ActionTokenizer:
        """Build from LeRobot dataset statistics for the `action` feature (uses q01/q99).

        Falls back to min/max only when the quantiles are missing (older datasets).
        """
        if "q01" in stats and "q99" in stats:
            low, high = stats["q01"], stats["q99"]
        elif "min" in stats and "max" in stats:
            low, high = stats["min"], stats["max"]
        else:
            raise ValueError(
                f"action stats have keys {sorted(stats)}; expected 'q01' and 'q99' (LeRobot "
                "dataset stats) or 'min' and 'max'"
            )
        return cls(torch.as_tensor(low), torch.as_tensor(high), num_bins, offset)

    @property
    def action_dim(self) -> int:
        return self.low.numel()

    @property
    def bin_width(self) -> float:
        """Width of one bin in normalized units ([-1, 1] spans K bins)."""
        return 2.0 / self.num_bins

    def _check(self, actions: torch.Tensor) -> None:
        if actions.ndim < 1 or actions.shape[-1] != self.action_dim:
            raise ValueError(
                f"actions have shape {tuple(actions.shape)}; expected (..., {self.action_dim}) "
                "(the last dim must match the action statistics)"
            )
        if not torch.isfinite(actions).all():
            n = (~torch.isfinite(actions)).sum().item()
            raise ValueError(f"actions contain {n} NaN/inf values; clean the data first")

    def normalize(self, actions: torch.Tensor) -> torch.Tensor:
        """(..., D) raw -> (..., D) in [-1, 1], clipped. Zero-width dims map to 0."""
        self._check(actions)
        span = (self.high - self.low).clamp_min(1e-8)
        x = 2.0 * (actions.float() - self.low) / span - 1.0
        return x.clamp(-1.0, 1.0)

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) in [-1, 1] -> raw units."""
        return (x + 1.0) * 0.5 * (self.high - self.low) + self.low

    def to_bins(self, actions: torch.Tensor) -> torch.Tensor:
        """(..., D) raw actions -> (..., D) long bins in [0, K)."""
        x = self.normalize(actions)
        bins = torch.floor((x + 1.0) / self.bin_width).long()
        return bins.clamp(0, self.num_bins - 1)  # x == 1.0 falls in the last bin

    def from_bins(self, bins: torch.Tensor) -> torch.Tensor:
        """(..., D) bins -> (..., D) raw actions at the bin centers."""
        if bins.dtype.is_floating_point:
            raise ValueError(f"bins have dtype {bins.dtype}; expected an integer tensor")
        if (bins < 0).any() or (bins >= self.num_bins).any():
            raise ValueError(f"bins must lie in [0, {self.num_bins}); got {bins.min()}..{bins.max()}")
        centers = -1.0 + (bins.float() + 0.5) * self.bin_width
        return self.unnormalize(centers)

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        """(B, H, D) raw actions -> (B, H*D) token ids in [offset, offset + K)."""
        if actions.ndim != 3:
            raise ValueError(f"actions have shape {tuple(actions.shape)}; expected (B, H, D)")
        return self.to_bins(actions).flatten(1) + self.offset

    def decode(self, token_ids: torch.Tensor, chunk_size: int) -> torch.Tensor:
        """(B, H*D) token ids -> (B, H, D) raw actions (bin centers)."""
        if token_ids.ndim != 2 or token_ids.shape[1] != chunk_size * self.action_dim:
            raise ValueError(
                f"token_ids have shape {tuple(token_ids.shape)}; expected "
                f"(B, {chunk_size * self.action_dim}) for H={chunk_size}, D={self.action_dim}"
            )
        bins = (token_ids - self.offset).view(token_ids.shape[0], chunk_size, self.action_dim)
        return self.from_bins(bins)
