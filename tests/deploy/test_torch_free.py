"""The client and the controller run where torch cannot be imported (a robot computer)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

# Runs in a fresh interpreter. An import hook refuses every top-level module that is not
# stdlib, numpy, msgpack or websockets. The installed `vla` and `vla.policies` packages are
# imported as they are (their __init__ files import nothing heavy; the LeRobot plugin loads
# lazily). (`cython_runtime`, `_cython_*`: runtime modules of numpy's and msgpack's extensions.)
ROBOT_SIDE = r"""
import importlib.abc, json, sys
BASELINE = set(sys.modules)  # what the interpreter and site-packages' .pth hooks loaded at startup
ALLOWED = {"numpy", "msgpack", "websockets", "vla"}

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top not in ALLOWED and top not in sys.stdlib_module_names:
            raise ImportError(f"robot side must not import {name!r}")

sys.meta_path.insert(0, Refuse())
try:
    import torch  # noqa: F401
    raise SystemExit("torch imported although it is refused")
except ImportError:
    pass

import numpy as np
from vla.policies.client import PolicyClient
from vla.policies.controller import ControlLoop, ControllerConfig, Robot, SafetyConfig, SafetyLayer

class StillRobot(Robot):
    sent = []
    def observe(self):
        rng = np.random.default_rng(3)
        return {"images": {"front": rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)},
                "state": np.arange(4, dtype=np.float32), "task": "touch the blue block"}
    def send(self, action):
        self.sent.append(action.tolist())

client = PolicyClient(URL, token="test-token", timeout_s=10)
meta = client.connect()
first = client.infer(StillRobot().observe())
robot = StillRobot()
loop = ControlLoop(robot, client, SafetyLayer(SafetyConfig([-1e3] * 4, [1e3] * 4)),
                   ControllerConfig(control_hz=50, n_action_steps=meta.n_action_steps, prefetch_steps=2))
report = loop.run(max_steps=12)
client.close()
new = {m.split(".")[0] for m in set(sys.modules) - BASELINE}
third_party = sorted(m for m in new - set(sys.stdlib_module_names) - {"vla"} if "cython" not in m)
print(json.dumps({"actions": first.actions.tolist(), "sent": robot.sent, "modules": third_party,
                  "summary": report.summary()}))
"""


def test_client_and_controller_run_without_torch(server, backend):
    _, url = server
    code = ROBOT_SIDE.replace("URL", repr(url))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(out["modules"]) <= {"numpy", "msgpack", "websockets"}, out["modules"]
    rng = np.random.default_rng(3)
    obs = {"images": {"front": rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)},
           "state": np.arange(4, dtype=np.float32), "task": "touch the blue block"}
    np.testing.assert_array_equal(np.array(out["actions"], dtype=np.float32), backend.infer(obs))
    assert len(out["sent"]) == 12 and out["summary"]["requests"] >= 2
