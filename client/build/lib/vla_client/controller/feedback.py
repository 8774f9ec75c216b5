"""What the controller tells its operator: why it holds the robot and what to change.

This module owns the console text of the control loop: the advice for each hold reason
(`HOLD_ADVICE`), the lines for a lost and a recovered connection, and `diagnose`, which
reads a run's summary and says which setting to change when the robot held (for example a
round trip longer than the prefetch window: lockstep mode, more prefetch, a lower rate).
It formats text only; `ControlLoop` decides when to say it. numpy + stdlib only.
"""

from __future__ import annotations

import math
from typing import Any

HOLD_ADVICE = {
    "starved": "the plan ran out before the next chunk arrived (round trip longer than the prefetch window): "
               "raise --prefetch-steps, lower --hz, or use --mode lockstep",
    "watchdog": "no fresh chunk for --deadline-s: the server is slow or stuck; check its log, raise --deadline-s, "
                "lower --hz, or use --mode lockstep",
    "disconnected": "the connection to the policy server is lost: check that scripts/serve.py is running and "
                    "reachable (the loop reconnects by itself)",
    "no_chunk": "a request failed (see the errors in the report); is scripts/serve.py running?",
    "rejected": "the safety layer rejected the policy's action (NaN / inf or wrong shape): check the policy",
}


def hold_line(step: int, reason: str) -> str:
    """The console line for the first hold of a given reason in a run."""
    return f"step {step}: holding the robot ({reason}): {HOLD_ADVICE.get(reason, 'see the run report')}"


def lost_line(step: int, give_up_s: float | None) -> str:
    give_up = f"; giving up after {give_up_s:g} s without a chunk (--give-up-s)" if give_up_s else ""
    return f"step {step}: connection to the policy server lost; holding the robot and reconnecting{give_up}"


def back_line(step: int, after_s: float) -> str:
    return f"step {step}: connection back after {after_s:.1f} s; executing chunks again"


def gave_up_line(step: int, idle_s: float, disconnected: bool) -> str:
    why = "the connection is lost" if disconnected else "the server sends no chunks"
    return (f"step {step}: giving up: no fresh chunk for {idle_s:.1f} s ({why}); check scripts/serve.py, "
            "or raise --give-up-s")


def diagnose(summary: dict[str, Any], control_hz: float, n_action_steps: int, prefetch_steps: int,
             lockstep: bool = False) -> list[str]:
    """-> one line per hold reason of a run (count and the fix to try), plus the timing diagnosis.

    `summary` is `RunReport.summary()`. In real-time mode a chunk requested with
    `prefetch_steps` planned actions left arrives in time only if the round trip is shorter
    than prefetch_steps / control_hz; the largest possible window is n_action_steps - 1 steps.
    """
    ticks, lines = summary["ticks"], []
    for reason, count in sorted(summary["hold_reasons"].items(), key=lambda kv: -kv[1]):
        lines.append(f"held {count} of {ticks} ticks ({reason}): {HOLD_ADVICE.get(reason, 'see the run report')}")
    rtt = summary["rtt_ms"]["p50"]
    if lockstep or not lines or not math.isfinite(rtt):
        return lines
    period_ms = 1000.0 / control_hz
    window_ms = prefetch_steps * period_ms
    if rtt > window_ms:
        most = n_action_steps - 1  # the widest window: request as soon as a chunk starts executing
        fixes = [f"--prefetch-steps {most} (window {most * period_ms:.0f} ms)"] if most > prefetch_steps else []
        fixes += [f"--hz {1000.0 * most / rtt:.3g} or lower"] if most > 0 else []
        fixes += ["--mode lockstep"]
        lines.append(f"round trip p50 {rtt:.0f} ms > prefetch window {window_ms:.0f} ms ({prefetch_steps} steps at "
                     f"{control_hz:g} Hz): try {', or '.join(fixes)}")
    return lines
