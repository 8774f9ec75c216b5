"""Entry points around the suites: suite-name errors and the BENCHMARKS.md section writer (it
must replace only its own section). The collect script's bad-input lines: tests/test_bad_inputs.py."""

from __future__ import annotations

import pytest

from vla.bench.envs_benchmark import SECTION, write_section
from vla.envs import make_env
from vla.envs.collection import CollectConfig, task_list
from vla.envs.experts import make_expert


def test_unknown_suite_lists_the_valid_suites():
    for call in (
        lambda: make_env("libero"),
        lambda: make_expert("libero"),
        lambda: CollectConfig(suite="libero", tasks="x", episodes_per_task=1, out="x"),
        lambda: task_list("libero", "x"),
    ):
        with pytest.raises(ValueError, match="metaworld.*tabletop"):
            call()


def test_task_lists_use_stable_ids():
    assert task_list("tabletop", "reach,push") == [(2, "reach"), (0, "push")]
    ids = dict((name, i) for i, name in task_list("metaworld", "MT50"))
    assert task_list("metaworld", "push-v3") == [(ids["push-v3"], "push-v3")]


def test_write_section_replaces_only_the_simulation_section(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Model\n\nkeep me\n\n## Simulation\n\nold\n\n## Kernels\n\nme too\n")
    write_section(path, f"{SECTION}\n\nnew numbers\n")
    text = path.read_text()
    assert "new numbers" in text and "old" not in text
    assert text.index("## Model") < text.index(SECTION) < text.index("## Kernels")
    assert "keep me" in text and "me too" in text
    fresh = tmp_path / "NEW.md"
    write_section(fresh, f"{SECTION}\n\nx\n")
    assert fresh.read_text().startswith("# Benchmarks") and SECTION in fresh.read_text()
