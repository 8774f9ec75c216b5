"""The safety layer: the last thing every command passes before it reaches the robot.

This module owns the guarantees the controller gives whatever the model outputs:

1. an action with NaN / inf or the wrong shape is rejected (the layer holds instead);
2. every command lies inside [low, high] (clipped per dimension);
3. no dimension changes by more than `max_delta` from the previous command;
4. `hold()` gives the command to send when there is nothing fresh to execute (watchdog,
   starvation, lost server): `stop_action` when configured, otherwise the last command.
   NaN entries in `stop_action` mean "keep that dimension's last value" (e.g. zero motion
   but keep the gripper as it is: `[0, 0, 0, nan]`). Holding also obeys 1-3.

Every command `filter` or `hold` returns is therefore finite, inside the bounds and
within `max_delta` of the previous one (tests check this as a property over random model
outputs). numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EVENTS = ("ok", "clipped", "rate_limited", "rejected")


@dataclass
class SafetyConfig:
    """Bounds and limits in the robot's action units (one entry per action dimension).

    low, high: command bounds. max_delta: largest change per control step (a scalar for
    every dim, per-dim values, or None = unlimited). stop_action: what `hold()` commands
    (None = repeat the last command; NaN entries = keep that dim's last value).
    """

    low: Sequence[float]
    high: Sequence[float]
    max_delta: float | Sequence[float] | None = None
    stop_action: Sequence[float] | None = None

    def __post_init__(self) -> None:
        self.low = np.asarray(self.low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(self.high, dtype=np.float64).reshape(-1)
        dim = self.low.shape[0]
        if self.high.shape != (dim,) or not (np.isfinite(self.low).all() and np.isfinite(self.high).all()):
            raise ValueError(f"low {self.low.tolist()} and high {self.high.tolist()} must be finite and of equal length")
        if (self.low > self.high).any():
            raise ValueError(f"low {self.low.tolist()} exceeds high {self.high.tolist()} in some dimension")
        if self.max_delta is not None:
            self.max_delta = np.broadcast_to(np.asarray(self.max_delta, dtype=np.float64), (dim,)).copy()
            if not (np.isfinite(self.max_delta).all() and (self.max_delta > 0).all()):
                raise ValueError(f"max_delta {self.max_delta.tolist()} must be finite and > 0 (None: unlimited)")
        if self.stop_action is not None:
            self.stop_action = np.asarray(self.stop_action, dtype=np.float64).reshape(-1)
            set_dims = ~np.isnan(self.stop_action)
            if self.stop_action.shape != (dim,) or np.isinf(self.stop_action).any() or (
                (self.stop_action[set_dims] < self.low[set_dims]) | (self.stop_action[set_dims] > self.high[set_dims])
            ).any():
                raise ValueError(f"stop_action {self.stop_action.tolist()} must have {dim} entries inside "
                                 "[low, high] (NaN = keep the last value of that dim)")

    @property
    def dim(self) -> int:
        return int(self.low.shape[0])


class SafetyLayer:
    """Stateful filter over commands (remembers the last command sent)."""

    def __init__(self, config: SafetyConfig) -> None:
        self.config = config
        self.last: np.ndarray | None = None  # last command returned (float64, D)
        self.counts = dict.fromkeys(EVENTS, 0)

    def reset(self) -> None:
        self.last = None

    def _limit(self, target: np.ndarray) -> tuple[np.ndarray, str]:
        cfg = self.config
        event = "ok"
        clipped = np.clip(target, cfg.low, cfg.high)
        if not np.array_equal(clipped, target):
            event = "clipped"
        if cfg.max_delta is not None and self.last is not None:
            limited = np.clip(clipped, self.last - cfg.max_delta, self.last + cfg.max_delta)
            # self.last is inside the bounds, so the limited command stays inside them too
            if not np.array_equal(limited, clipped):
                event = "rate_limited" if event == "ok" else event
            clipped = limited
        self.last = clipped
        return clipped.copy(), event

    def filter(self, action: object) -> tuple[np.ndarray | None, str]:
        """-> (command to send, event). A rejected action yields `hold()`'s command."""
        try:
            arr = np.asarray(action, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != (self.config.dim,) or not np.isfinite(arr).all():
            self.counts["rejected"] += 1
            return self.hold(), "rejected"
        command, event = self._limit(arr)
        self.counts[event] += 1
        return command, event

    def hold(self) -> np.ndarray | None:
        """The command that holds the robot (None: nothing was ever sent and no full stop_action)."""
        stop = self.config.stop_action
        if stop is None:
            target = self.last
        elif self.last is None:
            target = None if np.isnan(stop).any() else stop
        else:
            target = np.where(np.isnan(stop), self.last, stop)
        if target is None:
            return None
        return self._limit(np.asarray(target, dtype=np.float64))[0]
