"""The policy server on loopback: metadata, health, auth, timing, concurrency, and a 1,000-message fuzz."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from vla.policies.client import PolicyClient, PolicyConnectionError, PolicyServerError, pack, unpack

TOKEN = {"Authorization": "Bearer test-token"}


def observation(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"images": {"front": rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)},
            "state": rng.normal(size=4).astype(np.float32), "task": "touch the red block"}


def raw_connection(url):
    ws = connect(url, additional_headers=TOKEN, open_timeout=5, max_size=2**24, legacy=True)
    meta = unpack(ws.recv(timeout=5))
    assert meta["type"] == "metadata"
    return ws


def test_metadata_health_and_timing(server):
    srv, url = server
    with PolicyClient(url, token="test-token") as client:
        meta = client.metadata
        assert (meta.action_dim, meta.chunk_size, meta.n_action_steps, meta.state_dim) == (4, 5, 5, 4)
        assert meta.cameras == {"front": [96, 96, 3]} and meta.control_hz == 20.0
        assert len(meta.action_names) == 4 and meta.max_message_bytes == 256 * 1024
        result = client.infer(observation())
        assert result.actions.shape == (5, 4) and result.actions.dtype == np.float32
        assert np.isfinite(result.actions).all()
        assert 0 < result.infer_ms <= result.server_ms <= result.rtt_ms
        assert result.queue_ms >= 0 and client.ping() > 0
    body = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/healthz", timeout=5).read())
    assert body["status"] == "ok" and body["requests"] >= 2 and body["policy"] == "llada_vla"


def test_token_is_required(server):
    _, url = server
    for token in (None, "wrong"):
        with pytest.raises(PolicyConnectionError, match="HTTP 401"):
            PolicyClient(url, token=token, open_timeout_s=5).connect()


def test_client_checks_observations_before_sending(server):
    _, url = server
    with PolicyClient(url, token="test-token") as client:
        bad = observation()
        bad["images"]["front"] = bad["images"]["front"][:64]
        with pytest.raises(ValueError, match=r"image 'front' is array uint8 \(64, 96, 3\); expected uint8 \(96, 96, 3\)"):
            client.infer(bad)
        client.validate = False  # now the server must say the same
        with pytest.raises(PolicyServerError, match="image 'front'"):
            client.infer(bad)
        assert client.infer(observation()).actions.shape == (5, 4)


def test_several_clients_at_once_are_served_one_inference_at_a_time(server, backend):
    _, url = server
    intervals, lock = [], threading.Lock()
    original = backend.infer

    def recording_infer(obs):
        start = time.perf_counter()
        try:
            return original(obs)
        finally:
            with lock:
                intervals.append((start, time.perf_counter()))

    expected = original(observation(1))
    backend.infer = recording_infer
    results, errors = [], []

    def worker():
        try:
            with PolicyClient(url, token="test-token", timeout_s=30) as client:
                for _ in range(4):
                    results.append(client.infer(observation(1)))
        except Exception as exc:  # surfaced by the assert below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        backend.infer = original
    assert not errors and len(results) == 16
    for r in results:
        np.testing.assert_array_equal(r.actions, expected)
    intervals.sort()
    assert all(b[0] >= a[1] for a, b in zip(intervals, intervals[1:], strict=False))  # never two at once
    assert max(r.queue_ms for r in results) > 0.5 * min(r.infer_ms for r in results)  # someone waited


def malformed_messages(rng: np.random.Generator, limit: int):
    """Yield (label, frame) pairs, every one of which the server must reject."""
    valid = {"type": "infer", "id": 1, "observation": observation()}

    def mutate():
        msg = {"type": "infer", "id": int(rng.integers(0, 2**31)), "observation": dict(valid["observation"])}
        obs = msg["observation"]
        obs["images"] = dict(obs["images"])
        kind = int(rng.integers(0, 14))
        if kind == 0:
            del obs[str(rng.choice(["images", "state", "task"]))]
        elif kind == 1:
            obs["extra"] = 1
        elif kind == 2:
            msg["unexpected"] = "field"
        elif kind == 3:
            obs["state"] = np.full(4, np.nan, dtype=np.float32) if rng.random() < 0.5 else \
                np.array([0, np.inf, 0, 0], dtype=np.float32)
        elif kind == 4:
            obs["state"] = obs["state"].astype(rng.choice([np.float64, np.int32, np.float16]))
        elif kind == 5:
            obs["state"] = np.zeros(int(rng.choice([0, 3, 5, 16])), dtype=np.float32)
        elif kind == 6:
            h, w = (int(x) for x in rng.choice([32, 95, 97, 128], size=2))
            obs["images"]["front"] = np.zeros((h, w, 3), dtype=np.uint8)
        elif kind == 7:
            obs["images"]["front"] = obs["images"]["front"].astype(np.float32)
        elif kind == 8:
            obs["images"] = {"wrist": obs["images"]["front"]}
        elif kind == 9:
            obs["task"] = rng.choice(["", "   ", "x" * 2000]) if rng.random() < 0.5 else 42
        elif kind == 10:
            msg["id"] = rng.choice([-1, "seven", 1.5, None, True])
        elif kind == 11:
            msg["type"] = rng.choice(["INFER", "reset", "", 3])
        elif kind == 12:
            del msg[str(rng.choice(["type", "id", "observation"]))]
        else:
            return pack(msg)[: int(rng.integers(1, 200))]  # truncated frame
        return pack(msg)

    def array_map():
        bad = [{"__ndarray__": 1, "dtype": "|O", "shape": [2], "data": b"\0" * 16},
               {"__ndarray__": 1, "dtype": "<f4", "shape": [4], "data": b"\0" * 15},
               {"__ndarray__": 1, "dtype": "<f4", "shape": [-1], "data": b""},
               {"__ndarray__": 1, "dtype": "<f4", "shape": [1] * 20, "data": b"\0" * 4},
               {"__ndarray__": 1, "dtype": "<f4", "shape": [1], "data": "text"},
               {"__ndarray__": 1, "dtype": "<f4", "shape": [1], "data": b"\0" * 4, "x": 1}]
        obs = dict(valid["observation"], state=bad[int(rng.integers(len(bad)))])
        return pack({"type": "infer", "id": 3, "observation": obs})

    def random_value(depth=0):
        choice = int(rng.integers(0, 7 if depth < 3 else 4))
        if choice == 0:
            return int(rng.integers(-(2**40), 2**40))
        if choice == 1:
            return float(rng.normal())
        if choice == 2:
            return "".join(chr(int(c)) for c in rng.integers(32, 0x2FF, size=int(rng.integers(0, 12))))
        if choice == 3:
            return rng.bytes(int(rng.integers(0, 16)))
        if choice == 4:
            return [random_value(depth + 1) for _ in range(int(rng.integers(0, 4)))]
        return {str(random_value(depth + 1)): random_value(depth + 1) for _ in range(int(rng.integers(0, 4)))}

    generators = [
        ("random bytes", lambda: rng.bytes(int(rng.integers(0, 512)))),
        ("random msgpack", lambda: msgpack.packb(random_value(), use_bin_type=True)),
        ("mutated request", mutate),
        ("bad array", array_map),
        ("ext type", lambda: msgpack.packb(msgpack.ExtType(int(rng.integers(1, 100)), b"x"), use_bin_type=True)),
        ("text frame", lambda: "{'type': 'infer'}"),
        ("oversized", lambda: pack({"type": "infer", "id": 9, "pad": b"\0" * (limit + 1 + int(rng.integers(1000)))})),
    ]
    weights = np.array([25, 25, 35, 6, 3, 3, 3], dtype=float)
    for _ in range(1100):
        label, make = generators[int(rng.choice(len(generators), p=weights / weights.sum()))]
        yield label, make()


def test_fuzz_every_malformed_message_gets_an_error_frame_and_the_server_keeps_serving(server):
    srv, url = server
    rng = np.random.default_rng(1234)
    ws = raw_connection(url)
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 90
    for i, (label, frame) in enumerate(malformed_messages(rng, srv.max_message_bytes)):
        assert time.monotonic() < deadline, "fuzzing took too long"
        ws.send(frame)
        reply = unpack(ws.recv(timeout=10))
        assert reply["type"] == "error", f"message {i} ({label}) was not rejected: {reply}"
        assert isinstance(reply["error"], str) and len(reply["error"]) > 10
        seen[label] = seen.get(label, 0) + 1
    assert sum(seen.values()) >= 1000 and len(seen) == 7
    # the same connection, then a new client, are still served correctly
    ws.send(pack({"type": "infer", "id": 77, "observation": observation()}))
    reply = unpack(ws.recv(timeout=10))
    assert reply["type"] == "actions" and reply["id"] == 77 and reply["actions"].shape == (5, 4)
    ws.close()
    with PolicyClient(url, token="test-token") as client:
        assert np.isfinite(client.infer(observation()).actions).all()


def test_error_frames_say_what_was_wrong(server):
    _, url = server
    ws = raw_connection(url)
    cases = {
        b"\xc1": "not a valid msgpack message",
        pack({"type": "infer", "id": 4, "observation": {**observation(), "state": np.full(4, np.nan, np.float32)}}):
            "state holds NaN or inf",
        pack({"type": "infer", "id": 5, "observation": {**observation(), "depth": 1}}): "unknown fields ['depth']",
        pack({"type": "infer", "id": 6, "observation": {"images": observation()["images"], "task": "x"}}):
            "missing ['state']",
        pack({"type": "infer", "id": 7, "observation": {**observation(), "state": np.zeros(4)}}):
            r"state is array float64 (4,); expected float32 (4,)",
        pack({"id": 8, "pad": b"\0" * 300_000}): "exceeds the limit of 262144 bytes",
    }
    for frame, text in cases.items():
        ws.send(frame)
        reply = unpack(ws.recv(timeout=10))
        assert reply["type"] == "error" and text in reply["error"], reply
    ws.send(pack({"type": "infer", "id": 5, "observation": {**observation(), "depth": 1}}))
    assert unpack(ws.recv(timeout=10))["id"] == 5  # errors echo the request id when there is one
    # far above the limit (> 4x) websockets itself closes this connection (code 1009) ...
    ws.send(b"\0" * (5 * 256 * 1024))
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    # ... and the server goes on serving everyone else
    with PolicyClient(url, token="test-token") as client:
        assert client.infer(observation()).actions.shape == (5, 4)


def test_backend_serves_with_bf16_weights(policy_dir):
    """--bf16-weights: the served llada_vla policy keeps its weights in bf16 and still answers (H, D) float32."""
    import torch

    from vla.policies.server import LeRobotPolicyBackend

    backend = LeRobotPolicyBackend.from_pretrained(policy_dir, device="cpu", control_hz=20.0, bf16_weights=True)
    assert backend.policy.model.backbone.wte.weight.dtype == torch.bfloat16
    actions = backend.infer(observation())
    assert actions.shape == (5, 4) and actions.dtype == np.float32 and np.isfinite(actions).all()
