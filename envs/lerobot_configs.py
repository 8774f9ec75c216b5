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
from lerobot.utils.constants import ACTION, OBS_STATE

# `lerobot-eval --policy.path=<llada_vla checkpoint>` parses the checkpoint's config before it
# runs, so `llada_vla` and its processor steps must be registered by then. The env plugin
# registers them: `--policy.discover_packages_path` cannot, because lerobot-eval passes every
# `--policy.*` flag on to the saved config, which rejects it as an unknown field.
import vla.policies.configuration_llada_vla  # noqa: F401
import vla.policies.processor_llada_vla  # noqa: F401
from vla.envs.suites import SUITES, SuiteSpec, get_suite


class _SuiteGym:
    """What both suites' configs share: the gym id of `SUITE`, the kwargs it is built with, the
    checks and the features (from the suite registry)."""

    SUITE = ""

    @property
    def spec(self) -> SuiteSpec:
        return get_suite(self.SUITE)

    @property
    def package_name(self) -> str:
        return "vla.envs"

    @property
    def gym_id(self) -> str:
        return self.spec.gym_id

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

    def __post_init__(self) -> None:
        spec, name = self.spec, self.type
        spec.task_ids(self.task)  # raises with the valid names
        if self.camera not in spec.cameras:
            raise ValueError(f"{name}: unknown camera {self.camera!r}; choose from {list(spec.cameras)}")
        if self.obs_type != "pixels_agent_pos":
            raise ValueError(f"{name}: obs_type {self.obs_type!r} is not supported for LeRobot rollouts; "
                             "use 'pixels_agent_pos'")
        # the env's observation keys (pixels dict for tabletop, a bare array for Meta-World) -> the dataset's
        pixels = "pixels" if spec.single_image_key else f"pixels/{self.camera}"
        self.features = {
            ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(spec.action_dim,)),
            "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(spec.state_dim,)),
            pixels: PolicyFeature(type=FeatureType.VISUAL, shape=(self.observation_height, self.observation_width, 3)),
        }
        self.features_map = {ACTION: ACTION, "agent_pos": OBS_STATE, pixels: spec.image_key(self.camera)}


TABLETOP, METAWORLD = SUITES["tabletop"], SUITES["metaworld"]


@EnvConfig.register_subclass("vla_tabletop")
@dataclass
class VLATabletopEnvConfig(_SuiteGym, EnvConfig):
    """Our tabletop suite. task: 'push', 'touch', 'reach', a comma-separated list, or 'all'."""

    SUITE = "tabletop"
    task: str = "all"
    fps: int = TABLETOP.fps
    episode_length: int = TABLETOP.episode_length
    obs_type: str = "pixels_agent_pos"
    render_mode: str = "rgb_array"
    camera: str = TABLETOP.camera
    observation_height: int = TABLETOP.image_size[0]
    observation_width: int = TABLETOP.image_size[1]
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)


@EnvConfig.register_subclass("vla_meta_world")
@dataclass
class VLAMetaWorldEnvConfig(_SuiteGym, EnvConfig):
    """Meta-World through `vla.envs.metaworld_suite`. task: a task name, MT10, MT50, a
    difficulty group (easy / medium / hard / very_hard) or a comma-separated mix; with
    several tasks, evaluation seeds sweep them (seed s runs task s % n)."""

    SUITE = "metaworld"
    task: str = "MT10"
    fps: int = METAWORLD.fps
    episode_length: int = METAWORLD.episode_length
    obs_type: str = "pixels_agent_pos"
    render_mode: str = "rgb_array"
    camera: str = METAWORLD.camera
    observation_height: int = METAWORLD.image_size[0]
    observation_width: int = METAWORLD.image_size[1]
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)
