"""Training throughput of the tiny presets on this machine -> BENCHMARKS.md `## Training speed`.

    python scripts/bench_train.py [--steps 30] [--json outputs/bench/train.json]

Collects small demo sets if missing (tabletop 20 per family; Meta-World MT10, 2 per task, at
96 px), then measures each variant (fp32 / bf16 autocast x frame cache off / on) in its own
process with vla.bench.train_bench: samples/s including data loading, and peak RSS.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from vla.bench.report import machine_line, write_section

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Training speed"
SETS = {
    "tabletop_tiny_cpu": ("tabletop", "all", 20, ["--height", "96", "--width", "96"]),
    "metaworld_mt10_tiny_cpu": ("metaworld", "MT10", 2, ["--height", "96", "--width", "96"]),
}


def ensure_dataset(preset: str, out: Path) -> Path:
    suite, tasks, n, extra = SETS[preset]
    root = out / f"bench_{preset}"
    if not (root / "meta" / "info.json").exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "collect_demos.py"), "--suite", suite, "--tasks", tasks,
                        "--episodes-per-task", str(n), "--out", str(root), "--no-progress", *extra], check=True)
    return root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--data", default="outputs/datasets")
    p.add_argument("--json", default="outputs/bench/train.json")
    p.add_argument("--benchmarks", default=str(ROOT / "BENCHMARKS.md"))
    a = p.parse_args()
    where = machine_line()
    rows = []
    for preset in SETS:
        root = ensure_dataset(preset, Path(a.data))
        for bf16 in (False, True):
            for cache in (False, True):
                cmd = [sys.executable, "-m", "vla.bench.train_bench", "--dataset", str(root), "--preset",
                       str(ROOT / "configs" / f"{preset}.json"), "--steps", str(a.steps),
                       "--batch-size", str(a.batch_size)] + (["--bf16"] if bf16 else []) + (["--cache"] if cache else [])
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                row = {"preset": preset, **json.loads(out.strip().splitlines()[-1])}
                rows.append(row)
                print(json.dumps(row), flush=True)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"machine": where, "rows": rows}, indent=2))
    lines = [HEADING, "",
             f"Written by `python scripts/bench_train.py --steps {a.steps} --batch-size {a.batch_size}` on "
             f"{time.strftime('%Y-%m-%d')} ({where}); raw figures in `{a.json}`. CPU only; no GPU figures.",
             "lerobot-train's loop (shuffled DataLoader, workers 0 -> preprocessor -> forward -> backward -> "
             "AdamW), timed after warm-up: samples/s include data loading and video decoding. "
             "Target for tabletop_tiny_cpu: >= 300 samples/s.", "",
             "| preset | params | precision | frame cache | samples/s | data share | peak RSS |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['parameters'] / 1e6:.1f}M | {'bf16' if r['bf16'] else 'fp32'} | "
                     f"{'on' if r['frame_cache'] else 'off'} | {r['samples_per_s']:.0f} | "
                     f"{r['data_fraction']:.0%} | {r['peak_rss_mb']:.0f} MB |")
    write_section(a.benchmarks, HEADING, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
