"""Tabletop suite: gymnasium contract, seeding, image orientation and size, expert success,
and language decisiveness (the instruction, not the image, decides the goal)."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from vla.envs.experts import TabletopExpert
from vla.envs.tabletop import (
    BLOCK_COLORS,
    FAMILIES,
    ZONE_COLORS,
    Goal,
    TabletopEnv,
    all_goals,
)

SEEDS = range(20)


def run(env: TabletopEnv, seed: int, options=None, actions=None):
    """Roll out the expert (or replay `actions`); returns (success, actions taken)."""
    env.reset(seed=seed, options=options)
    expert, taken, success = TabletopExpert(), [], False
    # A replay holds the last action for a few steps (the scene settles), then stops.
    horizon = env._max_episode_steps if actions is None else len(actions) + 5
    for t in range(horizon):
        action = expert(env) if actions is None else actions[min(t, len(actions) - 1)]
        taken.append(action)
        _, _, terminated, truncated, info = env.step(action)
        success = success or info["success"]
        if terminated or truncated:
            break
    return success, taken


def test_gymnasium_env_checker_passes():
    env = TabletopEnv(task="all", height=64, width=64)
    check_env(env, skip_render_check=False)
    env.close()


def test_observation_layout_and_state():
    env = TabletopEnv(task="push")
    obs, info = env.reset(seed=3)
    assert obs["pixels"]["front"].shape == (96, 96, 3) and obs["pixels"]["front"].dtype == np.uint8
    np.testing.assert_allclose(obs["agent_pos"][:3], env.tcp_pos, atol=1e-6)
    assert 0.0 <= obs["agent_pos"][3] <= 1.0
    assert info["task"] == env.task_description == env.goal.instruction
    obs, *_ = env.step(np.array([1.0, 0.0, 0.0, 1.0], np.float32))
    assert obs["agent_pos"][0] == pytest.approx(env.tcp_pos[0])
    env.close()


def test_the_privileged_state_appends_the_named_target_and_nothing_else_changes():
    plain = TabletopEnv(task="all", obs_type="state")
    env = TabletopEnv(task="all", obs_type="state", privileged_target=True)
    try:
        assert env.observation_space["agent_pos"].shape == (9,)
        for options in ({"family": "push", "block": BLOCK_COLORS[0], "zone": ZONE_COLORS[1]}, {"family": "touch", "block": BLOCK_COLORS[2]},
                        {"family": "reach", "zone": ZONE_COLORS[0]}):
            obs, _ = env.reset(seed=5, options=options)
            base, _ = plain.reset(seed=5, options=options)
            np.testing.assert_array_equal(obs["agent_pos"][:4], base["agent_pos"])
            block, zone = obs["agent_pos"][4:7], obs["agent_pos"][7:]
            expected_block = env.block_pos(options["block"]) if "block" in options else np.zeros(3)
            expected_zone = env.zone_pos(options["zone"])[:2] if "zone" in options else np.zeros(2)
            np.testing.assert_allclose(block, expected_block, atol=1e-6)
            np.testing.assert_allclose(zone, expected_zone, atol=1e-6)
            assert env.observation_space["agent_pos"].contains(obs["agent_pos"])
    finally:
        env.close()
        plain.close()


def test_seeded_resets_are_reproducible_and_seeds_differ():
    env = TabletopEnv(task="all")
    a, _ = env.reset(seed=7)
    goal_a = env.goal
    b, _ = env.reset(seed=7)
    assert env.goal == goal_a
    np.testing.assert_array_equal(a["pixels"]["front"], b["pixels"]["front"])
    c, _ = env.reset(seed=8)
    assert not np.array_equal(a["pixels"]["front"], c["pixels"]["front"])
    env.close()


def test_layout_keeps_blocks_off_zones_and_apart():
    env = TabletopEnv(task="push", obs_type="state")
    for seed in range(30):
        env.reset(seed=seed)
        blocks = [env.block_pos(c)[:2] for c in BLOCK_COLORS]
        zones = [env.zone_pos(c)[:2] for c in ZONE_COLORS]
        for b in blocks:
            assert min(np.linalg.norm(b - z) for z in zones) >= 0.1
        assert min(np.linalg.norm(p - q) for i, p in enumerate(blocks) for q in blocks[i + 1 :]) >= 0.12


def test_image_is_upright():
    """A block placed at the far right of the table must appear in the upper right of the
    frame (far = up, +x = right); an upside-down or mirrored frame fails this."""
    env = TabletopEnv(task="touch")
    env.reset(seed=0)
    adr = env._block_qadr["red"]
    env.data.qpos[adr : adr + 2] = [0.17, 0.17]
    for other, xy in (("green", (-0.17, -0.12)), ("blue", (-0.17, 0.0))):
        a = env._block_qadr[other]
        env.data.qpos[a : a + 2] = xy
    import mujoco

    mujoco.mj_forward(env.model, env.data)
    seg = env.segmentation()
    rows, cols = np.nonzero(seg == env._block_geom["red"])
    assert rows.size > 0
    assert rows.mean() < 96 / 2 and cols.mean() > 96 / 2
    img = env.render().astype(int)
    red = (img[..., 0] > 150) & (img[..., 1] < 80) & (img[..., 2] < 80)
    r, c = np.nonzero(red)
    assert r.size > 20 and r.mean() < 48 and c.mean() > 48
    np.testing.assert_array_equal(env.render_at(96, 96), env.render())  # video frames: same camera, same way up
    big = env.render_at(256, 256).astype(int)
    red = (big[..., 0] > 150) & (big[..., 1] < 80) & (big[..., 2] < 80)
    r, c = np.nonzero(red)
    assert r.size > 20 * (256 / 96) ** 2 * 0.5 and r.mean() < 128 and c.mean() > 128
    env.close()


def test_every_object_is_at_least_8_px_across_at_default_resolution():
    env = TabletopEnv(task="push")
    for seed in range(8):
        env.reset(seed=seed)
        env.data.mocap_pos[env._hand_mocap] = [0.0, -0.3, 0.25]  # keep the hand out of view
        import mujoco

        mujoco.mj_forward(env.model, env.data)
        seg = env.segmentation()
        for name in [f"block_{c}" for c in BLOCK_COLORS] + [f"zone_{c}" for c in ZONE_COLORS]:
            rows, cols = np.nonzero(seg == env.model.geom(name).id)
            assert rows.size > 0, f"{name} not visible for seed {seed}"
            assert cols.max() - cols.min() + 1 >= 8, name
            assert rows.max() - rows.min() + 1 >= 8, name
    env.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_expert_succeeds_at_least_95_percent(family):
    env = TabletopEnv(task=family, obs_type="state")
    results = [run(env, seed)[0] for seed in SEEDS]
    assert np.mean(results) >= 0.95, f"{family}: {np.mean(results):.2f}"


@pytest.mark.parametrize("family", FAMILIES)
def test_one_scene_admits_every_goal_of_its_family(family):
    """The layout depends on the seed only: forcing different goals (instructions) on one
    seed gives the same image, so only the instruction can tell the goals apart."""
    env = TabletopEnv(task=family, height=64, width=64)
    goals = all_goals(family)
    assert len(goals) >= 3
    frames = []
    for goal in goals:
        obs, _ = env.reset(seed=11, options={"family": family, "block": goal.block, "zone": goal.zone})
        assert env.goal == goal and env.task_description == goal.instruction
        frames.append(obs["pixels"]["front"])
    for frame in frames[1:]:
        np.testing.assert_array_equal(frame, frames[0])
    assert len({g.instruction for g in goals}) == len(goals)
    env.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_solving_one_instruction_does_not_solve_the_others(family):
    """Replaying the expert's solution for goal A in the same scene under goal B fails:
    a policy that ignores the instruction cannot do better than picking a goal at random
    (touch / reach: never solves another goal; push: rarely, when A's path happens to leave
    the block resting in B's zone)."""
    env = TabletopEnv(task=family, obs_type="state")
    goals = all_goals(family)
    cross, pairs = 0, 0
    for seed in (12, 13):
        for goal in goals:
            opts = {"family": family, "block": goal.block, "zone": goal.zone}
            success, actions = run(env, seed, opts)
            assert success, (seed, goal)
            for other in goals:
                if other == goal:
                    continue
                other_opts = {"family": family, "block": other.block, "zone": other.zone}
                cross += run(env, seed, other_opts, actions=actions)[0]
                pairs += 1
    limit = 0.1 if family == "push" else 0.0
    assert cross / pairs <= limit, f"{family}: {cross}/{pairs} replays solved another goal"


@pytest.mark.parametrize(("family", "asked", "steered", "reason"), [
    ("touch", Goal("touch", block="green"), Goal("touch", block="red"), "touched the red block"),
    ("reach", Goal("reach", zone="cyan"), Goal("reach", zone="yellow"), "the gripper entered the yellow zone"),
    ("reach_slots", Goal("reach_slots", zone="magenta"), Goal("reach_slots", zone="cyan"), "the gripper entered the cyan zone"),
    ("reach_fixed", Goal("reach_fixed", zone="yellow"), Goal("reach_fixed", zone="magenta"), "the gripper entered the magenta zone"),
    ("push", Goal("push", "red", "cyan"), Goal("push", "blue", "cyan"), "the blue block came to rest in the cyan zone"),
    ("push", Goal("push", "red", "cyan"), Goal("push", "red", "yellow"), "the red block came to rest in the yellow zone"),
])
def test_the_first_contact_with_an_object_not_named_ends_the_episode_as_a_failure(family, asked, steered, reason):
    """The expert, steered to another goal of the same scene, is stopped at its first wrong contact."""
    env = TabletopEnv(task=family, obs_type="state")
    env.reset(seed=2, options={"family": family, "block": asked.block, "zone": asked.zone})
    expert = TabletopExpert()
    for _ in range(100):
        _, _, terminated, truncated, info = env.step(expert(env, steered))
        if terminated or truncated:
            break
    assert terminated and not info["success"] and info["wrong_contact"] == reason
    assert env.success_for(steered) or family == "touch"  # it did reach the other goal, which counts for nothing


def test_unknown_names_list_valid_choices():
    with pytest.raises(ValueError, match="push"):
        TabletopEnv(task="stack")
    with pytest.raises(ValueError, match="front"):
        TabletopEnv(camera="wrist")
    env = TabletopEnv(obs_type="state")
    with pytest.raises(ValueError, match="red"):
        env.reset(seed=0, options={"family": "touch", "block": "purple"})


def test_perturbed_rollouts_record_the_clean_expert_action():
    """DART collection: noise moves the executed actions (so the states leave the expert's
    path) while the recorded labels stay the expert's own (speed-capped: xyz norm <= 1)."""
    from vla.envs.rollout import run_episode

    env = TabletopEnv(task="reach", obs_type="state")
    clean = run_episode(env, TabletopExpert(), 5, "tabletop", "reach")
    noisy = run_episode(env, TabletopExpert(), 5, "tabletop", "reach", perturb_std=0.5)
    assert not np.allclose(clean.states[1:3], noisy.states[1:3])  # the executed actions were perturbed
    assert np.linalg.norm(noisy.actions[:, :3], axis=1).max() <= 1.0 + 1e-5  # labels: the expert's capped moves
    assert noisy.success
    with pytest.raises(ValueError, match="perturb_std"):
        run_episode(env, TabletopExpert(), 5, "tabletop", "reach", perturb_std=-1)


def test_slotted_family_shuffles_colors_over_fixed_slots():
    """reach_slots: zones always sit in the same three slots (blocks behind them); only the
    colors move, so the named color decides which slot is the goal."""
    from vla.envs.tabletop import BLOCK_SLOTS, ZONE_SLOTS

    env = TabletopEnv(task="reach_slots", obs_type="state")
    orders = set()
    for seed in range(12):
        env.reset(seed=seed)
        zones = np.array([env.zone_pos(c)[:2] for c in ZONE_COLORS])
        blocks = np.array([env.block_pos(c)[:2] for c in BLOCK_COLORS])
        assert sorted(map(tuple, zones.round(6))) == sorted(map(tuple, ZONE_SLOTS.round(6)))
        assert sorted(map(tuple, blocks.round(6))) == sorted(map(tuple, BLOCK_SLOTS.round(6)))
        orders.add(tuple(np.argsort(zones[:, 0])))
    assert len(orders) >= 4  # colors really move between slots
    env.close()


def test_fixed_family_keeps_one_layout_and_all_is_the_suite():
    """reach_fixed: every seed shows the same zones and blocks in the same slots (only the
    gripper start moves), so the instruction alone decides the goal; 'all' leaves it out."""
    from vla.envs.tabletop import BLOCK_SLOTS, SUITE_FAMILIES, ZONE_SLOTS, parse_families

    env = TabletopEnv(task="reach_fixed", obs_type="state")
    for seed in range(6):
        env.reset(seed=seed)
        np.testing.assert_allclose([env.zone_pos(c)[:2] for c in ZONE_COLORS], ZONE_SLOTS)
        np.testing.assert_allclose([env.block_pos(c)[:2] for c in BLOCK_COLORS], BLOCK_SLOTS)
    env.close()
    assert parse_families("all") == SUITE_FAMILIES and "reach_fixed" not in SUITE_FAMILIES
    assert parse_families("reach_fixed,push") == ("reach_fixed", "push")
    with pytest.raises(ValueError, match="reach_fixed"):
        parse_families("reach_fixd")
