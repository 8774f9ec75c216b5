"""Fused LSC epilogue: Triton kernel (under TRITON_INTERPRET=1 on CPU) vs its torch reference.

Triton reads TRITON_INTERPRET when it is imported (its own `tl.*` helpers are jitted
then), and the test session imports it early through `vla`. So the kernel tests run in
a child pytest of this file with the variable set (`test_interpreter_suite`); in the
parent they are skipped, and the dispatcher's CPU fallback is tested. On a CUDA machine
the same tests run the compiled kernel directly. Shapes are small: the interpreter
checks correctness, not speed.
"""

import math
import os
import re
import subprocess
import sys

import pytest
import torch

from vla.kernels.lsc_epilogue import (
    INTERPRET,
    lsc_epilogue,
    lsc_epilogue_reference,
    lsc_epilogue_triton,
    triton_can_run,
)

pytest.importorskip("triton")
ON_GPU = torch.cuda.is_available()
kernel_test = pytest.mark.skipif(not (INTERPRET or ON_GPU), reason="runs in test_interpreter_suite's child process")
DEV = "cuda" if ON_GPU else "cpu"


@pytest.mark.skipif(INTERPRET or ON_GPU, reason="this process already runs the kernel tests")
def test_interpreter_suite():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not interpreter_suite", __file__]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    summary = run.stdout.strip().splitlines()[-1]  # e.g. "12 passed, 1 deselected, 189 warnings in 9.81s"
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (\w+)", summary)}
    assert counts.get("passed") == child_test_count() and "skipped" not in counts, summary  # every kernel test ran


def child_test_count() -> int:
    """Tests the child runs: every test of this file but `test_interpreter_suite`, parametrizations counted."""
    count = 0
    for name, fn in list(globals().items()):
        if name.startswith("test_") and name != "test_interpreter_suite":
            marks = getattr(fn, "pytestmark", [])
            count += math.prod(len(m.args[1]) for m in marks if m.name == "parametrize")
    return count


def inputs(n, k, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g).to(dtype)
    weight = torch.randn(k, d, generator=g) / d**0.5 * 4  # logits of order 1-4: peaked and flat rows
    return hidden.to(DEV), weight.to(DEV)


def check_close(got, want, hidden, weight, noise=None):
    tok, conf = got
    rtok, rconf = want
    assert tok.dtype == torch.long and conf.dtype == torch.float32 and tok.shape == rtok.shape
    assert torch.allclose(conf, rconf, atol=1e-5, rtol=1e-4)
    logits = hidden.float() @ weight.to(hidden.dtype).float().T
    score = logits if noise is None else logits + noise
    # identical tokens, except where two scores tie to within fp32 summation-order error
    picked, best = score.gather(1, tok[:, None]).squeeze(1), score.max(1).values
    assert torch.all((tok == rtok) | (best - picked < 1e-5))
    assert (tok == rtok).float().mean() > 0.97


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("k", [32, 256])
@pytest.mark.parametrize("with_noise", [False, True])
@kernel_test
def test_kernel_matches_reference(dtype, k, with_noise):
    n, d = 37, 80  # ragged: rows and width not multiples of the tiles
    hidden, weight = inputs(n, k, d, dtype, seed=k)
    noise = torch.randn(n, k, generator=torch.Generator().manual_seed(1)).to(DEV) * 0.7 if with_noise else None
    check_close(lsc_epilogue_triton(hidden, weight, noise), lsc_epilogue_reference(hidden, weight, noise), hidden, weight, noise)
    if noise is not None:  # the noise moved some proposals
        assert not torch.equal(lsc_epilogue_reference(hidden, weight)[0], lsc_epilogue_reference(hidden, weight, noise)[0])


@kernel_test
def test_one_slot_left_and_tile_edges():
    for n, k, blocks in ((1, 32, (16, 32, 64)), (3, 256, (16, 64, 16)), (17, 32, (16, 16, 32))):
        hidden, weight = inputs(n, k, 48, torch.float32, seed=n)
        got = lsc_epilogue_triton(hidden, weight, None, *blocks)
        check_close(got, lsc_epilogue_reference(hidden, weight), hidden, weight)


@kernel_test
def test_ties_resolve_to_the_lowest_index_like_torch():
    k, d = 256, 32
    weight = torch.zeros(k, d, device=DEV)
    weight[[5, 77, 200], 0] = 1.0  # three tokens tie for the maximum; 77 and 200 sit in later tiles
    hidden = torch.zeros(4, d, device=DEV)
    hidden[:, 0] = 2.0
    hidden[3] = 0.0  # an all-equal row: every logit ties
    tok, conf = lsc_epilogue_triton(hidden, weight, None, 16, 32, 32)
    rtok, rconf = lsc_epilogue_reference(hidden, weight)
    assert tok.tolist() == rtok.tolist() == [5, 5, 5, 0]
    assert torch.allclose(conf, rconf) and abs(conf[3].item() - 1 / k) < 1e-7
    noise = torch.zeros(4, k, device=DEV)
    noise[:, 200] = 1e-3  # noise breaks the tie toward the later tile
    assert lsc_epilogue_triton(hidden, weight, noise, 16, 32, 32)[0].tolist() == [200, 200, 200, 200]


def test_dispatcher_and_checks():
    hidden, weight = inputs(2 * 35, 32, 64, torch.float32)
    assert triton_can_run(hidden) == (INTERPRET or ON_GPU)  # plain CPU process: the reference runs
    tok, conf = lsc_epilogue(hidden.view(2, 35, 64), weight)  # auto
    assert tok.shape == conf.shape == (2, 35)
    rtok, rconf = lsc_epilogue(hidden.view(2, 35, 64), weight, backend="reference")
    assert torch.equal(tok, rtok) and torch.allclose(conf, rconf, atol=1e-6)
    if not triton_can_run(hidden):
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
            lsc_epilogue_triton(hidden, weight)
    with pytest.raises(ValueError, match=r"expected \(N, d\) and \(K, d\)"):
        lsc_epilogue(hidden, weight[:, :10])
    with pytest.raises(ValueError, match=r"expected \(N, K\)"):
        lsc_epilogue(hidden, weight, torch.zeros(70, 31, device=DEV))
    with pytest.raises(ValueError, match="choose from"):
        lsc_epilogue(hidden, weight, backend="cuda")


@kernel_test
def test_fused_model_path_runs_the_kernel(tokenizer):
    """The decode path with fused_lsc=True launches the kernel and matches the logits path."""
    from vla.decoders import DecodeConfig
    from vla.model import LLaDAVLA

    from .conftest import small_config
    from .test_model import make_obs

    model = LLaDAVLA(small_config(tokenizer)).eval().to(DEV)
    obs = make_obs(tokenizer, bsz=2)
    obs.images, obs.text_ids, obs.text_mask = {"front": obs.images["front"].to(DEV)}, obs.text_ids.to(DEV), obs.text_mask.to(DEV)
    dec = DecodeConfig("had", steps=4)
    _, ref = model.sample_actions(obs, dec, fused_lsc=False)
    _, fused = model.sample_actions(obs, dec, fused_lsc=True)
    assert torch.equal(ref.bins, fused.bins)
