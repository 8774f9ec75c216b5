"""The Meta-World suite: Meta-World 3.1.1 tasks behind one gymnasium env, LeRobot's protocol.

This module owns task-set names, camera choice, image observations, seeding and the scripted
expert (`MetaWorldExpert`: Meta-World's own policies) for Meta-World; its facts (cameras,
sizes, horizon, rate) are in the suite registry (`vla.envs.suites`). Defaults follow LeRobot's Meta-World evaluation so numbers stay comparable
(shared DESIGN.md section 5): camera `corner4` (LeRobot's moved `corner2` pose), images
flipped upright, state = obs[:4] (hand xyz + gripper), 500-step episodes, success from
`info["success"]`, task strings from LeRobot's descriptions. Image size defaults to 128x128
(LeRobot renders 480x480; pass height/width to match it).

Task specs (`resolve_tasks`): any MT1 task name ('push-v3'), 'MT10', 'MT50', LeRobot's
difficulty groups ('easy', 'medium', 'hard', 'very_hard'), or a comma-separated mix. With
several tasks, `reset(seed=s)` runs task `tasks[s % len(tasks)]` (or `options={'task': name}`),
so a range of seeds sweeps the set evenly.

Seeding: Meta-World 3.1.1 ignores `reset(seed=)`; we seed the underlying env's own RNG
(`seeded_rand_vec`) at every seeded reset, so object and goal positions are a pure
function of the seed, drawn from the task's full random-reset space (as LeRobot does with
`_freeze_rand_vec = False`).
"""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from metaworld.env_dict import ALL_V3_ENVIRONMENTS, ML1_ARGS_KWARGS, MT10_V3, MT50_V3
from metaworld.policies import ENV_POLICY_MAP
from metaworld.types import Task

from vla.envs.experts import NoisyExpert
from vla.envs.instructions import metaworld_descriptions, metaworld_difficulty_groups, metaworld_instruction
from vla.envs.rendering import CameraRenderer, check_env_args, renderer_at
from vla.envs.suites import SUITES

SUITE = SUITES["metaworld"]  # cameras, default sizes, horizon (LeRobot's 500) and control rate
FLIPPED_CAMERAS = ("corner", "corner2", "corner3", "corner4")  # render upside down


def all_task_names() -> list[str]:
    """The 50 Meta-World v3 task names, in MT50 order."""
    return list(MT50_V3)


def task_sets() -> dict[str, list[str]]:
    """Named task sets: MT10, MT50 and LeRobot's difficulty groups."""
    return {"MT10": list(MT10_V3), "MT50": list(MT50_V3), **metaworld_difficulty_groups()}


def resolve_tasks(spec: str) -> list[str]:
    """Expand a task spec ('push-v3', 'MT10', 'easy', 'reach-v3,hard', ...) into task names.

    Raises ValueError listing the valid task and set names on an unknown entry.
    """
    sets, names = task_sets(), all_task_names()
    tasks: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part in sets:
            tasks += sets[part]
        elif part in names:
            tasks.append(part)
        else:
            raise ValueError(f"unknown Meta-World task or task set {part!r}; sets: {sorted(sets)}; tasks: {names}")
    if not tasks:
        raise ValueError(f"empty Meta-World task spec {spec!r}; e.g. 'push-v3' or 'MT10'")
    return list(dict.fromkeys(tasks))  # de-duplicate, keep order


def task_ids(spec: str) -> list[tuple[int, str]]:
    """(stable id, name) of each task a spec names: the id is its position in MT50."""
    names = all_task_names()
    return [(names.index(t), t) for t in resolve_tasks(spec)]


def instructions() -> list[str]:
    """Every task's canonical instruction (LeRobot's descriptions)."""
    return sorted(set(metaworld_descriptions().values()))


def make_sawyer_env(task: str):
    """Build Meta-World's env for one task with the goal in the observation (MT setting)
    and seedable, per-reset randomization; bypasses `MT1(...)`, which pre-samples 50 goals
    (~0.6 s per task) that we would discard anyway."""
    cls = ALL_V3_ENVIRONMENTS[task]
    env = cls()
    kwargs = {k: v for k, v in ML1_ARGS_KWARGS[task]["kwargs"].items() if k != "task_id"}
    data = dict(env_cls=cls, rand_vec=None, partially_observable=False, **kwargs)
    env.set_task(Task(env_name=task, data=pickle.dumps(data)))
    env._freeze_rand_vec = False  # draw object/goal positions at every reset ...
    env.seeded_rand_vec = True  # ... from env.np_random, which we seed
    return env


class MetaWorldEnv(gym.Env):
    """One or several Meta-World tasks with image + state observations (see module doc).

    Args:
        task: a task spec for `resolve_tasks`.
        obs_type: 'pixels_agent_pos' ({'pixels': HxWx3 uint8, 'agent_pos': (4,)}) or
            'state' ({'agent_pos': (4,), 'environment_state': (39,)}, no rendering).
        camera: one of `SUITE.cameras` (default 'corner4'); corner cameras are flipped upright.
        height, width: image size (default 128x128).
        episode_length: truncation horizon (default 500, LeRobot's).
        terminate_on_success: end the episode at the first successful step (LeRobot's
            evaluation does the same; an episode succeeds if any step succeeds).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": SUITE.fps}

    def __init__(
        self,
        task: str = "push-v3",
        obs_type: str = "pixels_agent_pos",
        camera: str = SUITE.camera,
        height: int = SUITE.image_size[0],
        width: int = SUITE.image_size[1],
        episode_length: int = SUITE.episode_length,
        terminate_on_success: bool = True,
        render_mode: str | None = "rgb_array",
    ) -> None:
        super().__init__()
        self.tasks = resolve_tasks(task)
        self.task = task
        check_env_args("Meta-World", obs_type, camera, SUITE.cameras, render_mode, episode_length)
        self.obs_type = obs_type
        self.camera = camera
        self.height, self.width = int(height), int(width)
        self.render_mode = render_mode
        self._max_episode_steps = int(episode_length)
        self.terminate_on_success = terminate_on_success

        self._envs: dict[str, Any] = {}
        self._renderer: CameraRenderer | None = None
        self._renderer_task: str | None = None
        self._large_renderer: CameraRenderer | None = None  # render_at's (evaluation videos)
        self._next_task = 0
        self.current_task = self.tasks[0]
        self.raw_state = np.zeros(39)
        self._steps = 0

        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        agent_pos = spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
        if obs_type == "pixels_agent_pos":
            image = spaces.Box(0, 255, shape=(self.height, self.width, 3), dtype=np.uint8)
            self.observation_space = spaces.Dict({"pixels": image, "agent_pos": agent_pos})
        else:
            env_state = spaces.Box(-np.inf, np.inf, shape=(39,), dtype=np.float32)
            self.observation_space = spaces.Dict({"agent_pos": agent_pos, "environment_state": env_state})

    @property
    def sawyer(self):
        """The underlying Meta-World env of the current task."""
        if self.current_task not in self._envs:
            env = make_sawyer_env(self.current_task)
            env.max_path_length = max(SUITE.episode_length, self._max_episode_steps)
            self._envs[self.current_task] = env
        return self._envs[self.current_task]

    @property
    def task_description(self) -> str:
        """The current task's instruction (LeRobot reads this attribute)."""
        return metaworld_instruction(self.current_task)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        if "task" in options:
            if options["task"] not in self.tasks:
                raise ValueError(f"task {options['task']!r} is not in this env's tasks {self.tasks}")
            self.current_task = options["task"]
        elif seed is not None:
            self.current_task = self.tasks[seed % len(self.tasks)]
        else:
            self.current_task = self.tasks[self._next_task % len(self.tasks)]
            self._next_task += 1
        env = self.sawyer
        env.seed(int(self.np_random.integers(2**31 - 1)))
        self.raw_state, _ = env.reset()
        for site in env._target_site_config:  # Meta-World moves the goal sites only in step(): without
            env._set_pos_site(*site)  # this the first frame drew the goal where the last episode had it
        self._steps = 0
        info = {"success": False, "is_success": False, "task": self.task_description}
        return self._observation(), info

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if action.shape != (4,):
            raise ValueError(f"action has shape {action.shape}; expected (4,) = dx, dy, dz, grip")
        action = np.clip(action, -1.0, 1.0)
        self.raw_state, reward, _, _, raw_info = self.sawyer.step(action)
        self._steps += 1
        success = bool(raw_info.get("success", 0.0))
        terminated = success and self.terminate_on_success
        truncated = self._steps >= self._max_episode_steps and not terminated
        info = {"success": success, "is_success": success, "task": self.task_description}
        return self._observation(), float(reward), terminated, truncated, info

    def _observation(self) -> dict[str, Any]:
        agent_pos = np.asarray(self.raw_state[:4], dtype=np.float32)
        if self.obs_type == "state":
            env_state = np.asarray(self.raw_state, dtype=np.float32)
            return {"agent_pos": agent_pos, "environment_state": env_state}
        return {"pixels": self.render(), "agent_pos": agent_pos}

    def render(self) -> np.ndarray:
        """The configured camera's current view, HxWx3 uint8, upright."""
        if self._renderer_task != self.current_task:
            # One OpenGL context at a time: a new task has its own MjModel.
            if self._renderer is not None:
                self._renderer.close()
            flip = self.camera in FLIPPED_CAMERAS
            self._renderer = CameraRenderer(self.sawyer.model, self.camera, self.height, self.width, flip=flip)
            self._renderer_task = self.current_task
        return self._renderer.render(self.sawyer.data)

    def render_at(self, height: int, width: int) -> np.ndarray:
        """The configured camera at another size than the observations (evaluation videos)."""
        flip = self.camera in FLIPPED_CAMERAS
        self._large_renderer = renderer_at(self._large_renderer, self.sawyer.model, self.camera, height, width, flip)
        return self._large_renderer.render(self.sawyer.data)

    def close(self) -> None:
        if self._large_renderer is not None:
            self._large_renderer.close()
            self._large_renderer = None
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
            self._renderer_task = None
        for env in self._envs.values():
            env.close()
        self._envs.clear()


class MetaWorldExpert(NoisyExpert):
    """Meta-World's scripted policy (`metaworld.policies`) for the env's current task, fed the full
    39-d state of the underlying Sawyer env."""

    def __init__(self, noise_std: float = 0.0, seed: int | None = None) -> None:
        super().__init__(noise_std, seed)
        self._policies: dict[str, object] = {}

    def __call__(self, env: MetaWorldEnv) -> np.ndarray:
        name = env.current_task
        if name not in self._policies:
            if name not in ENV_POLICY_MAP:
                raise ValueError(f"Meta-World has no scripted policy for {name!r}; known: {sorted(ENV_POLICY_MAP)}")
            self._policies[name] = ENV_POLICY_MAP[name]()
        action = np.asarray(self._policies[name].get_action(env.raw_state), dtype=np.float64)
        action[:3] = self._perturb(action[:3])
        return np.clip(action, -1.0, 1.0).astype(np.float32)
