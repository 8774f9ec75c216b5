"""Controller runtime: safety invariants (property-based), chunk merging, watchdog, slow and killed servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla.policies.controller import (
    ActionSchedule,
    ControllerConfig,
    ControlLoop,
    LeRobotRobotAdapter,
    Robot,
    SafetyConfig,
    SafetyLayer,
)

ROOT = Path(__file__).parents[2]
LOW, HIGH, MAX_DELTA = np.array([-1.0, -1.0, -0.5, 0.0]), np.array([1.0, 1.0, 0.5, 1.0]), 0.3


def safety(stop=(0.0, 0.0, 0.0, np.nan), max_delta=MAX_DELTA):
    return SafetyLayer(SafetyConfig(low=LOW, high=HIGH, max_delta=max_delta, stop_action=stop))


def assert_safe(commands, max_delta=MAX_DELTA):
    """Every command finite, inside the bounds, and within max_delta of the previous one."""
    prev = None
    for cmd in commands:
        assert cmd.shape == (4,) and np.isfinite(cmd).all(), cmd
        assert (cmd >= LOW).all() and (cmd <= HIGH).all(), cmd
        if prev is not None and max_delta is not None:
            assert (np.abs(cmd - prev) <= max_delta + 1e-12).all(), (prev, cmd)
        prev = cmd


class FakeRobot(Robot):
    def __init__(self, on_send=None):
        self.sent, self.sent_at, self.on_send = [], [], on_send

    def observe(self):
        return {"images": {"front": np.zeros((96, 96, 3), np.uint8)}, "state": np.zeros(4, np.float32), "task": "t"}

    def send(self, action):
        self.sent.append(np.array(action))
        self.sent_at.append(time.monotonic())
        if self.on_send is not None:
            self.on_send(len(self.sent))


@dataclass
class Result:
    actions: np.ndarray


class FakeSource:
    """Chunks from a function of the request count, after a per-request delay."""

    def __init__(self, make_chunk, delay=lambda n: 0.0):
        self.make_chunk, self.delay, self.calls, self.connected = make_chunk, delay, 0, True

    def infer(self, observation):
        self.calls += 1
        time.sleep(self.delay(self.calls))
        return Result(self.make_chunk(self.calls))


# -- safety layer ----------------------------------------------------------------------------
finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.floats(-1e30, 1e30)
model_output = st.one_of(
    st.lists(finite_or_not, min_size=4, max_size=4).map(np.array),
    st.lists(finite_or_not, min_size=0, max_size=7).map(np.array),  # wrong shapes
    st.just(None),  # nothing fresh: hold
)


@settings(max_examples=300, deadline=None)
@given(st.lists(model_output, min_size=1, max_size=40), st.sampled_from([(0, 0, 0, np.nan), None, (0, 0, 0, 0.5)]))
def test_every_command_is_finite_in_bounds_and_rate_limited(outputs, stop):
    layer, commands = safety(stop=stop), []
    for out in outputs:
        cmd = layer.hold() if out is None else layer.filter(out)[0]
        if cmd is not None:
            commands.append(cmd)
    assert_safe(commands)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.lists(finite_or_not, min_size=4, max_size=4), min_size=5, max_size=5),
                min_size=1, max_size=8))
def test_loop_sends_only_safe_commands_whatever_the_model_outputs(chunks):
    robot = FakeRobot()
    source = FakeSource(lambda n: np.array(chunks[(n - 1) % len(chunks)], dtype=np.float64))
    loop = ControlLoop(robot, source, safety(), ControllerConfig(n_action_steps=5, lockstep=True))
    report = loop.run(max_steps=25)
    assert len(report.ticks) == 25
    assert_safe(robot.sent)


def test_rejects_clips_rate_limits_and_holds():
    layer = safety()
    assert layer.hold() is None  # nothing sent yet and the stop command keeps the gripper as it is
    cmd, event = layer.filter([0.1, 0.1, 0.1, 0.5])
    assert event == "ok" and np.allclose(cmd, [0.1, 0.1, 0.1, 0.5])
    cmd, event = layer.filter([5.0, 0.1, 0.1, 0.5])
    assert event == "clipped" and np.allclose(cmd, [0.4, 0.1, 0.1, 0.5])  # clipped to 1, then +0.3 at most
    cmd, event = layer.filter([np.nan, 0, 0, 0])
    assert event == "rejected" and np.allclose(cmd, [0.1, 0.0, 0.0, 0.5])  # holding: towards (0, 0, 0, keep)
    assert np.allclose(layer.hold(), [0.0, 0.0, 0.0, 0.5])
    with pytest.raises(ValueError, match="stop_action"):
        SafetyConfig(low=LOW, high=HIGH, stop_action=[0, 0, 2, 0])
    with pytest.raises(ValueError, match="max_delta"):
        SafetyConfig(low=LOW, high=HIGH, max_delta=0)


# -- chunk schedule ----------------------------------------------------------------------------
def test_schedule_drops_late_actions_and_merges_overlaps():
    a, b = np.arange(5.0)[:, None] * np.ones((1, 2)), 10 + np.arange(5.0)[:, None] * np.ones((1, 2))
    latest = ActionSchedule(5, "latest")
    assert latest.add(a, start_step=0, current_step=0) == 5
    assert latest.add(b, start_step=3, current_step=4) == 4 and latest.dropped_late == 1  # b[0] is for step 3: gone
    assert latest.remaining(4) == 4
    assert [latest.pop(s)[0] for s in range(4, 8)] == [11, 12, 13, 14]  # the newest chunk wins at step 4
    assert latest.pop(8) is None
    avg = ActionSchedule(5, "average")
    avg.add(a, 0, 0)
    avg.add(b, 2, 2)
    assert avg.pop(3)[0] == (3 + 11) / 2
    exp = ActionSchedule(5, "exp", ensemble_coeff=0.5)
    exp.add(a, 0, 0)
    exp.add(b, 2, 2)
    w = np.exp(-0.5 * np.arange(2))
    assert np.isclose(exp.pop(3)[0], (w[0] * 3 + w[1] * 11) / w.sum())  # ACT: the older prediction weighs more
    assert exp.pop(2) is None  # popping step 3 forgot step 2
    with pytest.raises(ValueError, match="choose from"):
        ActionSchedule(5, "median")


# -- watchdog and slow / dead servers ------------------------------------------------------------
def test_watchdog_holds_at_the_deadline_even_with_actions_left():
    hz, deadline = 50.0, 0.2
    chunk = np.tile(np.array([0.05, 0.0, 0.0, 0.5]), (20, 1))
    source = FakeSource(lambda n: chunk, delay=lambda n: 0.0 if n == 1 else 1.0)  # every later reply is late
    robot = FakeRobot()
    loop = ControlLoop(robot, source, safety(), ControllerConfig(control_hz=hz, n_action_steps=20, prefetch_steps=15,
                                                                 deadline_s=deadline))
    report = loop.run(max_steps=20)
    first_chunk = report.requests[0].received
    assert len(report.watchdog_fired) == 1
    fired_after = report.watchdog_fired[0] - first_chunk
    assert deadline < fired_after <= deadline + 1.0 / hz + 0.03
    plan = [t for t in report.ticks if t.source == "plan"]
    held = [t for t in report.ticks if t.started - first_chunk > deadline]
    assert len(plan) >= 5 and all(t.source == "hold" and t.reason == "watchdog" for t in held)
    assert np.allclose(held[-1].command, [0, 0, 0, 0.5])  # the stop command (gripper kept)
    assert_safe(robot.sent)


def test_slow_server_queue_keeps_executing_and_watchdog_fires(server, backend):
    """Server-side delay injected on the 2nd request: the plan runs on, then holds at the deadline, then recovers."""
    from vla.policies.client import PolicyClient

    _, url = server
    original, calls = backend.infer, []

    def slow_infer(obs):
        calls.append(time.monotonic())
        if len(calls) == 2:
            time.sleep(0.6)
        return original(obs)

    hz, deadline = 20.0, 0.3
    backend.infer = slow_infer
    try:
        with PolicyClient(url, token="test-token", timeout_s=5) as client:
            loop = ControlLoop(FakeRobot(), client, SafetyLayer(SafetyConfig([-5] * 4, [5] * 4)),
                               ControllerConfig(control_hz=hz, n_action_steps=5, prefetch_steps=2,
                                                deadline_s=deadline))
            report = loop.run(max_steps=30)
    finally:
        backend.infer = original
    ticks = report.ticks
    slow = report.requests[1]
    assert slow.server_ms >= 550  # the injected delay
    pending = [t for t in ticks if slow.sent < t.started < slow.received]
    assert len(pending) >= 10 and all(t.started - t.scheduled < 0.05 for t in pending)  # the loop never waits
    planned = [t for t in pending if t.step < slow.step + 2]  # what was left of the plan when it was sent
    assert planned and all(t.source == "plan" for t in planned)  # ... and the queue keeps executing
    assert {t.reason for t in pending[len(planned):]} == {"starved", "watchdog"}
    assert len(report.watchdog_fired) >= 1
    fired_after = report.watchdog_fired[0] - report.requests[0].received
    assert deadline < fired_after <= deadline + 1.0 / hz + 0.03
    assert any(t.reason == "watchdog" for t in ticks)
    recovered = [t for t in ticks if t.started > slow.received + 0.15]
    assert recovered and recovered[-1].source == "plan"  # fresh chunks again once the server is fast


def test_killed_server_holds_within_one_control_period(policy_dir):
    from vla.policies.client import PolicyClient

    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve.py"), f"--policy.path={policy_dir}",
                             "--port", "0", "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        line, start = "", time.monotonic()
        while "serving" not in line and time.monotonic() - start < 90 and proc.poll() is None:
            line = proc.stdout.readline()
        assert "ws://127.0.0.1:" in line, f"server did not start: {line}"
        url = line.split(" on ")[1].split()[0]
        hz, killed_at = 20.0, []

        def kill_at_tick_15(n):
            if n == 15:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)  # reaped: its sockets are closed; the clock starts when it is really gone
                killed_at.append(time.monotonic())

        robot = FakeRobot(on_send=kill_at_tick_15)
        with PolicyClient(url, timeout_s=3, open_timeout_s=1) as client:
            loop = ControlLoop(robot, client, safety(), ControllerConfig(control_hz=hz, n_action_steps=5,
                                                                         prefetch_steps=2, deadline_s=1.0))
            report = loop.run(max_steps=30)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    t_kill = killed_at[0]
    after = [t for t in report.ticks if t.started >= t_kill + 1.0 / hz]
    assert len(after) >= 10
    assert all(t.source == "hold" for t in after), [(t.step, t.reason) for t in after]
    assert {t.reason for t in after} <= {"disconnected", "watchdog"}
    assert report.summary()["failed_requests"] >= 1  # it kept trying to reconnect
    assert_safe(robot.sent)
    assert np.allclose(robot.sent[-1][:3], 0)  # holding = no motion


# -- LeRobot robots ---------------------------------------------------------------------------------
def test_lerobot_robot_adapter_drives_a_lerobot_robot_subclass(tmp_path):
    from lerobot.robots import Robot as LeRobotRobot
    from lerobot.robots import RobotConfig

    @dataclass(kw_only=True)
    class FakeArmConfig(RobotConfig):
        pass

    class FakeArm(LeRobotRobot):
        config_class, name = FakeArmConfig, "fake_arm"
        joints = ["shoulder.pos", "elbow.pos", "gripper.pos"]

        def __init__(self, config):
            super().__init__(config)
            self.q, self.commands, self._connected = np.zeros(3), [], False

        observation_features = property(lambda self: {**{j: float for j in self.joints}, "wrist": (48, 64, 3)})
        action_features = property(lambda self: {j: float for j in self.joints})
        is_connected = property(lambda self: self._connected)
        is_calibrated = property(lambda self: True)

        def connect(self, calibrate=True):
            self._connected = True

        def calibrate(self):
            pass

        def configure(self):
            pass

        def get_observation(self):
            return {**dict(zip(self.joints, self.q, strict=True)), "wrist": np.full((48, 64, 3), 7, np.uint8)}

        def send_action(self, action):
            self.commands.append(action)
            self.q = np.array([action[j] for j in self.joints])
            return action

        def disconnect(self):
            self._connected = False

    arm = FakeArm(FakeArmConfig(id="test", calibration_dir=tmp_path))
    arm.connect()
    robot = LeRobotRobotAdapter(arm, task="wave", cameras={"front": "wrist"}, image_size=(24, 32))
    obs = robot.observe()
    assert obs["images"]["front"].shape == (24, 32, 3) and obs["state"].tolist() == [0, 0, 0]
    targets = np.array([[0.1, 0.2, 1.0], [0.15, 0.2, 1.0], [np.nan, 0, 0]] * 2)
    source = FakeSource(lambda n: targets)
    layer = SafetyLayer(SafetyConfig(low=[-1, -1, 0], high=[1, 1, 1], max_delta=[0.05, 0.05, 1.0]))
    ControlLoop(robot, source, layer, ControllerConfig(n_action_steps=6, prefetch_steps=0, lockstep=True)).run(6)
    assert len(arm.commands) == 6 and set(arm.commands[0]) == set(FakeArm.joints)
    assert arm.commands[0] == {"shoulder.pos": 0.1, "elbow.pos": 0.2, "gripper.pos": 1.0}
    assert arm.commands[1]["shoulder.pos"] == pytest.approx(0.15)
    assert arm.commands[2] == arm.commands[1]  # NaN output rejected: the last command is held
    assert robot.observe()["state"].tolist() == pytest.approx([0.15, 0.2, 1.0])  # joints after the 6th command (held)
    with pytest.raises(ValueError, match="are not features"):
        LeRobotRobotAdapter(arm, task="wave", cameras={"front": "top"})
    robot.close()
    assert not arm.is_connected
