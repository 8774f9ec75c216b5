"""Decode-speed measurement: per-chunk latency, NFE and agreement for every decoder, cached or not.

`scripts/bench_decode.py` is the entry point; this module owns the measurement so the
script stays a thin CLI. One chunk = vision + prefix + all denoising steps at batch 1
(`LLaDAVLA.sample_actions`). Diffusion decoders run on the model in `prefix` attention;
AR runs on the same weights configured `causal` (decoder `ar`, one slot per forward),
uncached, with the prefix cache only, and with its incremental KV cache.

Models are measured as `prepare` leaves them: fp32 or bf16 weights, eager or compiled.
Agreement is the fraction of tokens identical to the reference decode of the same decoder
on the same observations: the fp32 eager model without any cache. The cached fp32 rows
show the caches are exact (1.000); bf16 and compiled rows show what rounding changes.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from vla.bench.roofline import (
    H200_SPEC,
    ForwardCost,
    MachineRates,
    paper_scale_chunks,
    peaks_by_precision,
    percent_of_peak,
)
from vla.bench.synthetic import COLORS, TEMPLATES, make_scenes
from vla.decoders import DecodeConfig, DecodeResult, _had_key, decode, propose, select_lowest
from vla.model import LLaDAVLA, Observation, VLAConfig, preset_fields
from vla.text_tokenizer import TextTokenizer

CHUNK, DIM = 5, 7  # H, D: 35 action slots as in the paper
SIZES: dict[str, dict] = {  # model fields (flat names) of the sizes measured; all others at their defaults
    "tiny": {"vision_kwargs": {"depth": 4}},  # ~5M parameters: ViT-tiny x4 at 96 px, 4-layer d=256 backbone
    "small": {"vision_kwargs": {"depth": 4}, "d_model": 512, "n_layers": 8, "n_heads": 8, "mlp_hidden": 1408},
}
DECODERS: dict[str, DecodeConfig] = {
    "had": DecodeConfig("had", steps=10),
    "had_5": DecodeConfig("had", steps=5),  # one action per forward: NFE 5 caps the ratio to AR's 35 at 7x
    "low_confidence": DecodeConfig("low_confidence", steps=10),
    "threshold": DecodeConfig("threshold", steps=None, threshold=0.9),  # budget L: the threshold sets the pace
}
AR = DecodeConfig("ar", steps=None)
CACHE_MODES = ("none", "prefix")  # AR adds "kv": prefix + committed slots
PRECISIONS = ("fp32", "bf16")  # bf16 = weights stored in bf16 (LLaDAVLA.cast_for_inference), not autocast


@dataclass
class Row:
    size: str
    precision: str
    decoder: str
    cache: str
    p50_ms: float
    p99_ms: float
    nfe: float
    tokens_per_forward: float
    agreement: float  # fraction of tokens equal to the reference decode (fp32, eager, uncached)
    flops_per_chunk: float
    compiled: bool = False  # LLaDAVLA.compile_for_inference (torch.compile of vision + backbone)


def make_tokenizer() -> TextTokenizer:
    texts = [t.format(c) for t in TEMPLATES for c in COLORS]
    return TextTokenizer.train(texts, vocab_size=128)


def build(size: str, tokenizer: TextTokenizer, attention: str = "prefix") -> LLaDAVLA:
    over = copy.deepcopy(SIZES[size])
    if attention == "causal":
        over.update(attention="causal", decoder="ar", decode_steps=None)
    cfg = VLAConfig.from_flat({**over, **tokenizer.config_fields()}, chunk_size=CHUNK, action_dim=DIM)
    return LLaDAVLA(cfg).eval()


def observations(tokenizer: TextTokenizer, n: int = 8, seed: int = 123) -> list[Observation]:
    """Batch-1 observations from the synthetic scenes (varied images and instructions)."""
    scenes = make_scenes(n, chunk_size=CHUNK, seed=seed)
    ids, mask = tokenizer(scenes.instructions)
    return [Observation({"front": scenes.images[i : i + 1]}, ids[i : i + 1], mask[i : i + 1]) for i in range(n)]


def synthetic_actions(path: torch.Tensor) -> torch.Tensor:
    """(N, H, 2) planar waypoints -> (N, H, 7) actions: xy, step deltas, rotations 0, gripper.

    The synthetic task is planar; the extra dims are deterministic functions of the path so
    a trained model can be confident on all 35 slots, as a 7-DoF policy would be.
    """
    prev = torch.cat([torch.zeros_like(path[:, :1]), path[:, :-1]], 1)
    delta = (path - prev) * 2.0
    grip = torch.where(torch.arange(path.shape[1]) == path.shape[1] - 1, 1.0, -1.0).expand(path.shape[0], -1)
    return torch.cat([path, delta, torch.zeros_like(path[..., :1]).expand(-1, -1, 2), grip[..., None]], -1).clamp(-1, 1)


def train_briefly(model: LLaDAVLA, tokenizer: TextTokenizer, seconds: float, bf16: bool, seed: int = 0) -> dict:
    """Masked-diffusion training on synthetic scenes for `seconds` (CPU) so confidences are realistic."""
    torch.manual_seed(seed)
    data = make_scenes(2048, chunk_size=CHUNK, seed=seed)
    actions = synthetic_actions(data.actions)
    ids, mask = tokenizer(data.instructions)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    model.train()
    start, steps, metrics = time.perf_counter(), 0, {}
    while time.perf_counter() - start < seconds:
        idx = torch.randint(0, len(ids), (32,), generator=g)
        obs = Observation({"front": data.images[idx]}, ids[idx], mask[idx])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, metrics = model.compute_loss(obs, actions[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    model.eval()
    return {"train_steps": steps, "train_s": time.perf_counter() - start, "masked_acc": float(metrics["masked_acc"])}


def prepare(model: LLaDAVLA, precision: str, compiled: bool) -> LLaDAVLA:
    """A copy of `model` for inference: weights cast to bf16 (`cast_for_inference`) or left fp32,
    then `compile_for_inference` if `compiled`. The fp32 original is left untouched."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision '{precision}'; choose from {PRECISIONS}")
    m = copy.deepcopy(model)
    if precision == "bf16":
        m.cast_for_inference(torch.bfloat16)
    return m.compile_for_inference() if compiled else m


def to_device(obs: list[Observation], device: str) -> list[Observation]:
    return [Observation({k: v.to(device) for k, v in o.images.items()}, o.text_ids.to(device), o.text_mask.to(device))
            for o in obs]


def run_chunk(model: LLaDAVLA, obs: Observation, dec: DecodeConfig, cache: str) -> DecodeResult:
    """One chunk. cache: 'none' (full pass per step), 'prefix' (prefix keys/values reused),
    'kv' (causal model: prefix + committed slots, `make_predictor`'s incremental AR cache)."""
    if cache == "prefix" and model.cfg.attention == "causal":
        # the prefix-only cache for AR: ask make_predictor for a schedule it cannot grow a cache for
        predictor = model.make_predictor(obs, True, DecodeConfig("ar", steps=None, remask=0.5))
        return decode(predictor, obs.batch_size, model.cfg.chunk_size, model.cfg.slots_per_action, dec)
    return model.sample_actions(obs, dec, use_cache=cache != "none")[1]


def chunk_flops(model: LLaDAVLA, obs: Observation, dec: DecodeConfig, cache: str) -> float:
    """FLOPs of one chunk, counted by torch's FlopCounterMode (matmuls and attention), eager model."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        run_chunk(model, obs, dec, cache)
    return float(counter.get_total_flops())


def decode_bins(model: LLaDAVLA, obs: list[Observation], dec: DecodeConfig, cache: str) -> list[torch.Tensor]:
    """The bins `model` decodes for each observation (the reference for the agreement column)."""
    with torch.inference_mode():
        return [run_chunk(model, o, dec, cache).bins for o in obs]


def time_chunks(model: LLaDAVLA, obs: list[Observation], dec: DecodeConfig, cache: str,
                iters: int, warmup: int = 3) -> tuple[list[float], list[torch.Tensor], float]:
    """-> per-chunk latencies (ms), the bins decoded for each observation, mean NFE.

    The model carries its precision (`prepare`); nothing here casts or autocasts.
    """
    lat, bins, nfe = [], [], []
    device = obs[0].text_ids.device.type
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.inference_mode():
        for i in range(max(warmup + iters, len(obs))):  # every observation decoded at least once
            o = obs[i % len(obs)]
            sync()
            t0 = time.perf_counter()
            res = run_chunk(model, o, dec, cache)
            sync()
            dt = (time.perf_counter() - t0) * 1e3
            if i >= warmup:
                lat.append(dt)
                nfe.append(res.nfe)
            if i < len(obs):
                bins.append(res.bins)
    return lat, bins, sum(nfe) / len(nfe)


def _agree(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(torch.cat([(x == y).float().flatten() for x, y in zip(a, b, strict=True)]).mean())


def _pct(xs: list[float], q: float) -> float:
    return float(torch.tensor(xs).quantile(q))


def _runs(model: LLaDAVLA, causal: LLaDAVLA | None, decoders: dict[str, DecodeConfig] | None,
          cache_modes: tuple[str, ...]) -> list[tuple[str, DecodeConfig, LLaDAVLA, tuple[str, ...]]]:
    """(name, decoder, model, cache modes) for every diffusion decoder, then AR on the causal twin (+ its KV cache)."""
    runs = [(name, dec, model, cache_modes) for name, dec in (decoders or DECODERS).items()]
    if causal is not None:
        runs.append(("ar", AR, causal, (*cache_modes, "kv")))
    return runs


def bench_model(size: str, precision: str, model: LLaDAVLA, causal: LLaDAVLA | None, obs: list[Observation],
                iters: int, refs: dict[str, list[torch.Tensor]], flops: dict[tuple[str, str], float],
                decoders: dict[str, DecodeConfig] | None = None, cache_modes: tuple[str, ...] = CACHE_MODES) -> list[Row]:
    """Every decoder x cache setting on `model`, and AR on `causal` (the same weights), as prepared.

    refs: decoder name -> the bins of the reference decode (fp32, eager, uncached) per
    observation; flops: (decoder, cache) -> FLOPs per chunk (counted once on the eager
    fp32 model: precision and compilation do not change them).
    """
    rows = []
    for name, dec, m, modes in _runs(model, causal, decoders, cache_modes):
        for cache in modes:
            lat, bins, nfe = time_chunks(m, obs, dec, cache, iters)
            rows.append(Row(size, precision, name, cache, _pct(lat, 0.5), _pct(lat, 0.99), nfe, CHUNK * DIM / nfe,
                            _agree(bins, refs[name]), flops[name, cache], m.compile_mode is not None))
    return rows


def reference(model: LLaDAVLA, causal: LLaDAVLA | None, obs: list[Observation],
              decoders: dict[str, DecodeConfig] | None = None, cache_modes: tuple[str, ...] = CACHE_MODES
              ) -> tuple[dict[str, list[torch.Tensor]], dict[tuple[str, str], float]]:
    """-> (reference bins per decoder, FLOPs per (decoder, cache)) from the fp32 eager models."""
    runs = _runs(model, causal, decoders, cache_modes)
    refs = {name: decode_bins(m, obs, dec, "none") for name, dec, m, _ in runs}
    flops = {(name, cache): chunk_flops(m, obs[0], dec, cache) for name, dec, m, modes in runs for cache in modes}
    return refs, flops


def render_rows(rows: list[Row], peaks: dict[str, float], floors: dict[tuple[str, str], float] | None = None) -> str:
    """Markdown table of rows; `peaks` maps precision -> matmul GFLOP/s for the % of peak column
    (`roofline.percent_of_peak`: never above 100%; '100%*' flags a peak measured too low).

    floors: (size, precision) -> matmul rate at that size's 35-slot step shape
    (`roofline.step_matmul_gflops`); the `floor ms` column is the chunk's FLOPs at that
    rate, the latency if nothing but matmuls ran. A size label's first word is the key.
    """
    floor = floors is not None
    out = ["| size | precision | compiled | decoder | cache | p50 ms | p99 ms | NFE | tokens/forward | agreement | "
           "GFLOP/chunk | % of matmul peak |" + (" floor ms |" if floor else ""),
           "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if floor else "")]
    for r in rows:
        pct = percent_of_peak(r.flops_per_chunk / (r.p50_ms / 1e3) / 1e9, peaks[r.precision])
        line = (f"| {r.size} | {r.precision} | {'yes' if r.compiled else 'no'} | {r.decoder} | {r.cache} | "
                f"{r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.nfe:.1f} | {r.tokens_per_forward:.1f} | {r.agreement:.3f} | "
                f"{r.flops_per_chunk / 1e9:.2f} | {pct} |")
        if floor:
            line += f" {r.flops_per_chunk / (floors[r.size.split()[0], r.precision] * 1e9) * 1e3:.1f} |"
        out.append(line)
    return "\n".join(out)


def step_breakdown(model: LLaDAVLA, obs: Observation, reps: int = 100) -> dict[str, float]:
    """Median ms of each part of a chunk on `model` as prepared (fp32/bf16, eager/compiled):
    the vision tower, the prefix pass, one cached denoising forward, `propose`, HAD's selection
    rule. Says what bounds a chunk, and whether the HAD selection deserves a kernel (DESIGN:
    only if it matters)."""
    def med(fn) -> float:
        for _ in range(5):
            fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
        return _pct(ts, 0.5)

    with torch.inference_mode():
        prefix, valid = model.embed_prefix(obs)
        predictor = model.make_predictor(obs)
        bins = torch.full((1, model.cfg.action_len), -1, device=obs.text_ids.device)
        logits = predictor(bins)
        masked, count = bins == -1, torch.tensor([4], device=bins.device)
        _, conf, _ = propose(logits, 0.0, None, need_probs=False)
        return {
            "vision_ms": med(lambda: model.vision(obs.images)),
            "prefix_ms": med(lambda: model.encode_prefix(prefix, valid)),
            "forward_ms": med(lambda: predictor(bins)),
            "propose_ms": med(lambda: propose(logits, 0.0, None, need_probs=False)),
            "had_select_ms": med(lambda: select_lowest(_had_key(masked, conf, CHUNK, DIM), count)),
        }


def render_targets(rows: list[Row]) -> str:
    """The issue's targets, read off `rows`: HAD vs AR with its KV cache, and the tiny chunk latency.

    Per (size, precision, compiled): p50 of HAD (10 steps) and HAD (5 steps, one action
    per forward) with the prefix cache against AR with its KV cache on the same weights.
    """
    p50 = {(r.size, r.precision, r.compiled, r.decoder, r.cache): r.p50_ms for r in rows}
    out = ["| size | precision | compiled | HAD 10 steps ms | HAD 5 steps ms | AR + KV cache ms | AR / HAD | AR / HAD 5 |",
           "|---|---|---|---|---|---|---|---|"]
    groups = sorted({(r.size, r.precision, r.compiled) for r in rows if (r.decoder, r.cache) == ("ar", "kv")})
    for size, prec, comp in groups:
        had, had5, ar = (p50.get((size, prec, comp, d, c)) for d, c in (("had", "prefix"), ("had_5", "prefix"),
                                                                          ("ar", "kv")))
        if had is None or had5 is None:
            continue
        out.append(f"| {size} | {prec} | {'yes' if comp else 'no'} | {had:.1f} | {had5:.1f} | {ar:.1f} | "
                   f"{ar / had:.2f}x | {ar / had5:.2f}x |")
    for size in sorted({g[0] for g in groups}):  # each decoder in its own fastest setting
        best = {d: min((r for r in rows if r.size == size and (r.decoder, r.cache) == (d, c)), key=lambda r: r.p50_ms)
                for d, c in (("had", "prefix"), ("had_5", "prefix"), ("ar", "kv"))}
        out.append(f"| {size} | best each | - | {best['had'].p50_ms:.1f} | {best['had_5'].p50_ms:.1f} | "
                   f"{best['ar'].p50_ms:.1f} | {best['ar'].p50_ms / best['had'].p50_ms:.2f}x | "
                   f"{best['ar'].p50_ms / best['had_5'].p50_ms:.2f}x |")
    tiny = [r for r in rows if r.size == "tiny" and (r.decoder, r.cache) == ("had", "prefix")]
    if tiny:
        best = min(tiny, key=lambda r: r.p50_ms)
        out.append(f"\nTiny preset, one chunk (vision + prefix + 10 HAD steps, prefix cache), best setting: "
                   f"{best.p50_ms:.1f} ms p50 ({best.precision}, {'compiled' if best.compiled else 'eager'}).")
    return "\n".join(out)


def render_report(out: dict) -> tuple[str, str]:
    """(BENCHMARKS.md `## Decoding speed` section, docs/speed.md roofline block) from the figures
    `scripts/bench_decode.py` saves as JSON, so the tables can be re-rendered without re-measuring."""
    rows = [Row(**r) for r in out["rows"]]
    machine = MachineRates(**out["machine"])
    floor = {tuple(k.split(" ")): v for k, v in out["step_matmul_gflops"].items()}
    peaks = peaks_by_precision(machine, floor)
    trained = out["trained"] or {"train_steps": 0, "masked_acc": 0.0}
    floors_txt = ", ".join(f"{s} {p} {v:.0f}" for (s, p), v in floor.items())
    header = (
        f"Written by `{out['command']}` on {out['date']} ({out['platform']}, {machine.threads} torch threads, device "
        f"{out['device']}, compile {out['compile']}; load average {out['load_before'][0]:.2f} before, "
        f"{out['load_after'][0]:.2f} after). Do not edit by hand; re-run the script (`--render-only` re-renders these "
        f"tables from its JSON). Batch 1, H=5 x D=7 = 35 slots, K=32; latency = whole chunk (vision + prefix + all "
        f"steps). Precision = how the weights are stored (bf16: `LLaDAVLA.cast_for_inference`; LSC confidences stay "
        f"fp32); compiled = `LLaDAVLA.compile_for_inference`. Agreement = fraction of tokens equal to the reference "
        f"decode (the same decoder, fp32, eager, no cache) on 8 fixed observations. Untrained rows: confidences are "
        f"arbitrary (near-ties everywhere, so bf16 rounding flips argmaxes, and threshold NFE means nothing); the "
        f"trained rows are tiny after {trained['train_steps']} training steps (masked accuracy "
        f"{trained['masked_acc']:.2f}) on synthetic scenes. Matmul peak here (the best rate measured per precision, "
        f"square F.linear up to 2048^2 or a step shape): {peaks['fp32']:.0f} GFLOP/s fp32, {peaks['bf16']:.0f} bf16; "
        f"'100%*' marks a chunk faster than that measured peak (the % is clamped); at each size's 35-slot step shape (35 x d_model x mlp_hidden): "
        f"{floors_txt} GFLOP/s, which the `floor ms` column divides the chunk's FLOPs by (the matmuls alone at that "
        f"rate); copy bandwidth {machine.copy_gbps:.1f} GB/s. CUDA path (CUDA graphs via --compile --device cuda): "
        f"{'not measured (no GPU here)' if out['device'] == 'cpu' else 'measured here'}.")
    section = (f"## Decoding speed\n\n{header}\n\n{render_targets(rows)}\n\n"
               f"{render_rows(rows, peaks, floor or None)}\n")
    roof = {tuple(k.split(" ")): (out["params"][k.split(" ")[0]], [ForwardCost(**c) for c in cs])
            for k, cs in out["roofline"].items()}
    steps = {(k.split(" ")[0], k.split(" ")[1], k.split(" ")[2] == "compiled"): b for k, b in out["step_breakdown"].items()}
    return section, render_roofline(roof, steps, machine, floor, out["load_before"][0], rows)


PAPER_PREFIX = 27 * 27 + 32 + 1  # SigLIP so400m/14 at 384 px (27 x 27 patches) + 32 text tokens + SEP


def paper_scale_line() -> str:
    """The `llada8b_paper` preset's backbone under `roofline.paper_scale_chunks`: a model, labelled as one."""
    e = paper_scale_chunks(VLAConfig.from_flat(preset_fields("llada8b_paper")).backbone, PAPER_PREFIX, CHUNK * DIM)
    return (f"Paper scale, a roofline model, not a measurement: the `llada8b` backbone in bf16 at batch 1 on "
            f"{H200_SPEC['name']}, launch overhead removed, prefix {PAPER_PREFIX} tokens, vision left out. "
            f"Prefix {e['prefix_ms']:.1f} ms ({e['prefix_bound']}-bound), 35-slot step {e['step_ms']:.2f} ms "
            f"({e['step_bound']}-bound), AR step {e['ar_step_ms']:.2f} ms ({e['ar_step_bound']}-bound); chunk: HAD 10 steps {e['had_10_ms']:.0f} ms, HAD 5 steps "
            f"{e['had_5_ms']:.0f} ms, AR + KV cache {e['ar_kv_ms']:.0f} ms: AR / HAD {e['ar_kv_ms'] / e['had_10_ms']:.2f}x, "
            f"AR / HAD 5 {e['ar_kv_ms'] / e['had_5_ms']:.2f}x.")


def render_roofline(roof: dict, steps: dict, machine, floors: dict[tuple[str, str], float], load: float,
                    rows: list[Row] = ()) -> str:
    """docs/speed.md's roofline block: FLOPs and bytes per forward, per-step breakdown, machine rates.

    roof: (size, precision) -> (params, [ForwardCost]); steps: (size, precision, compiled) -> `step_breakdown`.
    """
    md = ["| size | precision | params | forward | tokens | keys | MFLOP | MB moved | FLOP/byte |",
          "|---|---|---|---|---|---|---|---|---|"]
    for (size, prec), (n, costs) in roof.items():
        md += [f"| {size} | {prec} | {n / 1e6:.1f}M | {c.name} | {c.tokens} | {c.keys} | {c.flops / 1e6:.1f} | "
               f"{c.bytes / 1e6:.2f} | {c.intensity:.1f} |" for c in costs]
    had = {(r.size, r.precision, r.compiled): r.p50_ms for r in rows if (r.decoder, r.cache) == ("had", "prefix")}
    # parts timed apart (medians of 100 calls each) next to the whole chunk timed end to end: on a
    # shared 2-core VM the two differ by +-20% run to run, so compare, do not subtract
    md += ["", "| size | precision | compiled | vision ms | prefix ms | cached forward ms | propose ms | "
           "HAD selection ms | vision + prefix + 10 forwards ms | HAD chunk p50 ms |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for (size, prec, comp), b in steps.items():
        parts = b["vision_ms"] + b["prefix_ms"] + 10 * b["forward_ms"]
        md.append(f"| {size} | {prec} | {'yes' if comp else 'no'} | {b['vision_ms']:.2f} | {b['prefix_ms']:.2f} | "
                  f"{b['forward_ms']:.2f} | {b['propose_ms']:.3f} | {b['had_select_ms']:.3f} | {parts:.1f} | "
                  f"{had.get((size, prec, comp), float('nan')):.1f} |")
    md.append("\n" + paper_scale_line())
    rates = {"fp32": machine.matmul_fp32_gflops, "bf16": machine.matmul_bf16_gflops}
    shape = ", ".join(f"{s} {p} {v:.0f}" for (s, p), v in floors.items())
    md.append(f"\nMachine ({machine.threads} threads, load {load:.2f}): matmul {rates['fp32']:.0f} GFLOP/s fp32, "
              f"{rates['bf16']:.0f} bf16 (best square F.linear up to 2048^2); at the 35-slot step shape: {shape} GFLOP/s; copy "
              f"{machine.copy_gbps:.1f} GB/s; balance point {rates['fp32'] / machine.copy_gbps:.0f} (fp32) / "
              f"{rates['bf16'] / machine.copy_gbps:.0f} (bf16) FLOP/byte.")
    return "\n".join(md)
