"""The whole tabletop pipeline on embedded defaults: collect demos, train, evaluate.

    python scripts/pipeline.py [--out outputs/pipeline] [--steps 3000] [--episodes-per-task 100]

Prints the success rate with its 95% interval and the report path. Re-running with the
same --out skips finished stages and resumes training. See vla/envs/pipeline.py.
"""

import argparse
import json
import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    from vla.envs.pipeline import PipelineConfig, run_pipeline

    d = PipelineConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=d.out)
    p.add_argument("--tasks", default=d.tasks, help="tabletop families: push,touch,reach or all")
    p.add_argument("--episodes-per-task", type=int, default=d.episodes_per_task)
    p.add_argument("--steps", type=int, default=d.steps, help="training steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--eval-episodes", type=int, default=d.eval_episodes, help="per family")
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--seed", type=int, default=d.seed)
    a = p.parse_args()
    summary = run_pipeline(PipelineConfig(out=a.out, tasks=a.tasks, episodes_per_task=a.episodes_per_task,
                                          steps=a.steps, batch_size=a.batch_size, eval_episodes=a.eval_episodes,
                                          workers=a.workers, seed=a.seed))
    print(json.dumps(summary, indent=2, default=str))
    low, high = summary["success_ci95"]
    print(f"\nsuccess {summary['pc_success']:.1f}% (95% CI {low:.1f}-{high:.1f}) on unseen seeds; "
          f"report: {summary['report']}")


if __name__ == "__main__":
    main()
