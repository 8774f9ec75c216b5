"""LeRobot plugin: our EnvConfigs register through `discover_packages_path`, LeRobot's own
`make_env` builds our envs, and the observations reach policies under the same keys our
datasets use (with the instruction as the task string)."""

from __future__ import annotations

import numpy as np
import pytest
from lerobot.configs.parser import load_plugin
from lerobot.envs.configs import EnvConfig
from lerobot.envs.factory import make_env
from lerobot.envs.utils import add_envs_task, env_to_policy_features, preprocess_observation

from vla.envs.recorder import dataset_features

load_plugin("vla.envs")  # what --env.discover_packages_path=vla.envs does


@pytest.mark.parametrize(
    ("env_type", "task", "suite", "camera", "size", "instructions"),
    [
        ("vla_tabletop", "touch", "tabletop", "front", 96, ["touch the blue block", "touch the green block"]),
        (
            "vla_meta_world",
            "reach-v3,push-v3",
            "metaworld",
            "corner4",
            128,
            ["Reach a goal position", "Push the puck to a goal"],
        ),
    ],
)
def test_make_env_builds_our_envs_with_lerobot_keys(env_type, task, suite, camera, size, instructions):
    cfg = EnvConfig.get_choice_class(env_type)(task=task)
    envs = make_env(cfg, n_envs=2)
    vec = envs[env_type][0]
    obs, _ = vec.reset(seed=[0, 1])
    batch = add_envs_task(vec, preprocess_observation(obs))
    image_key = next(k for k in batch if k.startswith("observation.image"))
    assert batch[image_key].shape == (2, 3, size, size)
    assert batch["observation.state"].shape == (2, 4)
    assert batch["task"] == instructions
    # The policy sees exactly the features a recorded dataset of this suite holds.
    assert set(env_to_policy_features(cfg)) == set(dataset_features(suite, camera, size, size))
    assert vec.call("_max_episode_steps")[0] == cfg.episode_length
    _, _, terminated, truncated, info = vec.step(np.zeros((2, 4), np.float32))
    assert not terminated.any() and not truncated.any() and "is_success" in info
    vec.close()


def test_configs_reject_unknown_names_with_the_valid_choices():
    with pytest.raises(ValueError, match="corner4"):
        EnvConfig.get_choice_class("vla_meta_world")(task="MT10", camera="frontview")
    with pytest.raises(ValueError, match="MT50"):
        EnvConfig.get_choice_class("vla_meta_world")(task="MT11")
    with pytest.raises(ValueError, match="push"):
        EnvConfig.get_choice_class("vla_tabletop")(task="stack")
