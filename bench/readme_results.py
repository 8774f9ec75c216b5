"""README.md's "Results today" table: headline numbers read from BENCHMARKS.md's tables.

This module owns the block between `<!-- results:begin -->` and `<!-- results:end -->` in
README.md. Every number in it is copied from a table of a BENCHMARKS.md section (each
written by the script named in that section), with a link to the section; nothing is typed
by hand. The scripts that rewrite those sections call `refresh_readme` right after, and a
test checks that the committed block equals `render_block(BENCHMARKS.md)`.

    python -m vla.bench.readme_results            # rewrite README.md's block from BENCHMARKS.md
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading: '## Results: Meta-World MT10' -> 'results-meta-world-mt10'."""
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def sections(text: str) -> dict[str, str]:
    """`## Heading` -> the section's text up to the next `## ` heading."""
    out, heading, lines = {}, None, []
    for line in text.splitlines():
        if line.startswith("## "):
            if heading:
                out[heading] = "\n".join(lines)
            heading, lines = line.strip(), []
        elif heading:
            lines.append(line)
    if heading:
        out[heading] = "\n".join(lines)
    return out


def tables(section: str) -> list[list[list[str]]]:
    """Markdown tables of a section as rows of cells (header first, the `|---|` rule dropped)."""
    found, rows = [], []
    for line in [*section.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.replace("**", "").strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            found.append(rows)
            rows = []
    return found


class Benchmarks:
    """Cells of BENCHMARKS.md by (section heading, row label, column header)."""

    def __init__(self, text: str) -> None:
        self.sections = sections(text)

    def table(self, heading: str, column: str, row: str | tuple[str, ...]) -> tuple[list[str], list[str]]:
        """(header, cells) of the first row whose leading cells are `row`, in a table of section
        `heading` with a column `column` ('' for any table)."""
        lead = (row,) if isinstance(row, str) else tuple(row)
        if heading not in self.sections:
            raise KeyError(f"BENCHMARKS.md has no section {heading!r}; run the script that writes it, or update "
                           "HEADLINES in vla/bench/readme_results.py")
        for header, *body in tables(self.sections[heading]):
            if column in header or (column == "" and len(header) > 1):
                for cells in body:
                    if tuple(cells[: len(lead)]) == lead:
                        return header, cells
        raise KeyError(f"BENCHMARKS.md {heading!r} has no table with column {column!r} and row {lead}; "
                       "update HEADLINES in vla/bench/readme_results.py to the section's new layout")

    def cell(self, heading: str, row: str | tuple[str, ...], column: str) -> str:
        header, cells = self.table(heading, column, row)
        return cells[header.index(column)]

    def column(self, heading: str, row: str, index: int) -> tuple[str, str]:
        """(header, cell) of the `index`-th column of the first table holding `row`."""
        header, cells = self.table(heading, "", row)
        return header[index], cells[index]


@dataclass(frozen=True)
class Headline:
    """One row of the README table: what was measured, in which section, and how to read it."""

    what: str
    heading: str  # the BENCHMARKS.md section it comes from (and links to)
    read: Callable[[Benchmarks, str], tuple[str, str]]  # -> (result, for comparison)


def _tabletop(b: Benchmarks, h: str) -> tuple[str, str]:
    name, ours = b.column(h, "all", 1)
    header, cells = b.table(h, "", "all")
    anchors = [(col.removesuffix(" (anchor)"), cell) for col, cell in zip(header, cells, strict=True)
               if col.endswith(" (anchor)")]  # expert, language-blind (where measured), random
    return f"{name}: {ours} %", ", ".join(f"{'language-blind' if a == 'blind' else a} {cell} %" for a, cell in anchors)


def _language(b: Benchmarks, h: str) -> tuple[str, str]:
    name, ours = b.column(h, "all", 1)
    given = b.cell(h, "all", "success on the given (swapped) instruction")
    replaced = b.cell(h, "all", "success on the replaced goal")
    return (f"{name}: {ours} %",
            f"instructions swapped: {given} % on the given goal, {replaced} % on the replaced one")


def _metaworld(b: Benchmarks, h: str) -> tuple[str, str]:
    header, cells = b.table(h, "success (all tasks)", "LLaDA-VLA tiny (HAD)")
    col = header.index("success (all tasks)")
    others = []
    for row in ("AR baseline (causal, same size)", "LeRobot ACT (no pretrained backbone)", "expert (anchor)",
                "random (anchor)"):
        others.append(f"{row.split(' (')[0]} {b.cell(h, row, 'success (all tasks)')} %")
    return f"{cells[0]}: {cells[col]} % (each policy trained for the same minutes)", ", ".join(others)


def _decode(b: Benchmarks, h: str) -> tuple[str, str]:
    best = ("tiny", "best each")
    return (f"{b.cell(h, best, 'HAD 10 steps ms')} ms per chunk (tiny preset, HAD 10 steps, best precision "
            "and compile setting, CPU)",
            f"left-to-right AR with KV cache: {b.cell(h, best, 'AR + KV cache ms')} ms")


def _serve(b: Benchmarks, h: str) -> tuple[str, str]:
    row = "round trip, client send -> reply (`rtt_ms`)"
    model = "model call alone (`infer_ms`)"
    return (f"{b.cell(h, row, 'p50 ms')} ms p50 round trip (tiny preset, loopback websocket, CPU)",
            f"model call alone {b.cell(h, model, 'p50 ms')} ms p50")


def _quickstart(b: Benchmarks, h: str) -> tuple[str, str]:
    whole = re.match(r"[\d.]+", b.cell(h, "whole command", "minutes"))
    if whole is None:
        raise KeyError(f"BENCHMARKS.md {h!r}: the 'whole command' row does not start with a number of minutes")
    return (f"{whole.group(0)} min for `bash scripts/quickstart.sh` on CPU",
            f"collect {b.cell(h, 'collect demos', 'minutes')}, train {b.cell(h, 'train', 'minutes')}, "
            f"evaluate {b.cell(h, 'evaluate (policy + anchors)', 'minutes')} min")


HEADLINES = (
    Headline("Tabletop suite (`all` families), unseen scenes", "## Results: tabletop", _tabletop),
    Headline("Following the instruction alone (`reach_fixed`)", "## Results: language conditioning alone (reach_fixed)",
             _language),
    Headline("Meta-World MT10", "## Results: Meta-World MT10", _metaworld),
    Headline("Decoding latency", "## Decoding speed", _decode),
    Headline("Serving", "## Deployment", _serve),
    Headline("Quickstart wall time", "## Quickstart wall time", _quickstart),
)


def render_block(benchmarks_text: str) -> str:
    """The README block (markers included) for this BENCHMARKS.md text."""
    b = Benchmarks(benchmarks_text)
    lines = [BEGIN,
             "<!-- written by vla/bench/readme_results.py from BENCHMARKS.md; do not edit by hand -->",
             "| what | result | for comparison | details |", "|---|---|---|---|"]
    for h in HEADLINES:
        result, compare = h.read(b, h.heading)
        lines.append(f"| {h.what} | {result} | {compare} | [BENCHMARKS.md]"
                     f"(BENCHMARKS.md#{slug(h.heading)}) |")
    return "\n".join([*lines, END])


def current_block(readme_text: str) -> str:
    """The block as it stands in a README text (markers included)."""
    start, end = readme_text.find(BEGIN), readme_text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {BEGIN} ... {END} block")
    return readme_text[start:end + len(END)]


def refresh_readme(benchmarks: str | Path, readme: str | Path | None = None) -> Path | None:
    """Rewrite the results block of `readme` (default: README.md next to `benchmarks`) from
    `benchmarks`. Returns the README's path, or None when it has no block (e.g. a benchmark
    written to a scratch folder): only a README that asks for the block gets one."""
    benchmarks = Path(benchmarks)
    readme = Path(readme) if readme else benchmarks.with_name("README.md")
    if not readme.is_file() or BEGIN not in readme.read_text():
        return None
    text = readme.read_text()
    readme.write_text(text.replace(current_block(text), render_block(benchmarks.read_text())))
    return readme


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    print(refresh_readme(root / "BENCHMARKS.md", root / "README.md") or "README.md has no results block")
