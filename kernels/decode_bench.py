"""Decode-speed measurement: per-chunk latency, NFE and agreement for every decoder, cached or not.

`scripts/bench_decode.py` is the entry point; this module owns the measurement so the
script stays a thin CLI. One chunk = vision + prefix + all denoising steps at batch 1
(`LLaDAVLA.sample_actions`). Diffusion decoders run on the model in `prefix` attention;
AR runs on the same weights configured `causal` (decoder `ar`, one slot per forward),
uncached, with the prefix cache only, and with its incremental KV cache.

Agreement is the fraction of tokens identical to the same decoder run uncached on the
same observations (and, for the fused LSC epilogue, to the logits path).
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass

import torch

from vla.decoders import DecodeConfig, DecodeResult, decode
from vla.model import LLaDAVLA, Observation
from vla.presets import make_config
from vla.synthetic import COLORS, TEMPLATES, make_scenes
from vla.text_tokenizer import TextTokenizer

CHUNK, DIM = 5, 7  # H, D: 35 action slots as in the paper
SIZES: dict[str, dict] = {  # overrides of the `tiny` preset
    "tiny": {},
    "small": {"backbone": {"d_model": 512, "n_layers": 8, "n_heads": 8, "mlp_hidden": 1408}},
}
DECODERS: dict[str, DecodeConfig] = {
    "had": DecodeConfig("had", steps=10),
    "had_5": DecodeConfig("had", steps=5),  # one action per forward: NFE 5 caps the ratio to AR's 35 at 7x
    "low_confidence": DecodeConfig("low_confidence", steps=10),
    "threshold": DecodeConfig("threshold", steps=None, threshold=0.9),  # budget L: the threshold sets the pace
}
AR = DecodeConfig("ar", steps=None)
CACHE_MODES = ("none", "prefix")  # AR adds "kv": prefix + committed slots


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
    agreement: float | None  # vs the same decoder uncached; None for the uncached row itself
    flops_per_chunk: float
    compiled: bool = False  # LLaDAVLA.compile_for_inference (torch.compile of vision + backbone)


def make_tokenizer() -> TextTokenizer:
    texts = [t.format(c) for t in TEMPLATES for c in COLORS]
    return TextTokenizer.train(texts, vocab_size=128)


def build(size: str, tokenizer: TextTokenizer, attention: str = "prefix") -> LLaDAVLA:
    over = copy.deepcopy(SIZES[size])
    if attention == "causal":
        over.update(attention="causal", decoder={"name": "ar", "steps": None})
    cfg = make_config("tiny", tokenizer, chunk_size=CHUNK, action_dim=DIM, **over)
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


def autocast(bf16: bool, device: str = "cpu"):
    return torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def to_device(obs: list[Observation], device: str) -> list[Observation]:
    return [Observation({k: v.to(device) for k, v in o.images.items()}, o.text_ids.to(device), o.text_mask.to(device))
            for o in obs]


def run_chunk(model: LLaDAVLA, obs: Observation, dec: DecodeConfig, cache: str) -> DecodeResult:
    """One chunk. cache: 'none' (full pass per step), 'prefix' (prefix keys/values reused),
    'kv' (causal model: prefix + committed slots, `make_predictor`'s incremental AR cache)."""
    if cache == "prefix" and model.cfg.attention == "causal":
        # the prefix-only cache for AR: ask make_predictor for a schedule it cannot grow a cache for
        predictor = model.make_predictor(obs, True, DecodeConfig("ar", steps=None, remask=0.5))
        return decode(predictor, obs.batch_size, model.cfg.chunk_size, model.cfg.action_dim, dec)
    return model.sample_actions(obs, dec, use_cache=cache != "none")[1]


def chunk_flops(model: LLaDAVLA, obs: Observation, dec: DecodeConfig, cache: str, bf16: bool) -> float:
    """FLOPs of one chunk, counted by torch's FlopCounterMode (matmuls and attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode(), autocast(bf16, obs.text_ids.device.type):
        run_chunk(model, obs, dec, cache)
    return float(counter.get_total_flops())


def time_chunks(model: LLaDAVLA, obs: list[Observation], dec: DecodeConfig, cache: str, bf16: bool,
                iters: int, warmup: int = 3) -> tuple[list[float], list[torch.Tensor], float]:
    """-> per-chunk latencies (ms), the bins decoded for each observation, mean NFE."""
    lat, bins, nfe = [], [], []
    device = obs[0].text_ids.device.type
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.inference_mode(), autocast(bf16, device):
        for i in range(warmup + iters):
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


def bench_model(size: str, precision: str, model: LLaDAVLA, causal: LLaDAVLA | None, obs: list[Observation],
                iters: int, decoders: dict[str, DecodeConfig] | None = None, flops_from: list[Row] | None = None) -> list[Row]:
    """Every decoder x cache setting on `model`, and AR on `causal` (the same weights).

    `flops_from`: rows of the same models uncompiled, whose FLOP counts are reused (the
    counter runs eagerly; a compiled model does the same FLOPs).
    """
    bf16 = precision == "bf16"
    runs = [(name, dec, model, CACHE_MODES) for name, dec in (decoders or DECODERS).items()]
    if causal is not None:
        runs.append(("ar", AR, causal, (*CACHE_MODES, "kv")))
    known = {(r.decoder, r.cache): r.flops_per_chunk for r in flops_from or []}
    rows = []
    for name, dec, m, modes in runs:
        ref_bins = None
        for cache in modes:
            lat, bins, nfe = time_chunks(m, obs, dec, cache, bf16, iters)
            agreement = None if ref_bins is None else _agree(bins, ref_bins)
            ref_bins = bins if ref_bins is None else ref_bins
            flops = known.get((name, cache)) or chunk_flops(m, obs[0], dec, cache, bf16)
            rows.append(Row(size, precision, name, cache, _pct(lat, 0.5), _pct(lat, 0.99), nfe, CHUNK * DIM / nfe,
                            agreement, flops, m.compile_mode is not None))
    return rows


def render_rows(rows: list[Row], peaks: dict[str, float], floors: dict[str, float] | None = None) -> str:
    """Markdown table of rows; `peaks` maps precision -> matmul GFLOP/s for the % of peak column.

    floors: size -> fp32 matmul rate at that size's 35-slot step shape
    (`roofline.step_matmul_gflops`); the `floor ms` column is the chunk's FLOPs at that
    rate, the latency if nothing but matmuls ran. A size label's first word is the key.
    """
    floor = floors is not None
    out = ["| size | precision | compiled | decoder | cache | p50 ms | p99 ms | NFE | tokens/forward | agreement | "
           "GFLOP/chunk | % of matmul peak |" + (" floor ms |" if floor else ""),
           "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if floor else "")]
    for r in rows:
        agree = "ref" if r.agreement is None else f"{r.agreement:.3f}"
        frac = r.flops_per_chunk / (r.p50_ms / 1e3) / (peaks[r.precision] * 1e9)
        line = (f"| {r.size} | {r.precision} | {'yes' if r.compiled else 'no'} | {r.decoder} | {r.cache} | "
                f"{r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.nfe:.1f} | {r.tokens_per_forward:.1f} | {agree} | "
                f"{r.flops_per_chunk / 1e9:.2f} | {frac:.1%} |")
        out.append(line + (f" {r.flops_per_chunk / (floors[r.size.split()[0]] * 1e9) * 1e3:.1f} |" if floor else ""))
    return "\n".join(out)


def step_breakdown(model: LLaDAVLA, obs: Observation, bf16: bool, reps: int = 200) -> dict[str, float]:
    """Median ms per denoising step of: the cached forward, `propose`, and HAD's selection rule.

    Decides whether the HAD selection step deserves a kernel (DESIGN: only if it matters).
    """
    from vla.decoders import _had_key, propose, select_lowest

    def med(fn) -> float:
        for _ in range(5):
            fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
        return _pct(ts, 0.5)

    with torch.inference_mode(), autocast(bf16, obs.text_ids.device.type):
        predictor = model.make_predictor(obs)
        bins = torch.full((1, model.cfg.action_len), -1, device=obs.text_ids.device)
        logits = predictor(bins)
        masked, count = bins == -1, torch.tensor([4], device=bins.device)
        _, conf, _ = propose(logits, 0.0, None, need_probs=False)
        return {
            "forward_ms": med(lambda: predictor(bins)),
            "propose_ms": med(lambda: propose(logits, 0.0, None, need_probs=False)),
            "had_select_ms": med(lambda: select_lowest(_had_key(masked, conf, CHUNK, DIM), count)),
        }
