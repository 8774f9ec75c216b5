"""BENCHMARKS.md sections: each benchmark script owns one `## Heading` section and rewrites
it in place, leaving the other sections untouched (numbers are never typed by hand).

Writing a section also refreshes the "Results today" block of the README.md next to the
file (`vla.bench.readme_results`), so the README's headline numbers cannot drift from it."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def measured_section(heading: str, raw_path: str | Path, command: str | None, measure: Callable[[], Any],
                     render: Callable[[str, Any, str, str, str], str], benchmarks: str | Path) -> str:
    """Measure (`command` given) and keep the raw figures in `raw_path`, or re-render them (`command` None);
    then rewrite `heading`'s section of `benchmarks` with `render(heading, results, command, machine, date)`."""
    raw_path = Path(raw_path)
    if command is None:
        raw = json.loads(raw_path.read_text())
    else:
        raw = {"command": command, "machine": machine_line(), "date": time.strftime("%Y-%m-%d"), "results": measure()}
        raw_path.parent.mkdir(parents=True, exist_ok=True)
        raw_path.write_text(json.dumps(raw, indent=2))
    section = render(heading, raw["results"], raw["command"].strip(), raw["machine"], raw["date"])
    write_section(benchmarks, heading, section)
    return section
