"""End to end on loopback: tabletop episodes through server + client + controller equal in-process rollouts."""

from __future__ import annotations

import numpy as np
import torch

SEEDS = [0, 1, 2]
EPISODE = 30  # steps per episode (6 chunks of 5): enough for the plans to diverge if anything differed


def in_process_rollout(policy_dir, seed):
    """What lerobot-eval does: preprocess_observation -> preprocessor -> select_action -> postprocessor."""
    from lerobot.envs.utils import preprocess_observation
    from lerobot.policies.factory import make_pre_post_processors

    from vla.envs import make_env
    from vla.policies.modeling_llada_vla import LLaDAVLAPolicy

    policy = LLaDAVLAPolicy.from_pretrained(policy_dir).eval()
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(policy_dir))
    env = make_env("tabletop", task="all", episode_length=EPISODE)
    obs, _ = env.reset(seed=seed)
    policy.reset()
    actions, success = [], False
    while True:
        batch = {**preprocess_observation(obs), "task": [env.task_description]}
        with torch.inference_mode():
            action = post(policy.select_action(pre(batch)))[0].numpy()
        action = np.clip(action, -1, 1)  # what the safety layer's bounds do
        actions.append(action.astype(np.float32))
        obs, _, terminated, truncated, info = env.step(action)
        success = success or bool(info["success"])
        if terminated or truncated:
            return np.stack(actions), success


def test_served_episodes_take_the_same_actions_as_in_process_rollouts(server, policy_dir):
    from vla.envs.robot_sim import make_sim_robot, suite_safety_config
    from vla.policies.client import PolicyClient
    from vla.policies.controller import ControllerConfig, ControlLoop, SafetyLayer

    _, url = server
    client = PolicyClient(url, token="test-token", timeout_s=10)
    meta = client.connect()
    assert meta.cameras == {"front": [96, 96, 3]} and meta.action_dim == 4 and meta.chunk_size == 5
    distinct = set()
    for seed in SEEDS:
        robot = make_sim_robot("tabletop", seed, episode_length=EPISODE)
        loop = ControlLoop(robot, client, SafetyLayer(suite_safety_config(max_delta=None)),
                           ControllerConfig(control_hz=meta.control_hz, n_action_steps=meta.n_action_steps,
                                            lockstep=True))
        report = loop.run(max_steps=EPISODE + 5)
        expected, expected_success = in_process_rollout(policy_dir, seed)
        served = np.stack(robot.actions)
        assert served.shape == expected.shape == (EPISODE, 4)
        np.testing.assert_array_equal(served, expected)
        assert robot.success == expected_success
        assert report.summary()["requests"] == EPISODE // meta.n_action_steps
        assert all(t.source == "plan" for t in report.ticks)
        distinct |= {a.tobytes() for a in served}
    assert len(distinct) >= 6  # the actions depend on the observation: equality is not trivial
    client.close()
