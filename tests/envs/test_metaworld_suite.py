"""Meta-World suite: task sets, gymnasium contract, upright images, seeding, instructions,
and the scripted experts on MT10."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from vla.envs.instructions import metaworld_instruction, metaworld_paraphrases
from vla.envs.metaworld_suite import MetaWorldEnv, MetaWorldExpert, all_task_names, resolve_tasks, task_sets
from vla.envs.rendering import CameraRenderer


def test_task_sets_match_lerobot_and_metaworld():
    sets = task_sets()
    assert len(resolve_tasks("MT10")) == 10
    assert len(resolve_tasks("MT50")) == 50
    sizes = {g: len(sets[g]) for g in ("easy", "medium", "hard", "very_hard")}
    assert sizes == {"easy": 28, "medium": 11, "hard": 6, "very_hard": 5}
    groups = sum((sets[g] for g in sizes), [])
    assert sorted(groups) == sorted(all_task_names())  # the groups partition MT50
    assert resolve_tasks("reach-v3, MT10") == resolve_tasks("MT10")  # de-duplicated


def test_unknown_names_list_valid_choices():
    with pytest.raises(ValueError, match="MT10"):
        resolve_tasks("MT11")
    with pytest.raises(ValueError, match="corner4"):
        MetaWorldEnv(task="reach-v3", camera="wrist")
    with pytest.raises(ValueError, match="pixels_agent_pos"):
        MetaWorldEnv(task="reach-v3", obs_type="depth")


def test_every_task_has_an_instruction_and_three_paraphrases():
    for task in all_task_names():
        canonical = metaworld_instruction(task)
        paraphrases = metaworld_paraphrases(task)
        assert canonical and len(paraphrases) >= 3
        assert canonical not in paraphrases and len(set(paraphrases)) == len(paraphrases)


def test_gymnasium_env_checker_passes():
    env = MetaWorldEnv(task="reach-v3", height=48, width=48)
    check_env(env, skip_render_check=False)
    env.close()


def test_observation_state_is_hand_and_gripper():
    env = MetaWorldEnv(task="push-v3", height=64, width=64)
    obs, info = env.reset(seed=0)
    assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].dtype == np.uint8
    np.testing.assert_allclose(obs["agent_pos"], env.raw_state[:4].astype(np.float32))
    np.testing.assert_allclose(obs["agent_pos"][:3], env.sawyer.tcp_center, atol=0.05)
    assert info["task"] == "Push the puck to a goal" == env.task_description
    env.close()


def test_corner_camera_frames_are_flipped_upright():
    """In LeRobot's view the table fills the lower part of the frame and the floor / back
    wall the upper part. The raw corner4 render has them the other way round."""
    env = MetaWorldEnv(task="reach-v3", height=96, width=96)
    obs, _ = env.reset(seed=0)
    img = obs["pixels"].astype(int)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    wood = (r > g + 15) & (g > b + 5) & (r < 200)  # the brown table top
    assert wood[48:].mean() > 0.3 and wood[:48].mean() < wood[48:].mean() / 2
    raw = CameraRenderer(env.sawyer.model, "corner4", 96, 96, flip=False)
    np.testing.assert_array_equal(raw.render(env.sawyer.data), obs["pixels"][::-1, ::-1])
    raw.close()
    # video frames (another renderer, another size) are flipped the same way, for every task's model
    np.testing.assert_array_equal(env.render_at(96, 96), obs["pixels"])
    assert env.render_at(160, 160).shape == (160, 160, 3)
    env.close()


def test_seeded_resets_are_reproducible_and_task_sets_sweep_by_seed():
    env = MetaWorldEnv(task="reach-v3,push-v3", obs_type="state")
    a, _ = env.reset(seed=4)
    assert env.current_task == "reach-v3"
    b, _ = env.reset(seed=4)
    np.testing.assert_array_equal(a["environment_state"], b["environment_state"])
    c, _ = env.reset(seed=6)
    assert not np.array_equal(a["environment_state"][36:], c["environment_state"][36:])  # goal
    env.reset(seed=5)
    assert env.current_task == "push-v3"
    env.reset(seed=0, options={"task": "push-v3"})
    assert env.current_task == "push-v3"
    env.close()


def test_episode_length_truncates():
    env = MetaWorldEnv(task="reach-v3", obs_type="state", episode_length=5)
    env.reset(seed=0)
    for _ in range(4):
        assert not env.step(np.zeros(4, np.float32))[3]
    assert env.step(np.zeros(4, np.float32))[3]


@pytest.mark.slow
def test_expert_succeeds_at_least_95_percent_on_mt10():
    tasks = resolve_tasks("MT10")
    env = MetaWorldEnv(task="MT10", obs_type="state")
    expert = MetaWorldExpert()
    results = []
    for task in tasks:
        for seed in (0, 1):
            env.reset(seed=seed, options={"task": task})
            for _ in range(env._max_episode_steps):
                _, _, terminated, truncated, info = env.step(expert(env))
                if terminated or truncated:
                    break
            results.append(info["success"])
    assert np.mean(results) >= 0.95, f"MT10 expert success {np.mean(results):.2f}"
    env.close()


@pytest.mark.parametrize("task", ["reach-v3", "push-v3", "pick-place-v3"])
def test_the_goal_site_is_at_the_target_in_the_first_observation(task):
    """Meta-World moves its goal sites only inside `step`: without resetting them, the first
    frame of an episode drew the goal where the previous episode had it."""
    env = MetaWorldEnv(task=task, obs_type="pixels_agent_pos", height=64, width=64)
    try:
        for seed in range(3):  # a new goal at every seeded reset
            env.reset(seed=seed)
            for name, pos in env.sawyer._target_site_config:
                np.testing.assert_allclose(env.sawyer.data.site(name).xpos, pos[:3], atol=1e-9, err_msg=f"{task} {name}")
    finally:
        env.close()
