"""LLaDA backbone: a LLaMA-style transformer without a causal mask, plus attention masks.

Architecture (LLaDA-8B, arXiv 2502.09992 / ML-GSAI/LLaDA `modeling_llada.py`):
pre-norm blocks of RMSNorm -> multi-head attention with RoPE (rotate-half convention)
-> residual, RMSNorm -> SwiGLU MLP (SiLU(ff_proj(x)) * up_proj(x) -> ff_out) -> residual;
final RMSNorm `ln_f`, untied output head `ff_out`. Parameter names follow LLaDA-8B's
checkpoint (`wte`, `blocks.N.{attn_norm,q_proj,k_proj,v_proj,attn_out,ff_norm,ff_proj,
up_proj,ff_out}`, `ln_f`, `ff_out`), so LLaDA weights load by name (see `vla.loading`).

Attention modes (`make_attn_mask`): `prefix` (default), `full` (LLaDA's own) and `causal`
(autoregressive baseline). In `prefix` and `causal` modes the prefix never attends to the
action block, so its keys/values can be computed once and reused by every denoising
step (`KVCache`), giving exactly the same result as recomputing them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

ATTENTION_MODES = ("prefix", "full", "causal")


@dataclass
class BackboneConfig:
    d_model: int = 256  # hidden width
    n_layers: int = 4  # transformer blocks
    n_heads: int = 4  # attention heads (LLaDA-8B: 32)
    n_kv_heads: int | None = None  # grouped-query heads; None = n_heads (LLaDA has no GQA)
    mlp_hidden: int = 704  # SwiGLU hidden size (LLaDA-8B: 12288)
    vocab_size: int = 512  # embedding rows incl. the K action tokens appended at the end
    rope_theta: float = 10000.0  # RoPE base (LLaDA-8B: 500000)
    norm_eps: float = 1e-5  # RMSNorm epsilon
    max_positions: int = 4096  # longest sequence RoPE tables are built for
    init_std: float = 0.02  # normal init std for linear and embedding weights

    def __post_init__(self):
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(f"head dim {self.d_model // self.n_heads} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


def make_attn_mask(prefix_valid: torch.Tensor, action_len: int, mode: str) -> torch.Tensor:
    """Boolean attention mask (B, 1, P+L, P+L); True = the query row may attend to the key.

    `prefix_valid` (B, P) marks real prefix tokens (False = padding, never attended to);
    the action block holds L slots after the prefix. Worked example, P=3 with one pad
    (p0 p1 _), L=2 (a0 a1); rows are queries, columns keys:

        prefix (default)        full                    causal
              p0 p1 _  a0 a1          p0 p1 _  a0 a1          p0 p1 _  a0 a1
        p0  [ 1  1  0  0  0 ]   p0  [ 1  1  0  1  1 ]   p0  [ 1  0  0  0  0 ]
        p1  [ 1  1  0  0  0 ]   p1  [ 1  1  0  1  1 ]   p1  [ 1  1  0  0  0 ]
        _   [ 1  1  0  0  0 ]   _   [ 1  1  0  1  1 ]   _   [ 1  1  0  0  0 ]
        a0  [ 1  1  0  1  1 ]   a0  [ 1  1  0  1  1 ]   a0  [ 1  1  0  1  0 ]
        a1  [ 1  1  0  1  1 ]   a1  [ 1  1  0  1  1 ]   a1  [ 1  1  0  1  1 ]

    Pad rows attend like their neighbours so no row is empty (their outputs are unused).
    In `prefix` mode the prefix is a bidirectional block that never sees the actions,
    so its keys/values are identical at every denoising step.
    """
    if mode not in ATTENTION_MODES:
        raise ValueError(f"unknown attention mode '{mode}'; choose from {ATTENTION_MODES}")
    bsz, plen = prefix_valid.shape
    total = plen + action_len
    device = prefix_valid.device
    key_ok = torch.cat([prefix_valid.bool(), torch.ones(bsz, action_len, dtype=torch.bool, device=device)], 1)
    if mode == "full":
        allowed = torch.ones(total, total, dtype=torch.bool, device=device)
    elif mode == "causal":
        allowed = torch.ones(total, total, dtype=torch.bool, device=device).tril()
    else:
        allowed = torch.ones(total, total, dtype=torch.bool, device=device)
        allowed[:plen, plen:] = False
    mask = allowed[None] & key_ok[:, None, :]  # (B, T, T)
    if mode == "causal":  # a pad query at the sequence start would see nothing
        mask[:, :, 0] |= ~key_ok[:, :1].expand(bsz, total)
    return mask[:, None]


def none_if_full(mask: torch.Tensor) -> torch.Tensor | None:
    """`mask`, or None where it allows every (query, key) pair (one host sync; call it once
    per chunk, not per step): SDPA then skips the mask arithmetic and may use a faster kernel.
    In `prefix` mode a batch without padding has a full mask for the prefix and the steps."""
    return None if bool(mask.all()) else mask


def positions_from_valid(valid: torch.Tensor) -> torch.Tensor:
    """RoPE positions (B, T) that skip padding: position = number of real tokens before it."""
    return (valid.long().cumsum(1) - 1).clamp_min(0)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalize in fp32 (as LLaMA / LLaDA do), cast back to the input dtype.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """RoPE with the rotate-half layout used by LLaMA and LLaDA."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions (B, T) -> cos, sin (B, 1, T, head_dim) in fp32."""
        freqs = positions.float()[..., None] * self.inv_freq  # (B, T, hd/2)
        emb = torch.cat([freqs, freqs], -1)[:, None]
        return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], -1)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


@dataclass
class KVCache:
    """Per-layer keys/values of a fixed prefix: lists of (B, n_kv_heads, P, head_dim)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    valid: torch.Tensor  # (B, P) bool, real prefix tokens
    next_position: torch.Tensor  # (B,) RoPE position of the first token after the prefix

    def repeat(self, n: int) -> KVCache:
        """The cache of a batch repeated n times along the batch dim (copy-major: row i*B + b is b)."""
        return KVCache([k.repeat(n, 1, 1, 1) for k in self.keys], [v.repeat(n, 1, 1, 1) for v in self.values],
                       self.valid.repeat(n, 1), self.next_position.repeat(n))


class Block(nn.Module):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        d, hd = cfg.d_model, cfg.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, hd
        self.attn_norm = RMSNorm(d, cfg.norm_eps)
        self.q_proj = nn.Linear(d, cfg.n_heads * hd, bias=False)
        self.k_proj = nn.Linear(d, cfg.n_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, cfg.n_kv_heads * hd, bias=False)
        self.attn_out = nn.Linear(cfg.n_heads * hd, d, bias=False)
        self.ff_norm = RMSNorm(d, cfg.norm_eps)
        self.ff_proj = nn.Linear(d, cfg.mlp_hidden, bias=False)  # gate: SiLU applies here
        self.up_proj = nn.Linear(d, cfg.mlp_hidden, bias=False)
        self.ff_out = nn.Linear(cfg.mlp_hidden, d, bias=False)

    def forward(self, x, cos, sin, mask, past_kv=None):
        """x (B, T, d); mask (B, 1, T, P+T) bool or None (all allowed); past_kv: (k, v) of a cached prefix or None.

        Returns (x, (k, v)) with k, v (B, n_kv, T, hd) for this call's tokens only.
        """
        bsz, t, _ = x.shape
        h = self.attn_norm(x)
        q = self.q_proj(h).view(bsz, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(bsz, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(bsz, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        new_kv = (k, v)
        if past_kv is not None:
            k = torch.cat([past_kv[0], k], 2)
            v = torch.cat([past_kv[1], v], 2)
        if self.n_kv_heads != self.n_heads:
            rep = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        if q.device.type == "cpu":
            # Plain-math kernel on CPU: for these short sequences the flash kernel's backward
            # was a third of a training step. Set here (not by the caller) so that gradient
            # checkpointing's recomputation uses the same kernel as the forward.
            with sdpa_kernel([SDPBackend.MATH]):
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nh, T, hd)
        else:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.attn_out(a.transpose(1, 2).reshape(bsz, t, -1))
        h = self.ff_norm(x)
        x = x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))
        return x, new_kv


class LLaDABackbone(nn.Module):
    """Token/embedding sequence -> final hidden states (after `ln_f`).

    The caller builds the input embeddings (image tokens, text, action slots) and the
    mask; the LSC head (`vla.lsc`) reads the K action rows of `ff_out`.
    """

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.ff_out = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)  # untied head
        self.rope = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)
        self.gradient_checkpointing = False
        self.apply(self._init)

    def _init(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=self.cfg.init_std)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
        past: KVCache | None = None,
        return_kv: bool = False,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]] | None]:
        """x (B, T, d) embeddings; positions (B, T); mask (B, 1, T, P+T) bool over [past, x], or None
        when every query may attend to every key (`none_if_full`).

        Returns hidden (B, T, d) after ln_f, and per-layer (k, v) of x when return_kv.
        """
        cos, sin = self.rope(positions)
        kvs = [] if return_kv else None
        for i, block in enumerate(self.blocks):
            past_kv = None if past is None else (past.keys[i], past.values[i])
            if self.gradient_checkpointing and self.training:
                x, kv = torch.utils.checkpoint.checkpoint(block, x, cos, sin, mask, past_kv, use_reentrant=False)
            else:
                x, kv = block(x, cos, sin, mask, past_kv)
            if return_kv:
                kvs.append(kv)
        return self.ln_f(x), kvs

    def resize_vocab(self, new_size: int) -> None:
        """Grow the embedding and head to `new_size` rows (new action tokens).

        New rows start at the mean of the existing rows (a common recipe that keeps the
        first logits of new tokens on the scale of the old ones), plus small noise.
        """
        old = self.wte.weight.shape[0]
        if new_size < old:
            raise ValueError(f"cannot shrink vocab from {old} to {new_size}")
        if new_size == old:
            return
        for name in ("wte", "ff_out"):
            w = getattr(self, name).weight.data
            extra = w.mean(0, keepdim=True) + self.cfg.init_std * torch.randn(new_size - old, w.shape[1], dtype=w.dtype, device=w.device)
            grown = torch.cat([w, extra], 0)
            mod = nn.Embedding(new_size, w.shape[1]) if name == "wte" else nn.Linear(w.shape[1], new_size, bias=False)
            mod = mod.to(device=w.device, dtype=w.dtype)
            mod.weight.data.copy_(grown)
            setattr(self, name, mod)
        self.cfg.vocab_size = new_size
