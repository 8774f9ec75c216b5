"""The fused LSC path through the model and decoders gives the logits path's actions."""

import pytest
import torch

from vla.decoders import DECODERS, DecodeConfig, propose
from vla.kernels.lsc_epilogue import LSCHidden
from vla.model import LLaDAVLA

from .conftest import small_config
from .test_model import make_obs


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("use_cache", [True, False])
def test_fused_lsc_gives_identical_actions(tokenizer, name, use_cache):
    model = LLaDAVLA(small_config(tokenizer)).eval()
    obs = make_obs(tokenizer)
    dec = DecodeConfig(name, steps=None if name == "ar" else 4, temperature=0.0)
    _, ref = model.sample_actions(obs, dec, use_cache=use_cache, fused_lsc=False)
    _, fused = model.sample_actions(obs, dec, use_cache=use_cache, fused_lsc=True)
    assert torch.equal(ref.bins, fused.bins) and ref.nfe == fused.nfe


def test_fused_lsc_with_remasking_falls_back_to_probabilities(tokenizer):
    model = LLaDAVLA(small_config(tokenizer)).eval()
    obs = make_obs(tokenizer)
    predictor = model.make_predictor(obs, fused_lsc=True)
    out = predictor(torch.full((3, model.cfg.action_len), -1))
    assert isinstance(out, LSCHidden)
    x0, conf, probs = propose(out, 0.0, None, need_probs=True)  # remasking path: full probabilities
    assert probs is not None and probs.shape == (3, model.cfg.action_len, model.cfg.num_bins)
    fx0, fconf, fprobs = propose(out, 0.0, None, need_probs=False)
    assert fprobs is None and torch.equal(fx0, x0) and torch.allclose(fconf, conf, atol=1e-6)
    dec = DecodeConfig("low_confidence", steps=6, temperature=0.5, remask=0.2)
    outs = [model.sample_actions(obs, dec, torch.Generator().manual_seed(2), fused_lsc=f)[1] for f in (False, True)]
    assert torch.equal(outs[0].bins, outs[1].bins)


def test_gumbel_draws_match_between_paths():
    """Same generator stream on both paths: the sampled tokens agree (fp32 vs float64 sum)."""
    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(4, 35, 64, generator=g), torch.randn(32, 64, generator=g)
    lsc = LSCHidden(hidden, weight)
    a = propose(lsc.logits(), 1.0, torch.Generator().manual_seed(9))
    b = propose(lsc, 1.0, torch.Generator().manual_seed(9), need_probs=False)
    assert (a[0] == b[0]).float().mean() > 0.99 and torch.allclose(a[1][a[0] == b[0]], b[1][a[0] == b[0]], atol=1e-5)
    assert not torch.equal(a[0], lsc.logits().argmax(-1))  # the noise did change proposals


def test_bench_cache_modes_agree_and_count_forwards(tokenizer):
    """The benchmark's three AR cache modes decode the same tokens with 35 forwards each."""
    from vla.bench.decode_bench import AR, run_chunk, synthetic_actions, time_chunks

    model = LLaDAVLA(small_config(tokenizer, attention="causal", decoder="ar", decode_steps=None)).eval()
    obs = [make_obs(tokenizer, bsz=1, seed=s) for s in range(2)]
    results = {c: time_chunks(model, obs, AR, c, iters=2, warmup=0) for c in ("none", "prefix", "kv")}
    for lat, bins, nfe in results.values():
        assert nfe == model.cfg.action_len and len(lat) == 2 and all(t > 0 for t in lat)
        assert all(torch.equal(b, r) for b, r in zip(bins, results["none"][1], strict=True))
    assert run_chunk(model, obs[0], AR, "kv").nfe == model.cfg.action_len
    acts = synthetic_actions(torch.rand(4, 5, 2) * 2 - 1)
    assert acts.shape == (4, 5, 7) and acts.abs().max() <= 1 and (acts[:, -1, 6] == 1).all()


def test_bench_tables_render_targets_and_floors():
    from vla.bench.decode_bench import Row, render_rows, render_targets

    row = Row("tiny", "bf16", "had", "prefix", 10.0, 12.5, 10.0, 3.5, 0.5, 2e9)
    assert "| tiny | bf16 | no | had | prefix | 10.0 | 12.5 | 10.0 | 3.5 | 0.500 | 2.00 | 20.0% |" in render_rows([row], {"bf16": 1000.0})
    # floor = FLOPs at the (size, precision) step-shape matmul rate: 2 GFLOP at 400 GFLOP/s = 5 ms; trained rows key on "tiny"
    trained = Row("tiny (trained)", "fp32", "had", "prefix", 10.0, 12.5, 10.0, 3.5, 1.0, 2e9, compiled=True)
    assert "| tiny (trained) | fp32 | yes | had | prefix | 10.0 | 12.5 | 10.0 | 3.5 | 1.000 | 2.00 | 20.0% | 5.0 |" in \
        render_rows([trained], {"fp32": 1000.0}, {("tiny", "fp32"): 400.0})
    # targets: AR with its KV cache over HAD (10 and 5 steps) in the same setting; best tiny chunk
    rows = [row, Row("tiny", "bf16", "had_5", "prefix", 5.0, 6.0, 5.0, 7.0, 1.0, 1e9),
            Row("tiny", "bf16", "ar", "kv", 30.0, 31.0, 35.0, 1.0, 1.0, 1e8),
            Row("tiny", "fp32", "had", "prefix", 40.0, 41.0, 10.0, 3.5, 1.0, 2e9)]  # no AR row: no ratio line
    md = render_targets(rows)
    assert "| tiny | bf16 | no | 10.0 | 5.0 | 30.0 | 3.00x | 6.00x |" in md and "| tiny | fp32 |" not in md
    assert "| tiny | best each | - | 10.0 | 5.0 | 30.0 | 3.00x | 6.00x |" in md
    assert "best setting: 10.0 ms p50 (bf16, eager)" in md


def test_percent_of_peak_never_exceeds_100(monkeypatch):
    """On a CPU without native bf16 a square bf16 `a @ b` ran ~0.05 GFLOP/s while the model's bf16
    linears ran ~100x faster, so chunks read 1,500-5,500% "of peak". The peak is now the best rate
    measured per precision (square F.linear and the step shapes) and the column is clamped."""
    import re

    from vla.bench import roofline
    from vla.bench.decode_bench import Row, render_rows
    from vla.bench.roofline import MachineRates, peaks_by_precision, percent_of_peak

    assert percent_of_peak(50.0, 100.0) == "50.0%" and percent_of_peak(100.0, 100.0) == "100.0%"
    assert percent_of_peak(2750.0, 50.0) == "100%*" and percent_of_peak(1.0, 0.0) == "n/a"
    machine = MachineRates(100.0, 0.05, 20.0, 2)  # the AVX2 case: a square bf16 matmul barely runs
    peaks = peaks_by_precision(machine, {("tiny", "bf16"): 8.0, ("small", "bf16"): 9.0, ("tiny", "fp32"): 60.0})
    assert peaks == {"fp32": 100.0, "bf16": 9.0}
    rows = [Row("tiny", prec, "had", "prefix", ms, ms, 10.0, 3.5, 1.0, gflop * 1e9)
            for prec in ("fp32", "bf16") for ms in (0.5, 10.0, 400.0) for gflop in (0.01, 2.0, 50.0)]
    cells = [float(v) for v in re.findall(r"\| ([\d.]+)%\*? \|", render_rows(rows, peaks))]
    assert len(cells) == len(rows) and max(cells) == 100.0 and min(cells) < 1.0
    # the peak search stops growing the matmul once one call is slow (an emulated 2048^2 bf16 takes minutes)
    sizes = []
    monkeypatch.setattr(roofline, "_best_time", lambda fn, reps: sizes.append(1) or 1.0)
    assert roofline.matmul_peak_gflops(torch.float32, sizes=(64, 128, 4096), max_call_s=0.5) == 2 * 64**3 / 1e9
    assert len(sizes) == 1


def test_roofline_block_splits_a_chunk_into_its_parts():
    from vla.bench.decode_bench import Row, render_roofline
    from vla.bench.roofline import ForwardCost, MachineRates

    roof = {("tiny", "bf16"): (5e6, [ForwardCost("step", 35, 77, 2e8, 1e7)])}
    steps = {("tiny", "bf16", True): {"vision_ms": 2.0, "prefix_ms": 3.0, "forward_ms": 1.0, "propose_ms": 0.01,
                                      "had_select_ms": 0.05}}
    rows = [Row("tiny", "bf16", "had", "prefix", 20.0, 25.0, 10.0, 3.5, 1.0, 2e9, compiled=True)]
    md = render_roofline(roof, steps, MachineRates(100.0, 400.0, 20.0, 2), {("tiny", "bf16"): 250.0}, 0.5, rows)
    assert "| tiny | bf16 | 5.0M | step | 35 | 77 | 200.0 | 10.00 | 20.0 |" in md
    # parts: 2 (vision) + 3 (prefix) + 10 x 1 (forwards) = 15 ms, next to the 20 ms chunk timed whole
    assert "| tiny | bf16 | yes | 2.00 | 3.00 | 1.00 | 0.010 | 0.050 | 15.0 | 20.0 |" in md
    assert "balance point 5 (fp32) / 20 (bf16) FLOP/byte" in md


def test_report_renders_from_the_saved_json_alone(tmp_path):
    """--render-only: the tables come from the JSON figures, so a re-render changes no number."""
    import json
    from dataclasses import asdict

    from vla.bench.decode_bench import Row, render_report
    from vla.bench.roofline import ForwardCost

    rows = [Row("tiny", "bf16", "had", "prefix", 20.0, 25.0, 10.0, 3.5, 1.0, 2e9, compiled=True),
            Row("tiny", "bf16", "had_5", "prefix", 12.0, 14.0, 5.0, 7.0, 1.0, 1e9, compiled=True),
            Row("tiny", "bf16", "ar", "kv", 60.0, 70.0, 35.0, 1.0, 1.0, 1e8, compiled=True)]
    out = {"command": "python scripts/bench_decode.py", "date": "2026-12-04", "platform": "x86_64, 2 CPU cores",
           "device": "cpu", "compile": "on", "load_before": [0.1, 0, 0], "load_after": [2.0, 0, 0],
           "machine": {"matmul_fp32_gflops": 100.0, "matmul_bf16_gflops": 400.0, "copy_gbps": 20.0, "threads": 2},
           "step_matmul_gflops": {"tiny bf16": 250.0}, "trained": None, "params": {"tiny": 5e6},
           "roofline": {"tiny bf16": [asdict(ForwardCost("step", 35, 77, 2e8, 1e7))]},
           "step_breakdown": {"tiny bf16 compiled": {"vision_ms": 2.0, "prefix_ms": 3.0, "forward_ms": 1.0,
                                                     "propose_ms": 0.01, "had_select_ms": 0.05}},
           "rows": [asdict(r) for r in rows]}
    section, roof = render_report(json.loads(json.dumps(out)))  # through JSON, as saved
    assert section.startswith("## Decoding speed") and "on 2026-12-04 (x86_64, 2 CPU cores" in section
    assert "| tiny | bf16 | yes | 20.0 | 12.0 | 60.0 | 3.00x | 5.00x |" in section
    assert "| tiny | bf16 | yes | had | prefix | 20.0 | 25.0 | 10.0 | 3.5 | 1.000 | 2.00 | 25.0% | 8.0 |" in section
    assert "| tiny | bf16 | yes | 2.00 | 3.00 | 1.00 | 0.010 | 0.050 | 15.0 | 20.0 |" in roof


@pytest.mark.slow
def test_compile_for_inference_gives_the_eager_actions(tokenizer):
    """torch.compile of vision + backbone (inductor on CPU) decodes the eager model's tokens, cached and not,
    for HAD and for AR with its growing KV cache (the one dynamic-shape path)."""
    import copy

    obs = [make_obs(tokenizer, bsz=1, seed=s) for s in range(2)]
    for over in ({}, {"attention": "causal", "decoder": "ar", "decode_steps": None}):
        torch.manual_seed(0)
        eager = LLaDAVLA(small_config(tokenizer, **over)).eval()
        compiled = copy.deepcopy(eager).compile_for_inference()
        assert compiled.compile_mode == "default" and eager.compile_mode is None
        assert compiled.state_dict().keys() == eager.state_dict().keys()
        with torch.inference_mode():
            for o in obs:
                for use_cache in (False, True):
                    a, ra = eager.sample_actions(o, use_cache=use_cache)
                    b, rb = compiled.sample_actions(o, use_cache=use_cache)
                    assert torch.equal(ra.bins, rb.bins) and ra.nfe == rb.nfe
                    assert torch.equal(a, b)
            pred_e, pred_c = eager.make_predictor(obs[0]), compiled.make_predictor(obs[0])
            bins = torch.full((1, eager.cfg.action_len), -1)
            torch.testing.assert_close(pred_c(bins), pred_e(bins), rtol=1e-4, atol=1e-5)


def test_bf16_weights_give_the_fp32_logits_to_bf16_precision(tokenizer):
    """cast_for_inference: weights in bf16; action quantiles and LSC logits stay fp32; the cached
    step's logits match the fp32 model's to bf16 rounding, and every decoder runs on it. (Token
    agreement on a trained model is a benchmark figure: BENCHMARKS.md, trained bf16 rows.)"""
    import copy

    torch.manual_seed(0)
    ref = LLaDAVLA(small_config(tokenizer)).eval()
    cast = copy.deepcopy(ref).cast_for_inference(torch.bfloat16)
    assert {p.dtype for p in cast.backbone.parameters()} == {p.dtype for p in cast.vision.parameters()} == {torch.bfloat16}
    assert cast.action_tokenizer.low.dtype == cast.action_tokenizer.high.dtype == torch.float32
    obs = make_obs(tokenizer, bsz=4)
    bins = torch.full((4, ref.cfg.action_len), -1)
    bins[:, ::3] = torch.randint(0, ref.cfg.num_bins, bins[:, ::3].shape)  # some slots committed
    with torch.inference_mode():
        for use_cache in (True, False):
            l32 = ref.make_predictor(obs, use_cache)(bins)
            l16 = cast.make_predictor(obs, use_cache)(bins)
            assert l16.dtype == torch.float32
            scale = l32.abs().max()
            torch.testing.assert_close(l16, l32, atol=float(0.03 * scale), rtol=0.0)
        for name in sorted(DECODERS):
            actions, res = cast.sample_actions(obs, DecodeConfig(name, steps=None if name == "ar" else 4))
            assert actions.dtype == torch.float32 and actions.shape == (4, ref.cfg.chunk_size, ref.cfg.action_dim)
            assert ((res.bins >= 0) & (res.bins < ref.cfg.num_bins)).all()


def test_analytic_roofline_matches_the_counted_flops_and_bounds_the_paper_scale(tokenizer):
    """The paper-scale estimate rests on analytic_forward: it must agree with FlopCounterMode on a real model."""
    from vla.bench.decode_bench import DIM, build, observations
    from vla.bench.decode_bench import make_tokenizer as bench_tokenizer
    from vla.bench.roofline import analytic_forward, forward_costs, paper_scale_chunks
    from vla.model import VLAConfig, preset_fields

    tok = bench_tokenizer()
    model, causal = build("tiny", tok), build("tiny", tok, "causal")
    obs = observations(tok, n=1)[0]
    costs = {c.name.split(" ")[0]: c for c in forward_costs(model, causal, obs)}
    step = costs["step"]
    flops, _ = analytic_forward(model.cfg.backbone, step.tokens, step.keys)
    assert abs(flops - step.flops) / step.flops < 0.01  # the K-row head is the only term left out
    e = paper_scale_chunks(VLAConfig.from_flat(preset_fields("llada8b_paper")).backbone, prefix_len=762, slots=5 * DIM)
    assert e["step_bound"] == e["ar_step_bound"] == "bandwidth" and e["prefix_bound"] == "compute"
    # bandwidth-bound steps cost the same whatever their token count: the ratio follows NFE (35 vs 10 or 5)
    assert 2.5 < e["ar_kv_ms"] / e["had_10_ms"] < 3.5 < e["ar_kv_ms"] / e["had_5_ms"] < 7.0
