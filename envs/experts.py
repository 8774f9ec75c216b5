"""Scripted experts: closed-loop controllers that read privileged simulator state.

This module owns the demonstrators behind every generated dataset.

- Meta-World: Meta-World's own hand-written policies, behind `MetaWorldExpert` in
  `vla.envs.metaworld_suite` (the module that owns everything Meta-World); `make_expert`
  finds each suite's expert through the suite registry.
- Tabletop: one controller per family (push / touch / reach), written here. Push moves
  over the block at a safe height, descends behind it on the block-to-zone line and pushes
  through the block's center, re-aligning whenever the block drifts off the line.

All experts share one call: `expert(env) -> action` (float32, in [-1, 1]) for the env's
current state, with optional Gaussian action noise (`noise_std`, on the xyz entries) for
more diverse demonstrations; noise makes the expert fail more often, and the recorder
keeps only successful episodes by default. Stateful controllers also take
`reset(env, seed)` at the start of each episode.

Two scripted tabletop controllers never read the instruction, as yardsticks for learned
policies: `BlindExpert` (the language-blind anchor in every tabletop report: the expert
for a goal drawn from the episode seed, so its success is the ceiling of a policy that
ignores language, ~1/3 or 1/9) and `SweepController` (visits every candidate in turn: the
cheat that a success rule without wrong-contact failures would let through).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from vla.envs.suites import get_suite
from vla.envs.tabletop import BLOCK_HALF, MAX_STEP, REACH_FAMILIES, Goal, TabletopEnv, all_goals

TRAVEL_Z = 0.09  # fingertip height for moving over blocks (block tops are at 0.05)
PUSH_Z = 0.015  # fingertip height while pushing
FINGER_HALF_X = 0.012  # half thickness of the fingers in the push direction
PRE_PUSH = BLOCK_HALF + FINGER_HALF_X + 0.03  # fingertip-to-block-center distance before a push
PUSH_SPEED = 0.6  # fraction of MAX_STEP while in contact with a block
CLOSED = 1.0  # gripper command: fingers closed
LOOKAHEAD = 0.05  # push: how far ahead on the block-to-zone line the push direction aims


class Expert(Protocol):
    """A scripted controller: returns the action for the env's current state."""

    def __call__(self, env) -> np.ndarray: ...


def _toward(tcp: np.ndarray, target: np.ndarray, speed: float = 1.0) -> np.ndarray:
    """xyz action that moves the fingertip toward `target` by at most `speed` * MAX_STEP."""
    delta = (target - tcp) / MAX_STEP
    norm = float(np.linalg.norm(delta))
    if norm > speed:
        delta *= speed / norm
    return delta


class NoisyExpert:
    """What every suite's expert shares: Gaussian noise of std `noise_std` on the xyz entries, seeded."""

    def __init__(self, noise_std: float = 0.0, seed: int | None = None) -> None:
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.noise_std = noise_std
        self._rng = np.random.default_rng(seed)

    def _perturb(self, xyz: np.ndarray) -> np.ndarray:
        return xyz + self._rng.normal(0.0, self.noise_std, size=3) if self.noise_std > 0 else xyz


class TabletopExpert(NoisyExpert):
    """Scripted controller for the tabletop families; reads `env.goal` at every call."""

    def __call__(self, env: TabletopEnv, goal: Goal | None = None) -> np.ndarray:
        """The action toward `goal` (default: the episode's own, `env.goal`)."""
        tcp, goal = env.tcp_pos, goal or env.goal
        if goal.family == "push":
            xyz = self._push(tcp, env.block_pos(goal.block)[:2], env.zone_pos(goal.zone)[:2],
                             env.start_block_pos(goal.block)[:2])
        elif goal.family == "touch":
            xyz = self._hover_then_descend(tcp, env.block_pos(goal.block)[:2], z=0.03)
        else:
            xyz = self._hover_then_descend(tcp, env.zone_pos(goal.zone)[:2], z=0.02)
        xyz = self._perturb(xyz)
        return np.clip(np.append(xyz, CLOSED), -1.0, 1.0).astype(np.float32)

    @staticmethod
    def _hover_then_descend(tcp: np.ndarray, xy: np.ndarray, z: float) -> np.ndarray:
        """Travel at a safe height to above `xy`, then go straight down to height `z`."""
        if np.linalg.norm(tcp[:2] - xy) < 0.01:
            return _toward(tcp, np.array([xy[0], xy[1], z]))
        if tcp[2] < TRAVEL_Z - 0.01 and np.linalg.norm(tcp[:2] - xy) > 0.03:
            return _toward(tcp, np.array([tcp[0], tcp[1], TRAVEL_Z]))
        return _toward(tcp, np.array([xy[0], xy[1], max(TRAVEL_Z, z)]))

    @staticmethod
    def _push(tcp: np.ndarray, block: np.ndarray, zone: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Push `block` (xy) onto `zone` (xy) along the straight line from where the block
        started (`start`): the push direction aims at a point `LOOKAHEAD` ahead of the block's
        projection on that line, so a block that slides sideways is steered back onto it
        (the layout keeps that line clear of the other zones)."""
        dist = float(np.linalg.norm(zone - block))
        if dist < 0.01:
            return np.zeros(3)
        line = zone - start
        length = float(np.linalg.norm(line))
        along_line = float(np.clip((block - start) @ line / length**2, 0.0, 1.0))
        carrot = start + line * min(1.0, along_line + LOOKAHEAD / length)
        to_carrot = carrot - block
        u = to_carrot / max(float(np.linalg.norm(to_carrot)), 1e-6)
        rel = tcp[:2] - block
        along = float(rel @ u)  # negative: the fingertip is behind the block
        lateral = float(np.linalg.norm(rel - along * u))
        low = tcp[2] < PUSH_Z + 0.02
        pre = block - u * PRE_PUSH
        if low and along < -BLOCK_HALF and lateral < 0.035:
            # Track the contact point on the line behind the block, 2 cm "into" it: the
            # forward part pushes, the sideways part slides the fingers along the block's
            # back face until they are on the line again (so a drifting block is steered).
            aim = block - u * (BLOCK_HALF + FINGER_HALF_X - min(dist, 0.02))
            target = np.array([aim[0], aim[1], PUSH_Z])
            return _toward(tcp, target, PUSH_SPEED)
        if low and along < -(BLOCK_HALF + FINGER_HALF_X):
            # Behind the block but off the line: slide back to the pre-push point.
            return _toward(tcp, np.array([pre[0], pre[1], PUSH_Z]))
        if np.linalg.norm(tcp[:2] - pre) < 0.012:
            return _toward(tcp, np.array([pre[0], pre[1], PUSH_Z]))
        if tcp[2] < TRAVEL_Z - 0.01:
            # Off the line near the table: lift first, so we never sweep through blocks.
            return _toward(tcp, np.array([tcp[0], tcp[1], TRAVEL_Z]))
        return _toward(tcp, np.array([pre[0], pre[1], TRAVEL_Z]))


class BlindExpert:
    """Language-blind anchor: the tabletop expert for a goal of the episode's family drawn
    from the episode seed, never from the instruction. Its success rate is what a policy that
    ignores language can reach with perfect control: 1 / (goals per scene)."""

    def __init__(self) -> None:
        self._expert = TabletopExpert()
        self.goal: Goal | None = None

    def reset(self, env: TabletopEnv, seed: int | None) -> None:
        goals = all_goals(env.goal.family)  # the family is the task, not the instruction
        self.goal = goals[int(np.random.default_rng([seed or 0, 3]).integers(len(goals)))]

    def __call__(self, env: TabletopEnv) -> np.ndarray:
        if self.goal is None:
            raise RuntimeError("BlindExpert.reset(env, seed) must start each episode")
        return self._expert(env, self.goal)


class SweepController:
    """A language-blind cheat for reach and touch: visit every zone (reach) or block (touch)
    in turn, nearest first, going down into each. Without wrong-contact failures it would
    pass any "reached the named target" rule; with them it scores the blind ceiling."""

    def __init__(self) -> None:
        self._expert = TabletopExpert()
        self._order: list[Goal] = []

    def reset(self, env: TabletopEnv, seed: int | None) -> None:
        family = env.goal.family
        if family not in (*REACH_FAMILIES, "touch"):
            raise ValueError(f"the sweep visits zones or blocks; family {family!r} has no sweep")
        pos = env.zone_pos if family in REACH_FAMILIES else env.block_pos
        goals = all_goals(family)
        self._order = sorted(goals, key=lambda g: float(np.linalg.norm(pos(g.zone or g.block)[:2] - env.tcp_pos[:2])))

    def __call__(self, env: TabletopEnv) -> np.ndarray:
        target = self._order[0]
        pos = env.zone_pos(target.zone) if target.zone else env.block_pos(target.block)
        arrived = np.linalg.norm(env.tcp_pos[:2] - pos[:2]) < 0.01 and env.tcp_pos[2] < 0.035
        if arrived and len(self._order) > 1:
            self._order.pop(0)  # this one visited: on to the next (the expert lifts first)
        return self._expert(env, self._order[0])


SCRIPTED = {"expert": "the suite's expert", "blind": "tabletop: BlindExpert", "sweep": "tabletop: SweepController"}


def make_expert(suite: str, noise_std: float = 0.0, seed: int | None = None, kind: str = "expert") -> Expert:
    """The scripted controller `kind` (see `SCRIPTED`) of a suite ('metaworld' or 'tabletop')."""
    spec = get_suite(suite)
    if kind not in SCRIPTED:
        raise ValueError(f"unknown scripted controller {kind!r}; choose from {list(SCRIPTED)}")
    if kind != "expert" and suite != "tabletop":
        raise ValueError(f"the {kind!r} controller ignores the instruction among a scene's goals; "
                         "only the tabletop suite has several goals per scene")
    if kind == "blind":
        return BlindExpert()
    if kind == "sweep":
        return SweepController()
    return spec.make_expert(noise_std, seed)
