"""Expert episodes as plain arrays: the unit of work the demo recorder passes around.

This module owns running one scripted episode and the `Episode` record that travels from a
worker process to the dataset writer (numpy arrays only, so it pickles cheaply). Frame t
holds the observation *before* action t, as LeRobot datasets do; the observation after
the last action is not stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla.envs.experts import Expert
from vla.envs.instructions import metaworld_paraphrases


@dataclass
class Episode:
    """One rolled-out episode.

    images: camera name -> (T, H, W, 3) uint8 (empty dict for state-only rollouts).
    states: (T, S) float32 observation.state; actions: (T, A) float32.
    task_name: the suite's task id ('push-v3', 'push'); instruction: the canonical string;
    paraphrases: alternative phrasings of `instruction`.
    """

    suite: str
    task_name: str
    seed: int
    instruction: str
    paraphrases: list[str]
    success: bool
    states: np.ndarray
    actions: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.actions.shape[0])


def paraphrases_of(env: Any) -> list[str]:
    """Paraphrases of the env's current instruction (suite-specific lookup)."""
    goal = getattr(env, "goal", None)
    if goal is not None:
        return goal.paraphrases
    return metaworld_paraphrases(env.current_task)


def run_episode(
    env: Any,
    expert: Expert,
    seed: int,
    suite: str,
    task_name: str,
    options: dict[str, Any] | None = None,
    perturb_std: float = 0.0,
) -> Episode:
    """Roll out `expert` in `env` from `reset(seed=seed)` until it terminates or truncates.

    The env's `obs_type` decides whether images are recorded ('pixels_agent_pos') or not
    ('state'); an episode succeeds if any step reports success.

    perturb_std: Gaussian noise added to the *executed* xyz actions while the expert's clean
    action is *recorded* (DART, Laskey et al. 2017): the demonstrations then visit states
    a little off the expert's path and show how to get back, which a policy cloned from
    them needs once its own small errors compound. Seeded from `seed`.
    """
    if perturb_std < 0:
        raise ValueError(f"perturb_std must be >= 0, got {perturb_std}")
    rng = np.random.default_rng([seed, 7])
    obs, _ = env.reset(seed=seed, options=options)
    instruction = env.task_description
    paraphrases = paraphrases_of(env)
    states, actions, frames = [], [], []
    success = False
    while True:
        action = expert(env)
        states.append(np.asarray(obs["agent_pos"], dtype=np.float32))
        actions.append(np.asarray(action, dtype=np.float32))
        if "pixels" in obs:
            frames.append(obs["pixels"])
        executed = np.asarray(action, dtype=np.float32)
        if perturb_std > 0:
            executed = executed.copy()
            executed[:3] = np.clip(executed[:3] + rng.normal(0.0, perturb_std, size=3), -1.0, 1.0)
        obs, _, terminated, truncated, info = env.step(executed)
        success = success or bool(info.get("success", False))
        if terminated or truncated:
            break
    images: dict[str, np.ndarray] = {}
    if frames:
        if isinstance(frames[0], dict):
            images = {cam: np.stack([f[cam] for f in frames]) for cam in frames[0]}
        else:
            images = {env.camera: np.stack(frames)}
    return Episode(
        suite=suite,
        task_name=task_name,
        seed=seed,
        instruction=instruction,
        paraphrases=paraphrases,
        success=success,
        states=np.stack(states),
        actions=np.stack(actions),
        images=images,
    )
