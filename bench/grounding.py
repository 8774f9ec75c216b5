"""Grounding probe: does the first predicted chunk head for the target the instruction names?

A cheap, forward-only check of language grounding on the tabletop suite (no rollouts).
For `n_scenes` new scenes per family (seeds disjoint from demonstrations and from
evaluation), the policy is asked every goal of the scene from the scene's first frame (the
same image and state each time; only the instruction differs). Its first chunk's xy
displacement (the sum of the xy actions it would execute) is compared with the scripted
expert's first move for each goal of that scene: the chunk *heads for* the goal whose
expert direction it is closest to in angle. The probe reports how often that is the goal
that was asked.

A policy that ignores the instruction gives the same chunk for every goal of a scene, so it
heads for one goal per scene: its score is exactly chance, 1 / (goals per scene) (1/3 for
touch and the reach families, 1/9 for push, where the 9 goals differ by block and by the
side the block is approached from).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vla.envs.evaluation import EVAL_SEED_BASE, EvalPolicy
from vla.envs.experts import TabletopExpert, make_expert
from vla.envs.tabletop import TabletopEnv, all_goals, parse_families

PROBE_SEED_BASE = EVAL_SEED_BASE + 500_000  # new scenes: neither demonstration nor evaluation seeds


@dataclass
class ProbeConfig:
    tasks: str = "all"  # tabletop families
    n_scenes: int = 30  # per family
    seed_base: int = PROBE_SEED_BASE
    height: int = 96
    width: int = 96
    camera: str = "front"
    privileged_target: bool = False  # the named target in the state, as a diagnostic policy was trained


def _heading(xy: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(xy))
    return xy / norm if norm > 1e-9 else np.zeros_like(xy)


def _spread(headings: np.ndarray) -> float:
    """Mean distance of a scene's headings (G, 2) from their mean: how much the move changes with the goal."""
    return float(np.linalg.norm(headings - headings.mean(0), axis=1).mean())


def probe_grounding(policy: EvalPolicy, cfg: ProbeConfig) -> dict[str, Any]:
    """-> {'per_task': {family: {'score', 'chance', 'n', 'instruction_effect'}}, 'overall': {...}, 'settings'}.

    score: how often the first chunk heads for the named target (of the scene's goals, the one whose
    expert heading is closest). instruction_effect: how much the first chunk's heading changes from one
    instruction to another on the same frame, relative to how much the expert's does (0: the policy
    ignores the instruction; 1: it moves as much as the expert, if not necessarily the right way): a
    policy that has begun to read the instruction shows it here before its score leaves chance."""
    expert = TabletopExpert()
    per_task: dict[str, dict[str, float]] = {}
    hits_all, chance_all, spread_all = [], [], [0.0, 0.0]
    for family in parse_families(cfg.tasks):
        env = TabletopEnv(task=family, camera=cfg.camera, height=cfg.height, width=cfg.width,
                          privileged_target=cfg.privileged_target)
        goals = all_goals(family)
        hits, spread = [], [0.0, 0.0]  # heading spread over a scene's goals: the policy's, the expert's
        for i in range(cfg.n_scenes):
            seed = cfg.seed_base + i
            rows, expert_dirs = [], []
            for goal in goals:
                opts = {k: v for k, v in (("family", goal.family), ("block", goal.block), ("zone", goal.zone)) if v}
                obs, _ = env.reset(seed=seed, options=opts)
                row = {"pixels": obs["pixels"], "agent_pos": obs["agent_pos"], "task": goal.instruction}
                if getattr(policy, "scripted", None):  # scripted anchors read privileged state
                    controller = make_expert("tabletop", kind=policy.scripted)
                    if hasattr(controller, "reset"):
                        controller.reset(env, seed)
                    row["scripted_action"] = controller(env)
                rows.append(row)
                expert_dirs.append(_heading(expert(env)[:2]))
            batch = {"pixels": {cfg.camera: np.stack([r["pixels"][cfg.camera] for r in rows])},
                     "agent_pos": np.stack([r["agent_pos"] for r in rows]),
                     "task": [r["task"] for r in rows]}
            if "scripted_action" in rows[0]:
                batch["scripted_action"] = np.stack([r["scripted_action"] for r in rows])
            slots = list(range(len(rows)))
            for slot in slots:
                policy.reset(slot, seed)
            chunks = np.asarray(policy.act(batch, slots), dtype=np.float64)  # (G, H, D)
            steps = max(1, int(policy.n_action_steps))
            dirs = np.stack(expert_dirs)  # (G, 2)
            headings = np.stack([_heading(chunk[:steps, :2].sum(0)) for chunk in chunks])  # (G, 2)
            hits += [int(np.argmax(dirs @ h)) == g for g, h in enumerate(headings)]
            spread[0] += _spread(headings)
            spread[1] += _spread(dirs)
        env.close()
        per_task[family] = {"score": float(np.mean(hits)), "chance": 1.0 / len(goals), "n": len(hits),
                            "instruction_effect": spread[0] / max(spread[1], 1e-9)}
        hits_all += hits
        chance_all += [1.0 / len(goals)] * len(hits)
        spread_all = [a + b for a, b in zip(spread_all, spread, strict=True)]
    overall = {"score": float(np.mean(hits_all)), "chance": float(np.mean(chance_all)), "n": len(hits_all),
               "instruction_effect": spread_all[0] / max(spread_all[1], 1e-9)}
    return {"per_task": per_task, "overall": overall, "policy": policy.describe(),
            "settings": {**cfg.__dict__}}


def probe_table(result: dict[str, Any]) -> str:
    """Markdown table of a probe result."""
    lines = ["| family | heads for the named target | chance | instruction effect (expert 1) | asked |",
             "|---|---|---|---|---|"]
    for family, r in result["per_task"].items():
        lines.append(f"| {family} | {r['score']:.2f} | {r['chance']:.2f} | {r['instruction_effect']:.2f} | {r['n']} |")
    o = result["overall"]
    lines.append(f"| **all** | **{o['score']:.2f}** | {o['chance']:.2f} | {o['instruction_effect']:.2f} | {o['n']} |")
    return "\n".join(lines)
