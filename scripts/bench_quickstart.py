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


def render(raw: dict) -> str:
    """The BENCHMARKS section from the raw figures (`bench_quickstart.json`)."""
    config, total = raw["config"], raw["total_s"]
    budget = " and ".join(x for x in (f"a budget of {config['train_minutes']:g} minutes" if config.get("train_minutes") else "",
                                      f"{config['steps']} steps" if config.get("steps") else "") if x)
    trained = f", {raw['train_steps']} steps of batch {config['batch_size']} in it" if raw.get("train_steps") else ""
    low, high = raw["success_ci95"]
    anchors = ", ".join(f"{k} {v['pc_success']:.1f}%" for k, v in raw["anchors"].items())
    probe = raw.get("grounding_probe")
    probe_line = (f" Grounding probe (first chunk heads for the named target): {probe['overall']['score']:.2f}, "
                  f"chance {probe['overall']['chance']:.2f}." if probe else "")
    verdict = "within" if total / 60 <= TARGET_MIN else "over"
    return (
        f"{SECTION}\n\n"
        f"`python scripts/bench_quickstart.py` on {raw['date']} (CPU here: {raw['machine']}); raw figures in "
        f"`{raw['out']}/bench_quickstart.json`. It runs the README's first Quickstart line, `bash scripts/quickstart.sh`, "
        f"on its embedded defaults ({config['episodes_per_task']} demos per family of `{config['tasks']}`, "
        f"`{config['preset']}` trained for {budget}{trained}, {config['eval_episodes']} evaluation episodes "
        f"per family with the anchors), from an empty output folder, the environment already installed.\n\n"
        f"| stage | minutes |\n|---|---|\n"
        f"| collect demos | {raw['collect_s'] / 60:.1f} |\n"
        f"| train | {raw['train_s'] / 60:.1f} |\n"
        f"| evaluate (policy + anchors) | {raw['eval_s'] / 60:.1f} |\n"
        f"| **whole command** | **{total / 60:.1f}** ({verdict} the {TARGET_MIN:.0f}-minute target) |\n\n"
        f"Success it printed: {raw['pc_success']:.1f}% [{low:.1f}, {high:.1f}] on unseen seeds ({anchors} "
        f"on the same seeds).{probe_line}\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/bench/quickstart", help="pipeline output folder (emptied first)")
    p.add_argument("--benchmarks", default="BENCHMARKS.md", help="file whose section is rewritten")
    p.add_argument("--render-only", action="store_true", help="re-render from OUT/bench_quickstart.json, run nothing")
    a = p.parse_args()
    from vla.bench.report import machine_line, write_section

    out = Path(a.out)
    if a.render_only:
        raw = json.loads((out / "bench_quickstart.json").read_text())
    else:
        if out.exists():
            shutil.rmtree(out)
        machine = machine_line()
        t = time.time()
        subprocess.run(["bash", str(ROOT / "scripts" / "quickstart.sh"), "--out", str(out)], check=True)
        total = time.time() - t
        stages = json.loads((out / "timings.json").read_text())
        summary = json.loads((out / "summary.json").read_text())
        config = json.loads((out / "pipeline_config.json").read_text())
        raw = {"total_s": total, **stages, **{k: summary.get(k) for k in ("pc_success", "success_ci95", "anchors",
                                                                          "train_steps", "grounding_probe")},
               "config": config, "machine": machine, "date": time.strftime("%Y-%m-%d"), "out": str(out)}
        (out / "bench_quickstart.json").write_text(json.dumps(raw, indent=2))
    section = render(raw)
    write_section(a.benchmarks, SECTION, section)
    print(section)


if __name__ == "__main__":
    main()
