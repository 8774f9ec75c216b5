"""Which Meta-World camera and image size show what a task needs: pixels per frame of the goal,
the objects and the gripper.

A policy can only act on what its image shows. Meta-World's goal is a small site (reach's red
dot) and its objects are a few centimetres across, so the camera and the resolution decide
whether they are a blob or nothing. For every camera of the suite and every size asked, along
scripted-expert rollouts of the tasks (frames at the given steps), this counts with MuJoCo's
segmentation rendering:

- goal: pixels of the task's goal sites (`_target_site_config`), and the share of frames where
  at least one goal pixel is visible (0 for tasks whose goal site Meta-World hides);
- object: pixels of geoms that belong to neither the robot (the `base` body's subtree), nor the
  table, walls and floor (bodies `world`, `tablelink`, `RetainingWall`, `mocap`);
- gripper: pixels of the `hand` body's subtree;
- task box: the share of the frame covered by the bounding box of every goal, object and
  gripper pixel over a task's frames; workspace box: the same over all tasks' frames, i.e. the
  crop that keeps every task's action in view, and how much it could enlarge it.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from vla.envs.experts import make_expert
from vla.envs.metaworld_suite import FLIPPED_CAMERAS, MetaWorldEnv
from vla.envs.rendering import CameraRenderer
from vla.envs.suites import get_suite

SCENERY = ("world", "tablelink", "RetainingWall", "mocap")  # bodies that are neither robot nor task object


def _subtree(model: mujoco.MjModel, root: int) -> set[int]:
    bodies = {root}
    for b in range(model.nbody):  # parents come before children in MuJoCo's body order
        if model.body_parentid[b] in bodies and b != 0:
            bodies.add(b)
    return bodies


def geom_classes(model: mujoco.MjModel) -> dict[str, np.ndarray]:
    """Geom ids of the task's objects and of the gripper."""
    robot = _subtree(model, model.body("base").id)
    gripper = _subtree(model, model.body("hand").id)
    scenery = {model.body(name).id for name in SCENERY if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name) >= 0}
    body = model.geom_bodyid
    objects = [g for g in range(model.ngeom) if body[g] not in robot and body[g] not in scenery]
    return {"object": np.array(objects, dtype=np.int32),
            "gripper": np.array([g for g in range(model.ngeom) if body[g] in gripper], dtype=np.int32)}


def frame_counts(renderer: CameraRenderer, data: mujoco.MjData, classes: dict[str, np.ndarray],
                 goal_sites: np.ndarray) -> tuple[dict[str, int], np.ndarray]:
    """Pixels of each class in one frame, and the (H, W) mask of all of them."""
    geoms = renderer.segmentation(data)
    sites = renderer.segmentation(data, mujoco.mjtObj.mjOBJ_SITE)
    masks = {name: np.isin(geoms, ids) for name, ids in classes.items()}
    masks["goal"] = np.isin(sites, goal_sites)
    return {k: int(m.sum()) for k, m in masks.items()}, masks["goal"] | masks["object"] | masks["gripper"]


def measure_task(task: str, cameras: tuple[str, ...], sizes: tuple[int, ...], seeds: int,
                 steps: tuple[int, ...]) -> dict[str, Any]:
    """{camera: {size: {goal, goal_visible, object, gripper, task_box}}} for one task (means over frames)."""
    env = MetaWorldEnv(task=task, obs_type="state", episode_length=max(steps) + 1, terminate_on_success=False)
    expert = make_expert("metaworld")
    renderers: dict[tuple[str, int], CameraRenderer] = {}
    sums: dict[tuple[str, int], dict[str, list]] = {}
    boxes: dict[tuple[str, int], np.ndarray] = {}
    try:
        for seed in range(seeds):
            env.reset(seed=seed)
            sawyer = env.sawyer
            model = sawyer.model
            classes = geom_classes(model)
            goal_sites = np.array([model.site(name).id for name, _ in sawyer._target_site_config], dtype=np.int32)
            for t in range(max(steps) + 1):
                if t in steps:
                    for camera in cameras:
                        for size in sizes:
                            key = (camera, size)
                            if key not in renderers:
                                renderers[key] = CameraRenderer(model, camera, size, size,
                                                                flip=camera in FLIPPED_CAMERAS)
                            counts, mask = frame_counts(renderers[key], sawyer.data, classes, goal_sites)
                            acc = sums.setdefault(key, {"goal": [], "object": [], "gripper": []})
                            for k, v in counts.items():
                                acc[k].append(v)
                            boxes[key] = boxes.get(key, np.zeros_like(mask)) | mask
                env.step(expert(env))
    finally:
        for r in renderers.values():
            r.close()
        env.close()
    out: dict[str, Any] = {}
    for (camera, size), acc in sums.items():
        box = boxes[(camera, size)]
        rows, cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
        # (top, bottom, left, right) as fractions of the frame; None if nothing was seen
        bbox = [rows[0] / size, (rows[-1] + 1) / size, cols[0] / size, (cols[-1] + 1) / size] if rows.size else None
        out.setdefault(camera, {})[str(size)] = {
            "goal": float(np.mean(acc["goal"])), "goal_visible": float(np.mean(np.array(acc["goal"]) > 0)),
            "object": float(np.mean(acc["object"])), "gripper": float(np.mean(acc["gripper"])),
            "box": None if bbox is None else [float(v) for v in bbox]}
    return out


def box_share(boxes: list[list[float] | None]) -> float:
    """Share of the frame inside the union bounding box of `boxes` (fractions of the frame)."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return 0.0
    top, bottom = min(b[0] for b in boxes), max(b[1] for b in boxes)
    left, right = min(b[2] for b in boxes), max(b[3] for b in boxes)
    return (bottom - top) * (right - left)


def measure(tasks: str = "MT10", cameras: tuple[str, ...] | None = None, sizes: tuple[int, ...] = (64, 96, 128),
            seeds: int = 3, steps: tuple[int, ...] = (0, 30, 60)) -> dict[str, Any]:
    """Per task, camera and size: the figures of `measure_task`."""
    spec = get_suite("metaworld")
    names = [name for _, name in spec.task_ids(tasks)]
    cameras = cameras or spec.cameras
    return {"tasks": names, "cameras": list(cameras), "sizes": list(sizes), "seeds": seeds, "steps": list(steps),
            "per_task": {name: measure_task(name, cameras, sizes, seeds, steps) for name in names}}


def summary(results: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """{camera: {size: figures averaged over tasks}}; goal figures over the tasks whose goal is ever seen."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for camera in results["cameras"]:
        for size in map(str, results["sizes"]):
            rows = [results["per_task"][t][camera][size] for t in results["tasks"]]
            row = {k: float(np.mean([r[k] for r in rows])) for k in ("object", "gripper")}
            row["task_box"] = float(np.mean([box_share([r["box"]]) for r in rows]))
            row["workspace_box"] = box_share([r["box"] for r in rows])
            row["goal_visible"] = float(np.mean([r["goal_visible"] for r in rows]))
            row["goal"] = float(np.mean([r["goal"] for r in rows]))
            row["tasks_without_goal"] = int(sum(r["goal_visible"] == 0 for r in rows))
            out.setdefault(camera, {})[size] = row
    return out


def render_section(heading: str, results: dict[str, Any], command: str, machine: str, date: str) -> str:
    s = summary(results)
    lines = [heading, "",
             f"`{command}` on {date} (CPU here: {machine}); raw figures per task in `outputs/bench/cameras.json`. "
             f"Tasks {', '.join(results['tasks'])}; {results['seeds']} seeds each, frames at expert steps "
             f"{', '.join(map(str, results['steps']))}; pixels counted by MuJoCo's segmentation rendering "
             "(`vla.bench.cameras`). Goal: the task's goal sites; object: geoms of neither robot nor table; task "
             "box: the share of the frame inside the bounding box of every goal, object and gripper pixel of a "
             "task (mean over tasks); workspace box: the same over all tasks (the crop that keeps every task in "
             "view).", "",
             "| camera | size | goal px | goal visible (frames) | tasks whose goal is never seen | object px | "
             "gripper px | task box | workspace box |",
             "|---|---|---|---|---|---|---|---|---|"]
    for camera, by_size in s.items():
        for size, r in by_size.items():
            lines.append(f"| {camera} | {size} | {r['goal']:.1f} | {100 * r['goal_visible']:.0f}% | "
                         f"{r['tasks_without_goal']} | {r['object']:.0f} | {r['gripper']:.0f} | "
                         f"{100 * r['task_box']:.0f}% | {100 * r['workspace_box']:.0f}% |")
    return "\n".join(lines) + "\n"
