"""The policy server on loopback: metadata, health, auth, timing, concurrency, error texts (fuzz: test_server_fuzz)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

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
    response = urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/healthz", timeout=5)
    assert response.headers["Content-Type"] == "application/json"
    body = json.loads(response.read())
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

    backend = LeRobotPolicyBackend.from_pretrained(policy_dir, device="cpu", control_hz=20.0, bf16_weights=True,
                                                   allow_emulated_bf16=True)  # any CPU: this test is not about speed
    assert backend.runner.policy.model.backbone.wte.weight.dtype == torch.bfloat16
    actions = backend.infer(observation())
    assert actions.shape == (5, 4) and actions.dtype == np.float32 and np.isfinite(actions).all()
