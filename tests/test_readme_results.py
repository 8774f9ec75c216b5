"""README.md's "Results today" block is what vla.bench.readme_results renders from the
committed BENCHMARKS.md, rewriting a section refreshes it, and the README links every doc."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from vla.bench.readme_results import BEGIN, END, current_block, refresh_readme, render_block, slug
from vla.bench.report import write_section

ROOT = Path(__file__).resolve().parents[1]


def test_readme_block_equals_what_the_generator_renders_from_benchmarks():
    committed = current_block((ROOT / "README.md").read_text())
    assert committed == render_block((ROOT / "BENCHMARKS.md").read_text()), (
        "README.md's results block is stale: run `python -m vla.bench.readme_results`")
    headings = {line.strip() for line in (ROOT / "BENCHMARKS.md").read_text().splitlines() if line.startswith("## ")}
    anchors = {slug(h) for h in headings}
    links = [part.split(")")[0] for part in committed.split("(BENCHMARKS.md#")[1:]]
    assert links and all(link in anchors for link in links)  # every row links an existing section


def test_slug_follows_githubs_heading_anchors():
    assert slug("## Results: language conditioning alone (reach_fixed)") == \
        "results-language-conditioning-alone-reach_fixed"
    assert slug("## Results: Meta-World MT10") == "results-meta-world-mt10"


def test_rewriting_a_section_refreshes_the_readme_next_to_it(tmp_path):
    shutil.copy(ROOT / "BENCHMARKS.md", tmp_path / "BENCHMARKS.md")
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{BEGIN}\nold\n{END}\n\n## After\n\nkept\n")
    section = (ROOT / "BENCHMARKS.md").read_text().split("## Quickstart wall time")[1].split("\n## ")[0]
    write_section(tmp_path / "BENCHMARKS.md", "## Quickstart wall time",
                  "## Quickstart wall time" + re.sub(r"\| collect demos \| [^|]+\|", "| collect demos | 99.9 |", section))
    text = readme.read_text()
    assert "old" not in text and "collect 99.9" in text
    assert text.startswith("# Title\n\nintro\n\n") and text.endswith("\n\n## After\n\nkept\n")
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(ROOT / "BENCHMARKS.md", other / "BENCHMARKS.md")
    assert refresh_readme(other / "BENCHMARKS.md") is None  # no README with a block there: nothing written
    assert not (other / "README.md").exists()


def test_a_missing_headline_row_says_what_to_update(tmp_path):
    text = (ROOT / "BENCHMARKS.md").read_text().replace("| **all** |", "| everything |")
    with pytest.raises(KeyError, match="readme_results.py"):
        render_block(text)


def test_readme_links_every_doc_with_a_line():
    readme = (ROOT / "README.md").read_text()
    for doc in sorted((ROOT / "docs").glob("*.md")):
        line = next((ln for ln in readme.splitlines() if f"](docs/{doc.name})" in ln and ln.startswith("- ")), None)
        assert line is not None, f"README.md's docs list has no line for docs/{doc.name}"
