"""Roofline figures for decoding: machine rates, FLOPs and bytes per forward, fraction reached.

The roofline bounds a kernel's rate by min(peak FLOP/s, intensity x memory bandwidth),
intensity = FLOPs / bytes moved. Decoding at batch 1 runs few tokens per forward
(35 action slots, or 1 for AR with a KV cache), so each forward reads every weight
once for little arithmetic: intensity is low and the bound is bandwidth, or, for
models this small, per-operator overhead (neither roof: see docs/speed.md).

FLOPs are counted with torch's FlopCounterMode on a real forward (matmuls and
attention); bytes are modeled: every backbone weight read once per forward as stored
(4 B fp32, 2 B after `LLaDAVLA.cast_for_inference`), plus the cached keys/values read
by attention, in the same dtype.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from vla.model import LLaDAVLA, Observation


@dataclass
class MachineRates:
    matmul_fp32_gflops: float  # best square F.linear rate up to 2048^2, current torch thread count
    matmul_bf16_gflops: float
    copy_gbps: float  # large tensor copy: (bytes read + bytes written) / time
    threads: int


def _best_time(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak_gflops(dtype: torch.dtype, sizes: tuple[int, ...] = (256, 512, 1024, 2048),
                       max_call_s: float = 0.5) -> float:
    """Best square-matmul rate in `dtype` over `sizes`, through `F.linear` (the op the model runs).

    Per dtype and per shape because the kernels differ: on a CPU without native bf16 (no
    AMX / AVX512-BF16) a bf16 `a @ b` falls back to a reference loop (~0.05 GFLOP/s here)
    while `F.linear` converts and runs ~100x faster, and the rate swings with the shape.
    Stops growing the size once one call takes `max_call_s` (a 2048^2 emulated bf16 matmul
    would take minutes). Still a measurement, not a bound: `percent_of_peak` clamps.
    """
    best = 0.0
    for n in sizes:
        x, w = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        seconds = _best_time(lambda x=x, w=w: torch.nn.functional.linear(x, w), 3 if n >= 1024 else 5)
        best = max(best, 2 * n**3 / seconds / 1e9)
        if seconds > max_call_s:
            break
    return best


def measure_machine(copy_mb: int = 512) -> MachineRates:
    """Matmul peak per dtype (`matmul_peak_gflops`) and copy bandwidth on this device (CPU)."""
    fp32, bf16 = (matmul_peak_gflops(dt) for dt in (torch.float32, torch.bfloat16))
    src = torch.empty(copy_mb * 2**20 // 4, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    bw = 2 * src.numel() * 4 / _best_time(lambda: dst.copy_(src), 5) / 1e9
    return MachineRates(fp32, bf16, bw, torch.get_num_threads())


def step_matmul_gflops(tokens: int, d_model: int, hidden: int, dtype: torch.dtype = torch.float32,
                       reps: int = 200) -> float:
    """Rate of the (tokens x d_model) @ (d_model x hidden) matmul of a decode step in `dtype` (best of `reps`).

    Small-M matmuls run far below the square-matmul peak (packing, few tiles to share
    between threads), so this, not `measure_machine`'s square rate, is the roof a batch-1
    step of `tokens` slots can reach; dividing a chunk's FLOPs by it gives its floor.
    """
    x, w = torch.randn(tokens, d_model, dtype=dtype), torch.randn(hidden, d_model, dtype=dtype)
    return 2 * tokens * d_model * hidden / _best_time(lambda: torch.nn.functional.linear(x, w), reps) / 1e9


def peaks_by_precision(machine: MachineRates, shape_rates: dict[tuple[str, str], float] | None = None
                       ) -> dict[str, float]:
    """precision -> the highest matmul rate measured in it: the square peak or any (size, precision)
    step-shape rate of `shape_rates`, whichever is higher (a small shape can beat a badly served square one)."""
    peaks = {"fp32": machine.matmul_fp32_gflops, "bf16": machine.matmul_bf16_gflops}
    for (_, precision), rate in (shape_rates or {}).items():
        peaks[precision] = max(peaks.get(precision, 0.0), rate)
    return peaks


def percent_of_peak(achieved_gflops: float, peak_gflops: float) -> str:
    """`achieved / peak` as a percentage that never exceeds 100%: above the peak it reads
    '100%*' (the peak measurement was too low, not the chunk faster than the machine);
    'n/a' without a positive peak."""
    if not peak_gflops > 0 or not math.isfinite(achieved_gflops):
        return "n/a"
    frac = achieved_gflops / peak_gflops
    return "100%*" if frac > 1 else f"{frac:.1%}"


@dataclass
class ForwardCost:
    name: str  # which forward: vision, prefix, step (35 slots, cached), ar_step (1 slot + KV)
    tokens: int  # query tokens in this forward
    keys: int  # keys attended to (prefix + slots)
    flops: float
    bytes: float

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes


def _count(fn) -> float:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn()
    return float(counter.get_total_flops())


def forward_costs(model: LLaDAVLA, causal: LLaDAVLA, obs: Observation) -> list[ForwardCost]:
    """FLOPs (counted) and bytes (modeled, in the weights' own dtype) of each kind of forward in one chunk."""
    block_bytes = sum(p.numel() * p.element_size() for p in model.backbone.blocks.parameters())
    vision_bytes = sum(p.numel() * p.element_size() for p in model.vision.parameters())
    cfg = model.cfg.backbone
    kv_bytes = model.backbone.wte.weight.element_size()
    kv_per_key = 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * kv_bytes  # K and V, every layer
    with torch.inference_mode():
        prefix, valid = model.embed_prefix(obs)
        plen, alen = prefix.shape[1], model.cfg.action_len
        predictor = model.make_predictor(obs)
        ar_pred = causal.make_predictor(obs)
        bins = torch.full((1, alen), -1, device=prefix.device)
        ar_pred(bins)
        ar_bins = bins.clone()
        ar_bins[:, 0] = 0
        n_img = model.vision(obs.images).shape[1]
    vision = _count(lambda: model.vision(obs.images))
    prefix_f = _count(lambda: model.encode_prefix(prefix, valid))
    step = _count(lambda: predictor(bins))
    ar_step = _count(lambda: ar_pred(ar_bins))  # runs the one newly committed slot
    return [
        ForwardCost("vision", n_img, n_img, vision, vision_bytes),
        ForwardCost("prefix", plen, plen, prefix_f, block_bytes + plen * kv_per_key),
        ForwardCost("step (35 slots, prefix cache)", alen, plen + alen, step, block_bytes + (plen + alen) * kv_per_key),
        ForwardCost("AR step (1 slot, KV cache)", 1, plen + 1, ar_step, block_bytes + (plen + 1) * kv_per_key),
    ]


# Spec-sheet rates of the GPU this project's device tool lends (not measured here).
H200_SPEC = {"name": "H200 spec sheet (4.8 TB/s HBM3e, 989 TFLOP/s dense bf16)", "bytes_per_s": 4.8e12,
             "flops_per_s": 989e12}


def analytic_forward(cfg, tokens: int, keys: int, weight_bytes: int = 2) -> tuple[float, float]:
    """(FLOPs, bytes) of one backbone forward from a `BackboneConfig` alone, no model built.

    FLOPs: 2 per weight per token for the block matmuls, plus QK^T and AV (4 x tokens x keys
    x heads x head_dim per layer); the K-row LSC head is negligible. Bytes: every block
    weight read once, plus the keys' cached K and V. Matches FlopCounterMode's count on
    the tiny preset (tests/test_decode_speed_paths.py).
    """
    d, hd = cfg.d_model, cfg.head_dim
    weights = cfg.n_layers * (2 * d * cfg.n_heads * hd + 2 * d * cfg.n_kv_heads * hd + 3 * d * cfg.mlp_hidden)
    flops = 2 * tokens * weights + 4 * tokens * keys * cfg.n_heads * hd * cfg.n_layers
    kv = keys * 2 * cfg.n_layers * cfg.n_kv_heads * hd * weight_bytes
    return float(flops), float(weights * weight_bytes + kv)


def paper_scale_chunks(cfg, prefix_len: int, slots: int = 35, rates: dict = H200_SPEC) -> dict[str, float]:
    """Roofline model (not a measurement) of one chunk's backbone time in ms at batch 1:
    max(FLOPs / peak, bytes / bandwidth) per forward, for the prefix pass plus HAD at 10
    and 5 cached steps and AR with its KV cache (one slot per step). Vision is left out:
    it costs every decoder the same. Launch overhead is taken as removed (CUDA graphs)."""

    def ms(tokens: int, keys: int) -> float:
        flops, nbytes = analytic_forward(cfg, tokens, keys)
        return 1e3 * max(flops / rates["flops_per_s"], nbytes / rates["bytes_per_s"])

    def bound(tokens: int, keys: int) -> str:
        flops, nbytes = analytic_forward(cfg, tokens, keys)
        return "bandwidth" if nbytes / rates["bytes_per_s"] > flops / rates["flops_per_s"] else "compute"

    prefix = ms(prefix_len, prefix_len)
    step = ms(slots, prefix_len + slots)
    ar = sum(ms(1, prefix_len + j + 1) for j in range(slots))
    return {"prefix_ms": prefix, "step_ms": step, "ar_step_ms": ms(1, prefix_len + 1),
            "had_10_ms": prefix + 10 * step, "had_5_ms": prefix + 5 * step, "ar_kv_ms": prefix + ar,
            "prefix_bound": bound(prefix_len, prefix_len), "step_bound": bound(slots, prefix_len + slots),
            "ar_step_bound": bound(1, prefix_len + 1)}
