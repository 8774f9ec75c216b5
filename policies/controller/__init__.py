"""Torch-free controller runtime: robot interface, chunk schedule, safety layer, control loop.

- `robot`    `Robot` (observe / send / done) and `LeRobotRobotAdapter` for lerobot robots
- `chunks`   `ActionSchedule`: chunks on the step clock, late actions dropped, temporal ensembling
- `safety`   `SafetyLayer`: reject NaN/inf, clip to bounds, rate limit, hold / stop command
- `runtime`  `ControlLoop`: fixed-rate loop, background inference, watchdog, give-up, run report
- `feedback` console lines: connection lost / back, hold reasons with the fix to try, `diagnose`

Imports numpy and the stdlib only (not even the client: any object with `infer` and
`connected` is a chunk source, `vla.policies.client.PolicyClient` being the usual one).
The MuJoCo robot over our simulation suites is `vla.envs.robot_sim.SimRobot`. On a robot
computer this package is `vla_client.controller` (the `llada-vla-client` distribution).
"""

from .chunks import ENSEMBLE_MODES, ActionSchedule
from .feedback import HOLD_ADVICE, diagnose
from .robot import LeRobotRobotAdapter, Robot
from .runtime import ControllerConfig, ControlLoop, RequestRecord, RunReport, Tick
from .safety import SafetyConfig, SafetyLayer

__all__ = ["ENSEMBLE_MODES", "HOLD_ADVICE", "ActionSchedule", "ControlLoop", "ControllerConfig", "LeRobotRobotAdapter",
           "RequestRecord", "Robot", "RunReport", "SafetyConfig", "SafetyLayer", "Tick", "diagnose"]
