"""LeRobot env-config plugins for our suites (lerobot 0.4.4 `EnvConfig` subclasses).

This module owns how `lerobot-eval` / `lerobot-train` find and build our envs:

    lerobot-eval --env.discover_packages_path=vla.envs --env.type=vla_tabletop \
        --env.task=all ...
    lerobot-eval --env.discover_packages_path=vla.envs --env.type=vla_meta_world \
        --env.task=MT10 ...

LeRobot's plugin loader imports every submodule of `vla.envs`, which runs the
`register_subclass` decorators below. `lerobot.envs.factory.make_env(cfg)` then takes its
generic path: `gym.make(cfg.gym_id, **cfg.gym_kwargs)` for each of `n_envs` sub-envs, after
importing `cfg.package_name` (which registers the gym ids).

The horizon travels as `episode_length`: a `max_episode_steps` kwarg would be taken by
`gym.make` itself, which then wraps the env in `TimeLimit` and hides `task_description`
from LeRobot (every task string would arrive empty).

Naming: the Meta-World type is `vla_meta_world`, not `..._metaworld`, because lerobot 0.4.4's
factory routes every type whose name *contains* "metaworld" to its own Meta-World env.

Observation keys follow LeRobot (`preprocess_observation`): `agent_pos` becomes
`observation.state`; a pixels dict `{cam: image}` becomes `observation.images.<cam>`
(tabletop) and a bare pixels array becomes `observation.image` (Meta-World, as LeRobot's
own Meta-World env); the task string comes from the env's `task_description`. These keys
match the datasets written by `vla.envs.recorder`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_IMAGE, OBS_IMAGES, OBS_STATE

# `lerobot-eval --policy.path=<llada_vla checkpoint>` parses the checkpoint's config before it
# runs, so `llada_vla` and its processor steps must be registered by then. The env plugin
# registers them: `--policy.discover_packages_path` cannot, because lerobot-eval passes every
# `--policy.*` flag on to the saved config, which rejects it as an unknown field.
import vla.policies.configuration_llada_vla  # noqa: F401, E402
import vla.policies.processor_llada_vla  # noqa: F401, E402
from vla.envs import GYM_IDS
from vla.envs.metaworld_suite import CAMERAS as METAWORLD_CAMERAS
from vla.envs.metaworld_suite import FPS as METAWORLD_FPS
from vla.envs.tabletop import CAMERAS as TABLETOP_CAMERAS
from vla.envs.tabletop import CONTROL_DT


def _check_common(name: str, camera: str, cameras: tuple[str, ...], obs_type: str) -> None:
    if camera not in cameras:
        raise ValueError(f"{name}: unknown camera {camera!r}; choose from {list(cameras)}")
    if obs_type != "pixels_agent_pos":
        raise ValueError(f"{name}: obs_type {obs_type!r} is not supported for LeRobot rollouts; use 'pixels_agent_pos'")


class _SuiteGym:
    """What both suites' configs share: the gym id of `SUITE` and the kwargs it is built with."""

    SUITE = ""

    @property
    def package_name(self) -> str:
        return "vla.envs"

    @property
    def gym_id(self) -> str:
        return GYM_IDS[self.SUITE]

    @property
    def gym_kwargs(self) -> dict:
        return {
            "task": self.task,
            "obs_type": self.obs_type,
            "camera": self.camera,
            "height": self.observation_height,
            "width": self.observation_width,
            "episode_length": self.episode_length,
            "render_mode": self.render_mode,
        }


@EnvConfig.register_subclass("vla_tabletop")
@dataclass
class VLATabletopEnvConfig(_SuiteGym, EnvConfig):
    """Our tabletop suite. task: 'push', 'touch', 'reach', a comma-separated list, or 'all'."""

    SUITE = "tabletop"
    task: str = "all"
    fps: int = int(round(1 / CONTROL_DT))
    episode_length: int = 100
    obs_type: str = "pixels_agent_pos"
    render_mode: str = "rgb_array"
    camera: str = "front"
    observation_height: int = 96
    observation_width: int = 96
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from vla.envs.tabletop import parse_families

        parse_families(self.task)  # raises with the valid names
        _check_common("vla_tabletop", self.camera, TABLETOP_CAMERAS, self.obs_type)
        pixels = f"pixels/{self.camera}"
        self.features = {
            ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(4,)),
            "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(4,)),
            pixels: PolicyFeature(
                type=FeatureType.VISUAL,
                shape=(self.observation_height, self.observation_width, 3),
            ),
        }
        self.features_map = {
            ACTION: ACTION,
            "agent_pos": OBS_STATE,
            pixels: f"{OBS_IMAGES}.{self.camera}",
        }



@EnvConfig.register_subclass("vla_meta_world")
@dataclass
class VLAMetaWorldEnvConfig(_SuiteGym, EnvConfig):
    """Meta-World through `vla.envs.metaworld_suite`. task: a task name, MT10, MT50, a
    difficulty group (easy / medium / hard / very_hard) or a comma-separated mix; with
    several tasks, evaluation seeds sweep them (seed s runs task s % n)."""

    SUITE = "metaworld"
    task: str = "MT10"
    fps: int = METAWORLD_FPS
    episode_length: int = 500
    obs_type: str = "pixels_agent_pos"
    render_mode: str = "rgb_array"
    camera: str = "corner4"
    observation_height: int = 128
    observation_width: int = 128
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from vla.envs.metaworld_suite import resolve_tasks

        resolve_tasks(self.task)  # raises with the valid names
        _check_common("vla_meta_world", self.camera, METAWORLD_CAMERAS, self.obs_type)
        self.features = {
            ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(4,)),
            "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(4,)),
            "pixels": PolicyFeature(
                type=FeatureType.VISUAL,
                shape=(self.observation_height, self.observation_width, 3),
            ),
        }
        self.features_map = {ACTION: ACTION, "agent_pos": OBS_STATE, "pixels": OBS_IMAGE}

