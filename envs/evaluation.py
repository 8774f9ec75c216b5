"""Closed-loop evaluation of a policy in our suites: vectorized rollouts, chunk execution, seeds.

This module owns *how* a policy is rolled out and scored (`vla.envs.eval_report` owns what is
reported and how it is written). Entry point: `evaluate(cfg, policy)`; CLI: scripts/eval.py.

- **Policies** share one small protocol (`EvalPolicy`): `reset(slot, seed)` when an env slot
  starts an episode and `act(obs, slots) -> (b, H, D)` action chunks for a batch of slots.
  Three implementations: a saved `llada_vla` checkpoint (`LeRobotPolicy`, batched in this
  process), scripted controllers (`ScriptedPolicy`, run in the env workers on privileged
  state: the expert, the upper anchor; on tabletop the language-blind anchor `blind`, the
  ceiling of a policy that ignores the instruction, and the `sweep` cheat, see
  `vla.envs.experts`) and uniform random actions (`RandomPolicy`, the lower anchor, seeded
  per episode).
- **Envs**: `n_envs` env slots in `gymnasium.vector.AsyncVectorEnv` worker processes (spawn),
  each an `EvalEnv` that can run any task of the suite. Slots pull (task, episode) pairs from
  one queue and are reset individually (`reset_mask`) as soon as their episode ends, so no
  slot idles while episodes remain. The policy runs once per step for the slots whose
  chunk is used up.
- **Chunks**: a chunk's first `n_action_steps` actions are executed before the slot asks
  again; with `temporal_ensemble` (a coefficient m) the policy is queried every step and the
  overlapping predictions for a step are averaged with ACT's weights exp(-m * i), i = 0 for
  the oldest prediction.
- **Seeds**: episode i of every task uses seed `seed_base + i` (default 1_000_000_000 + i).
  scripts/collect_demos.py uses `seed + 100_000 * task_id + attempt` (seed 0 by default), so
  evaluation scenes are never demonstration scenes; `check_seeds_disjoint` verifies it
  against a dataset's `meta/vla_recorder.json`. Same settings -> same results (greedy
  decoding, per-episode seeding, deterministic scheduling).
- **Success**: an episode succeeds if any step reports success (LeRobot's rule); envs end
  episodes at the first success.
- **Language ablation** (tabletop, `swap_instructions`): each episode's scene is the one its
  seed gives, but the goal (and so the instruction) is replaced by another goal of the same
  family in that scene; the episode runs as a normal episode of the swapped goal, and the
  original goal's success is tracked alongside (`TabletopEnv.success_for`).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from vla.envs import make_env
from vla.envs.collection import task_list
from vla.envs.eval_report import (
    EpisodeResult,
    annotate_frames,
    build_eval_info,
    latency_summary,
    write_outputs,
    write_video,
)
from vla.envs.experts import make_expert
from vla.envs.instructions import metaworld_difficulty_groups
from vla.envs.suites import get_suite
from vla.envs.tabletop import all_goals
from vla.policies.controller.chunks import ActionSchedule

EVAL_SEED_BASE = 1_000_000_000  # far above the demo seeds (< 100_000 * 50 + attempts)
POLICY_ANCHORS = ("expert", "blind", "random", "sweep")


@dataclass
class EvalConfig:
    """Settings of one evaluation run (see the module docstring)."""

    suite: str  # 'tabletop' or 'metaworld'
    tasks: str  # tabletop families ('all', 'push,touch') or a Meta-World spec ('MT10', 'easy', 'push-v3')
    n_episodes: int = 10  # per task
    n_envs: int = 2  # env slots; > 1 runs them in worker processes
    async_envs: bool | None = None  # None: worker processes when n_envs > 1
    seed_base: int = EVAL_SEED_BASE  # episode i of every task uses seed_base + i
    camera: str | None = None  # None: the suite's default (front / corner4)
    height: int | None = None
    width: int | None = None
    episode_length: int | None = None  # None: 100 (tabletop) / 500 (Meta-World)
    n_action_steps: int | None = None  # None: the policy's own
    temporal_ensemble: float | None = None  # ACT coefficient m; None = plain chunk execution
    swap_instructions: bool = False  # tabletop language ablation
    instructions: dict[str, list[str]] | None = None  # Meta-World task -> phrasings given instead of the trained one
    privileged_target: bool = False  # tabletop: the named target in the state, as the diagnostic policy was trained
    max_videos: int = 0  # episodes saved as mp4 (spread over tasks)
    video_size: int | None = 256  # videos rendered at this square size (None: the policy's input frames)
    out_dir: str | None = None  # None: return the results without writing files
    progress: bool = True
    fps: int = field(init=False, default=20)

    def __post_init__(self) -> None:
        spec = get_suite(self.suite)
        self.fps = spec.fps
        self.camera, self.height = self.camera or spec.camera, self.height or spec.image_size[0]
        self.width, self.episode_length = self.width or spec.image_size[1], self.episode_length or spec.episode_length
        if self.n_episodes < 1 or self.n_envs < 1:
            raise ValueError(f"need n_episodes >= 1 and n_envs >= 1, got {self.n_episodes} and {self.n_envs}")
        if self.privileged_target and not spec.privileged_names:
            raise ValueError(f"privileged_target: suite {self.suite!r} has no such option (tabletop has)")
        if self.swap_instructions and self.suite != "tabletop":
            raise ValueError("swap_instructions is a tabletop ablation (Meta-World tasks have one goal per scene)")
        if self.temporal_ensemble is not None and self.temporal_ensemble < 0:
            raise ValueError(f"temporal_ensemble={self.temporal_ensemble} must be >= 0 (or None to disable)")
        if self.n_action_steps is not None and self.n_action_steps < 1:
            raise ValueError(f"n_action_steps={self.n_action_steps} must be >= 1")
        if self.video_size is not None and self.video_size < 16:
            raise ValueError(f"video_size={self.video_size} must be >= 16 pixels (or None for the policy's frames)")
        tasks = resolve_eval_tasks(self.suite, self.tasks)  # fail before a policy is loaded, listing valid names
        if self.instructions is not None:
            check_instructions(self.suite, [t.name for t in tasks], self.instructions)


@dataclass(frozen=True)
class TaskSpec:
    name: str  # 'push' / 'push-v3'
    group: str  # 'tabletop' / Meta-World difficulty group
    task_id: int  # stable id: position in FAMILIES / MT50 (as scripts/collect_demos.py)


def resolve_eval_tasks(suite: str, spec: str) -> list[TaskSpec]:
    """Tasks of a spec with their stable ids and groups; raises listing valid names."""
    groups: dict[str, str] = {}
    if suite == "metaworld":
        groups = {t: g for g, ts in metaworld_difficulty_groups().items() for t in ts}
    return [TaskSpec(name, groups.get(name, suite), tid) for tid, name in task_list(suite, spec)]


def check_instructions(suite: str, tasks: list[str], instructions: Any) -> None:
    """Raise unless `instructions` gives every evaluated Meta-World task a non-empty list of phrasings."""
    if suite != "metaworld":
        raise ValueError("instructions (a phrasings file) are for Meta-World tasks; a tabletop instruction names "
                         "the goal of its scene, so replacing it changes the task (see swap_instructions)")
    if not isinstance(instructions, dict):
        raise ValueError(f"instructions must map task -> list of phrasings, e.g. {{\"reach-v3\": [\"...\"]}}; "
                         f"got a {type(instructions).__name__}")
    unknown = sorted(set(instructions) - set(tasks))
    if unknown:
        raise ValueError(f"instructions name tasks not evaluated here: {unknown}; evaluated: {tasks}")
    missing = [t for t in tasks if t not in instructions]
    if missing:
        raise ValueError(f"instructions give no phrasings for {missing}; give every evaluated task a list")
    bad = [t for t, v in instructions.items()
           if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v)]
    if bad:
        raise ValueError(f"instructions for {bad} must be non-empty lists of non-empty strings")


def check_seeds_disjoint(seeds: list[int], demos_root: str | Path) -> None:
    """Raise if any evaluation seed was used for a demonstration in `demos_root`
    (read from the recorder's meta/vla_recorder.json). Tabletop layouts depend on the seed
    only, so the check ignores the task."""
    path = Path(demos_root) / "meta" / "vla_recorder.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; --demos must be a dataset written by scripts/collect_demos.py")
    used = {int(e["seed"]) for e in json.loads(path.read_text())["episodes"]}
    clash = sorted(used.intersection(seeds))
    if clash:
        raise ValueError(f"evaluation seeds {clash[:5]}... were demonstration seeds in {demos_root}; "
                         "choose another --seed-base")


# --- the env each slot runs ------------------------------------------------------------


class EvalEnv(gym.Env):
    """One env slot: runs any task of the suite, `reset(seed, options={'task': name})`.

    After its episode ends the slot idles (steps return the last observation at no cost)
    until it is reset. The end of an episode is reported as `info['episode_done']`, never
    as terminated / truncated, so the vector env's own autoreset bookkeeping (which forbids
    stepping a finished env) never sees it and idle slots can keep being stepped. Adds
    `scripted_action` to observations when asked (the action of the scripted controller
    `scripted`, see `vla.envs.experts.SCRIPTED`, computed here on privileged state) and, with
    `swap_instructions`, runs the swapped goal while reporting `success_original`. With
    `video_size`, an episode whose seed is in the reset option `record_seeds` also returns
    `info['video_frame']`: the camera rendered at video_size x video_size, for its video.
    """

    def __init__(self, suite: str, tasks: list[str], env_kwargs: dict[str, Any], scripted: str | None = None,
                 swap_instructions: bool = False, video_size: int | None = None,
                 instructions: dict[str, list[str]] | None = None) -> None:
        self.suite, self.tasks, self.swap = suite, list(tasks), swap_instructions
        self.instructions = instructions
        self._make = partial(make_env, suite, **env_kwargs)
        self._envs: dict[str, Any] = {}
        self.task = self.tasks[0]
        base = self._env(self.task)
        self._expert = make_expert(suite, kind=scripted) if scripted else None
        self.action_space = base.action_space
        spaces = dict(base.observation_space.spaces)
        if scripted:
            spaces["scripted_action"] = base.action_space
        self.observation_space = gym.spaces.Dict(spaces)
        self.metadata = base.metadata
        self._done, self._last_obs, self._original = True, None, None
        self.video_size, self._record = video_size, False

    def _env(self, task: str):
        key = task if self.suite == "tabletop" else "all"  # one MetaWorldEnv switches tasks itself
        if key not in self._envs:
            spec = task if self.suite == "tabletop" else ",".join(self.tasks)
            self._envs[key] = self._make(task=spec)
        return self._envs[key]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        task = (options or {}).get("task", self.task)
        if task not in self.tasks:
            raise ValueError(f"task {task!r} is not one of this env's tasks {self.tasks}")
        if self.suite == "tabletop" and task != self.task:
            self._env(self.task).close()  # free its renderer; re-created on its next render
        self.task, env = task, self._env(task)
        obs, _ = env.reset(seed=seed, options={"task": task} if self.suite == "metaworld" else None)
        self._original = None
        if self.swap:
            self._original = env.goal
            others = [g for g in all_goals(env.goal.family) if g != env.goal]
            goal = others[int(np.random.default_rng([seed or 0, 1]).integers(len(others)))]
            forced = {k: v for k, v in (("family", goal.family), ("block", goal.block), ("zone", goal.zone)) if v}
            obs, _ = env.reset(seed=seed, options=forced)  # same seed -> same scene, new goal
        self._done = False
        self._record = bool(self.video_size) and seed in (options or {}).get("record_seeds", ())
        if hasattr(self._expert, "reset"):
            self._expert.reset(env, seed)
        instruction = env.task_description
        if self.instructions:  # the episode's phrasing, fixed by its seed
            phrasings = self.instructions[task]
            instruction = phrasings[(seed or 0) % len(phrasings)]
        info = {"task": instruction, "original_task": self._original.instruction if self._original else instruction}
        if self._record:
            info["video_frame"] = env.render_at(self.video_size, self.video_size)
        return self._observe(obs), info

    def _observe(self, obs: dict[str, Any]) -> dict[str, Any]:
        if self._expert is not None:
            obs = {**obs, "scripted_action": self._expert(self._env(self.task))}
        self._last_obs = obs
        return obs

    def step(self, action):
        if self._done:
            return self._last_obs, 0.0, False, False, {}
        env = self._env(self.task)
        obs, reward, terminated, truncated, info = env.step(action)
        self._done = bool(terminated or truncated)
        out = {"success": bool(info.get("success", False)), "episode_done": self._done,
               "ended_by": _ended_by(info, terminated, truncated)}
        if self._original is not None:
            out["success_original"] = bool(env.success_for(self._original))
        if self._record:
            out["video_frame"] = env.render_at(self.video_size, self.video_size)
        return self._observe(obs), float(reward), False, False, out

    def close(self) -> None:
        for env in self._envs.values():
            env.close()


def _ended_by(info: dict[str, Any], terminated: bool, truncated: bool) -> str:
    """Why an episode ended ('' while it runs): success, the wrong contact, or the time limit."""
    if not (terminated or truncated):
        return ""
    if info.get("success"):
        return "success"
    if info.get("wrong_contact"):
        return f"wrong contact: {info['wrong_contact']}"
    return "timeout" if truncated else "terminated"


# --- policies ------------------------------------------------------------------------------


class EvalPolicy(Protocol):
    """What `evaluate` rolls out. Observations are batched numpy dicts (the env's keys:
    'pixels', 'agent_pos', optional 'scripted_action') plus 'task': list of instructions."""

    name: str
    n_action_steps: int  # actions executed from each chunk (before asking again)
    needs_images: bool  # False: the envs skip rendering (anchors)
    scripted: str | None  # a scripted controller's name: the envs add its 'scripted_action'

    def reset(self, slot: int, seed: int) -> None:
        """Env slot `slot` starts an episode from `seed`."""

    def act(self, obs: dict[str, Any], slots: list[int]) -> np.ndarray:
        """(len(slots), H, D) actions for these slots (obs rows are in the same order)."""

    def describe(self) -> dict[str, Any]:
        """What was evaluated, for the report."""


class ScriptedPolicy:
    """A scripted controller (`vla.envs.experts.SCRIPTED`); its actions arrive with the observation."""

    n_action_steps, needs_images = 1, False
    DESCRIPTIONS = {
        "expert": "scripted expert on privileged state (upper anchor)",
        "blind": "scripted expert for a goal drawn without reading the instruction (language-blind ceiling)",
        "sweep": "scripted sweep over every candidate target, instruction ignored (a cheat the rules must stop)",
    }

    def __init__(self, name: str) -> None:
        self.name = self.scripted = name

    def reset(self, slot: int, seed: int) -> None:
        pass

    def act(self, obs: dict[str, Any], slots: list[int]) -> np.ndarray:
        return np.asarray(obs["scripted_action"], dtype=np.float32)[:, None, :]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.DESCRIPTIONS[self.name]}


class RandomPolicy:
    """Uniform random actions in the action space (lower anchor), seeded per episode."""

    name, n_action_steps, needs_images, scripted = "random", 1, False, None

    def __init__(self, low: np.ndarray, high: np.ndarray) -> None:
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        self._rngs: dict[int, np.random.Generator] = {}

    def reset(self, slot: int, seed: int) -> None:
        self._rngs[slot] = np.random.default_rng([seed, 2])

    def act(self, obs: dict[str, Any], slots: list[int]) -> np.ndarray:
        return np.stack([self._rngs[s].uniform(self.low, self.high)[None] for s in slots]).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "description": "uniform random actions in [-1, 1] (lower anchor)"}


class LeRobotPolicy:
    """A saved LeRobot policy (ours: `llada_vla`) loaded by `vla.policies.inference`, batched in-process."""

    needs_images, scripted = True, None

    def __init__(self, runner: Any) -> None:
        self.runner, self.policy, self.path = runner, runner.policy, runner.path
        self.name = self.policy.name
        self.n_action_steps = int(self.policy.config.n_action_steps)
        self.nfe: list[int] = []  # forwards per chunk call, for the report

    def reset(self, slot: int, seed: int) -> None:
        pass  # stateless between calls: chunk schedules live in the evaluator

    def act(self, obs: dict[str, Any], slots: list[int]) -> np.ndarray:
        chunk = self.runner.predict(obs)  # (b, H, D)
        if getattr(self.policy, "last_nfe", None) is not None:
            self.nfe.append(int(self.policy.last_nfe))
        return chunk

    def describe(self) -> dict[str, Any]:
        c = self.policy.config
        info = {"name": self.name, "path": self.path, "chunk_size": c.chunk_size, "n_action_steps": self.n_action_steps,
                "description": f"{self.name} from {self.path} (chunk {c.chunk_size})"}
        if hasattr(self.policy, "decoding"):  # ours: which decoder, how many steps and slots
            dec = self.policy.decoding()
            info.update(**dec, mean_nfe_per_chunk=float(np.mean(self.nfe)) if self.nfe else None,
                        description=f"{self.name} from {self.path} (decoder {dec['decoder']}, "
                                    f"{dec['decode_steps']} steps, chunk {c.chunk_size})")
        return info


def load_policy(spec: str, device: str | None = None, decoder: str | None = None,
                decode_steps: int | None = None, threshold: float | None = None,
                bf16_weights: bool = False) -> EvalPolicy:
    """A name of `POLICY_ANCHORS` ('expert', 'blind', 'random', 'sweep'), or a saved LeRobot policy
    directory, loaded by `vla.policies.inference.load_pretrained` (ours, `llada_vla`, whose decoder,
    steps and threshold may be overridden and whose weights may be stored in bf16, or any LeRobot
    policy type, e.g. `act`, for baselines)."""
    if spec in ScriptedPolicy.DESCRIPTIONS:
        return ScriptedPolicy(spec)
    if spec == "random":
        return RandomPolicy(-np.ones(4), np.ones(4))  # both suites: 4-d actions in [-1, 1]
    if not (Path(spec) / "config.json").is_file():
        raise ValueError(f"policy {spec!r} is neither one of {list(POLICY_ANCHORS)} nor a checkpoint directory "
                         "with config.json (e.g. outputs/train/x/checkpoints/last/pretrained_model)")
    from vla.policies.inference import load_pretrained  # lazy: env worker processes import this module torch-free

    return LeRobotPolicy(load_pretrained(spec, device, decoder, decode_steps, threshold, bf16_weights,
                                         allow_emulated_bf16=True))


# --- the evaluation loop ------------------------------------------------------------------


def _rows(obs: Any, idx: list[int]) -> Any:
    return {k: _rows(v, idx) for k, v in obs.items()} if isinstance(obs, dict) else obs[idx]


def _frame(obs: dict[str, Any], slot: int) -> np.ndarray:
    pixels = obs["pixels"]
    return (next(iter(pixels.values())) if isinstance(pixels, dict) else pixels)[slot]


def _video_frame(obs: dict[str, Any], info: dict[str, Any], slot: int, video_size: int | None) -> np.ndarray:
    """Slot `slot`'s frame for its video: the env's large render, or the observation image."""
    return np.array(info["video_frame"][slot] if video_size else _frame(obs, slot))


def make_vector_env(cfg: EvalConfig, tasks: list[TaskSpec], policy: EvalPolicy, render: bool) -> gym.vector.VectorEnv:
    """`cfg.n_envs` EvalEnv slots; worker processes (spawn) unless `async_envs` is False."""
    env_kwargs = {"obs_type": "pixels_agent_pos" if render else "state", "camera": cfg.camera, "height": cfg.height,
                  "width": cfg.width, "episode_length": cfg.episode_length,
                  **({"privileged_target": True} if cfg.privileged_target else {})}
    fn = partial(EvalEnv, cfg.suite, [t.name for t in tasks], env_kwargs, policy.scripted, cfg.swap_instructions,
                 cfg.video_size, cfg.instructions)
    use_async = cfg.n_envs > 1 if cfg.async_envs is None else cfg.async_envs
    mode = gym.vector.AutoresetMode.DISABLED
    if use_async:
        envs = gym.vector.AsyncVectorEnv([fn] * cfg.n_envs, context="spawn", autoreset_mode=mode)
    else:
        envs = gym.vector.SyncVectorEnv([fn] * cfg.n_envs, autoreset_mode=mode)
    # every slot needs a last observation before masked resets and steps: with fewer episodes
    # than slots, a slot that never gets one is still stepped (idle) alongside the others
    envs.reset()
    return envs


def evaluate(cfg: EvalConfig, policy: EvalPolicy, anchors: tuple[str, ...] = ()) -> dict[str, Any]:
    """Roll `policy` out for `cfg.n_episodes` per task; returns eval_info (and writes
    eval_info.json, report.md, success.png and videos when `cfg.out_dir` is set).

    anchors: names from `POLICY_ANCHORS` ('expert', 'blind', 'random') rolled out on the same tasks
    and seeds; their success goes into `info['anchors']`, the report and the plot, so the
    policy's number is read between its upper and lower bound.
    """
    unknown = sorted(set(anchors) - set(POLICY_ANCHORS))
    if unknown:
        raise ValueError(f"unknown anchors {unknown}; choose from {list(POLICY_ANCHORS)}")
    info = _rollouts(cfg, policy)
    if anchors:
        quiet = replace(cfg, out_dir=None, max_videos=0)
        info["anchors"] = {name: anchor_summary(_rollouts(quiet, load_policy(name))) for name in anchors}
    if cfg.out_dir:
        info["outputs"] = {k: str(v) for k, v in write_outputs(info, cfg.out_dir).items()}
    return info


def anchor_summary(info: dict[str, Any]) -> dict[str, Any]:
    """The part of an anchor's eval_info that a report next to the policy's needs."""
    keep = ("pc_success", "success_ci95", "n_episodes", "mean_episode_length")
    return {"description": info["policy"].get("description", info["policy"].get("name")),
            "overall": {k: info["overall"][k] for k in keep},
            "per_task": {t["task"]: {k: t["metrics"][k] for k in ("pc_success", "success_ci95")}
                         for t in info["per_task"]}}


def _rollouts(cfg: EvalConfig, policy: EvalPolicy) -> dict[str, Any]:
    """The evaluation loop proper: eval_info of `policy` (videos written, no other files)."""
    tasks = resolve_eval_tasks(cfg.suite, cfg.tasks)
    getattr(policy, "nfe", []).clear()  # per-run statistics of a policy object that may be reused
    n_steps = cfg.n_action_steps or policy.n_action_steps
    queue = deque((t, ti, i) for ti, t in enumerate(tasks) for i in range(cfg.n_episodes))
    total = len(queue)
    videos_dir = Path(cfg.out_dir) / "videos" if cfg.out_dir else None
    want_video = (lambda ti, i: i * len(tasks) + ti < cfg.max_videos) if videos_dir else (lambda ti, i: False)
    # observations carry images for the policy, or for videos made of them (video_size None)
    videos_from_obs = cfg.max_videos > 0 and bool(videos_dir) and not cfg.video_size
    envs = make_vector_env(cfg, tasks, policy, render=policy.needs_images or videos_from_obs)
    m = cfg.temporal_ensemble  # plain: a chunk's first n_steps actions, then ask again; ensembling: ask every step
    schedules = [ActionSchedule(n_steps, "latest") if m is None else ActionSchedule(None, "exp", m)
                 for _ in range(cfg.n_envs)]
    slots: list[dict[str, Any] | None] = [None] * cfg.n_envs
    results: list[EpisodeResult] = []
    latencies, batch_sizes = [], []
    bar = tqdm(total=total, desc=f"eval {policy.name} on {cfg.suite}", unit="ep", disable=not cfg.progress)
    start = time.perf_counter()
    obs: dict[str, Any] = {}

    def assign(free: list[int]) -> None:
        nonlocal obs
        by_task: dict[str, list[int]] = {}
        for j in free:
            if not queue:
                break
            task, ti, i = queue.popleft()
            seed = cfg.seed_base + i
            slots[j] = {"task": task, "ti": ti, "i": i, "seed": seed, "sum": 0.0, "max": -np.inf, "ok": False,
                        "ok_orig": False, "len": 0, "frames": [] if want_video(ti, i) else None}
            schedules[j].clear()
            policy.reset(j, seed)
            by_task.setdefault(task.name, []).append(j)
        for name, js in by_task.items():
            mask = np.zeros(cfg.n_envs, bool)
            mask[js] = True
            seeds = [slots[j]["seed"] if mask[j] else None for j in range(cfg.n_envs)]
            record = [slots[j]["seed"] for j in js if slots[j]["frames"] is not None]
            obs, info = envs.reset(seed=seeds, options={"reset_mask": mask, "task": name, "record_seeds": record})
            for j in js:
                slots[j]["instruction"], slots[j]["original"] = str(info["task"][j]), str(info["original_task"][j])
                if slots[j]["frames"] is not None:
                    slots[j]["frames"].append(_video_frame(obs, info, j, cfg.video_size))

    try:
        assign(list(range(cfg.n_envs)))
        action_dim = envs.single_action_space.shape[0]
        while any(s is not None for s in slots):
            active = [j for j, s in enumerate(slots) if s is not None]
            need = [j for j in active if m is not None or not schedules[j].remaining(slots[j]["len"])]
            if need:
                batch = dict(_rows(obs, need))
                batch["task"] = [slots[j]["instruction"] for j in need]
                t0 = time.perf_counter()
                chunks = np.asarray(policy.act(batch, need), dtype=np.float32)
                latencies.append(1000 * (time.perf_counter() - t0))
                batch_sizes.append(len(need))
                for k, j in enumerate(need):
                    schedules[j].add(chunks[k], slots[j]["len"], slots[j]["len"])
            actions = np.zeros((cfg.n_envs, action_dim), np.float32)
            for j in active:
                actions[j] = schedules[j].pop(slots[j]["len"])
            obs, reward, _, _, info = envs.step(actions)
            none = np.zeros(cfg.n_envs, bool)
            free = []
            for j in active:
                s = slots[j]
                s["sum"] += float(reward[j])
                s["max"] = max(s["max"], float(reward[j]))
                s["len"] += 1
                s["ok"] |= bool(info.get("success", none)[j])
                s["ok_orig"] |= bool(info.get("success_original", none)[j])
                if s["frames"] is not None:
                    s["frames"].append(_video_frame(obs, info, j, cfg.video_size))
                if info.get("episode_done", none)[j]:
                    s["ended_by"] = str(info["ended_by"][j])
                    results.append(_finish(cfg, s, videos_dir))
                    slots[j] = None
                    free.append(j)
                    bar.update(1)
                    bar.set_postfix(success=f"{100 * np.mean([r.success for r in results]):.0f}%")
            if free and queue:
                assign(free)
    finally:
        bar.close()
        envs.close()
    settings = {**{k: v for k, v in asdict(cfg).items() if k not in ("progress", "out_dir")},
                "task_names": [t.name for t in tasks], "n_action_steps": n_steps,
                "execution": (f"temporal ensembling, m={cfg.temporal_ensemble}" if cfg.temporal_ensemble is not None
                              else f"first {n_steps} action(s) of each chunk"),
                "seeds": f"seed_base + i for episode i of every task (seed_base={cfg.seed_base})"}
    return build_eval_info(results, time.perf_counter() - start, latency_summary(latencies, batch_sizes),
                           policy.describe(), settings)


def _finish(cfg: EvalConfig, s: dict[str, Any], videos_dir: Path | None) -> EpisodeResult:
    """Close one slot's episode into a record (and its video, if it was being recorded)."""
    task: TaskSpec = s["task"]
    video = None
    ended_by = s.get("ended_by", "")
    if s["frames"] is not None and videos_dir is not None:
        outcome = f"{ended_by or ('success' if s['ok'] else 'failure')} ({s['len']} steps)"
        frames = annotate_frames(s["frames"], s["instruction"], outcome, s["ok"], hold=cfg.fps)
        video = str(write_video(frames, videos_dir / f"{task.name}_ep{s['i']:03d}.mp4", cfg.fps))
    swap = cfg.swap_instructions
    return EpisodeResult(task=task.name, task_group=task.group, task_id=task.task_id, episode_index=s["i"],
                         seed=s["seed"], instruction=s["instruction"], success=s["ok"], sum_reward=s["sum"],
                         max_reward=s["max"], length=s["len"], original_instruction=s["original"] if swap else None,
                         success_original=s["ok_orig"] if swap else None, video_path=video,
                         ended_by=ended_by)
