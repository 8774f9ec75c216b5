"""Messages between the policy server and its clients, and their validation.

This module owns the message schema (shared by `vla.policies.server` and the client) and
checks incoming requests against the server's `Metadata`. numpy + stdlib only.

Conversation (every frame is binary msgpack, see `wire`):

    server -> client  {"type": "metadata", **Metadata}                      once, on connect
    client -> server  {"type": "infer", "id": 7, "observation": {
                          "images": {"front": uint8 (H, W, 3)},               one per camera
                          "state": float32 (S,),                              omitted when S == 0
                          "task": "push the red block onto the cyan zone"}}
    server -> client  {"type": "actions", "id": 7, "actions": float32 (H, D),
                       "timing": {"server_ms": ..., "infer_ms": ..., "queue_ms": ...}}
    client -> server  {"type": "ping", "id": 8}   ->   {"type": "pong", "id": 8, "timing": {...}}
    server -> client  {"type": "error", "id": 7 or None, "error": "what was wrong and what to do"}

`server_ms` runs from the server receiving the frame to sending the reply; `infer_ms` is
the model call alone; `queue_ms` the wait for the single inference worker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1
REQUEST_TYPES = ("infer", "ping")
MAX_TASK_CHARS = 1000


class ProtocolError(ValueError):
    """A request that does not follow the protocol (the text says what was wrong)."""


@dataclass
class Metadata:
    """What a client needs to know before it sends observations (sent on connect).

    cameras: camera name -> [H, W, 3] of the uint8 images the server expects.
    action_names / state_names: one name per dimension (generic names when unknown).
    control_hz: the rate the policy was trained at (the dataset's fps).
    max_message_bytes / max_pending: the server's limits (0 from servers that predate them).
    """

    action_dim: int
    chunk_size: int
    n_action_steps: int
    cameras: dict[str, list[int]]
    state_dim: int
    control_hz: float
    action_names: list[str] = field(default_factory=list)
    state_names: list[str] = field(default_factory=list)
    policy: str = ""
    max_message_bytes: int = 0  # largest frame the server answers (0: unknown)
    max_pending: int = 0  # requests one connection may pipeline before the server refuses more (0: unknown)
    protocol: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        self.action_names = list(self.action_names) or [f"a{i}" for i in range(self.action_dim)]
        self.state_names = list(self.state_names) or [f"s{i}" for i in range(self.state_dim)]
        if len(self.action_names) != self.action_dim or len(self.state_names) != self.state_dim:
            raise ValueError(f"{len(self.action_names)} action names for action_dim={self.action_dim} / "
                             f"{len(self.state_names)} state names for state_dim={self.state_dim}: give one per dim")

    def to_message(self) -> dict[str, Any]:
        return {"type": "metadata", **asdict(self)}

    @classmethod
    def from_message(cls, message: Any) -> Metadata:
        if not isinstance(message, dict) or message.get("type") != "metadata":
            raise ProtocolError(f"expected a metadata frame first, got {_describe(message)}")
        fields = {k: v for k, v in message.items() if k in cls.__dataclass_fields__}
        if fields.get("protocol") != PROTOCOL_VERSION:
            raise ProtocolError(f"server speaks protocol {fields.get('protocol')}, this client {PROTOCOL_VERSION}: "
                                "use the client from the same version of the code as the server")
        try:
            return cls(**fields)
        except TypeError as exc:
            raise ProtocolError(f"metadata frame is incomplete: {exc}") from None


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array {value.dtype} {tuple(value.shape)}"
    if isinstance(value, dict):
        return f"map with keys {sorted(map(str, value))[:8]}"
    return type(value).__name__


def _check_keys(where: str, value: dict, required: set[str], optional: frozenset[str] = frozenset()) -> None:
    missing, unknown = required - set(value), set(value) - required - optional
    if missing:
        raise ProtocolError(f"{where} is missing {sorted(missing)}")
    if unknown:
        raise ProtocolError(f"{where} has unknown fields {sorted(map(str, unknown))}; "
                            f"allowed: {sorted(required | optional)}")


def validate_observation(observation: Any, meta: Metadata) -> dict[str, Any]:
    """-> the observation, checked against `meta`; raises `ProtocolError` naming the problem."""
    if not isinstance(observation, dict):
        raise ProtocolError(f"observation must be a map, got {_describe(observation)}")
    required = {"images", "task"} | ({"state"} if meta.state_dim > 0 else set())
    _check_keys("observation", observation, required)
    images = observation["images"]
    if not isinstance(images, dict):
        raise ProtocolError(f"observation.images must be a map camera -> image, got {_describe(images)}")
    _check_keys("observation.images", images, set(meta.cameras))
    for cam, shape in meta.cameras.items():
        img = images[cam]
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or list(img.shape) != list(shape):
            raise ProtocolError(f"image '{cam}' is {_describe(img)}; expected uint8 {tuple(shape)} (H, W, 3)")
    if meta.state_dim > 0:
        state = observation["state"]
        if not isinstance(state, np.ndarray) or state.dtype != np.float32 or state.shape != (meta.state_dim,):
            raise ProtocolError(f"state is {_describe(state)}; expected float32 ({meta.state_dim},)")
        if not np.isfinite(state).all():
            raise ProtocolError(f"state holds NaN or inf at indices {np.flatnonzero(~np.isfinite(state)).tolist()}; "
                                "send finite values")
    task = observation["task"]
    if not isinstance(task, str) or not task.strip() or len(task) > MAX_TASK_CHARS:
        raise ProtocolError(f"task must be a non-empty string of at most {MAX_TASK_CHARS} characters, "
                            f"got {_describe(task) if not isinstance(task, str) else repr(task[:40])}")
    return observation


def parse_request(message: Any, meta: Metadata) -> tuple[str, int, dict[str, Any] | None]:
    """-> (type, id, observation or None) of a client request; raises `ProtocolError`."""
    if not isinstance(message, dict):
        raise ProtocolError(f"a request must be a map with a 'type', got {_describe(message)}")
    kind = message.get("type")
    if kind not in REQUEST_TYPES:
        raise ProtocolError(f"unknown request type {kind!r}; use one of {list(REQUEST_TYPES)}")
    request_id = message.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool) or not 0 <= request_id < 2**63:
        raise ProtocolError(f"request id must be a non-negative int, got {_describe(request_id)}")
    if kind == "ping":
        _check_keys("ping request", message, {"type", "id"})
        return kind, request_id, None
    _check_keys("infer request", message, {"type", "id", "observation"})
    return kind, request_id, validate_observation(message["observation"], meta)


def request_id_of(message: Any) -> int | None:
    """The id of a (possibly malformed) request, to echo in its error frame."""
    if isinstance(message, dict):
        rid = message.get("id")
        if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid < 2**63:
            return rid
    return None


def error_message(request_id: int | None, text: str) -> dict[str, Any]:
    return {"type": "error", "id": request_id, "error": text}


def timing_ms(start: float, end: float) -> float:
    """Milliseconds between two perf_counter readings, rounded to microseconds."""
    return round((end - start) * 1000.0, 3)
