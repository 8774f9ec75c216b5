#!/usr/bin/env python
"""First tabletop results into BENCHMARKS.md: pipeline, anchors, language and decoder ablations.

    python scripts/results_tabletop.py [--out outputs/results/tabletop] [--minutes 60] [--benchmarks BENCHMARKS.md]
    python scripts/results_tabletop.py --tasks reach_fixed --preset configs/tabletop_micro_cpu.json --minutes 0 \
        --steps 2000 --episodes-per-task 150 --eval-episodes 40 --no-decoder-ablation \
        --out outputs/results/reach_fixed --section "## Results: language conditioning alone (reach_fixed)"

Runs the README pipeline (collect -> train the tiny preset for a wall-clock budget -> probe
and evaluate with the expert, language-blind and random anchors), the language ablation and
the decoder ablation on the same checkpoint and seeds, then rewrites the "Results: tabletop"
section of BENCHMARKS.md. Re-running with the
same --out skips finished stages. See vla/bench/results.py. Bad input fails with one line and exit code 2 before any work (`--debug`: the
traceback; docs/errors.md).
"""

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import vla.envs  # noqa: F401  (sets MUJOCO_GL=egl unless set: the one place, before anything loads mujoco)
from vla import cli

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str]) -> None:
    from vla.bench.pipeline import PipelineConfig
    from vla.bench.report import machine_line, write_section
    from vla.bench.results import SECTION, results_section, tabletop_results

    d = PipelineConfig()
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/results/tabletop")
    p.add_argument("--tasks", default=d.tasks)
    p.add_argument("--episodes-per-task", type=int, default=d.episodes_per_task)
    p.add_argument("--minutes", type=float, default=60.0, help="training budget (0: --steps alone)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: as many as the budget allows)")
    p.add_argument("--eval-episodes", type=int, default=30)
    p.add_argument("--preset", default=d.preset, help="policy config (JSON) to train")
    p.add_argument("--section", default=SECTION, help="BENCHMARKS.md section heading to (re)write")
    p.add_argument("--no-decoder-ablation", action="store_true")
    p.add_argument("--benchmarks", default="BENCHMARKS.md", help="file whose results section is rewritten")
    a = p.parse_args(argv)
    cli.require_positive(a, "minutes", zero_ok=("minutes",))
    cli.writable_file(a.benchmarks, "--benchmarks")
    with cli.user_errors(ValueError):
        cfg = PipelineConfig(out=a.out, tasks=a.tasks, episodes_per_task=a.episodes_per_task, steps=a.steps,
                             train_minutes=a.minutes or None, eval_episodes=a.eval_episodes, preset=a.preset,
                             language_ablation=True)
    machine_file = Path(a.out) / "machine.txt"  # where the evaluation ran; kept while its results are reused
    machine = machine_line()
    r = tabletop_results(cfg, decoder_ablation=not a.no_decoder_ablation)
    if r["summary"].get("reused") and machine_file.is_file():
        machine = machine_file.read_text().strip()
    machine_file.write_text(machine + "\n")
    command = "python scripts/results_tabletop.py " + shlex.join(sys.argv[1:])
    section = results_section(r["summary"], r["main"], r["swap"], r["decoders"], command.strip(), machine,
                              heading=a.section)
    write_section(a.benchmarks, a.section, section)
    print(section)
    print(json.dumps(r["summary"], indent=2, default=str))


if __name__ == "__main__":
    cli.run(main)
