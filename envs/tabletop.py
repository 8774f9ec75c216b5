"""The tabletop suite: a small language-conditioned MuJoCo scene of our own (gymnasium API).

A mocap-driven two-finger gripper above a table with three colored blocks (red, green,
blue) and three colored target zones (yellow, cyan, magenta), all placed at random per
seed. Task families (see `FAMILIES`):

- ``push``:  "push the {block} block onto the {zone} zone"  (9 goals per scene); the block
  must come to rest inside the zone
- ``touch``: "touch the {block} block"                      (3 goals per scene)
- ``reach``: "move the gripper to the {zone} zone"          (3 goals per scene)
- ``reach_slots``: ``reach`` with the zones in three fixed slots along a row and the blocks
  in three fixed slots behind them, colors shuffled per scene: the easy tier (the policy
  must still read which slot holds the named color, so it stays language-decisive), meant
  for first runs on a laptop CPU
- ``reach_fixed``: ``reach`` with the zones in the same three slots in the same color order
  every episode (yellow left, cyan middle, magenta right; blocks behind them): only the
  instruction tells the goals apart, with no visual binding of the color to learn. A
  diagnostic tier that checks language conditioning alone (CI's learning test); not part
  of ``all``

Every scene admits all goals of its family, so the *instruction*, not the image, decides
what counts as success (``reach_fixed`` even keeps the image the same across goals). An
episode ends as a failure at the first contact with an object the instruction did not name
(`wrong_contact`): the gripper entering another zone (reach families), touching another
block (touch), any other block coming to rest in a zone or the named block coming to rest
in another zone (push: "at rest" as in push success; a block pushed across the edge of a
zone on its way is not a failure, since the scripted expert's pushes drift a few cm and a
through-crossing rule would fail it in ~7% of scenes). So visiting every candidate in turn does not game the check, and a policy that
ignores language succeeds in at most ~1/3 of the episodes (1/9 for push): the
language-blind anchor (`vla.envs.experts.BlindExpert`) measures that ceiling.

Sizes follow shared DESIGN.md section 5 (learnable by a tiny policy on CPU): default image
96x96 from the "front" camera, where every block and zone is at least ~10 px across
(tests/envs measure it with segmentation rendering); 20 control steps per second; episodes
of at most 100 steps; the expert needs ~20-60.

Action (4-d, in [-1, 1], as Meta-World): (dx, dy, dz) moves the gripper by up to
`MAX_STEP` meters per step; the last entry sets the finger opening (+1 closed, -1 open).
State (4-d, as Meta-World's obs[:4]): gripper fingertip xyz + opening in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from vla.envs.instructions import tabletop_instruction, tabletop_paraphrases
from vla.envs.rendering import CameraRenderer, camera_names, check_env_args, renderer_at
from vla.envs.suites import SUITES

SUITE = SUITES["tabletop"]  # cameras, default sizes, horizon and control rate
PRIVILEGED_NAMES = SUITE.privileged_names  # what `privileged_target=True` appends to the state

SUITE_FAMILIES = ("push", "touch", "reach", "reach_slots")  # what task='all' runs
FAMILIES = (*SUITE_FAMILIES, "reach_fixed")  # every family; task ids are positions here
SLOTTED_FAMILIES = ("reach_slots", "reach_fixed")  # families whose objects sit in fixed slots ...
SHUFFLED_SLOTS = ("reach_slots",)  # ... with the colors shuffled over the slots per scene
REACH_FAMILIES = ("reach", "reach_slots", "reach_fixed")
BLOCK_COLORS = ("red", "green", "blue")
ZONE_COLORS = ("yellow", "cyan", "magenta")
CONTROL_DT = 1.0 / SUITE.fps  # seconds per env step (20 Hz)
MAX_STEP = 0.025  # meters of gripper motion per step at |action| = 1
FINGER_MAX = 0.025  # meters of travel per finger (fully open)
BLOCK_HALF = 0.025  # blocks are 5 cm cubes
ZONE_RADIUS = 0.05
PUSH_SUCCESS_RADIUS = 0.035  # block center this close to the zone center ...
PUSH_SUCCESS_SPEED = 0.05  # ... and resting (m/s): a block pushed *through* a zone is no success
REACH_SUCCESS_RADIUS = 0.04  # fingertip center this close (in xy) to the zone center
REACH_SUCCESS_HEIGHT = 0.04  # ... and at most this high above the table
HAND_LOW = np.array([-0.25, -0.25, 0.005])
HAND_HIGH = np.array([0.25, 0.25, 0.25])
PLACE_LIMIT = 0.17  # object centers are sampled in [-PLACE_LIMIT, PLACE_LIMIT]^2
ZONE_SLOTS = np.array([[-0.13, 0.02], [0.0, 0.02], [0.13, 0.02]])  # SLOTTED_FAMILIES: a row of zones ...
BLOCK_SLOTS = np.array([[-0.13, 0.15], [0.0, 0.15], [0.13, 0.15]])  # ... and the blocks behind them
PUSH_PATH_CLEARANCE = {"zone": 0.06, "block": 0.05}  # push layouts: how far block-to-zone paths pass other objects
MIN_SEPARATION = {  # minimum center distances between sampled objects
    ("zone", "zone"): 0.13,
    ("zone", "block"): 0.10,
    ("block", "block"): 0.12,
}


@dataclass(frozen=True)
class Goal:
    """What the current episode asks for. `block` / `zone` are None where unused."""

    family: str
    block: str | None = None
    zone: str | None = None

    @property
    def instruction(self) -> str:
        """The canonical instruction string (the dataset's `task`)."""
        return tabletop_instruction(self.family, self.block, self.zone)

    @property
    def paraphrases(self) -> list[str]:
        """Alternative phrasings of `instruction` for training-time augmentation."""
        return tabletop_paraphrases(self.family, self.block, self.zone)


def parse_families(task: str) -> tuple[str, ...]:
    """'push' / 'push,touch' / 'all' -> tuple of family names; raises on unknown names.
    'all' is `SUITE_FAMILIES` (the diagnostic `reach_fixed` is run by name only)."""
    names = [t.strip() for t in task.split(",") if t.strip()]
    if names == ["all"]:
        return SUITE_FAMILIES
    unknown = [n for n in names if n not in FAMILIES]
    if not names or unknown:
        raise ValueError(
            f"unknown tabletop task {task!r}; choose a family from {list(FAMILIES)}, "
            f"a comma-separated list of them, or 'all' (= {','.join(SUITE_FAMILIES)})"
        )
    return tuple(names)


def all_goals(family: str) -> list[Goal]:
    """Every goal of a family that a scene admits (the scene always holds all colors)."""
    if family == "push":
        return [Goal("push", b, z) for b in BLOCK_COLORS for z in ZONE_COLORS]
    if family == "touch":
        return [Goal("touch", block=b) for b in BLOCK_COLORS]
    if family in REACH_FAMILIES:
        return [Goal(family, zone=z) for z in ZONE_COLORS]
    raise ValueError(f"unknown tabletop family {family!r}; choose from {list(FAMILIES)}")


def task_ids(spec: str) -> list[tuple[int, str]]:
    """(stable id, family) of each family a spec names: the id is its position in `FAMILIES`."""
    return [(FAMILIES.index(f), f) for f in parse_families(spec)]


def instructions() -> list[str]:
    """Every canonical instruction of every family."""
    return [g.instruction for f in FAMILIES for g in all_goals(f)]


def _segment_distance(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> float:
    """Distance from point p to the segment a-b (2-d)."""
    ab = b - a
    t = float(np.clip((p - a) @ ab / (ab @ ab), 0.0, 1.0))
    return float(np.linalg.norm(a + t * ab - p))


def _push_paths_clear(zones: list[np.ndarray], blocks: list[np.ndarray]) -> bool:
    """Every straight block -> zone path passes the other zones' centers at least
    `PUSH_PATH_CLEARANCE["zone"]` away and the other blocks' centers `["block"]` away."""
    return all(
        _segment_distance(block, zone, other) >= PUSH_PATH_CLEARANCE[kind]
        for b, block in enumerate(blocks)
        for z, zone in enumerate(zones)
        for kind, others, skip in (("zone", zones, z), ("block", blocks, b))
        for o, other in enumerate(others)
        if o != skip
    )


def load_model() -> mujoco.MjModel:
    """Compile the scene shipped as package data (envs/assets/tabletop.xml)."""
    xml = resources.files("vla.envs").joinpath("assets/tabletop.xml")
    with resources.as_file(xml) as path:
        return mujoco.MjModel.from_xml_path(str(path))


class TabletopEnv(gym.Env):
    """Language-conditioned tabletop manipulation (see the module docstring).

    Args:
        task: a family (see `FAMILIES`), a comma-separated list of families, or
            'all' (`SUITE_FAMILIES`); with several families each reset draws one.
        obs_type: 'pixels_agent_pos' ({'pixels': {camera: HxWx3 uint8}, 'agent_pos'}) or
            'state' ({'agent_pos', 'environment_state'}, no rendering: fast experts).
        camera: 'front' (default) or 'top'.
        height, width: image size (default 96x96).
        episode_length: truncation horizon (default 100).
        terminate_on_success: end the episode at the first successful step.
        privileged_target: append the named target to `agent_pos` (`PRIVILEGED_NAMES`: the named
            block's xyz, the named zone's xy, zeros where the goal names none). A label no real
            robot has: for the recipe ablation's diagnostic row only, never a default.

    `reset(options={'family': ..., 'block': ..., 'zone': ...})` forces a goal; the scene
    layout depends on the seed only, so one seed with different goals gives one scene.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": SUITE.fps}

    def __init__(
        self,
        task: str = "push",
        obs_type: str = "pixels_agent_pos",
        camera: str = SUITE.camera,
        height: int = SUITE.image_size[0],
        width: int = SUITE.image_size[1],
        episode_length: int = SUITE.episode_length,
        terminate_on_success: bool = True,
        render_mode: str | None = "rgb_array",
        privileged_target: bool = False,
    ) -> None:
        super().__init__()
        self.privileged_target = bool(privileged_target)
        self.families = parse_families(task)
        self.task = task
        check_env_args("tabletop", obs_type, camera, SUITE.cameras, render_mode, episode_length)
        self.obs_type = obs_type
        self.camera = camera
        self.height, self.width = int(height), int(width)
        self.render_mode = render_mode
        self._max_episode_steps = int(episode_length)
        self.terminate_on_success = terminate_on_success

        self.model = load_model()
        self.data = mujoco.MjData(self.model)
        self._substeps = int(round(CONTROL_DT / self.model.opt.timestep))
        self._hand_mocap = self._mocap_id("hand")
        self._zone_mocap = {c: self._mocap_id(f"zone_{c}") for c in ZONE_COLORS}
        self._block_qadr = {c: int(self.model.jnt_qposadr[self.model.joint(f"block_{c}").id]) for c in BLOCK_COLORS}
        self._block_dofadr = {c: int(self.model.jnt_dofadr[self.model.joint(f"block_{c}").id]) for c in BLOCK_COLORS}
        self._block_geom = {c: self.model.geom(f"block_{c}").id for c in BLOCK_COLORS}
        self._hand_geoms = {self.model.geom(n).id for n in ("palm", "finger_left", "finger_right")}
        self._finger_qadr = [
            int(self.model.jnt_qposadr[self.model.joint(n).id]) for n in ("finger_left", "finger_right")
        ]
        self._renderer: CameraRenderer | None = None
        self._large_renderer: CameraRenderer | None = None  # render_at's (evaluation videos)
        assert set(SUITE.cameras) <= set(camera_names(self.model))

        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        state_dim = SUITE.state_dim + (len(PRIVILEGED_NAMES) if self.privileged_target else 0)
        agent_pos = spaces.Box(-np.inf, np.inf, shape=(state_dim,), dtype=np.float32)
        if obs_type == "pixels_agent_pos":
            image = spaces.Box(0, 255, shape=(self.height, self.width, 3), dtype=np.uint8)
            self.observation_space = spaces.Dict({"pixels": spaces.Dict({camera: image}), "agent_pos": agent_pos})
        else:
            env_state = spaces.Box(-np.inf, np.inf, shape=(15,), dtype=np.float32)
            self.observation_space = spaces.Dict({"agent_pos": agent_pos, "environment_state": env_state})
        self.goal = all_goals(self.families[0])[0]
        self._steps = 0
        self._touched: str | None = None
        self._start_blocks = {c: np.zeros(3) for c in BLOCK_COLORS}

    # --- scene access (also what the scripted experts read) --------------------------

    def _mocap_id(self, body: str) -> int:
        return int(self.model.body_mocapid[self.model.body(body).id])

    @property
    def tcp_pos(self) -> np.ndarray:
        """Fingertip center, world xyz (a copy)."""
        return self.data.mocap_pos[self._hand_mocap].copy()

    @property
    def gripper_opening(self) -> float:
        """Finger opening in [0, 1] (0 = closed)."""
        q = self.data.qpos[self._finger_qadr]
        return float(np.clip(q.sum() / (2 * FINGER_MAX), 0.0, 1.0))

    def block_pos(self, color: str) -> np.ndarray:
        """Center of a block, world xyz (a copy)."""
        adr = self._block_qadr[color]
        return self.data.qpos[adr : adr + 3].copy()

    def start_block_pos(self, color: str) -> np.ndarray:
        """Where a block stood when the episode started, world xyz (a copy)."""
        return self._start_blocks[color].copy()

    def zone_pos(self, color: str) -> np.ndarray:
        """Center of a zone on the table, world xyz (a copy)."""
        return self.data.mocap_pos[self._zone_mocap[color]].copy()

    @property
    def task_description(self) -> str:
        """The current episode's instruction (LeRobot reads this attribute)."""
        return self.goal.instruction

    # --- gymnasium API ---------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        mujoco.mj_resetData(self.model, self.data)
        # The goal is always drawn (and then possibly forced), so forcing it within a family
        # leaves the scene unchanged: the layout depends on the seed and the family only.
        family = self.families[int(rng.integers(len(self.families)))]
        goal_index = int(rng.integers(len(all_goals(family))))
        self.goal = self._choose_goal(family, goal_index, options or {})
        zones, blocks = self._sample_layout(rng, clear_push_paths=self.goal.family == "push")
        hand = [rng.uniform(-0.05, 0.05), rng.uniform(-0.23, -0.19), 0.12]
        if self.goal.family in SHUFFLED_SLOTS:  # drawn last: the other families' scenes stay as they were
            zones, blocks = list(ZONE_SLOTS[rng.permutation(3)]), list(BLOCK_SLOTS[rng.permutation(3)])
        elif self.goal.family in SLOTTED_FAMILIES:
            zones, blocks = list(ZONE_SLOTS), list(BLOCK_SLOTS)
        for color, xy in zip(ZONE_COLORS, zones, strict=True):
            self.data.mocap_pos[self._zone_mocap[color]] = [xy[0], xy[1], 0.0006]
        for color, xy in zip(BLOCK_COLORS, blocks, strict=True):
            adr = self._block_qadr[color]
            self.data.qpos[adr : adr + 3] = [xy[0], xy[1], BLOCK_HALF]
            self.data.qpos[adr + 3 : adr + 7] = [1.0, 0.0, 0.0, 0.0]
        self.data.mocap_pos[self._hand_mocap] = hand
        self.data.ctrl[:] = 0.0
        mujoco.mj_forward(self.model, self.data)
        self._start_blocks = {c: self.block_pos(c) for c in BLOCK_COLORS}
        self._steps = 0
        self._touched = None
        info = {"success": False, "is_success": False, "task": self.goal.instruction}
        return self._observation(), info

    def _choose_goal(self, family: str, index: int, options: dict[str, Any]) -> Goal:
        family = options.get("family", family)
        if family not in FAMILIES:
            raise ValueError(f"unknown tabletop family {family!r}; choose from {list(FAMILIES)}")
        goal = all_goals(family)[index % len(all_goals(family))]
        block, zone = options.get("block", goal.block), options.get("zone", goal.zone)
        if block is not None and block not in BLOCK_COLORS:
            raise ValueError(f"unknown block color {block!r}; choose from {list(BLOCK_COLORS)}")
        if zone is not None and zone not in ZONE_COLORS:
            raise ValueError(f"unknown zone color {zone!r}; choose from {list(ZONE_COLORS)}")
        if family == "touch":
            zone = None
        if family in REACH_FAMILIES:
            block = None
        return Goal(family, block, zone)

    @staticmethod
    def _sample_layout(
        rng: np.random.Generator, clear_push_paths: bool = False
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Rejection-sample 3 zone and 3 block centers with the minimum separations.

        clear_push_paths (push): also keep every straight block-to-zone path clear of the other
        objects (`PUSH_PATH_CLEARANCE`), so each of the 9 goals can be pushed straight without
        a block entering a zone the instruction did not name (which ends the episode as a
        failure). About 6% of layouts pass; the rest are redrawn from the same generator.
        """
        kinds = ["zone"] * len(ZONE_COLORS) + ["block"] * len(BLOCK_COLORS)
        for _ in range(5000):
            placed: list[tuple[str, np.ndarray]] = []
            for kind in kinds:
                for _ in range(100):
                    p = rng.uniform(-PLACE_LIMIT, PLACE_LIMIT, size=2)
                    if all(
                        np.linalg.norm(p - q) >= MIN_SEPARATION[tuple(sorted((kind, k), reverse=True))]
                        for k, q in placed
                    ):
                        placed.append((kind, p))
                        break
                else:
                    break
            if len(placed) == len(kinds):
                zones = [p for k, p in placed if k == "zone"]
                blocks = [p for k, p in placed if k == "block"]
                if not clear_push_paths or _push_paths_clear(zones, blocks):
                    return zones, blocks
        raise RuntimeError("could not place the tabletop objects; MIN_SEPARATION is too large")

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (4,):
            raise ValueError(f"action has shape {action.shape}; expected (4,) = dx, dy, dz, grip")
        action = np.clip(action, -1.0, 1.0)
        start = self.data.mocap_pos[self._hand_mocap].copy()
        target = np.clip(start + action[:3] * MAX_STEP, HAND_LOW, HAND_HIGH)
        self.data.ctrl[:] = (1.0 - action[3]) / 2.0 * FINGER_MAX
        wrong: str | None = None
        for i in range(self._substeps):
            # Move the kinematic hand smoothly so contacts see no teleport.
            self.data.mocap_pos[self._hand_mocap] = start + (target - start) * (i + 1) / self._substeps
            mujoco.mj_step(self.model, self.data)
            touched = self._touched_block()
            if touched is not None and self._touched is None:
                self._touched = touched
            if wrong is None and self.goal.family == "touch" and touched not in (None, self.goal.block):
                wrong = f"touched the {touched} block"
        self._steps += 1
        success = self._success()
        wrong = None if success else (wrong or self._wrong_zone_entry())
        terminated = (success and self.terminate_on_success) or wrong is not None
        truncated = self._steps >= self._max_episode_steps and not terminated
        info = {
            "success": success,
            "is_success": success,
            "task": self.goal.instruction,
            "wrong_contact": wrong,  # None, or what ended the episode as a failure
        }
        return self._observation(), float(success), bool(terminated), bool(truncated), info

    def zone_entries(self) -> list[tuple[str, str]]:
        """(object, zone color) for every object over a zone now: 'gripper' when the fingertip
        is within a zone's disk and low enough to reach it, a block color when the block's
        center is over the disk."""
        tcp = self.tcp_pos
        entries = []
        for zone in ZONE_COLORS:
            center = self.zone_pos(zone)[:2]
            if np.linalg.norm(tcp[:2] - center) < ZONE_RADIUS and tcp[2] < REACH_SUCCESS_HEIGHT:
                entries.append(("gripper", zone))
            entries += [(b, zone) for b in BLOCK_COLORS if np.linalg.norm(self.block_pos(b)[:2] - center) < ZONE_RADIUS]
        return entries

    def _wrong_zone_entry(self) -> str | None:
        """What entered a zone the instruction did not ask for: the gripper (reach families) or
        a block that came to rest there (push)."""
        goal = self.goal
        for obj, zone in self.zone_entries():
            if goal.family in REACH_FAMILIES and obj == "gripper" and zone != goal.zone:
                return f"the gripper entered the {zone} zone"
            if goal.family == "push" and obj != "gripper" and (obj != goal.block or zone != goal.zone):
                if self.success_for(Goal("push", obj, zone)):  # at rest there, not passing through
                    return f"the {obj} block came to rest in the {zone} zone"
        return None

    def _touched_block(self) -> str | None:
        """The block a gripper geom is in contact with now (None if none)."""
        for k in range(self.data.ncon):
            c = self.data.contact[k]
            pair = {int(c.geom1), int(c.geom2)}
            if pair & self._hand_geoms:
                for color, gid in self._block_geom.items():
                    if gid in pair:
                        return color
        return None

    def _success(self) -> bool:
        return self.success_for(self.goal)

    def success_for(self, goal: Goal) -> bool:
        """Whether `goal` (any goal of this scene, not only the episode's) holds now.

        Evaluation's language ablation (`vla.envs.evaluation`) asks this for the goal the
        instruction was swapped away from. `touch` goals read the first block touched.
        """
        if goal.family == "push":
            block, zone = self.block_pos(goal.block), self.zone_pos(goal.zone)
            dof = self._block_dofadr[goal.block]
            speed = float(np.linalg.norm(self.data.qvel[dof : dof + 3]))
            return bool(
                np.linalg.norm(block[:2] - zone[:2]) < PUSH_SUCCESS_RADIUS
                and block[2] < BLOCK_HALF + 0.01
                and speed < PUSH_SUCCESS_SPEED
            )
        if goal.family == "touch":
            return self._touched == goal.block
        tcp, zone = self.tcp_pos, self.zone_pos(goal.zone)  # REACH_FAMILIES
        return bool(np.linalg.norm(tcp[:2] - zone[:2]) < REACH_SUCCESS_RADIUS and tcp[2] < REACH_SUCCESS_HEIGHT)

    def target_state(self) -> np.ndarray:
        """The named target (`PRIVILEGED_NAMES`): block xyz, zone xy, zeros where the goal names none."""
        block = self.block_pos(self.goal.block) if self.goal.block else np.zeros(3)
        zone = self.zone_pos(self.goal.zone)[:2] if self.goal.zone else np.zeros(2)
        return np.concatenate([block, zone])

    def _observation(self) -> dict[str, Any]:
        agent_pos = np.append(self.tcp_pos, self.gripper_opening).astype(np.float32)
        if self.privileged_target:
            agent_pos = np.concatenate([agent_pos, self.target_state()]).astype(np.float32)
        if self.obs_type == "state":
            blocks = np.concatenate([self.block_pos(c) for c in BLOCK_COLORS])
            zones = np.concatenate([self.zone_pos(c)[:2] for c in ZONE_COLORS])
            env_state = np.concatenate([blocks, zones]).astype(np.float32)
            return {"agent_pos": agent_pos, "environment_state": env_state}
        return {"pixels": {self.camera: self.render()}, "agent_pos": agent_pos}

    def render(self) -> np.ndarray:
        """The configured camera's current view, HxWx3 uint8, upright."""
        if self._renderer is None:
            self._renderer = CameraRenderer(self.model, self.camera, self.height, self.width)
        return self._renderer.render(self.data)

    def render_at(self, height: int, width: int) -> np.ndarray:
        """The configured camera at another size than the observations (evaluation videos)."""
        self._large_renderer = renderer_at(self._large_renderer, self.model, self.camera, height, width)
        return self._large_renderer.render(self.data)

    def segmentation(self) -> np.ndarray:
        """Geom id per pixel of the configured camera (tests use it to measure objects)."""
        if self._renderer is None:
            self._renderer = CameraRenderer(self.model, self.camera, self.height, self.width)
        return self._renderer.segmentation(self.data)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._large_renderer is not None:
            self._large_renderer.close()
            self._large_renderer = None
