"""Training throughput of the tiny presets on this machine -> BENCHMARKS.md `## Training speed`.

    python scripts/bench_train.py [--steps 30] [--json outputs/bench/train.json]

Collects small demo sets if missing (tabletop 20 per family; Meta-World MT10, 2 per task, at
96 px), then measures each variant (fp32 / bf16 autocast x frame cache off / on; on tabletop
also the previous recipe, every lever of vla/bench/recipe.py off) in its own process with
vla.bench.train_bench: samples/s including data loading, masked targets/s (action-token slots
scored by the loss per second: what a masked-diffusion policy learns from) and peak RSS.
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
        variants = [(r, bf16, cache) for r in ("recipe", "previous") for bf16 in (False, True) for cache in (False, True)
                    if r == "recipe" or (preset.startswith("tabletop") and cache)]
        for recipe, bf16, cache in variants:
            cmd = [sys.executable, "-m", "vla.bench.train_bench", "--dataset", str(root), "--preset",
                   str(ROOT / "configs" / f"{preset}.json"), "--steps", str(a.steps), "--batch-size", str(a.batch_size),
                   *(["--bf16"] if bf16 else []), *(["--cache"] if cache else []),
                   *(["--previous"] if recipe == "previous" else [])]
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
             "AdamW), timed after warm-up: samples/s include data loading and image decoding (tabletop demos are "
             "PNG, Meta-World's h264 video: the frame cache matters for video only). Masked targets/s: action-token "
             "slots scored by the loss per second (slots x masked share x maskings per sample). Recipe: the "
             "preset; previous: every lever of the recipe ablation off (one masking, 96 px, no FiLM, ...). "
             "Target for tabletop_tiny_cpu: >= 300 samples/s. bf16 rows on a CPU without native bf16 (AVX2 "
             "only) show what training would cost if forced: the recipe turns it off there.", "",
             "| preset | recipe | params | precision | frame cache | samples/s | masked targets/s | data share | "
             "peak RSS |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['recipe']} | {r['parameters'] / 1e6:.1f}M | "
                     f"{'bf16' if r['bf16'] else 'fp32'} | {'on' if r['frame_cache'] else 'off'} | "
                     f"{r['samples_per_s']:.0f} | {r['masked_targets_per_s']:.0f} | {r['data_fraction']:.0%} | "
                     f"{r['peak_rss_mb']:.0f} MB |")
    write_section(a.benchmarks, HEADING, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
