"""The robot-side policy client: one websocket to `scripts/serve.py`, synchronous calls.

This module owns connecting (with an optional shared token), reading the server's
`Metadata`, sending observations and receiving action chunks with timeouts, and
reconnecting after the connection drops. It imports numpy, msgpack and websockets only
(plus the stdlib), so it runs on a small robot computer without torch.

    client = PolicyClient("ws://gpu-box:8000", token="s3cret")
    meta = client.connect()                       # Metadata: cameras, action_dim, ...
    result = client.infer({"images": {"front": img}, "state": state, "task": "touch the red block"})
    result.actions                                # (chunk_size, action_dim) float32
    result.rtt_ms, result.server_ms, result.infer_ms

Every call is bounded in time: `open_timeout_s` to connect, `timeout_s` per reply. A
reply that arrives after its call timed out is recognized by its id and dropped.
"""

from __future__ import annotations

import inspect
import itertools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

from .protocol import Metadata, ProtocolError, validate_observation
from .wire import WireError, pack, unpack

# websockets >= 17.1 wants `legacy=True` for a plain (non-context-manager) connection
_CONNECT_KW = {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}


class PolicyServerError(RuntimeError):
    """The server answered a request with an error frame (the text is the server's)."""


class PolicyConnectionError(ConnectionError):
    """The server cannot be reached, refused the handshake, or the connection dropped."""


@dataclass
class InferResult:
    """One action chunk and where the time went (milliseconds)."""

    actions: np.ndarray  # (chunk_size, action_dim) float32
    rtt_ms: float  # client send -> client receive
    server_ms: float  # server receive -> server send
    infer_ms: float  # model call alone
    queue_ms: float  # wait for the server's inference worker


class PolicyClient:
    """Synchronous client of the policy server (not thread-safe: one caller at a time).

    Args:
        url: ws://host:port of the server.
        token: shared secret, sent as `Authorization: Bearer <token>` (None: no auth).
        timeout_s: longest wait for one reply before `TimeoutError`.
        open_timeout_s: longest wait to connect and receive the metadata.
        reconnect_attempts: reconnections tried by `infer` / `ping` after a dropped connection.
        max_message_bytes: largest reply accepted.
        validate: check observations against the metadata before sending (cheap, clear errors).
    """

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 5.0, open_timeout_s: float = 5.0,
                 reconnect_attempts: int = 1, max_message_bytes: int = 64 * 2**20, validate: bool = True) -> None:
        self.url = url
        self.token = token
        self.timeout_s = timeout_s
        self.open_timeout_s = open_timeout_s
        self.reconnect_attempts = reconnect_attempts
        self.max_message_bytes = max_message_bytes
        self.validate = validate
        self.metadata: Metadata | None = None
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)

    # -- connection -----------------------------------------------------------------
    def connect(self) -> Metadata:
        """Open the websocket and read the server's metadata (closes any previous connection)."""
        self.close()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            self._ws = connect(self.url, additional_headers=headers, open_timeout=self.open_timeout_s,
                               close_timeout=1.0, max_size=self.max_message_bytes, compression=None, **_CONNECT_KW)
            self.metadata = Metadata.from_message(unpack(self._ws.recv(timeout=self.open_timeout_s)))
        except InvalidStatus as exc:
            self.close()
            status = exc.response.status_code
            hint = " (wrong or missing token: pass token=...)" if status in (401, 403) else ""
            raise PolicyConnectionError(f"{self.url} refused the connection with HTTP {status}{hint}") from None
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed, WireError,
                ProtocolError) as exc:
            self.close()
            raise PolicyConnectionError(f"cannot connect to the policy server at {self.url}: "
                                        f"{type(exc).__name__}: {exc}; is scripts/serve.py running?") from None
        return self.metadata

    @property
    def connected(self) -> bool:
        """True while the websocket is open (non-blocking; a server that died reads False)."""
        return self._ws is not None and self._ws.state is State.OPEN

    def close(self) -> None:
        if self._ws is not None:
            ws, self._ws = self._ws, None
            try:
                ws.close()
            except Exception:  # closing a broken socket may raise anything; it is gone either way
                pass

    def __enter__(self) -> PolicyClient:
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------
    def infer(self, observation: dict[str, Any]) -> InferResult:
        """Send one observation; -> the server's action chunk. Raises `PolicyServerError`
        (server-side error frame), `TimeoutError` or `PolicyConnectionError`."""
        if self.metadata is None or not self.connected:
            self.connect()
        obs = {"images": {k: np.ascontiguousarray(v, dtype=np.uint8) for k, v in observation["images"].items()},
               "task": observation["task"]}
        if "state" in observation and observation["state"] is not None:
            obs["state"] = np.asarray(observation["state"], dtype=np.float32)
        if self.validate:
            validate_observation(obs, self.metadata)
        reply, rtt = self._call({"type": "infer", "observation": obs})
        actions = reply.get("actions")
        if not isinstance(actions, np.ndarray) or actions.ndim != 2:
            raise PolicyServerError(f"reply holds no (H, D) actions array: {sorted(reply)}")
        timing = reply.get("timing", {})
        return InferResult(actions=np.array(actions, dtype=np.float32), rtt_ms=rtt,
                           server_ms=float(timing.get("server_ms", "nan")),
                           infer_ms=float(timing.get("infer_ms", "nan")),
                           queue_ms=float(timing.get("queue_ms", "nan")))

    def ping(self) -> float:
        """Round trip of an empty request (ms): the transport's share of `infer`'s latency."""
        if self.metadata is None or not self.connected:
            self.connect()
        return self._call({"type": "ping"})[1]

    def _call(self, request: dict[str, Any]) -> tuple[dict[str, Any], float]:
        for attempt in range(self.reconnect_attempts + 1):
            try:
                return self._call_once(request)
            except TimeoutError:  # an OSError subclass, but the connection is fine: no reconnect
                raise
            except (ConnectionClosed, OSError) as exc:
                self.close()
                if attempt == self.reconnect_attempts:
                    raise PolicyConnectionError(f"connection to {self.url} lost ({type(exc).__name__}) and "
                                                f"{self.reconnect_attempts} reconnect(s) failed") from None
                self.connect()
        raise AssertionError("unreachable")

    def _call_once(self, request: dict[str, Any]) -> tuple[dict[str, Any], float]:
        if self._ws is None:
            raise ConnectionClosed(None, None)
        request_id = next(self._ids)
        start = time.perf_counter()
        self._ws.send(pack({**request, "id": request_id}))
        deadline = start + self.timeout_s
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"no reply from {self.url} within {self.timeout_s} s (request {request_id}); "
                                   "the server is overloaded or stuck: raise timeout_s or check the server log")
            try:
                reply = unpack(self._ws.recv(timeout=remaining))
            except TimeoutError:
                continue
            if not isinstance(reply, dict) or reply.get("id") != request_id:
                continue  # a late reply to an earlier call that timed out
            rtt = (time.perf_counter() - start) * 1000.0
            if reply.get("type") == "error":
                raise PolicyServerError(f"server rejected request {request_id}: {reply.get('error')}")
            return reply, rtt
