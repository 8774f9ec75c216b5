"""Grounding probe: how often the first predicted chunk heads for the target the instruction names.

    python scripts/probe_grounding.py --policy.path=OUT/checkpoints/last/pretrained_model [--tasks all] [--n-scenes 30]

Forward passes only (no rollouts): on new tabletop scenes, every goal of a scene is asked
from the same first frame; chance is 1 / (goals per scene). Also prints the instruction effect:
how much the first move changes between a scene's instructions, relative to the expert (0: the
instruction is ignored). See vla/bench/grounding.py.
"""

import argparse
import json
import os

import vla.envs  # noqa: F401  (sets MUJOCO_GL=egl unless set: the one place, before anything loads mujoco)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy.path", dest="policy", required=True,
                   help="checkpoint directory (or 'expert' / 'blind' / 'random' for the anchors)")
    p.add_argument("--tasks", default="all", help="tabletop families: push,touch,reach,reach_slots,reach_fixed or all")
    p.add_argument("--n-scenes", type=int, default=30, help="new scenes per family")
    p.add_argument("--privileged-target", action="store_true",
                   help="the policy was trained with the named target in its state (the ablation's diagnostic row)")
    p.add_argument("--json", default=None, help="also write the result here")
    a = p.parse_args()
    from vla.bench.grounding import ProbeConfig, probe_grounding, probe_table
    from vla.envs.evaluation import load_policy

    result = probe_grounding(load_policy(a.policy), ProbeConfig(tasks=a.tasks, n_scenes=a.n_scenes,
                                                                privileged_target=a.privileged_target))
    print(probe_table(result))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2, default=str)


if __name__ == "__main__":
    main()
