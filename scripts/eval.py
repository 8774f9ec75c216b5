#!/usr/bin/env python
"""Evaluate a policy in simulation: success with 95% intervals, latency, report, plot, videos.

    python scripts/eval.py --policy.path=outputs/train/x/checkpoints/last/pretrained_model \
        --suite tabletop --tasks all --n-episodes 50 --out outputs/eval/x
    python scripts/eval.py --policy expert --suite metaworld --tasks MT10 --n-episodes 10 --out outputs/eval/mt10_expert
    python scripts/eval.py --policy.path=DIR --suite tabletop --tasks all --swap-instructions --out outputs/eval/swap
    python scripts/eval.py --policy.path=DIR --suite metaworld --tasks MT10 --instructions phrasings.json --out outputs/eval/unseen

Writes <out>/eval_info.json (LeRobot's schema + extras), report.md (summary, per-task and
per-episode tables: seed, instruction, length, outcome and why it ended; links relative to
<out>), success.png and up to --max-videos episode videos (--video-size px, instruction and
outcome written on the frames). Episode i of every task uses seed --seed-base + i (disjoint from
scripts/collect_demos.py's seeds). See docs/evaluation.md. Bad input fails with one line and exit
code 2 before the policy loads (`--debug`: the traceback; docs/errors.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import vla.envs  # noqa: F401  (sets MUJOCO_GL=egl unless set: the one place, before anything loads mujoco)
from vla import cli

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from vla.envs.evaluation import EVAL_SEED_BASE

    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--policy.path", dest="policy_path", help="saved llada_vla checkpoint directory")
    who.add_argument("--policy", choices=["expert", "random"], help="anchor policies: scripted expert / random")
    p.add_argument("--suite", required=True, choices=["tabletop", "metaworld"])
    p.add_argument("--tasks", required=True,
                   help="tabletop: push,touch,reach or all; metaworld: task names, MT10, MT50, easy/medium/hard/very_hard")
    p.add_argument("--n-episodes", type=int, default=10, help="episodes per task")
    p.add_argument("--n-envs", type=int, default=os.cpu_count() or 1, help="env worker processes")
    p.add_argument("--seed-base", type=int, default=EVAL_SEED_BASE, help="episode i uses seed seed_base + i")
    p.add_argument("--demos", default=None, help="a demo dataset: fail if any evaluation seed was a demo seed")
    p.add_argument("--camera", default=None, help="default: front (tabletop) / corner4 (metaworld)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--episode-length", type=int, default=None, help="default: 100 / 500")
    p.add_argument("--decoder", default=None, choices=["had", "low_confidence", "threshold", "ar"],
                   help="override the checkpoint's decoder")
    p.add_argument("--decode-steps", type=int, default=None, help="override forwards per chunk")
    p.add_argument("--threshold", type=float, default=None, help="confidence threshold of --decoder threshold")
    p.add_argument("--bf16-weights", action="store_true", help="store the policy's weights in bf16 (docs/speed.md)")
    p.add_argument("--n-action-steps", type=int, default=None, help="actions executed per chunk (default: policy's)")
    p.add_argument("--temporal-ensemble", type=float, default=None, metavar="M",
                   help="query every step and average overlapping chunks with weights exp(-M*i) (ACT; e.g. 0.01)")
    p.add_argument("--swap-instructions", action="store_true",
                   help="tabletop language ablation: give each episode another goal's instruction")
    p.add_argument("--instructions", default=None, metavar="FILE",
                   help="Meta-World: JSON {task: [phrasing, ...]}; each episode is given one of its task's phrasings "
                        "(by seed) instead of the trained instruction (unseen-phrasing evaluation)")
    p.add_argument("--anchors", default="", metavar="expert,random",
                   help="also roll out these anchors on the same seeds; reported next to the policy")
    p.add_argument("--max-videos", type=int, default=4, help="episodes saved as mp4")
    p.add_argument("--video-size", type=int, default=256,
                   help="videos rendered at this square size, instruction and outcome written on them "
                        "(0: the policy's input frames)")
    p.add_argument("--device", default=None, help="policy device (default: the checkpoint's)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    from vla.envs.evaluation import POLICY_ANCHORS, EvalConfig, check_seeds_disjoint, evaluate, load_policy
    from vla.policies.preflight import pretrained_dir

    if args.policy and (args.decoder or args.decode_steps or args.threshold is not None or args.bf16_weights):
        raise cli.UsageError("--decoder / --decode-steps / --threshold / --bf16-weights apply to a --policy.path "
                             "checkpoint, not to an anchor")
    anchors = tuple(a.strip() for a in args.anchors.split(",") if a.strip())
    if set(anchors) - set(POLICY_ANCHORS):
        raise cli.UsageError(f"--anchors {args.anchors!r}; choose from {list(POLICY_ANCHORS)}")
    if args.policy_path:
        pretrained_dir(args.policy_path)
    if args.demos and not Path(args.demos, "meta", "info.json").is_file():
        raise cli.UsageError(f"--demos {args.demos}: no dataset there (no meta/info.json); pass the demo dataset "
                             "folder the policy was trained on")
    instructions = None
    if args.instructions:
        path = Path(args.instructions)
        if not path.is_file():
            raise cli.UsageError(f"--instructions {args.instructions}: no such file; give a JSON file "
                                 '{"task": ["phrasing", ...]}')
        try:
            instructions = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise cli.UsageError(f"--instructions {args.instructions}: not JSON ({e}); "
                                 'expected {"task": ["phrasing", ...]}') from None
    with cli.user_errors(ValueError, FileNotFoundError):
        cfg = EvalConfig(
            suite=args.suite, tasks=args.tasks, n_episodes=args.n_episodes, n_envs=args.n_envs,
            seed_base=args.seed_base, camera=args.camera, height=args.height, width=args.width,
            episode_length=args.episode_length, n_action_steps=args.n_action_steps,
            temporal_ensemble=args.temporal_ensemble, swap_instructions=args.swap_instructions,
            instructions=instructions, max_videos=args.max_videos, video_size=args.video_size or None, out_dir=args.out,
            progress=not args.no_progress,
        )
        if args.demos:
            check_seeds_disjoint([cfg.seed_base + i for i in range(cfg.n_episodes)], args.demos)
        policy = load_policy(args.policy_path or args.policy, device=args.device, decoder=args.decoder,
                             decode_steps=args.decode_steps, threshold=args.threshold, bf16_weights=args.bf16_weights)
    if args.bf16_weights:
        from vla.device import emulated_bf16_warning

        if warning := emulated_bf16_warning("--bf16-weights", policy.policy.config.device):
            print(f"warning: {warning}; drop --bf16-weights for fp32", file=sys.stderr, flush=True)
    info = evaluate(cfg, policy, anchors)
    o = info["overall"]
    low, high = o["success_ci95"]
    print(f"success {o['pc_success']:.1f}% [{low:.1f}, {high:.1f}] over {o['n_episodes']} episodes; "
          f"mean length {o['mean_episode_length']:.1f}; {o['eval_s']:.1f} s")
    if "pc_success_original_goal" in o:
        print(f"original-goal success {o['pc_success_original_goal']:.1f}% (language ablation)")
    for name, a in info.get("anchors", {}).items():
        low, high = a["overall"]["success_ci95"]
        print(f"anchor {name}: {a['overall']['pc_success']:.1f}% [{low:.1f}, {high:.1f}]")
    print(json.dumps(info["outputs"], indent=2))
    return 0


if __name__ == "__main__":
    cli.run(main)
