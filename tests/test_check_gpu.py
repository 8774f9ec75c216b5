"""scripts/check_gpu.sh: on a machine without CUDA it runs nothing and says so; the step runner
reports what passed, failed, or could not run (a failed prerequisite, the spent budget)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vla.bench.gpu_check import Step, plan, report, run_steps

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the script would run the GPU checks")
def test_without_cuda_it_runs_nothing_and_says_so(tmp_path):
    out = tmp_path / "check"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "check_gpu.sh"), str(out)], capture_output=True, text=True,
                          env={**os.environ, "VLA_PY": sys.executable}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no CUDA device here: nothing run. The CUDA paths stay unverified" in proc.stdout
    result = json.loads((out / "check_gpu.json").read_text())
    assert result["cuda"] is False and result["device"] is None
    assert [s["name"] for s in result["steps"]] == ["kernels", "demos", "train", "bench", "eval"]
    assert all(s["status"] == "not run" and "no CUDA" in s["reason"] for s in result["steps"])
    assert len(result["not_verified"]) == 5
    assert not (out / "demos").exists()  # nothing ran


def test_every_claimed_cuda_path_is_a_step_on_cuda(tmp_path):
    steps = {s.name: " ".join(s.command) for s in plan(tmp_path)}
    assert "test_kernels.py" in steps["kernels"]
    assert "--policy.device=cuda" in steps["train"] and "--policy.use_bf16=true" in steps["train"]
    assert "--device cuda" in steps["bench"] and "--sizes tiny small" in steps["bench"] and "--compile both" in steps["bench"]
    assert "--device cuda" in steps["eval"] and "collect_demos.py" in steps["demos"]
    assert str(tmp_path / "BENCHMARKS.md") in steps["bench"]  # never rewrites the repository's tables
    assert sum(s.limit_s for s in plan(tmp_path)) > 0


def test_steps_report_failures_missing_prerequisites_and_the_spent_budget(tmp_path):
    py = [sys.executable, "-c"]
    steps = [Step("a", "passes", [*py, "pass"], 5), Step("b", "fails", [*py, "raise SystemExit(3)"], 5),
             Step("c", "needs b", [*py, "pass"], 5, needs=("b",)),
             Step("d", "hangs", [*py, "import time; time.sleep(60)"], 5),
             Step("e", "left no time", [*py, "pass"], 5)]
    done = {s.name: s for s in run_steps(steps, tmp_path, budget_s=14)}
    assert done["a"].status == "passed" and done["b"].status == "failed" and "exit code 3" in done["b"].reason
    assert done["c"].status == "not run" and "needs b" in done["c"].reason
    assert done["d"].status == "failed" and "did not finish within 5 s" in done["d"].reason
    assert done["e"].status == "not run" and "budget was spent" in done["e"].reason
    assert [line.split(":")[0] for line in report(steps, "GPU")["not_verified"]] == ["b", "c", "d", "e"]
