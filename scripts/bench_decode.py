"""Decode-speed benchmark: HAD / low_confidence / threshold / AR, with and without caches.

    python scripts/bench_decode.py --threads 2 --compile both --json outputs/bench_decode.json

Per chunk at batch 1 (vision + prefix + every denoising step): latency p50/p99, NFE,
tokens per forward, agreement with the reference decode (fp32, eager, uncached); tiny and
small sizes, fp32 and bf16 weights, eager and (--compile) torch.compile'd; AR on the same
weights configured causal with its KV cache. A briefly trained tiny model gives realistic
confidences for threshold decoding. Rewrites the `## Decoding speed` section of
BENCHMARKS.md and the roofline block of docs/speed.md. See bench/decode_bench.py.
"""

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from vla.bench import decode_bench as db
from vla.bench.report import write_section
from vla.bench.roofline import forward_costs, measure_machine, peaks_by_precision, step_matmul_gflops
from vla.device import emulated_bf16_warning

ROOF_BEGIN, ROOF_END = "<!-- roofline:begin (written by scripts/bench_decode.py) -->", "<!-- roofline:end -->"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=sorted(db.SIZES))
    p.add_argument("--precisions", nargs="+", default=list(db.PRECISIONS), choices=db.PRECISIONS,
                   help="weights as stored: fp32, or bf16 (LLaDAVLA.cast_for_inference)")
    p.add_argument("--iters", type=int, default=60, help="timed chunks per setting (after 3 warm-up chunks)")
    p.add_argument("--small-iters", type=int, default=20, help="timed chunks per setting for sizes other than tiny")
    p.add_argument("--train-seconds", type=float, default=90.0, help="train tiny this long for the trained rows; 0 = skip")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (the CUDA path has not been measured here)")
    p.add_argument("--compile", nargs="?", const="on", default="off", choices=["off", "on", "both"],
                   help="LLaDAVLA.compile_for_inference (CPU: inductor with frozen weights; CUDA: CUDA graphs); "
                        "both = eager rows, then compiled rows (cached modes only)")
    p.add_argument("--json", default="outputs/bench_decode.json")
    p.add_argument("--benchmarks-md", default="BENCHMARKS.md")
    p.add_argument("--speed-md", default="docs/speed.md")
    p.add_argument("--render-only", action="store_true", help="re-render the tables from --json, measuring nothing")
    a = p.parse_args()
    if a.render_only:
        return write_reports(json.loads(Path(a.json).read_text()), a.benchmarks_md, a.speed_md)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    load = os.getloadavg()
    if "bf16" in a.precisions and a.device == "cpu" and (warning := emulated_bf16_warning("bf16 rows")):
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    machine = measure_machine()
    compiled_settings = {"off": (False,), "on": (True,), "both": (False, True)}[a.compile]
    floor: dict[tuple[str, str], float] = {}  # (size, precision) -> GFLOP/s at its step's matmul shape
    tok = db.make_tokenizer()
    obs = db.to_device(db.observations(tok), a.device)
    rows, roof, steps = [], {}, {}

    def bench(label: str, size: str, model, causal, iters: int) -> None:
        refs, flops = db.reference(model, causal, obs)
        for prec in a.precisions:
            for compiled in compiled_settings:
                m, c = db.prepare(model, prec, compiled), causal and db.prepare(causal, prec, compiled)
                modes = ("prefix",) if compiled else db.CACHE_MODES  # compiled: the modes users run
                new = db.bench_model(label, prec, m, c, obs, iters, refs, flops, cache_modes=modes)
                if label == size:  # where a chunk's time goes, in this setting
                    steps[size, prec, compiled] = db.step_breakdown(m, obs[0])
                print(db.render_rows(new, peaks_by_precision(machine, floor), floor or None), flush=True)
                rows.extend(new)

    for size in a.sizes:
        model = db.build(size, tok).to(a.device)
        causal = db.build(size, tok, "causal").to(a.device)
        causal.load_state_dict(model.state_dict())
        bb = model.cfg.backbone
        for prec in a.precisions:
            roof[size, prec] = (model.num_parameters(),
                                forward_costs(db.prepare(model, prec, False), db.prepare(causal, prec, False), obs[0]))
            if a.device == "cpu":  # the floor column is a CPU roof; on CUDA it is left out
                floor[size, prec] = step_matmul_gflops(db.CHUNK * db.DIM, bb.d_model, bb.mlp_hidden, DTYPES[prec])
        bench(size, size, model, causal, a.iters if size == "tiny" else a.small_iters)
    trained = None
    if a.train_seconds > 0:
        from vla.device import use_bf16_autocast

        model = db.build("tiny", tok)
        trained = db.train_briefly(model, tok, a.train_seconds, use_bf16_autocast(torch.device("cpu")))
        bench("tiny (trained)", "tiny", model.to(a.device), None, a.iters)
    after = os.getloadavg()
    out = {"command": "python scripts/bench_decode.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d"),
           "platform": f"{platform.machine()}, {os.cpu_count()} CPU cores",
           "device": a.device if a.device == "cpu" else torch.cuda.get_device_name(), "compile": a.compile,
           "load_before": load, "load_after": after, "machine": asdict(machine),
           "step_matmul_gflops": {f"{s_} {p_}": v for (s_, p_), v in floor.items()}, "trained": trained,
           "params": {s_: n for (s_, _), (n, _) in roof.items()},
           "roofline": {f"{s_} {p_}": [asdict(c) for c in cs] for (s_, p_), (_, cs) in roof.items()},
           "step_breakdown": {f"{s_} {p_} {'compiled' if c_ else 'eager'}": b for (s_, p_, c_), b in steps.items()},
           "rows": [asdict(r) for r in rows]}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2))
    write_reports(out, a.benchmarks_md, a.speed_md)
    print(f"wrote {a.benchmarks_md}, {a.speed_md}, {a.json}")


def write_reports(out: dict, benchmarks_md: str, speed_md: str) -> None:
    """BENCHMARKS.md's section and docs/speed.md's roofline block, from the JSON figures alone."""
    section, roof_md = db.render_report(out)
    write_section(benchmarks_md, "## Decoding speed", section)
    speed = Path(speed_md)
    s = speed.read_text() if speed.exists() else f"# Decoding speed\n\n{ROOF_BEGIN}\n{ROOF_END}\n"
    head, _, rest = s.partition(ROOF_BEGIN)
    speed.write_text(head + ROOF_BEGIN + "\n" + roof_md + "\n" + ROOF_END + rest.partition(ROOF_END)[2])
    print(section)


if __name__ == "__main__":
    main()
