"""Serving start-up: a warm-up that leaves nothing to compile for a client's first request, and bf16
weights refused on CPUs without native bf16."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[2]
REAL_TASKS = ["push the red block onto the green zone and then touch the blue block", "touch it", "go",
              "move the yellow cube to the left"]


def observation(task: str, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"images": {"front": rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)},
            "state": rng.normal(size=4).astype(np.float32), "task": task}


def graphs_compiled_by_real_requests(backend, warmup_tasks) -> tuple[int, int]:
    """torch.compile the model (dynamo with a counting backend: tracing, no code generation), warm up
    with `warmup_tasks`, then serve REAL_TASKS; -> (graphs compiled by the warm-up, graphs compiled after)."""
    import torch

    model = backend.runner.policy.inference_model
    graphs: list[int] = []

    def counting(gm, example_inputs):
        graphs.append(len(example_inputs))
        return gm.forward

    originals = model.backbone.forward, model.vision.forward
    torch._dynamo.reset()
    try:
        model.backbone.forward = torch.compile(originals[0], backend=counting)
        model.vision.forward = torch.compile(originals[1], backend=counting)
        backend.warmup(warmup_tasks)
        warm = len(graphs)
        for i, task in enumerate(REAL_TASKS):
            assert np.isfinite(backend.infer(observation(task, seed=i))).all()
        return warm, len(graphs) - warm
    finally:
        model.backbone.forward, model.vision.forward = originals
        torch._dynamo.reset()


def test_warmup_leaves_nothing_to_compile_for_real_requests(policy_dir):
    from vla.policies.server import WARMUP_TASKS, LeRobotPolicyBackend

    backend = LeRobotPolicyBackend.from_pretrained(policy_dir, device="cpu", control_hz=20.0)
    warm, after = graphs_compiled_by_real_requests(backend, WARMUP_TASKS)
    assert warm > 0 and after == 0
    # one blank request (the former warm-up) leaves recompilations to the first clients
    _, after_single = graphs_compiled_by_real_requests(backend, ("warm up",))
    assert after_single > 0


def test_warmup_returns_one_latency_per_real_shaped_request(backend):
    seen = []
    original = backend.infer

    def recording(obs):
        seen.append(obs)
        return original(obs)

    backend.infer = recording
    try:
        latencies = backend.warmup()
    finally:
        backend.infer = original
    from vla.policies.server import WARMUP_TASKS

    assert len(latencies) == len(seen) == len(WARMUP_TASKS) and all(ms > 0 for ms in latencies)
    assert [o["task"] for o in seen] == list(WARMUP_TASKS)
    for obs in seen:
        assert obs["images"]["front"].shape == (96, 96, 3) and obs["images"]["front"].std() > 0  # not blank
        assert obs["state"].shape == (4,) and obs["state"].dtype == np.float32


def load_serve_script():
    spec = importlib.util.spec_from_file_location("serve_script", ROOT / "scripts" / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bf16_weights_are_refused_on_a_cpu_without_native_bf16(policy_dir, monkeypatch, capsys):
    import vla.device
    from vla.policies.server import LeRobotPolicyBackend

    monkeypatch.setattr(vla.device, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ValueError, match="without native bf16.*drop --bf16-weights.*--allow-emulated-bf16"):
        LeRobotPolicyBackend.from_pretrained(policy_dir, device="cpu", bf16_weights=True)
    from vla import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.run(load_serve_script().main, [f"--policy.path={policy_dir}", "--device", "cpu", "--bf16-weights"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "--allow-emulated-bf16" in err[0]
    # on a CPU with native bf16 (or when allowed) the same request loads
    monkeypatch.setattr(vla.device, "cpu_has_native_bf16", lambda: True)
    backend = LeRobotPolicyBackend.from_pretrained(policy_dir, device="cpu", bf16_weights=True)
    assert np.isfinite(backend.infer(observation("touch the red block"))).all()
