"""The whole tabletop pipeline on embedded defaults: collect demos, train, evaluate.

    python scripts/pipeline.py [--out outputs/pipeline] [--tasks all] [--minutes 18] [--language-ablation] [--episodes-per-task 150]

Prints the success rate with its 95% interval and the report path. Re-running with the
same --out skips finished stages and resumes training. See vla/bench/pipeline.py. Bad input fails with one line and exit code 2 before any work (`--debug`: the
traceback; docs/errors.md).
"""

import argparse
import json
import os

import vla.envs  # noqa: F401  (sets MUJOCO_GL=egl unless set: the one place, before anything loads mujoco)
from vla import cli

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str]) -> None:
    from vla.bench.pipeline import PipelineConfig, run_pipeline

    d = PipelineConfig()
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=d.out)
    p.add_argument("--tasks", default=d.tasks, help="tabletop families: push,touch,reach,reach_slots or all")
    p.add_argument("--episodes-per-task", type=int, default=d.episodes_per_task)
    p.add_argument("--minutes", type=float, default=d.train_minutes,
                   help="training budget in minutes of updates, the learning rate annealing over it (0: --steps alone)")
    p.add_argument("--steps", type=int, default=d.steps, help="training steps (default: as many as the budget allows)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--eval-episodes", type=int, default=d.eval_episodes, help="per family")
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-anchors", action="store_true", help="skip the expert / random anchors")
    p.add_argument("--language-ablation", action="store_true",
                   help="also evaluate with each instruction swapped for another goal of the same scene")
    p.add_argument("train_args", nargs="*", help="extra lerobot-train overrides after --, e.g. -- --policy.d_model=128")
    a = p.parse_args(argv)
    cli.require_positive(a, "minutes", zero_ok=("minutes",))
    with cli.user_errors(ValueError):
        cfg = PipelineConfig(out=a.out, tasks=a.tasks, episodes_per_task=a.episodes_per_task, steps=a.steps,
                             train_minutes=a.minutes or None, batch_size=a.batch_size, eval_episodes=a.eval_episodes,
                             workers=a.workers, seed=a.seed, anchors=() if a.no_anchors else d.anchors,
                             language_ablation=a.language_ablation, train_args=tuple(a.train_args))
    summary = run_pipeline(cfg)
    print(json.dumps(summary, indent=2, default=str))
    low, high = summary["success_ci95"]
    for name, o in summary["anchors"].items():
        print(f"anchor {name}: {o['pc_success']:.1f}% (95% CI {o['success_ci95'][0]:.1f}-{o['success_ci95'][1]:.1f})")
    if "language_ablation" in summary:
        la = summary["language_ablation"]
        print(f"language ablation: {la['pc_success_swapped_instruction']:.1f}% on the swapped instruction, "
              f"{la['pc_success_original_goal']:.1f}% on the goal it replaced")
    probe = summary.get("grounding_probe")
    if probe:
        print(f"grounding probe: first chunk heads for the named target {probe['overall']['score']:.2f} "
              f"(chance {probe['overall']['chance']:.2f})")
    print(f"\nsuccess {summary['pc_success']:.1f}% (95% CI {low:.1f}-{high:.1f}) on unseen seeds; "
          f"report: {summary['report']}")


if __name__ == "__main__":
    cli.run(main)
