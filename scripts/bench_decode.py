"""Decode-speed benchmark: HAD / low_confidence / threshold / AR, with and without caches.

    python scripts/bench_decode.py --json outputs/bench_decode.json

Per chunk at batch 1 (vision + prefix + every denoising step): latency p50/p99, NFE,
tokens per forward, agreement with the same decoder uncached; tiny and small sizes;
AR on the same weights configured causal with its KV cache. A briefly trained tiny model
gives realistic confidences for threshold decoding. Rewrites the `## Decoding speed`
section of BENCHMARKS.md and the roofline block of docs/speed.md. See kernels/decode_bench.py.
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

from vla.bench_report import write_section
from vla.kernels import decode_bench as db
from vla.kernels.roofline import forward_costs, measure_machine, step_matmul_gflops

ROOF_BEGIN, ROOF_END = "<!-- roofline:begin (written by scripts/bench_decode.py) -->", "<!-- roofline:end -->"


def compile_settings(flag: str) -> tuple[bool, ...]:
    return {"off": (False,), "on": (True,), "both": (False, True)}[flag]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=sorted(db.SIZES))
    p.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    p.add_argument("--iters", type=int, default=60, help="timed chunks per setting (after 3 warm-up chunks)")
    p.add_argument("--small-iters", type=int, default=20, help="timed chunks per setting for sizes other than tiny")
    p.add_argument("--train-seconds", type=float, default=90.0, help="train tiny this long for the trained rows; 0 = skip")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (the CUDA path has not been measured here)")
    p.add_argument("--compile", nargs="?", const="on", default="off", choices=["off", "on", "both"],
                   help="LLaDAVLA.compile_for_inference (torch.compile of vision + backbone; CUDA: CUDA graphs); "
                        "both = eager rows, then the same models compiled")
    p.add_argument("--json", default="outputs/bench_decode.json")
    p.add_argument("--benchmarks-md", default="BENCHMARKS.md")
    p.add_argument("--speed-md", default="docs/speed.md")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    load = os.getloadavg()
    machine = measure_machine()
    peaks = {"fp32": machine.matmul_fp32_gflops, "bf16": machine.matmul_bf16_gflops}
    floor: dict[str, float] = {}  # size -> fp32 GFLOP/s at its step's matmul shape
    tok = db.make_tokenizer()
    obs = db.to_device(db.observations(tok), a.device)
    rows, roof, steps = [], {}, {}
    for size in a.sizes:
        model = db.build(size, tok).to(a.device)
        causal = db.build(size, tok, "causal").to(a.device)
        causal.load_state_dict(model.state_dict())
        roof[size] = (model.num_parameters(), forward_costs(model, causal, obs[0]))
        steps[size] = {prec: db.step_breakdown(model, obs[0], prec == "bf16") for prec in a.precisions}
        bb = model.cfg.backbone
        if a.device == "cpu":  # the floor column is a CPU roof; on CUDA it is left out
            floor[size] = step_matmul_gflops(db.CHUNK * db.DIM, bb.d_model, bb.mlp_hidden)
        eager: dict[str, list] = {}
        for compiled in compile_settings(a.compile):
            if compiled:
                model.compile_for_inference()
                causal.compile_for_inference()
            for prec in a.precisions:
                new = db.bench_model(size, prec, model, causal, obs, a.iters if size == "tiny" else a.small_iters,
                                     flops_from=eager.get(prec))
                eager.setdefault(prec, new)
                print(db.render_rows(new, peaks, floor or None), flush=True)
                rows += new
    trained = None
    if a.train_seconds > 0:
        model = db.build("tiny", tok)
        bf16 = "bf16" in a.precisions
        trained = db.train_briefly(model, tok, a.train_seconds, bf16)
        prec = "bf16" if bf16 else "fp32"
        model = model.to(a.device)
        eager = []
        for compiled in compile_settings(a.compile):
            if compiled:
                model.compile_for_inference()
            rows_t = db.bench_model("tiny (trained)", prec, model, None, obs, a.iters, flops_from=eager)
            eager = eager or rows_t
            print(db.render_rows(rows_t, peaks, floor or None), flush=True)
            rows += rows_t
    after = os.getloadavg()
    cmd = "python scripts/bench_decode.py " + " ".join(sys.argv[1:])
    dev = a.device if a.device == "cpu" else torch.cuda.get_device_name()
    header = (f"Written by `{cmd}` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, {os.cpu_count()} CPU cores, "
              f"{machine.threads} torch threads, device {dev}, compile {a.compile}; load average "
              f"{load[0]:.2f} before, {after[0]:.2f} after). Do not edit by hand; re-run the script. Batch 1, "
              f"H=5 x D=7 = 35 slots, K=32; latency = whole chunk (vision + prefix + all steps). Agreement = "
              f"fraction of tokens equal to the same decoder uncached (`ref` row) on 8 fixed observations. "
              f"Untrained rows: confidences are arbitrary, so threshold NFE there means nothing; "
              f"the trained rows are tiny after {trained['train_steps'] if trained else 0} training steps "
              f"(masked accuracy {trained['masked_acc'] if trained else 0:.2f}) on synthetic scenes. "
              f"Matmul peak here: {peaks['fp32']:.0f} GFLOP/s fp32, {peaks['bf16']:.0f} bf16 (2048^2); at each "
              f"size's 35-slot step shape (35 x d_model x mlp_hidden) fp32 "
              f"{', '.join(f'{k} {v:.0f}' for k, v in floor.items())} GFLOP/s, which the `floor ms` column "
              f"divides the chunk's FLOPs by (the matmuls alone at that rate); "
              f"copy bandwidth {machine.copy_gbps:.1f} GB/s. CUDA path (CUDA graphs via --compile --device cuda): "
              f"not measured (no GPU here).")
    write_section(a.benchmarks_md, "## Decoding speed",
                  f"## Decoding speed\n\n{header}\n\n{db.render_rows(rows, peaks, floor or None)}\n")
    roof_md = ["| size | params | forward | tokens | keys | MFLOP | MB moved | FLOP/byte |", "|---|---|---|---|---|---|---|---|"]
    for size, (n, costs) in roof.items():
        roof_md += [f"| {size} | {n / 1e6:.1f}M | {c.name} | {c.tokens} | {c.keys} | {c.flops / 1e6:.1f} | "
                    f"{c.bytes / 1e6:.2f} | {c.intensity:.1f} |" for c in costs]
    balance = {k: v / machine.copy_gbps for k, v in peaks.items()}
    roof_md += ["", "| size | precision | cached forward ms | propose ms | HAD selection ms |", "|---|---|---|---|---|"]
    roof_md += [f"| {size} | {prec} | {b['forward_ms']:.2f} | {b['propose_ms']:.3f} | {b['had_select_ms']:.3f} |"
                for size, per in steps.items() for prec, b in per.items()]
    roof_md.append(f"\nMachine ({machine.threads} threads, load {load[0]:.2f}): matmul {peaks['fp32']:.0f} GFLOP/s fp32, "
                   f"{peaks['bf16']:.0f} bf16 (2048^2); fp32 at the 35-slot step shape "
                   f"{', '.join(f'{k} {v:.0f}' for k, v in floor.items())}; copy {machine.copy_gbps:.1f} GB/s; balance point "
                   f"{balance['fp32']:.0f} (fp32) / {balance['bf16']:.0f} (bf16) FLOP/byte.")
    speed = Path(a.speed_md)
    s = speed.read_text() if speed.exists() else f"# Decoding speed\n\n{ROOF_BEGIN}\n{ROOF_END}\n"
    head, _, rest = s.partition(ROOF_BEGIN)
    speed.write_text(head + ROOF_BEGIN + "\n" + "\n".join(roof_md) + "\n" + ROOF_END + rest.partition(ROOF_END)[2])
    out = {"command": cmd, "load_before": load, "load_after": after, "machine": asdict(machine), "step_matmul_gflops": floor, "trained": trained,
           "roofline": {s_: [asdict(c) for c in cs] for s_, (_, cs) in roof.items()}, "step_breakdown": steps, "rows": [asdict(r) for r in rows]}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2))
    print(f"wrote {a.benchmarks_md}, {a.speed_md}, {a.json}")


if __name__ == "__main__":
    main()
