"""Fused LSC epilogue: hidden states -> K action logits -> softmax -> (argmax, confidence).

Each denoising step needs, for every action slot, only the proposed token
x0 = argmax(logits + noise) and its confidence p(x0) = softmax(logits)[x0]
(`vla.decoders.propose`). The logits path writes (N, K) logits and (N, K) probabilities
to memory and reads them back several times; this kernel computes the K logits of a
block of rows tile by tile, keeps an online softmax (running max and sum, as in
FlashAttention) and a running argmax in registers, and writes two numbers per row.

Noise: Gumbel sampling takes the perturbation as an input tensor `noise` (N, K) fp32
(already scaled by the temperature), not a seed. A seed-driven in-kernel RNG would not
reproduce torch's generator stream, so the kernel, the reference and the logits path
could not be compared draw for draw; the noise tensor is (N, K) fp32, a few KB per step.

Numerics: the weight is cast to the hidden dtype (as `vla.lsc.lsc_logits` does), both
operands are widened to fp32 inside the kernel (exact) and products accumulate in fp32;
the logits are never rounded to bf16. (The interpreter's bf16 `tl.dot` is wrong on CPU
in triton 3.6, and at K <= 256 the epilogue is bound by reading W, not by FLOPs.) Ties resolve to
the lowest token index, as `torch.argmax` does.

Three parts (house style): `_lsc_epilogue_kernel` (Triton), `lsc_epilogue_triton`
(checked wrapper), `lsc_epilogue_reference` (pure torch), and the dispatcher
`lsc_epilogue`, which uses Triton where it can run (CUDA tensors, or TRITON_INTERPRET=1
for correctness checks on CPU) and the reference elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl

    jit = triton.jit
except ImportError:  # pragma: no cover - triton ships with the pinned CUDA torch on Linux
    triton = tl = None

    def jit(fn):
        return fn

# `triton.jit` (ours and triton.language's own helpers) reads TRITON_INTERPRET when triton
# is imported, so the interpreter is on for this process or not at all; set the variable
# before anything imports triton (tests run the interpreter suite in a subprocess).
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

BACKENDS = ("auto", "triton", "reference")


@dataclass
class LSCHidden:
    """Logits-free predictor output: hidden states at action slots and the head's action rows.

    A predictor returns this instead of logits (B, L, K) to let `vla.decoders.propose`
    use the fused epilogue; `logits()` materializes the logits path when full
    probabilities are needed (secondary remasking).
    """

    hidden: torch.Tensor  # (B, L, d) read out at each slot (causal mode: already shifted)
    weight: torch.Tensor  # (K, d) action rows of the output head
    backend: str = "auto"  # see BACKENDS

    def logits(self) -> torch.Tensor:
        """(B, L, K) fp32, exactly as `vla.lsc.lsc_logits` computes them."""
        return F.linear(self.hidden, self.weight.to(self.hidden.dtype)).float()


@jit
def _lsc_epilogue_kernel(
    h_ptr,  # *T (N, D) hidden states, row stride `stride_hn`, unit column stride
    w_ptr,  # *T (K, D) action rows of the head, already in the hidden dtype, row stride `stride_wk`
    noise_ptr,  # *fp32 (N, K) perturbation added before the argmax; unread when HAS_NOISE is False
    tok_ptr,  # *int64 (N,) out: argmax token index in [0, K)
    conf_ptr,  # *fp32 (N,) out: softmax(logits)[token], noise-free
    N,  # rows (action slots over the batch)
    K,  # action tokens (32 or 256)
    D,  # hidden width
    stride_hn,  # elements between hidden rows
    stride_wk,  # elements between weight rows
    stride_nn,  # elements between noise rows
    HAS_NOISE: tl.constexpr,  # add `noise` before the argmax (Gumbel-max sampling)
    BLOCK_N: tl.constexpr,  # rows per program (>= 16 for tl.dot)
    BLOCK_K: tl.constexpr,  # tokens per tile (>= 16)
    BLOCK_D: tl.constexpr,  # reduction tile over the hidden width (>= 16)
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    cols_d = tl.arange(0, BLOCK_D)
    run_max = tl.full((BLOCK_N,), float("-inf"), tl.float32)  # online softmax: running max
    run_sum = tl.zeros((BLOCK_N,), tl.float32)  # and running sum of exp(logit - max)
    best_score = tl.full((BLOCK_N,), float("-inf"), tl.float32)  # running argmax of logit + noise
    best_idx = tl.zeros((BLOCK_N,), tl.int64)
    best_logit = tl.zeros((BLOCK_N,), tl.float32)  # noise-free logit of the running argmax
    for k0 in range(0, K, BLOCK_K):
        toks = k0 + tl.arange(0, BLOCK_K)
        tok_ok = toks < K
        acc = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
        for d0 in range(0, D, BLOCK_D):
            dd = d0 + cols_d
            h = tl.load(h_ptr + rows[:, None] * stride_hn + dd[None, :], mask=row_ok[:, None] & (dd[None, :] < D), other=0.0)
            w = tl.load(w_ptr + toks[:, None] * stride_wk + dd[None, :], mask=tok_ok[:, None] & (dd[None, :] < D), other=0.0)
            # bf16 -> fp32 is exact, so fp32 products equal bf16 products; accumulate in fp32
            acc += tl.dot(h.to(tl.float32), tl.trans(w.to(tl.float32)), input_precision="ieee")  # (BLOCK_N, BLOCK_K) fp32
        logits = tl.where(tok_ok[None, :], acc, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(logits, 1))
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(logits - new_max[:, None]), 1)
        run_max = new_max
        score = logits
        if HAS_NOISE:
            nz = tl.load(noise_ptr + rows[:, None] * stride_nn + toks[None, :], mask=row_ok[:, None] & tok_ok[None, :], other=0.0)
            score = tl.where(tok_ok[None, :], logits + nz, float("-inf"))
        tile_idx = tl.argmax(score, 1, tie_break_left=True)  # (BLOCK_N,) index inside the tile
        tile_score = tl.max(score, 1)
        hit = tl.arange(0, BLOCK_K)[None, :] == tile_idx[:, None]
        tile_logit = tl.sum(tl.where(hit, logits, 0.0), 1)
        better = tile_score > best_score  # strict: an earlier tile wins ties (lowest index)
        best_score = tl.where(better, tile_score, best_score)
        best_idx = tl.where(better, (k0 + tile_idx).to(tl.int64), best_idx)
        best_logit = tl.where(better, tile_logit, best_logit)
    tl.store(tok_ptr + rows, best_idx, mask=row_ok)
    tl.store(conf_ptr + rows, tl.exp(best_logit - run_max) / run_sum, mask=row_ok)


def triton_can_run(t: torch.Tensor) -> bool:
    """Triton launches on CUDA tensors, or anywhere under TRITON_INTERPRET=1 (slow, for tests)."""
    return triton is not None and (t.is_cuda or INTERPRET)


def _check(hidden: torch.Tensor, weight: torch.Tensor, noise: torch.Tensor | None) -> None:
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)}: expected (N, d) and (K, d)")
    if noise is not None and noise.shape != (hidden.shape[0], weight.shape[0]):
        raise ValueError(f"noise has shape {tuple(noise.shape)}; expected (N, K) = {(hidden.shape[0], weight.shape[0])}")
    if hidden.device != weight.device or (noise is not None and noise.device != hidden.device):
        raise ValueError(f"hidden on {hidden.device}, weight on {weight.device}: put them on one device")


def lsc_epilogue_triton(hidden: torch.Tensor, weight: torch.Tensor, noise: torch.Tensor | None = None,
                        block_n: int = 16, block_k: int = 32, block_d: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked launch: hidden (N, d), weight (K, d), noise (N, K) fp32 or None -> tokens (N,) long, conf (N,) fp32."""
    _check(hidden, weight, noise)
    if not triton_can_run(hidden):
        raise RuntimeError("Triton needs CUDA tensors or TRITON_INTERPRET=1; use lsc_epilogue(backend='auto')")
    hidden, weight = hidden.contiguous(), weight.to(hidden.dtype).contiguous()
    n, k = hidden.shape[0], weight.shape[0]
    tokens = torch.empty(n, dtype=torch.long, device=hidden.device)
    conf = torch.empty(n, dtype=torch.float32, device=hidden.device)
    if n == 0:
        return tokens, conf
    noise_arg = noise.float().contiguous() if noise is not None else conf  # placeholder pointer, never read
    grid = (triton.cdiv(n, block_n),)
    _lsc_epilogue_kernel[grid](hidden, weight, noise_arg, tokens, conf, n, k, hidden.shape[1],
                               hidden.stride(0), weight.stride(0), noise_arg.stride(0) if noise is not None else 0,
                               HAS_NOISE=noise is not None, BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_D=block_d)
    return tokens, conf


def lsc_epilogue_reference(hidden: torch.Tensor, weight: torch.Tensor,
                           noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure torch, same math as the kernel: fp32 logits from operands in the hidden dtype."""
    _check(hidden, weight, noise)
    logits = hidden.float() @ weight.to(hidden.dtype).float().T  # (N, K) fp32
    score = logits if noise is None else logits + noise.float()
    tokens = score.argmax(-1)
    conf = logits.softmax(-1).gather(-1, tokens[:, None]).squeeze(-1)
    return tokens, conf


def lsc_epilogue(hidden: torch.Tensor, weight: torch.Tensor, noise: torch.Tensor | None = None,
                 backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """hidden (..., d), weight (K, d), noise (..., K) -> argmax tokens (...) long, confidences (...) fp32.

    backend: 'auto' (Triton where it can run, else the reference), 'triton' or 'reference'.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend='{backend}'; choose from {BACKENDS}")
    lead = hidden.shape[:-1]
    h2 = hidden.reshape(-1, hidden.shape[-1])
    n2 = None if noise is None else noise.reshape(-1, noise.shape[-1])
    use_triton = backend == "triton" or (backend == "auto" and triton_can_run(hidden))
    tokens, conf = (lsc_epilogue_triton if use_triton else lsc_epilogue_reference)(h2, weight, n2)
    return tokens.view(lead), conf.view(lead)
