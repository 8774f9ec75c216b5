"""Our MuJoCo suites as controller robots, for running the deployment stack in simulation.

This module owns `SimRobot`: a tabletop or Meta-World env (pixels + agent_pos
observations) behind the controller's `Robot` interface, so `scripts/run_controller.py`
drives a simulated episode through the policy server exactly as it would drive a real arm.
It also holds each suite's safety limits (`suite_safety_config`) and
`save_untrained_policy`, a freshly initialized policy with a suite's features for smoke
tests and latency benchmarks (weights are random: success numbers mean nothing).

`run_sim_episodes` runs controller episodes over seeds (what `scripts/run_controller.py`
and `scripts/bench_serve.py` report). Nothing here imports torch but `save_untrained_policy`,
lazily: the controller in simulation runs without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vla.envs import make_env
from vla.envs.suites import SUITES, get_suite
from vla.policies.controller.robot import Robot
from vla.policies.controller.runtime import ControllerConfig, ControlLoop, RunReport
from vla.policies.controller.safety import SafetyConfig, SafetyLayer

SUITE_FPS = {name: float(spec.fps) for name, spec in SUITES.items()}


def suite_safety_config(max_delta: float | None = 0.5) -> SafetyConfig:
    """Both suites' action space [-1, 1]^4; holding = no motion, gripper as it is."""
    return SafetyConfig(low=[-1.0] * 4, high=[1.0] * 4, max_delta=max_delta, stop_action=[0.0, 0.0, 0.0, np.nan])


class SimRobot(Robot):
    """One simulated episode: `reset(seed)` at construction, `send` steps the env.

    `success` turns True at the first step reporting success; `done` when the env
    terminates or truncates. `actions` records every command applied (for comparisons).
    """

    def __init__(self, env: Any, seed: int, options: dict[str, Any] | None = None) -> None:
        self.env, self.seed = env, seed
        self._obs, _ = env.reset(seed=seed, options=options)
        self.task = env.task_description
        self.success, self._done, self.steps = False, False, 0
        self.actions: list[np.ndarray] = []

    def observe(self) -> dict[str, Any]:
        pixels = self._obs["pixels"]
        images = dict(pixels) if isinstance(pixels, dict) else {"image": pixels}
        return {"images": images, "state": np.asarray(self._obs["agent_pos"], dtype=np.float32), "task": self.task}

    def send(self, action: np.ndarray) -> None:
        if self._done:
            return
        self._obs, _, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float32))
        self.actions.append(np.asarray(action, dtype=np.float32).copy())
        self.steps += 1
        self.success = self.success or bool(info.get("success", False))
        self._done = bool(terminated or truncated)

    @property
    def done(self) -> bool:
        return self._done

    def close(self) -> None:
        self.env.close()


def make_sim_robot(suite: str, seed: int, task: str = "all", **env_kwargs: Any) -> SimRobot:
    """A `SimRobot` over `vla.envs.make_env(suite, task=task, **env_kwargs)` reset with `seed`."""
    return SimRobot(make_env(suite, task=task, **env_kwargs), seed)


def run_sim_episodes(source: Any, suite: str, seeds: list[int], config: ControllerConfig, safety: SafetyConfig,
                     task: str = "all", on_episode: Callable[[dict[str, Any]], None] | None = None,
                     on_event: Callable[[str], None] | None = None,
                     **env_kwargs: Any) -> tuple[list[dict[str, Any]], RunReport]:
    """Run one controller episode per seed; -> (per-episode records, all ticks/requests merged).

    `source` is a connected `PolicyClient` (or any chunk source). An episode runs until the
    env ends it (episode_length, default 100 steps) or 2x that many ticks (holds that send
    nothing do not step the env). `on_episode(record)` runs as each episode ends and
    `on_event(line)` for the loop's console lines. Once a loop gives up (`give_up_s`
    without a chunk) no further episode starts; the merged report's `stopped` says why.
    A record's `holds` counts its ticks that held (never more than its `ticks`); `steps`
    counts env steps (commands applied, holds included).
    """
    records, merged = [], RunReport()
    env = make_env(suite, task=task, **env_kwargs)
    try:
        for seed in seeds:
            robot = SimRobot(env, seed)
            loop = ControlLoop(robot, source, SafetyLayer(safety), config, on_event=on_event)
            report = loop.run(max_steps=2 * getattr(env, "_max_episode_steps", 500))
            summary = report.summary()
            records.append({"seed": seed, "task": robot.task, "success": robot.success, "steps": robot.steps,
                            "ticks": summary["ticks"], "holds": summary["holds"],
                            "hold_reasons": summary["hold_reasons"],
                            "watchdog_fired": summary["watchdog_fired"], "stopped": report.stopped})
            merged.ticks += report.ticks
            merged.requests += report.requests
            merged.watchdog_fired += report.watchdog_fired
            for k, v in report.safety_counts.items():
                merged.safety_counts[k] = merged.safety_counts.get(k, 0) + v
            if on_episode is not None:
                on_episode(records[-1])
            if report.stopped:
                merged.stopped = report.stopped
                break
    finally:
        env.close()
    return records, merged


def save_untrained_policy(out_dir: str | Path, suite: str = "tabletop", image_hw: tuple[int, int] = (96, 96),
                          **config: Any) -> Path:
    """Write a freshly initialized `llada_vla` policy (+ processors) with `suite`'s features.

    `config` overrides `LLaDAVLAConfig` fields (sizes, decoder, ...). Normalization stats
    are the identity for state and [-1, 1] for actions (the suites' action space).
    -> the directory (load it with `LLaDAVLAPolicy.from_pretrained` or scripts/serve.py).
    """
    # lazy: the rest of this module runs the controller in simulation without torch
    import pandas as pd
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.factory import make_pre_post_processors

    from vla.policies import LLaDAVLAConfig
    from vla.policies.modeling_llada_vla import LLaDAVLAPolicy

    spec = get_suite(suite)
    cfg = LLaDAVLAConfig(**{"device": "cpu", "push_to_hub": False, **config})
    cfg.input_features = {spec.image_key(spec.camera): PolicyFeature(FeatureType.VISUAL, (3, *image_hw)),
                          "observation.state": PolicyFeature(FeatureType.STATE, (spec.state_dim,))}
    cfg.output_features = {"action": PolicyFeature(FeatureType.ACTION, (spec.action_dim,))}

    class _Meta:  # what build_tokenizer reads from a LeRobotDatasetMetadata
        root = ""
        tasks = pd.DataFrame(index=spec.all_instructions())

    policy = LLaDAVLAPolicy(cfg, dataset_meta=_Meta())
    s, a = spec.state_dim, spec.action_dim
    stats = {"observation.state": {"mean": np.zeros(s, np.float32), "std": np.ones(s, np.float32)},
             "action": {"q01": -np.ones(a, np.float32), "q99": np.ones(a, np.float32)}}
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    out = Path(out_dir)
    for part in (policy, pre, post):
        part.save_pretrained(out)
    return out
