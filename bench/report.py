"""BENCHMARKS.md sections: each benchmark script owns one `## Heading` section and rewrites
it in place, leaving the other sections untouched (numbers are never typed by hand).

Writing a section also refreshes the "Results today" block of the README.md next to the
file (`vla.bench.readme_results`), so the README's headline numbers cannot drift from it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from vla.bench.readme_results import refresh_readme


def write_section(path: str | Path, heading: str, section: str) -> None:
    """Replace (or append) the section that starts with the line `heading` (e.g. '## Training speed')."""
    path = Path(path)
    if not section.startswith(heading):
        raise ValueError(f"section must start with its heading line {heading!r}")
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        text = "".join(lines[:start]) + section.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    path.write_text(text)
    refresh_readme(path)


def machine_line() -> str:
    """Where a figure was measured: CPU model, core count, load at the time."""
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} cores, load average {load:.2f} at the start"
