"""The policy server: a LeRobot policy behind a websocket (msgpack, numpy typed buffers).

This module owns serving action chunks to robot controllers (`scripts/serve.py`):

- `LeRobotPolicyBackend`: a saved `llada_vla` policy + its pre/post processors; turns a
  wire observation (uint8 HxWx3 images, float32 state, task) into the batch LeRobot's
  own rollout builds (`lerobot.envs.utils.preprocess_observation`), so served actions are
  the ones `lerobot-eval` would take, and returns the whole unnormalized chunk (H, D).
- `PolicyServer`: websockets (asyncio) on one port. It sends `Metadata` on connect,
  answers `GET /healthz` with JSON, checks an optional shared token (`Authorization:
  Bearer ...`, HTTP 401 otherwise), and replies to every frame: actions with timing, or an
  error frame that says what was wrong. A malformed frame never ends the connection.

Backpressure: each connection reads its frames as they come (a client that sends without
reading replies never blocks its own sends, so its keepalive pongs get through) and answers
them in order. At most `max_pending` requests per connection wait for inference; each frame
beyond that is answered, in its turn, with an error frame naming the limit (nothing but
its id is kept). A client that lets `HARD_PENDING_FACTOR * max_pending` replies go unread
is closed with code 1008 and a reason naming the limit. Nothing is dropped silently.

Concurrency: any number of clients; the event loop decodes and validates, and inference
runs on ONE thread (a FIFO queue over one model), so requests are serialized in arrival
order and `queue_ms` in each reply says how long one waited. `serve_forever` runs the
event loop on a background thread and inference on the calling thread, the one that
loaded and warmed up the model: torch's OpenMP keeps a thread pool per thread that runs
parallel work, and a second pool's spinning workers competed with the first for the
cores (on 2 cores a worker-thread inference after loading on the main thread ran
markedly slower than the same call with one thread doing everything). `start()` (tests,
embedding) uses a worker thread. Frames above `max_message_bytes` get an error frame; frames above 4x that limit
are refused by websockets itself (close code 1009) before they reach memory.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import queue
import threading
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .client.protocol import Metadata, ProtocolError, error_message, parse_request, request_id_of, timing_ms
from .client.wire import WireError, pack, unpack

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 8 * 2**20
HARD_LIMIT_FACTOR = 4  # websockets closes the connection above this multiple of the limit
DEFAULT_MAX_PENDING = 16  # requests per connection held for inference (memory: this x max_message_bytes)
HARD_PENDING_FACTOR = 64  # unanswered frames (held + refused, a few bytes each) above this x max_pending: close
CLOSE_POLICY_VIOLATION = 1008


# instructions of many, a few, and one token(s) (a single character is one token in any tokenizer), then a
# typical one again: the prefix shapes torch.compile specializes on (see `LeRobotPolicyBackend.warmup`)
WARMUP_TASKS = (" ".join(["pick up the red block and put it on the green zone"] * 8), "touch the blue block", "x",
                "push the red block onto the green zone")


class InferenceBackend(Protocol):
    """What the server serves: metadata plus observation -> (H, D) float32 action chunk."""

    metadata: Metadata

    def infer(self, observation: dict[str, Any]) -> np.ndarray: ...


def _camera_name(feature_key: str) -> str:
    # observation.images.front -> front; observation.image -> image
    return feature_key.removeprefix("observation.images.").removeprefix("observation.")


def dataset_fps(policy_dir: str | Path) -> float | None:
    """The training dataset's fps, read through the checkpoint's train_config.json (None if unknown)."""
    cfg_file = Path(policy_dir) / "train_config.json"
    try:
        root = json.loads(cfg_file.read_text())["dataset"]["root"]
        return float(json.loads((Path(root) / "meta" / "info.json").read_text())["fps"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


class LeRobotPolicyBackend:
    """A saved LeRobot policy (`policy.path` dir with its processors) as an `InferenceBackend`."""

    def __init__(self, policy: Any, preprocessor: Any, postprocessor: Any, control_hz: float,
                 action_names: list[str] | None = None, state_names: list[str] | None = None) -> None:
        import torch  # noqa: F401  (the server side may import torch; the client never does)

        cfg = policy.config
        self.policy, self.pre, self.post = policy.eval(), preprocessor, postprocessor
        self._camera_keys = {_camera_name(k): k for k in cfg.image_features}
        cameras = {}
        for name, key in self._camera_keys.items():
            c, h, w = cfg.image_features[key].shape
            cameras[name] = [int(h), int(w), int(c)]
        state = cfg.robot_state_feature if getattr(cfg, "use_state", True) else None
        self._state_key = "observation.state" if state is not None else None
        self.metadata = Metadata(
            action_dim=int(cfg.action_feature.shape[0]), chunk_size=int(cfg.chunk_size),
            n_action_steps=int(cfg.n_action_steps), cameras=cameras,
            state_dim=int(state.shape[0]) if state is not None else 0, control_hz=float(control_hz),
            action_names=action_names or [], state_names=state_names or [], policy=getattr(policy, "name", ""),
        )

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, control_hz: float | None = None,
                        bf16_weights: bool = False, compile: bool = False, allow_emulated_bf16: bool = False,
                        **names: Any) -> LeRobotPolicyBackend:
        """Load `path` (a `pretrained_model` dir); control_hz defaults to the dataset's fps, else 20.

        bf16_weights / compile: llada_vla's inference speed-ups (`prepare_for_inference`).
        bf16 weights on a CPU without native bf16 matmuls are refused (`ValueError`, before
        any weight is read) unless `allow_emulated_bf16`: there they are slower than fp32."""
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        import vla.policies.configuration_llada_vla  # noqa: F401  (registers the llada_vla config ...)
        import vla.policies.processor_llada_vla  # noqa: F401  (... and its processor steps)
        from vla.device import emulated_bf16_warning

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} holds no config.json; pass the checkpoint's pretrained_model dir")
        config = PreTrainedConfig.from_pretrained(path)
        if device:
            config.device = device
        emulated = bf16_weights and emulated_bf16_warning("--bf16-weights", config.device)
        if emulated and not allow_emulated_bf16:
            raise ValueError(f"{emulated}; serve in fp32 (drop --bf16-weights), or pass --allow-emulated-bf16")
        policy = get_policy_class(config.type).from_pretrained(path, config=config)
        if bf16_weights or compile:
            if not hasattr(policy, "prepare_for_inference"):
                raise ValueError(f"--bf16-weights / --compile apply to llada_vla policies; {path} is {config.type!r}")
            policy.prepare_for_inference(bf16_weights, compile)
        overrides = {"device_processor": {"device": config.device}}
        pre, post = make_pre_post_processors(config, pretrained_path=str(path), preprocessor_overrides=overrides)
        hz = control_hz or dataset_fps(path) or 20.0
        return cls(policy, pre, post, control_hz=hz, **names)

    def observation_to_batch(self, observation: dict[str, Any]) -> dict[str, Any]:
        """Wire observation -> the batch LeRobot's rollout builds (float CHW images in [0, 1])."""
        import torch

        batch: dict[str, Any] = {}
        for cam, key in self._camera_keys.items():
            img = torch.from_numpy(np.array(observation["images"][cam])).unsqueeze(0)  # (1, H, W, 3) uint8
            batch[key] = img.permute(0, 3, 1, 2).contiguous().type(torch.float32) / 255  # (1, 3, H, W)
        if self._state_key:
            batch[self._state_key] = torch.from_numpy(np.array(observation["state"])).float().unsqueeze(0)  # (1, S)
        batch["task"] = [observation["task"]]
        return batch

    def warmup(self, tasks: tuple[str, ...] = WARMUP_TASKS) -> list[float]:
        """Real-shaped requests before serving, so that a client's first request runs at steady-state latency.

        Random images of every camera's shape and a state, with instructions of several token
        counts (`WARMUP_TASKS`): the prefix length follows the instruction, and torch.compile
        compiles for the first length, recompiles once with dynamic shapes at the second and
        once more for a 1-token prefix (sizes 0 and 1 are specialized). Here, not on a client.
        -> each request's latency (ms); the last is the steady state."""
        meta, rng = self.metadata, np.random.default_rng(0)
        latencies = []
        for task in tasks:
            start = time.perf_counter()
            self.infer({"images": {c: rng.integers(0, 256, s, dtype=np.uint8) for c, s in meta.cameras.items()},
                        "state": rng.normal(size=meta.state_dim).astype(np.float32), "task": task})
            latencies.append((time.perf_counter() - start) * 1000.0)
        return latencies

    def infer(self, observation: dict[str, Any]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            chunk = self.policy.predict_action_chunk(self.pre(self.observation_to_batch(observation)))  # (1, H, D)
            actions = self.post(chunk)
        return actions[0].float().cpu().numpy()  # (H, D) in the robot's units


class _CallerThreadExecutor(Executor):
    """An executor whose jobs run on the thread that calls `run_until` (FIFO, one at a time)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        self._jobs.put((future, fn, args, kwargs))
        return future

    def run_until(self, done: threading.Event) -> None:
        while not done.is_set():
            try:
                future, fn, args, kwargs = self._jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # handed to the awaiting request, as a thread pool would
                    future.set_exception(exc)


class PolicyServer:
    """Serves an `InferenceBackend` on ws://host:port (see the module docstring)."""

    def __init__(self, backend: InferenceBackend, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes={max_message_bytes} is too small for any observation; use >= 1024")
        if max_pending < 1:
            raise ValueError(f"max_pending={max_pending}; a connection must be able to hold at least 1 request")
        self.backend, self.host, self.port, self.token = backend, host, port, token
        self.max_message_bytes, self.max_pending = max_message_bytes, max_pending
        self.metadata = Metadata(**{**backend.metadata.__dict__, "max_message_bytes": max_message_bytes,
                                    "max_pending": max_pending})
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.stats = {"requests": 0, "errors": 0, "clients": 0}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    # -- HTTP side: health and auth ---------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?")[0] == "/healthz":
            body = {"status": "ok", **self.stats, "policy": self.metadata.policy}
            response = connection.respond(200, json.dumps(body) + "\n")
            del response.headers["Content-Type"]  # respond() wrote text/plain; Headers would keep both
            response.headers["Content-Type"] = "application/json"
            return response
        if self.token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return connection.respond(401, "missing or wrong token: send 'Authorization: Bearer <token>' "
                                               "(PolicyClient(token=...))\n")
        return None

    # -- websocket side -----------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        """Read frames as they come (see Backpressure in the module docstring); `_answer` replies in order."""
        self.stats["clients"] += 1
        backlog: asyncio.Queue = asyncio.Queue()  # ("frame", bytes, received) | ("refuse", id, received)
        counts = {"held": 0, "unanswered": 0}
        answerer = None
        try:
            await ws.send(pack(self.metadata.to_message()))
            answerer = asyncio.create_task(self._answer(ws, backlog, counts))
            async for frame in ws:
                received = time.perf_counter()
                if counts["unanswered"] >= HARD_PENDING_FACTOR * self.max_pending:
                    await ws.close(CLOSE_POLICY_VIOLATION, f"{counts['unanswered']} replies unread (limit "
                                   f"{HARD_PENDING_FACTOR}x max_pending={self.max_pending}); read replies")
                    break
                counts["unanswered"] += 1
                if counts["held"] < self.max_pending:
                    counts["held"] += 1
                    backlog.put_nowait(("frame", frame, received))
                else:  # keep the id only, answer with an error frame in its turn
                    backlog.put_nowait(("refuse", self._request_id(frame), received))
        except ConnectionClosed:
            pass
        finally:
            self.stats["clients"] -= 1
            if answerer is not None:
                answerer.cancel()
                await asyncio.gather(answerer, return_exceptions=True)

    async def _answer(self, ws: ServerConnection, backlog: asyncio.Queue, counts: dict[str, int]) -> None:
        """Reply to the frames of one connection in arrival order (runs until cancelled)."""
        while True:
            kind, payload, received = await backlog.get()
            if kind == "frame":
                try:
                    reply = await self._reply(payload, received)
                except Exception as exc:  # a server bug: say so and close, rather than leave the client waiting
                    logger.exception("replying to a frame failed")
                    await ws.close(1011, f"internal server error: {type(exc).__name__}"[:120])
                    return
                counts["held"] -= 1
            else:
                self.stats["requests"] += 1
                self.stats["errors"] += 1
                reply = error_message(payload, f"too many pipelined requests: {self.max_pending} already wait "
                                               f"for replies on this connection (server limit max_pending="
                                               f"{self.max_pending}); read each reply before sending more, or "
                                               "start the server with a larger --max-pending")
            try:
                await ws.send(pack(reply))
            except ConnectionClosed:
                return
            counts["unanswered"] -= 1

    def _request_id(self, frame: bytes | str) -> int | None:
        """The id of a frame that will not be served (None when it does not decode)."""
        if isinstance(frame, str):
            return None
        try:
            return request_id_of(unpack(frame, max_bytes=self.max_message_bytes))
        except WireError:
            return None

    async def _reply(self, frame: bytes | str, received: float) -> dict[str, Any]:
        self.stats["requests"] += 1
        message = None
        try:
            if isinstance(frame, str):
                raise WireError("got a text frame; send binary msgpack frames (vla.policies.client.wire.pack)")
            message = unpack(frame, max_bytes=self.max_message_bytes)
            kind, request_id, observation = parse_request(message, self.metadata)
        except (WireError, ProtocolError) as exc:
            self.stats["errors"] += 1
            return error_message(request_id_of(message), str(exc))
        if kind == "ping":
            return {"type": "pong", "id": request_id, "timing": {"server_ms": timing_ms(received, time.perf_counter())}}
        loop = asyncio.get_running_loop()
        try:
            actions, started, ended = await loop.run_in_executor(self._executor, self._timed_infer, observation)
        except Exception as exc:  # a model failure answers this request and keeps the server up
            self.stats["errors"] += 1
            return error_message(request_id, f"inference failed: {type(exc).__name__}: {exc}")
        timing = {"queue_ms": timing_ms(received, started), "infer_ms": timing_ms(started, ended),
                  "server_ms": timing_ms(received, time.perf_counter())}
        return {"type": "actions", "id": request_id, "actions": actions, "timing": timing}

    def _timed_infer(self, observation: dict[str, Any]) -> tuple[np.ndarray, float, float]:
        started = time.perf_counter()
        actions = np.asarray(self.backend.infer(observation), dtype=np.float32)
        return actions, started, time.perf_counter()

    async def _main(self, ready: threading.Event) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with serve(self._handle, self.host, self.port, process_request=self._process_request,
                         max_size=HARD_LIMIT_FACTOR * self.max_message_bytes, compression=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await self._stop.wait()

    # -- lifecycle ------------------------------------------------------------------------
    def serve_forever(self, on_ready: Any = None) -> None:
        """Block serving until `stop()` (from another thread) or Ctrl-C; `on_ready(port)` once listening.

        Inference runs on this (the calling) thread, the event loop on a background one."""
        ready, done = threading.Event(), threading.Event()
        executor = self._executor = _CallerThreadExecutor()

        def loop() -> None:
            try:
                asyncio.run(self._main(ready))
            finally:
                done.set()

        self._thread = threading.Thread(target=loop, name="policy-server", daemon=True)
        self._thread.start()
        if on_ready is not None:
            threading.Thread(target=lambda: ready.wait() and on_ready(self.port), daemon=True).start()
        try:
            executor.run_until(done)
        finally:
            self.stop()

    def start(self, timeout_s: float = 10.0) -> int:
        """Serve from a background thread; -> the port (useful with port=0)."""
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(ready)), name="policy-server",
                                        daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise RuntimeError(f"the policy server did not start within {timeout_s} s on {self.host}:{self.port}")
        return self.port

    def stop(self) -> None:
        """Stop listening, close every connection, and join the background thread."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
