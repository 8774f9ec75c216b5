"""The camera measurement (vla.bench.cameras) counts what it says: the goal dot, the task's
objects and the gripper, separately, and more of them at a higher resolution."""

from __future__ import annotations

from vla.bench.cameras import box_share, geom_classes, measure_task
from vla.envs import make_env


def test_geoms_split_into_task_objects_and_gripper():
    env = make_env("metaworld", task="push-v3", obs_type="state")
    try:
        env.reset(seed=0)
        model = env.sawyer.model
        classes = geom_classes(model)
        bodies = lambda ids: {model.body(model.geom_bodyid[g]).name for g in ids}  # noqa: E731
        assert bodies(classes["object"]) == {"obj"}
        assert {"hand", "rightclaw", "leftclaw"} <= bodies(classes["gripper"])
        assert not set(classes["object"]) & set(classes["gripper"])
    finally:
        env.close()


def test_reach_goal_and_object_are_seen_by_corner4_and_grow_with_resolution():
    r = measure_task("reach-v3", ("corner4",), (64, 128), seeds=1, steps=(0,))["corner4"]
    assert r["128"]["goal_visible"] == 1.0 and r["128"]["goal"] > r["64"]["goal"] > 0
    assert r["128"]["object"] > 2 * r["64"]["object"] > 0 and r["128"]["gripper"] > 0
    top, bottom, left, right = r["128"]["box"]
    assert 0 <= top < bottom <= 1 and 0 <= left < right <= 1


def test_box_share_is_the_union_box():
    assert box_share([[0.0, 0.5, 0.0, 0.5], [0.5, 1.0, 0.5, 1.0]]) == 1.0
    assert box_share([[0.25, 0.75, 0.25, 0.75], None]) == 0.25
    assert box_share([None]) == 0.0
