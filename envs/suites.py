"""The suite registry: every per-suite fact in one place (`SUITES`, `get_suite`).

A `SuiteSpec` says what a suite is (gym id, cameras, default image size, horizon, control
rate, state and action dims and names, how its camera image is keyed) and where its code
lives, as `module:attribute` entry points resolved by name when first used (as gymnasium's
registry does): importing this module costs nothing, and tabletop code never loads
Meta-World. Collection, evaluation, the recorder, the LeRobot env configs, the simulated
robot and `make_env` all read their defaults here.

Each suite module provides the same entry points: the env class, `task_ids(spec)` (stable
id and name of each task a spec names; raises listing the valid names), `instructions()`
(every instruction string the suite can produce: the tokenizer of an untrained policy is
trained on them) and its scripted expert class.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

STATE_NAMES = ("x", "y", "z", "gripper")  # both suites: fingertip xyz + gripper opening
ACTION_NAMES = ("dx", "dy", "dz", "gripper")  # both suites: xyz deltas in [-1, 1], gripper command


def load_entry_point(entry: str) -> Any:
    """'package.module:attribute' -> the attribute (imports the module)."""
    module, _, attribute = entry.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    gym_id: str
    env: str  # entry point of the gymnasium env class
    expert: str  # entry point of the scripted expert class: Expert(noise_std, seed)
    tasks: str  # entry point of task_ids(spec) -> [(stable task id, task name)]
    instructions: str  # entry point of instructions() -> every instruction string of the suite
    cameras: tuple[str, ...]  # the first is the default
    image_size: tuple[int, int]  # default (height, width)
    episode_length: int  # default horizon (steps)
    fps: int  # control steps per second (the dataset's fps)
    single_image_key: bool  # True: the image is LeRobot's `observation.image`; else observation.images.<camera>
    # how demonstrations store images, a name of vla.envs.recorder.STORAGES. Chosen by BENCHMARKS "Demonstration
    # image storage": LeRobot's AV1 yuv420p shifts colored pixels (goal dots, blocks) by 18/255 on average on
    # tabletop (p99 116) and 11 on Meta-World (max 255: the goal dot is lost). Tabletop stores PNG (exact, 1.5x
    # AV1's bytes at 96 px); Meta-World h264 yuv444p crf 0 (max error 2, 4x AV1's bytes; PNG would be 11x)
    storage: str = "av1"
    state_names: tuple[str, ...] = STATE_NAMES
    action_names: tuple[str, ...] = ACTION_NAMES
    # what the env's `privileged_target=True` appends to the state (a label no real robot has: the recipe
    # ablation's diagnostic only); () where the suite has no such option
    privileged_names: tuple[str, ...] = ()

    @property
    def camera(self) -> str:
        return self.cameras[0]

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    def image_key(self, camera: str) -> str:
        """Dataset / policy key of the camera's image (as LeRobot's `preprocess_observation` names it)."""
        return "observation.image" if self.single_image_key else f"observation.images.{camera}"

    def make_env(self, **kwargs: Any) -> Any:
        return load_entry_point(self.env)(**kwargs)

    def make_expert(self, noise_std: float = 0.0, seed: int | None = None) -> Any:
        return load_entry_point(self.expert)(noise_std, seed)

    def task_ids(self, spec: str) -> list[tuple[int, str]]:
        return load_entry_point(self.tasks)(spec)

    def all_instructions(self) -> list[str]:
        return load_entry_point(self.instructions)()


SUITES: dict[str, SuiteSpec] = {
    "metaworld": SuiteSpec(
        name="metaworld", gym_id="vla/MetaWorld-v0", env="vla.envs.metaworld_suite:MetaWorldEnv",
        expert="vla.envs.metaworld_suite:MetaWorldExpert", tasks="vla.envs.metaworld_suite:task_ids",
        instructions="vla.envs.metaworld_suite:instructions",
        # corner4 is LeRobot's moved corner2 pose (its Meta-World protocol)
        cameras=("corner4", "corner", "corner2", "corner3", "topview", "behindGripper", "gripperPOV"),
        image_size=(128, 128), episode_length=500, fps=80,  # Meta-World's rate: frame_skip 5 x 0.0025 s
        single_image_key=True, storage="h264_444"),
    "tabletop": SuiteSpec(
        name="tabletop", gym_id="vla/Tabletop-v0", env="vla.envs.tabletop:TabletopEnv",
        expert="vla.envs.experts:TabletopExpert", tasks="vla.envs.tabletop:task_ids",
        instructions="vla.envs.tabletop:instructions", cameras=("front", "top"), image_size=(96, 96),
        episode_length=100, fps=20, single_image_key=False, storage="png",
        privileged_names=("target_block_x", "target_block_y", "target_block_z", "target_zone_x", "target_zone_y")),
}


def get_suite(name: str) -> SuiteSpec:
    """The registered suite `name`; raises listing the valid names."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose from {sorted(SUITES)}")
    return SUITES[name]
