"""The training-recipe ablation on the tabletop suite -> BENCHMARKS.md.

    python scripts/ablate_recipe.py [--minutes 10] [--variants recipe,no_film,previous] [--out outputs/results/recipe]

Every variant (the recipe, the recipe without one lever `no_<lever>`, the previous recipe, and
opt-in rows `with_pretrained_cnn` (a candidate change) and `with_privileged_target` (a
diagnostic: the named target in the state)) trains for the same wall-clock budget on one demo
set, then is probed and evaluated on the same unseen seeds. Re-running with the same --out re-uses finished variants. See vla/bench/recipe.py. Bad input fails with one line and exit code 2 before any work (`--debug`: the
traceback; docs/errors.md).
"""

import argparse
import json
import os
import shlex
import sys

import vla.envs  # noqa: F401  (sets MUJOCO_GL=egl unless set: the one place, before anything loads mujoco)
from vla import cli

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str]) -> None:
    from vla.bench.recipe import SECTION, RecipeAblationConfig, ablation_section, run_ablation
    from vla.bench.report import machine_line, write_section

    d = RecipeAblationConfig()
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=d.out)
    p.add_argument("--preset", default=d.preset)
    p.add_argument("--minutes", type=float, default=d.minutes, help="training budget of every variant")
    p.add_argument("--variants", default=",".join(d.variants))
    p.add_argument("--episodes-per-task", type=int, default=d.episodes_per_task)
    p.add_argument("--eval-episodes", type=int, default=d.eval_episodes)
    p.add_argument("--probe-scenes", type=int, default=d.probe_scenes)
    p.add_argument("--benchmarks", default=None, help="rewrite this file's ablation section (e.g. BENCHMARKS.md)")
    a = p.parse_args(argv)
    if a.benchmarks:
        cli.writable_file(a.benchmarks, "--benchmarks")
    with cli.user_errors(ValueError):
        cfg = RecipeAblationConfig(out=a.out, preset=a.preset, minutes=a.minutes,
                                   variants=tuple(v.strip() for v in a.variants.split(",") if v.strip()),
                                   episodes_per_task=a.episodes_per_task, eval_episodes=a.eval_episodes,
                                   probe_scenes=a.probe_scenes)
    machine = machine_line()
    result = run_ablation(cfg)
    section = ablation_section(result, "python scripts/ablate_recipe.py " + shlex.join(sys.argv[1:]), machine)
    if a.benchmarks:
        write_section(a.benchmarks, SECTION, section)
    print(section)
    print(json.dumps({k: v["overall"] for k, v in result["variants"].items()}, indent=2))


if __name__ == "__main__":
    cli.run(main)
