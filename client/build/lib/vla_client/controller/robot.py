"""The robot interface the controller drives, and an adapter for LeRobot robots.

This module owns the contract between the control loop and hardware (or simulation):

- `Robot.observe()` -> {"images": {camera: uint8 (H, W, 3)}, "state": float32 (S,), "task": str}
  (the policy server's observation format, see `vla.policies.client.protocol`);
- `Robot.send(action)` applies one command (float64 (D,), already through the safety layer);
- `Robot.done` turns True when an episode ends (simulation); real robots leave it False.

`LeRobotRobotAdapter` wraps any `lerobot.robots.Robot` (get_observation / send_action with
flat feature dicts) without importing lerobot: cameras are the features whose type is a
shape tuple, state and action are the float features in the robot's own order. The MuJoCo
implementation over our suites lives in `vla.envs.robot_sim`. numpy only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Robot(ABC):
    """What the control loop needs from a robot."""

    @abstractmethod
    def observe(self) -> dict[str, Any]:
        """-> {"images": {cam: uint8 HxWx3}, "state": float32 (S,), "task": str}."""

    @abstractmethod
    def send(self, action: np.ndarray) -> None:
        """Apply one safe command (D,)."""

    @property
    def done(self) -> bool:
        """True when the episode is over (the loop stops)."""
        return False

    def close(self) -> None:  # noqa: B027  (optional hook: most robots have nothing to release)
        """Release the hardware / simulator."""


class LeRobotRobotAdapter(Robot):
    """A connected `lerobot.robots.Robot` as a controller `Robot`.

    Args:
        robot: the LeRobot robot (connected by the caller).
        task: the instruction sent with every observation.
        cameras: policy camera name -> robot camera feature (default: the robot's own names).
        image_size: (H, W) to resize camera frames to (nearest neighbour; None: as captured).
    """

    def __init__(self, robot: Any, task: str, cameras: dict[str, str] | None = None,
                 image_size: tuple[int, int] | None = None) -> None:
        obs_features = dict(robot.observation_features)
        self.robot, self.task, self.image_size = robot, task, image_size
        robot_cams = [k for k, v in obs_features.items() if isinstance(v, tuple)]
        self.cameras = cameras or {k: k for k in robot_cams}
        missing = sorted(set(self.cameras.values()) - set(robot_cams))
        if missing:
            raise ValueError(f"cameras {missing} are not features of {type(robot).__name__}; it has {robot_cams}")
        self.state_names = [k for k, v in obs_features.items() if v is float]
        self.action_names = [k for k, v in dict(robot.action_features).items() if v is float]
        if not self.action_names:
            raise ValueError(f"{type(robot).__name__}.action_features has no float features to command")

    def observe(self) -> dict[str, Any]:
        raw = self.robot.get_observation()
        images = {}
        for cam, key in self.cameras.items():
            img = np.asarray(raw[key], dtype=np.uint8)
            if self.image_size is not None and img.shape[:2] != tuple(self.image_size):
                rows = np.linspace(0, img.shape[0] - 1, self.image_size[0]).round().astype(int)
                cols = np.linspace(0, img.shape[1] - 1, self.image_size[1]).round().astype(int)
                img = img[rows][:, cols]
            images[cam] = np.ascontiguousarray(img)
        state = np.array([raw[name] for name in self.state_names], dtype=np.float32)
        return {"images": images, "state": state, "task": self.task}

    def send(self, action: np.ndarray) -> None:
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (len(self.action_names),):
            raise ValueError(f"action has {action.shape[0]} entries; {type(self.robot).__name__} takes "
                             f"{len(self.action_names)}: {self.action_names}")
        self.robot.send_action({name: float(v) for name, v in zip(self.action_names, action, strict=True)})

    def close(self) -> None:
        if getattr(self.robot, "is_connected", False):
            self.robot.disconnect()
