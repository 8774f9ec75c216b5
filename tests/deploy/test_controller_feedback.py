"""Controller feedback: console lines when the connection drops and comes back, hold reasons with the
fix to try, giving up after --give-up-s with a non-zero exit, hold counts that never exceed ticks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vla.policies.controller import ControllerConfig, ControlLoop, SafetyConfig, SafetyLayer, diagnose

ROOT = Path(__file__).parents[2]


class FakeRobot:
    def __init__(self):
        self.sent = []

    def observe(self):
        return {"images": {"front": np.zeros((8, 8, 3), np.uint8)}, "state": np.zeros(2, np.float32), "task": "t"}

    def send(self, action):
        self.sent.append(np.array(action))

    done = False


class Result:
    def __init__(self, actions):
        self.actions = actions


class FlakySource:
    """Answers except while `down(n)` is true for the n-th request: then it raises and reads disconnected."""

    def __init__(self, down=lambda n: False):
        self.down, self.calls, self.connected = down, 0, True

    def infer(self, observation):
        self.calls += 1
        self.connected = not self.down(self.calls)
        if not self.connected:
            raise ConnectionError("server gone")
        return Result(np.full((5, 2), 0.1))


def layer():
    return SafetyLayer(SafetyConfig(low=[-1, -1], high=[1, 1], stop_action=[0.0, 0.0]))


@pytest.mark.parametrize("lockstep", [False, True])
def test_loop_says_when_the_connection_drops_and_comes_back(lockstep):
    lines = []
    source = FlakySource(down=lambda n: 3 <= n <= 5)
    config = ControllerConfig(control_hz=50, n_action_steps=5, prefetch_steps=2, lockstep=lockstep,
                              retry_backoff_s=0.02, give_up_s=5.0, deadline_s=5.0)
    report = ControlLoop(FakeRobot(), source, layer(), config, on_event=lines.append).run(max_steps=40)
    lost = [i for i, line in enumerate(lines) if "connection to the policy server lost" in line]
    back = [i for i, line in enumerate(lines) if "connection back after" in line]
    assert len(lost) == 1 and len(back) == 1 and lost[0] < back[0], lines
    assert report.stopped is None and len(report.ticks) == 40
    summary = report.summary()
    assert summary["holds"] == sum(summary["hold_reasons"].values()) <= summary["ticks"]
    if not lockstep:  # lock-step waits for the chunk instead of holding
        assert "disconnected" in summary["hold_reasons"]
        assert any("holding the robot (disconnected)" in line and "scripts/serve.py" in line for line in lines)


@pytest.mark.parametrize("lockstep", [False, True])
def test_loop_gives_up_when_no_chunk_arrives_for_give_up_s(lockstep):
    lines = []
    source = FlakySource(down=lambda n: n >= 2)
    config = ControllerConfig(control_hz=50, n_action_steps=5, prefetch_steps=2, lockstep=lockstep,
                              retry_backoff_s=0.02, give_up_s=0.5)
    robot = FakeRobot()
    report = ControlLoop(robot, source, layer(), config, on_event=lines.append).run(max_steps=10_000)
    assert report.stopped is not None and "giving up: no fresh chunk for" in report.stopped
    assert lines[-1] == report.stopped and len(report.ticks) < 10_000
    assert report.ticks[-1].source == "hold" and np.allclose(robot.sent[-1], 0)  # it stops holding
    summary = report.summary()
    assert summary["holds"] <= summary["ticks"] and summary["stopped"] == report.stopped


def test_diagnose_names_the_fix_when_the_round_trip_exceeds_the_prefetch_window():
    summary = {"ticks": 200, "hold_reasons": {"starved": 183}, "rtt_ms": {"p50": 240.0}}
    lines = diagnose(summary, control_hz=20.0, n_action_steps=5, prefetch_steps=2)
    assert lines[0].startswith("held 183 of 200 ticks (starved)")
    assert "round trip p50 240 ms > prefetch window 100 ms" in lines[1]
    assert "--prefetch-steps 4" in lines[1] and "--hz 16.7 or lower" in lines[1] and "--mode lockstep" in lines[1]
    assert diagnose({**summary, "rtt_ms": {"p50": 50.0}}, 20.0, 5, 2)[1:] == []  # in time: no timing advice
    assert diagnose({**summary, "hold_reasons": {}}, 20.0, 5, 2) == []  # no holds: nothing to say


def test_help_shows_defaults_and_the_evaluation_seed_base():
    from vla.envs.evaluation import EVAL_SEED_BASE

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_controller.py"), "--help"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert f"(default: {EVAL_SEED_BASE})" in text and "--give-up-s" in text and "(default: 10.0)" in text
    assert "(default: realtime)" in text and "(default: 2)" in text


def test_controller_under_a_killed_server_says_so_gives_up_and_exits_nonzero(policy_dir, tmp_path):
    server = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve.py"), f"--policy.path={policy_dir}",
                               "--port", "0", "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    controller = None
    try:
        line, start = "", time.monotonic()
        while "serving" not in line and time.monotonic() - start < 300 and server.poll() is None:
            line = server.stdout.readline()
        assert "ws://127.0.0.1:" in line, f"server did not start: {line}"
        url = line.split(" on ")[1].split()[0]
        give_up_s = 2.0
        controller = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run_controller.py"), "--url", url, "--episodes", "4",
             "--episode-length", "20", "--mode", "lockstep", "--give-up-s", str(give_up_s),
             "--json", str(tmp_path / "run.json")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        lines = []
        for out_line in controller.stdout:
            lines.append(out_line.rstrip())
            if out_line.startswith("episode 1/4") and server.poll() is None:
                server.send_signal(signal.SIGKILL)  # printed as it ended: the server dies during episode 2
                server.wait(timeout=10)
        rc = controller.wait(timeout=120)
        err = controller.stderr.read()
    finally:
        for proc in (server, controller):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    text = "\n".join(lines)
    assert rc == 1, text + err
    assert "connection to the policy server lost" in text, text
    # lock-step (a slow server on a loaded machine is waited for; only a dead one gives up): it stops in the
    # episode the server died in, not after running every remaining episode against a dead server
    assert "stopped after 2 of 4 episodes" in err and "giving up: no fresh chunk for" in err, err
    ran = 2
    idle_s = float(err.split("no fresh chunk for ")[1].split()[0])
    assert idle_s >= give_up_s  # printed to 0.1 s: 2.04 s reads "2.0"
    result = json.loads((tmp_path / "run.json").read_text())
    assert len(result["episodes"]) == ran and result["stopped"]
    episode_lines = [line.split()[1] for line in lines if line.startswith("episode ")]
    assert episode_lines == [f"{i}/4" for i in range(1, ran + 1)]  # one line per episode, as each ended
    for episode in result["episodes"]:
        assert 0 <= episode["holds"] <= episode["ticks"] and sum(episode["hold_reasons"].values()) == episode["holds"]
    assert result["holds"] <= result["ticks"]
