"""Device selection and the bf16-autocast policy (DESIGN.md section 4).

bf16 autocast pays on CUDA and on CPUs with AMX (measured here: ~1,300 vs ~290 GFLOP/s
for fp32 matmul on 2 cores); elsewhere CPU bf16 is emulated and slower, so it stays off.
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


@functools.cache
def cpu_has_amx() -> bool:
    info = Path("/proc/cpuinfo")
    return info.exists() and "amx_bf16" in info.read_text()


def use_bf16_autocast(device: torch.device, requested: bool | None = None) -> bool:
    """Explicit choice if given; otherwise on for CUDA and for AMX CPUs."""
    if requested is not None:
        return requested
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_amx())
