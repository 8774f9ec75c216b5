"""The robot-side distribution (`client/`, `llada-vla-client`) installs with one pip command into a
clean environment without torch, and its client and controller talk to a policy server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[2]

ROBOT_SIDE = r"""
import importlib.util, json, sys
assert importlib.util.find_spec("torch") is None, "torch is installed in the robot environment"
assert importlib.util.find_spec("vla") is None, "the full package leaked into the robot environment"
import numpy as np
from vla_client import PolicyClient
from vla_client.controller import ControlLoop, ControllerConfig, Robot, SafetyConfig, SafetyLayer

class StillRobot(Robot):
    sent = []
    def observe(self):
        rng = np.random.default_rng(3)
        return {"images": {"front": rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)},
                "state": np.arange(4, dtype=np.float32), "task": "touch the blue block"}
    def send(self, action):
        self.sent.append(action.tolist())

client = PolicyClient(URL, token="test-token", timeout_s=30)
meta = client.connect()
first = client.infer(StillRobot().observe())
robot = StillRobot()
loop = ControlLoop(robot, client, SafetyLayer(SafetyConfig([-1e3] * 4, [1e3] * 4)),
                   ControllerConfig(n_action_steps=meta.n_action_steps, prefetch_steps=2, lockstep=True))
report = loop.run(max_steps=12)
client.close()
print(json.dumps({"actions": first.actions.tolist(), "sent": len(robot.sent), "requests": len(report.requests),
                  "module": sys.modules["vla_client"].__file__}))
"""


@pytest.mark.slow
def test_client_distribution_installs_without_torch_and_talks_to_a_server(server, backend, tmp_path):
    _, url = server
    venv = tmp_path / "robot-venv"
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VLA_SRC_ROOT", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean_env, timeout=300)
    python = str(venv / "bin" / "python")
    # the one command a robot computer runs (numpy, msgpack, websockets come from the package index)
    install = subprocess.run([python, "-m", "pip", "install", "-q", str(ROOT / "client")], capture_output=True,
                             text=True, env=clean_env, cwd=tmp_path, timeout=900)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    listed = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                            env=clean_env, timeout=120)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "llada-vla-client" in names and "torch" not in names and "llada-vla" not in names, names
    assert names - {"pip", "setuptools", "wheel"} <= {"llada-vla-client", "numpy", "msgpack", "websockets"}, names

    run = subprocess.run([python, "-c", ROBOT_SIDE.replace("URL", repr(url))], capture_output=True, text=True,
                         env=clean_env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["module"].startswith(str(venv))  # the installed copy, not the repository's folder
    rng = np.random.default_rng(3)
    obs = {"images": {"front": rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)},
           "state": np.arange(4, dtype=np.float32), "task": "touch the blue block"}
    np.testing.assert_array_equal(np.array(out["actions"], dtype=np.float32), backend.infer(obs))
    assert out["sent"] == 12 and out["requests"] >= 2
