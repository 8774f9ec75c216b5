"""Action chunks on the controller's step clock, and how overlapping chunks merge.

This module owns `ActionSchedule`: every chunk is tagged with the control step of the
observation it was computed from (`start_step`), so its action i belongs to step
`start_step + i`. A chunk that arrives late has its first actions in the past: they are
dropped (latency compensation, as LeRobot's async inference and real-time chunking do).
Where chunks overlap, the actions planned for one step merge by `ensemble`:

- ``latest``: the newest chunk wins (replanning; the default);
- ``average``: plain mean over every chunk that planned the step;
- ``exp``: ACT's temporal ensembling, weights exp(-coeff * i) with i = 0 the oldest
  prediction (ACT, Zhao et al. 2023, section 3.3: older predictions weigh more, which
  smooths the motion; coeff = 0 is the plain mean).

Only the first `n_action_steps` actions of a chunk are kept (all of them with None, as ACT
does when it ensembles). numpy only: the controller and closed-loop evaluation
(`vla.envs.evaluation`) both execute chunks through this class.
"""

from __future__ import annotations

import numpy as np

ENSEMBLE_MODES = ("latest", "average", "exp")


class ActionSchedule:
    """step -> planned actions (from one or more chunks); `pop(step)` merges and forgets them."""

    def __init__(self, n_action_steps: int | None, ensemble: str = "latest", ensemble_coeff: float = 0.01) -> None:
        if ensemble not in ENSEMBLE_MODES:
            raise ValueError(f"ensemble={ensemble!r}; choose from {list(ENSEMBLE_MODES)}")
        if n_action_steps is not None and n_action_steps < 1:
            raise ValueError(f"n_action_steps={n_action_steps} must be >= 1")
        if ensemble_coeff < 0:
            raise ValueError(f"ensemble_coeff={ensemble_coeff} must be >= 0")
        self.n_action_steps = n_action_steps
        self.ensemble = ensemble
        self.ensemble_coeff = ensemble_coeff
        self._plans: dict[int, list[np.ndarray]] = {}  # step -> predictions, oldest first
        self.dropped_late = 0  # actions that arrived after their step had passed

    def add(self, chunk: np.ndarray, start_step: int, current_step: int) -> int:
        """Schedule chunk (H, D) computed from the observation at `start_step`; -> actions kept."""
        chunk = np.asarray(chunk)
        if chunk.ndim != 2:
            raise ValueError(f"chunk has shape {chunk.shape}; expected (H, D)")
        kept = 0
        for i, action in enumerate(chunk[: self.n_action_steps]):
            step = start_step + i
            if step < current_step:
                self.dropped_late += 1
                continue
            if self.ensemble == "latest":
                self._plans[step] = [action]
            else:
                self._plans.setdefault(step, []).append(action)
            kept += 1
        return kept

    def pop(self, step: int) -> np.ndarray | None:
        """The merged action for `step` (None if nothing is planned); forgets steps <= `step`."""
        for old in [s for s in self._plans if s < step]:
            del self._plans[old]
        preds = self._plans.pop(step, None)
        if not preds:
            return None
        stacked = np.stack(preds).astype(np.float64)  # (n, D), oldest first
        if len(preds) == 1 or self.ensemble == "latest":
            return stacked[-1]
        if self.ensemble == "average":
            return stacked.mean(axis=0)
        weights = np.exp(-self.ensemble_coeff * np.arange(len(preds)))
        return (weights[:, None] * stacked).sum(axis=0) / weights.sum()

    def remaining(self, step: int) -> int:
        """How many consecutive steps from `step` on have a planned action."""
        n = 0
        while step + n in self._plans:
            n += 1
        return n

    def clear(self) -> None:
        self._plans.clear()
