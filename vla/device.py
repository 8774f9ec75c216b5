"""Device selection and the bf16-autocast policy (DESIGN.md section 4).

bf16 autocast pays on CUDA and on CPUs with native bf16 matmuls: AMX (measured: ~1,300 vs
~290 GFLOP/s fp32 on 2 cores) or AVX512-BF16 (AMD Zen 4). On CPUs with only AVX2 bf16 is
emulated and slower (measured 2.7x slower decoding), so it stays off there.
LSC confidences are always computed in fp32 (`vla.lsc.lsc_logits` upcasts).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch


def pick_device(requested: str | None = None) -> torch.device:
    """`requested` ('cpu', 'cuda', 'cuda:1', ...) or the best available device."""
    if requested:
        dev = torch.device(requested)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device '{requested}' requested but CUDA is not available; use 'cpu'")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})  # /proc/cpuinfo flags of native bf16 matmuls


def native_bf16(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text lists a native bf16 matmul flag (AMX or AVX512-BF16)."""
    return bool(set(cpuinfo.split()) & BF16_FLAGS)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (read from /proc/cpuinfo; False elsewhere)."""
    info = Path("/proc/cpuinfo")
    return info.exists() and native_bf16(info.read_text())


def emulated_bf16_warning(what: str, device: str | torch.device = "cpu") -> str | None:
    """A one-line warning when `what` would run bf16 on a CPU without native bf16 matmuls
    (slower than fp32 there), else None (CUDA, or a CPU with AMX / AVX512-BF16)."""
    if torch.device(device).type != "cpu" or cpu_has_native_bf16():
        return None
    return (f"{what} on a CPU without native bf16 matmuls (neither AMX nor AVX512-BF16 in /proc/cpuinfo): bf16 is "
            "emulated there and decodes ~2.7x slower than fp32 (docs/speed.md)")


def use_bf16_autocast(device: torch.device, requested: bool | None = None) -> bool:
    """Explicit choice if given; otherwise on for CUDA and for CPUs with native bf16."""
    if requested is not None:
        return requested
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
