#!/usr/bin/env python
"""Wall time of the README's main command, into BENCHMARKS.md ("Quickstart wall time").

    python scripts/bench_quickstart.py [--out outputs/bench/quickstart] [--benchmarks BENCHMARKS.md]

Runs `bash scripts/quickstart.sh --out OUT` exactly as a user would (install check included,
the venv already cached), from an empty OUT so no stage is skipped, times the whole command
and reads the per-stage times the pipeline wrote (OUT/timings.json). Target: at most 30
minutes on 2 CPU cores. Raw figures go to OUT/bench_quickstart.json.
"""

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Quickstart wall time"
TARGET_MIN = 30.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/bench/quickstart", help="pipeline output folder (emptied first)")
    p.add_argument("--benchmarks", default="BENCHMARKS.md", help="file whose section is rewritten")
    a = p.parse_args()
    from vla.bench.report import machine_line, write_section

    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    machine = machine_line()
    t = time.time()
    subprocess.run(["bash", str(ROOT / "scripts" / "quickstart.sh"), "--out", str(out)], check=True)
    total = time.time() - t
    stages = json.loads((out / "timings.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "pipeline_config.json").read_text())
    raw = {"total_s": total, **stages, "pc_success": summary["pc_success"], "success_ci95": summary["success_ci95"],
           "anchors": summary["anchors"], "config": config, "machine": machine}
    (out / "bench_quickstart.json").write_text(json.dumps(raw, indent=2))

    low, high = summary["success_ci95"]
    anchors = ", ".join(f"{k} {v['pc_success']:.1f}%" for k, v in summary["anchors"].items())
    verdict = "within" if total / 60 <= TARGET_MIN else "over"
    section = (
        f"{SECTION}\n\n"
        f"`python scripts/bench_quickstart.py` on {time.strftime('%Y-%m-%d')} (CPU here: {machine}); raw figures in "
        f"`{out / 'bench_quickstart.json'}`. It runs the README's first Quickstart line, `bash scripts/quickstart.sh`, "
        f"on its embedded defaults ({config['episodes_per_task']} demos per family of `{config['tasks']}`, "
        f"{config['steps']} training steps of `{config['preset']}`, {config['eval_episodes']} evaluation episodes "
        f"per family with the anchors), from an empty output folder, the environment already installed.\n\n"
        f"| stage | minutes |\n|---|---|\n"
        f"| collect demos | {stages['collect_s'] / 60:.1f} |\n"
        f"| train | {stages['train_s'] / 60:.1f} |\n"
        f"| evaluate (policy + anchors) | {stages['eval_s'] / 60:.1f} |\n"
        f"| **whole command** | **{total / 60:.1f}** ({verdict} the {TARGET_MIN:.0f}-minute target) |\n\n"
        f"Success it printed: {summary['pc_success']:.1f}% [{low:.1f}, {high:.1f}] on unseen seeds ({anchors} "
        f"on the same seeds).\n"
    )
    write_section(a.benchmarks, SECTION, section)
    print(section)


if __name__ == "__main__":
    main()
