"""The control loop: fixed rate, inference overlapped with execution, watchdog, safety.

This module owns `ControlLoop`, which drives a `Robot` from a chunk source (a
`vla.policies.client.PolicyClient`, or anything with `infer(observation) -> result with
.actions (H, D)` and a `connected` flag) through an `ActionSchedule` and a `SafetyLayer`.

Real-time mode (the default), every tick k at t0 + k / control_hz:

1. observe; take in the chunks the inference thread finished (stamped with the step of
   the observation they came from, so late actions are skipped and overlaps merge);
2. when at most `prefetch_steps` planned actions remain and no request is in flight, hand
   this observation to the background inference thread: the next chunk is computed while
   the current one executes (LeRobot async inference / real-time chunking style);
3. send the planned action through the safety layer; with nothing to execute, send
   `SafetyLayer.hold()` instead: the plan ran out (`starved`), the connection is lost
   (`disconnected`: the plan is dropped at once unless on_disconnect='drain'), or no fresh
   chunk arrived for `deadline_s` (`watchdog`: the plan is too old to trust).

Give-up: once no fresh chunk arrived for `give_up_s` (a dead server, a lost network), the
loop holds one last time and stops; `RunReport.stopped` says why. The operator hears
about it as it happens through `on_event` (one line each: the connection lost, the
connection back, the first hold of each reason with the fix to try, giving up; texts in
`feedback`).

Lock-step mode (simulation: the simulator waits for the policy) requests a chunk whenever
the plan is empty and blocks for it, which reproduces `policy.select_action` exactly; a
failed request is retried every `retry_backoff_s` until `give_up_s`.

The loop never sends anything that did not pass the safety layer. numpy + stdlib only.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from . import feedback
from .chunks import ActionSchedule
from .robot import Robot
from .safety import SafetyLayer

DISCONNECT_MODES = ("hold", "drain")


class ChunkSource(Protocol):
    """Where chunks come from (`PolicyClient` is one)."""

    @property
    def connected(self) -> bool: ...

    def infer(self, observation: dict[str, Any]) -> Any: ...  # -> result with .actions (H, D)


@dataclass
class ControllerConfig:
    """How the loop runs (see the module docstring)."""

    control_hz: float = 20.0  # ticks per second
    n_action_steps: int = 5  # actions executed from each chunk (<= chunk size)
    prefetch_steps: int = 2  # request the next chunk when at most this many planned actions remain
    ensemble: str = "latest"  # latest | average | exp (see chunks.py)
    ensemble_coeff: float = 0.01  # exp weights exp(-coeff * i)
    deadline_s: float = 0.5  # watchdog: hold once no fresh chunk arrived for this long
    lockstep: bool = False  # wait for every chunk (simulation); no clock, no watchdog
    on_disconnect: str = "hold"  # hold: drop the plan when the connection is lost | drain: finish it
    retry_backoff_s: float = 0.1  # wait after a failed request before the next one
    give_up_s: float | None = 10.0  # stop once no fresh chunk arrived for this long (None: never)

    def __post_init__(self) -> None:
        if self.control_hz <= 0 or self.deadline_s <= 0:
            raise ValueError(f"control_hz={self.control_hz} and deadline_s={self.deadline_s} must be > 0")
        if self.give_up_s is not None and self.give_up_s <= 0:
            raise ValueError(f"give_up_s={self.give_up_s} must be > 0, or None to never give up")
        if self.prefetch_steps < 0 or self.prefetch_steps >= self.n_action_steps:
            raise ValueError(f"prefetch_steps={self.prefetch_steps} must be in [0, n_action_steps="
                             f"{self.n_action_steps}): the next request must start before the plan runs out")
        if self.on_disconnect not in DISCONNECT_MODES:
            raise ValueError(f"on_disconnect={self.on_disconnect!r}; choose from {list(DISCONNECT_MODES)}")


@dataclass
class Tick:
    step: int
    scheduled: float  # clock time the tick was due
    started: float  # clock time it ran
    command: np.ndarray | None  # what was sent (None: nothing)
    source: str  # plan | hold
    reason: str  # ok | clipped | rate_limited | rejected | starved | disconnected | watchdog | no_chunk


@dataclass
class RequestRecord:
    step: int  # control step of the observation sent
    sent: float
    received: float
    rtt_ms: float
    server_ms: float = float("nan")
    infer_ms: float = float("nan")
    error: str | None = None


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    arr = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "max": float(arr.max())}


@dataclass
class RunReport:
    """Everything one run did, tick by tick, plus summary statistics."""

    ticks: list[Tick] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    watchdog_fired: list[float] = field(default_factory=list)  # clock times the watchdog tripped
    safety_counts: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None  # why the loop stopped early (gave up), None if it ran to the end

    def summary(self) -> dict[str, Any]:
        """Control-rate jitter (ms late per tick), round-trip latency (ms), hold counts."""
        ok = [r for r in self.requests if r.error is None]
        reasons: dict[str, int] = {}
        held: dict[str, int] = {}
        for t in self.ticks:
            reasons[t.reason] = reasons.get(t.reason, 0) + 1
            if t.source == "hold":
                held[t.reason] = held.get(t.reason, 0) + 1
        return {
            "ticks": len(self.ticks),
            "jitter_ms": _percentiles([(t.started - t.scheduled) * 1000 for t in self.ticks]),
            "rtt_ms": _percentiles([r.rtt_ms for r in ok]),
            "server_ms": _percentiles([r.server_ms for r in ok]),
            "requests": len(self.requests),
            "failed_requests": len(self.requests) - len(ok),
            "holds": sum(held.values()),  # ticks that held: never more than "ticks"
            "reasons": reasons,
            "hold_reasons": held,
            "watchdog_fired": len(self.watchdog_fired),
            "safety": dict(self.safety_counts),
            "stopped": self.stopped,
        }


class ControlLoop:
    """Runs a robot from a chunk source at a fixed rate (see the module docstring)."""

    def __init__(self, robot: Robot, source: ChunkSource, safety: SafetyLayer, config: ControllerConfig,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 on_event: Callable[[str], None] | None = None) -> None:
        """on_event: called with one console line per event (see the module docstring); None: silent."""
        self.robot, self.source, self.safety, self.config = robot, source, safety, config
        self.clock, self.sleep = clock, sleep
        self.on_event = on_event
        self.schedule = ActionSchedule(config.n_action_steps, config.ensemble, config.ensemble_coeff)
        self._told: set[str] = set()  # hold reasons already explained in this run
        self._lost_at: float | None = None  # when the connection was seen lost (None: connected)

    def _say(self, line: str) -> None:
        if self.on_event is not None:
            self.on_event(line)

    def _watch_connection(self, step: int, now: float, connected: bool) -> None:
        """Say when the connection drops and when it comes back (once per transition)."""
        if not connected and self._lost_at is None:
            self._lost_at = now
            self._say(feedback.lost_line(step, self.config.give_up_s))
        elif connected and self._lost_at is not None:
            self._say(feedback.back_line(step, now - self._lost_at))
            self._lost_at = None

    def _gives_up(self, step: int, now: float, last_fresh: float, report: RunReport) -> bool:
        """True (and the report says why) once no fresh chunk arrived for `give_up_s`."""
        limit = self.config.give_up_s
        if limit is None or now - last_fresh <= limit:
            return False
        report.stopped = feedback.gave_up_line(step, now - last_fresh, self._lost_at is not None)
        return True

    # -- background inference ------------------------------------------------------------
    def _worker(self, requests: queue.Queue, arrivals: queue.Queue) -> None:
        while (item := requests.get()) is not None:
            step, observation, sent = item
            try:
                arrivals.put((step, sent, self._record(step, sent, self.source.infer(observation))))
            except Exception as exc:  # any failure becomes a failed request; the loop holds and retries
                arrivals.put((step, sent, RequestRecord(step, sent, self.clock(), float("nan"),
                                                        error=f"{type(exc).__name__}: {exc}")))

    def _record(self, step: int, sent: float, result: Any) -> tuple[RequestRecord, np.ndarray]:
        received = self.clock()
        record = RequestRecord(step, sent, received, float(getattr(result, "rtt_ms", (received - sent) * 1000)),
                               float(getattr(result, "server_ms", "nan")), float(getattr(result, "infer_ms", "nan")))
        return record, np.asarray(result.actions)

    # -- the loop ------------------------------------------------------------------------
    def run(self, max_steps: int) -> RunReport:
        """Run until the robot is done or `max_steps` ticks; -> the report."""
        report = RunReport()
        self.schedule.clear()
        self._told.clear()
        try:
            if self.config.lockstep:
                self._run_lockstep(max_steps, report)
            else:
                self._run_realtime(max_steps, report)
        finally:
            report.safety_counts = dict(self.safety.counts)
        return report

    def _act(self, step: int, scheduled: float, started: float, action: np.ndarray | None, hold_reason: str,
             out: RunReport) -> None:
        """Send `action` through the safety layer, or hold (for `hold_reason`) when it is None."""
        if action is not None:
            command, reason = self.safety.filter(action)
            source = "hold" if reason == "rejected" else "plan"
        else:
            command, reason, source = self.safety.hold(), hold_reason, "hold"
        if command is not None:
            self.robot.send(command)
        out.ticks.append(Tick(step, scheduled, started, command, source, reason))
        if source == "hold" and reason not in self._told:
            self._told.add(reason)
            self._say(feedback.hold_line(step, reason))

    def _run_lockstep(self, max_steps: int, report: RunReport) -> None:
        for step in range(max_steps):
            now = self.clock()
            observation = self.robot.observe()
            if self.schedule.remaining(step) == 0 and not self._fetch_lockstep(step, observation, report):
                self._act(step, now, now, None, "no_chunk", report)  # hold, and stop
                self._say(report.stopped)
                return
            self._act(step, now, now, self.schedule.pop(step), "no_chunk", report)
            if self.robot.done:
                return

    def _fetch_lockstep(self, step: int, observation: dict[str, Any], report: RunReport) -> bool:
        """Request a chunk and wait for it (the simulator waits too), retrying a failed request every
        `retry_backoff_s`; -> False once given up. With give_up_s None a failure holds this tick instead."""
        first_try = self.clock()
        while True:
            sent = self.clock()
            try:
                record, actions = self._record(step, sent, self.source.infer(observation))
            except Exception as exc:
                record = RequestRecord(step, sent, self.clock(), float("nan"), error=f"{type(exc).__name__}: {exc}")
                report.requests.append(record)
                self._watch_connection(step, record.received, self.source.connected)
                if self.config.give_up_s is None:
                    return True
                if self._gives_up(step, record.received, first_try, report):
                    return False
                self.sleep(self.config.retry_backoff_s)
                continue
            report.requests.append(record)
            self._watch_connection(step, record.received, True)
            self.schedule.add(actions, step, step)
            return True

    def _run_realtime(self, max_steps: int, report: RunReport) -> None:
        cfg = self.config
        period = 1.0 / cfg.control_hz
        requests: queue.Queue = queue.Queue(maxsize=1)
        arrivals: queue.Queue = queue.Queue()
        worker = threading.Thread(target=self._worker, args=(requests, arrivals), name="inference-client",
                                  daemon=True)
        worker.start()
        in_flight, retry_at, last_fresh, watchdog_on = False, 0.0, None, False
        try:
            # the first chunk is fetched before the clock starts (the robot is still idle)
            sent = self.clock()
            requests.put((0, self.robot.observe(), sent))
            _, _, first = arrivals.get()
            if isinstance(first, RequestRecord):
                report.requests.append(first)
                retry_at = first.received + cfg.retry_backoff_s
            else:
                report.requests.append(first[0])
                self.schedule.add(first[1], 0, 0)
                last_fresh = first[0].received
            t0 = self.clock()
            for step in range(max_steps):
                scheduled = t0 + step * period
                delay = scheduled - self.clock()
                if delay > 0:
                    self.sleep(delay)
                started = self.clock()
                observation = self.robot.observe()
                while not arrivals.empty():
                    req_step, _, result = arrivals.get_nowait()
                    in_flight = False
                    if isinstance(result, RequestRecord):  # failed
                        report.requests.append(result)
                        retry_at = result.received + cfg.retry_backoff_s
                    else:
                        report.requests.append(result[0])
                        self.schedule.add(result[1], req_step, step)
                        last_fresh = result[0].received
                disconnected = not self.source.connected
                self._watch_connection(step, started, not disconnected)
                if disconnected and cfg.on_disconnect == "hold":
                    self.schedule.clear()
                if not in_flight and started >= retry_at and self.schedule.remaining(step) <= cfg.prefetch_steps:
                    requests.put((step, observation, self.clock()))
                    in_flight = True
                stale = last_fresh is None or started - last_fresh > cfg.deadline_s
                if stale and not watchdog_on:
                    report.watchdog_fired.append(started)
                watchdog_on = stale
                action = self.schedule.pop(step)
                reason = "watchdog" if stale else ("disconnected" if disconnected else "starved")
                self._act(step, scheduled, started, None if stale else action, reason, report)
                if self.robot.done:
                    return
                if self._gives_up(step, started, t0 if last_fresh is None else last_fresh, report):
                    self._say(report.stopped)
                    return
        finally:
            while not requests.empty():
                requests.get_nowait()
            requests.put(None)
            worker.join(timeout=10)
