"""Every CUDA path the code claims, run once on one GPU in under 8 minutes (scripts/check_gpu.sh).

Steps, each a subprocess with its own time limit inside one overall budget:

1. `kernels`: tests/test_kernels.py on the device (the Triton LSC epilogue compiled, not
   interpreted, against its torch reference); every kernel test must pass, none skipped;
2. `demos`: a few tabletop demonstrations, rendered with EGL;
3. `train`: a few training steps of the tiny preset on CUDA with bf16 autocast;
4. `bench`: scripts/bench_decode.py --device cuda for the tiny and small presets, eager and
   compiled (`compile_for_inference` on CUDA: torch.compile with CUDA graphs), fp32 and bf16;
5. `eval`: an evaluation of a few episodes of the trained policy on CUDA, EGL rendering.

Writes <out>/check_gpu.json: per step whether it ran, passed, its seconds and figures
(latencies, agreement, success), and the steps it could not run with the reason (no
CUDA, a step it needs failed, the budget ran out). Without CUDA it runs nothing and says so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 480.0  # the bound: under 8 minutes on one GPU


@dataclass
class Step:
    name: str
    what: str  # the CUDA path it shows, in words
    command: list[str]
    limit_s: float
    needs: tuple[str, ...] = ()
    figures: dict = field(default_factory=dict)  # filled after it ran
    status: str = "not run"  # passed / failed / not run
    reason: str = ""  # why it failed or did not run
    seconds: float = 0.0


def plan(out: Path, py: str = sys.executable) -> list[Step]:
    script = lambda name: str(ROOT / "scripts" / name)  # noqa: E731
    demos, train = out / "demos", out / "train"
    ckpt = train / "checkpoints" / "last" / "pretrained_model"
    return [
        Step("kernels", "Triton LSC epilogue compiled on the device against its torch reference",
             [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not interpreter_suite",
              str(ROOT / "tests" / "test_kernels.py")], 120),
        Step("demos", "tabletop demonstrations rendered with EGL",
             [py, script("collect_demos.py"), "--suite", "tabletop", "--tasks", "reach", "--episodes-per-task", "3",
              "--workers", "2", "--no-progress", "--out", str(demos)], 90),
        Step("train", "training steps on CUDA with bf16 autocast",
             [py, script("train.py"), "--config", str(ROOT / "configs" / "tabletop_tiny_cpu.json"),
              f"--dataset.root={demos}", "--dataset.repo_id=local/vla_demos", "--policy.device=cuda",
              "--policy.use_bf16=true", "--steps=20", "--save_freq=20", "--log_freq=10", "--batch_size=8",
              f"--output_dir={train}"], 120, needs=("demos",)),
        Step("bench", "decoding on CUDA, tiny and small, eager and compiled with CUDA graphs, fp32 and bf16",
             [py, script("bench_decode.py"), "--device", "cuda", "--sizes", "tiny", "small", "--compile", "both",
              "--train-seconds", "0", "--iters", "20", "--small-iters", "10", "--json", str(out / "bench_decode.json"),
              "--benchmarks-md", str(out / "BENCHMARKS.md"), "--speed-md", str(out / "speed.md")], 240),
        Step("eval", "evaluation of the trained policy on CUDA, EGL rendering",
             [py, script("eval.py"), f"--policy.path={ckpt}", "--suite", "tabletop", "--tasks", "reach",
              "--n-episodes", "3", "--n-envs", "2", "--device", "cuda", "--max-videos", "1", "--no-progress",
              "--out", str(out / "eval")], 90, needs=("train",)),
    ]


def figures_of(step: Step, out: Path, stdout: str) -> dict:
    """What a passed step measured, read from its outputs."""
    if step.name == "kernels":
        summary = stdout.strip().splitlines()[-1] if stdout.strip() else ""
        return {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|skipped|failed)", summary)}
    if step.name == "train":
        state = out / "train" / "checkpoints" / "last" / "training_state" / "training_step.json"
        return {"steps": json.loads(state.read_text())["step"]} if state.is_file() else {}
    if step.name == "bench" and (out / "bench_decode.json").is_file():
        rows = json.loads((out / "bench_decode.json").read_text())["rows"]
        return {"device": json.loads((out / "bench_decode.json").read_text())["device"],
                "p50_ms": {f"{r['size']} {r['precision']} {'compiled' if r['compiled'] else 'eager'} {r['decoder']} "
                           f"{r['cache']}": round(r["p50_ms"], 2) for r in rows},
                "min_agreement": min(r["agreement"] for r in rows)}
    if step.name == "eval" and (out / "eval" / "eval_info.json").is_file():
        o = json.loads((out / "eval" / "eval_info.json").read_text())["overall"]
        return {"pc_success": o["pc_success"], "n_episodes": o["n_episodes"], "eval_s": o["eval_s"]}
    return {}


def run_steps(steps: list[Step], out: Path, budget_s: float = BUDGET_S, env: dict | None = None) -> list[Step]:
    """Run each step within min(its limit, what is left of the budget); a step whose `needs` did not pass,
    or that the budget no longer fits, is marked not run with the reason."""
    start, status = time.monotonic(), {}
    env = {**os.environ, "MUJOCO_GL": "egl", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    for step in steps:
        left = budget_s - (time.monotonic() - start)
        failed = [n for n in step.needs if status.get(n) != "passed"]
        if failed:
            step.reason = f"needs {', '.join(failed)}, which did not pass"
        elif left < 10:
            step.reason = f"the {budget_s:.0f} s budget was spent"
        else:
            t0 = time.monotonic()
            try:
                proc = subprocess.run(step.command, env=env, capture_output=True, text=True,
                                      timeout=min(step.limit_s, left))
                step.status = "passed" if proc.returncode == 0 else "failed"
                step.reason = "" if proc.returncode == 0 else \
                    f"exit code {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-1500:]}"
                if proc.returncode == 0:
                    step.figures = figures_of(step, out, proc.stdout)
                if step.figures.get("skipped"):  # on a GPU every kernel test runs the compiled kernel
                    step.status, step.reason = "failed", f"{step.figures['skipped']} kernel tests skipped on the device"
            except subprocess.TimeoutExpired:
                step.status, step.reason = "failed", f"did not finish within {min(step.limit_s, left):.0f} s"
            step.seconds = round(time.monotonic() - t0, 1)
        status[step.name] = step.status
        print(f"[check_gpu] {step.name}: {step.status}{f' ({step.seconds} s)' if step.seconds else ''}"
              f"{f': {step.reason[:300]}' if step.reason else ''}", flush=True)
    return steps


def report(steps: list[Step], device: str | None) -> dict:
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "cuda": device is not None, "device": device,
            "budget_s": BUDGET_S, "steps": [asdict(s) for s in steps],
            "not_verified": [f"{s.name}: {s.what} ({s.reason})" for s in steps if s.status != "passed"]}


def main(out: Path) -> int:
    """Run every step where CUDA is available; -> exit code (0: all passed, or no CUDA to run on)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    steps = plan(out)
    if not torch.cuda.is_available():
        for s in steps:
            s.reason = "no CUDA device (torch.cuda.is_available() is False)"
        result = report(steps, None)
        print("[check_gpu] no CUDA device here: nothing run. The CUDA paths stay unverified: "
              + "; ".join(s.what for s in steps), flush=True)
    else:
        result = report(run_steps(steps, out), torch.cuda.get_device_name())
        print(f"[check_gpu] {sum(s.status == 'passed' for s in steps)} of {len(steps)} steps passed on "
              f"{result['device']}", flush=True)
        for line in result["not_verified"]:
            print(f"[check_gpu] not verified: {line[:300]}", flush=True)
    (out / "check_gpu.json").write_text(json.dumps(result, indent=2))
    print(f"[check_gpu] wrote {out / 'check_gpu.json'}", flush=True)
    return 0 if not result["cuda"] or not result["not_verified"] else 1
