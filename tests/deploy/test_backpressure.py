"""Server backpressure: pipelined requests (sent without reading replies) are all answered in order,
or refused in their turn with an error frame naming the limit; a client that never reads is closed
with a reason; never a silent drop."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from vla.policies.client import Metadata, PolicyClient, pack, unpack
from vla.policies.server import HARD_PENDING_FACTOR, PolicyServer


class GatedBackend:
    """A numpy backend: a chunk filled with the request's first state value, once `gate` is open."""

    def __init__(self, side: int = 96, open_gate: bool = True):
        self.metadata = Metadata(action_dim=2, chunk_size=3, n_action_steps=3, cameras={"cam": [side, side, 3]},
                                 state_dim=2, control_hz=10.0)
        self.gate, self.calls = threading.Event(), 0
        if open_gate:
            self.gate.set()

    def infer(self, observation):
        assert self.gate.wait(60), "the test never opened the gate"
        self.calls += 1
        time.sleep(0.01)
        return np.full((3, 2), observation["state"][0], np.float32)


def request(i: int, side: int = 96) -> bytes:
    rng = np.random.default_rng(i)
    obs = {"images": {"cam": rng.integers(0, 256, (side, side, 3), dtype=np.uint8)},
           "state": np.array([i, 0], np.float32), "task": "t"}
    return pack({"type": "infer", "id": i, "observation": obs})


@pytest.fixture
def serve():
    servers = []

    def start(backend, **kw):
        srv = PolicyServer(backend, **kw)
        servers.append(srv)
        return srv, f"ws://127.0.0.1:{srv.start()}"

    yield start
    for srv in servers:
        srv.stop()


def open_raw(url):
    ws = connect(url, open_timeout=5, max_size=2**24, legacy=True)
    meta = unpack(ws.recv(timeout=5))
    assert meta["type"] == "metadata"
    return ws, meta


def send_all(ws, frames, timeout_s=60.0):
    """Send every frame from a thread (a blocked send would hang the test); -> True if all went out."""
    sender = threading.Thread(target=lambda: [ws.send(f) for f in frames], daemon=True)
    sender.start()
    sender.join(timeout_s)
    return not sender.is_alive()


def test_pipelined_requests_beyond_the_limit_are_refused_in_order_naming_it(serve):
    backend = GatedBackend(open_gate=False)
    srv, url = serve(backend, max_pending=4)
    ws, meta = open_raw(url)
    assert meta["max_pending"] == 4
    n = 3 * meta["max_pending"]
    assert send_all(ws, [request(i) for i in range(1, n + 1)])
    backend.gate.set()
    replies = [unpack(ws.recv(timeout=10)) for _ in range(n)]
    assert [r["id"] for r in replies] == list(range(1, n + 1))  # every one answered, in order
    served = [r for r in replies if r["type"] == "actions"]
    refused = [r for r in replies if r["type"] == "error"]
    assert len(served) == meta["max_pending"] and len(refused) == n - meta["max_pending"]
    for r in served:
        np.testing.assert_array_equal(r["actions"], np.full((3, 2), r["id"], np.float32))
    assert all("max_pending=4" in r["error"] and "read each reply" in r["error"] for r in refused)
    ws.send(request(99))  # the connection is still good
    assert unpack(ws.recv(timeout=10))["id"] == 99
    ws.close()


def test_a_flood_of_pipelined_frames_never_blocks_the_sender_or_drops_the_connection(serve):
    """~15 MB of frames sent while inference is stuck: more than the socket buffers hold, so a server
    that stopped reading until it could answer would block the client's sends (and with them its
    keepalive pongs: the connection then dies without a close frame)."""
    backend = GatedBackend(side=224, open_gate=False)
    srv, url = serve(backend)
    ws, meta = open_raw(url)
    n = 100
    try:
        assert send_all(ws, [request(i, 224) for i in range(n)], timeout_s=30), \
            "the client's sends blocked: the server stopped reading"
        assert backend.calls == 0  # all of it was read while inference was stuck
    finally:
        backend.gate.set()
    replies = [unpack(ws.recv(timeout=30)) for _ in range(n)]
    assert [r["id"] for r in replies] == list(range(n))
    for r in replies:
        assert r["type"] == "error" and f"max_pending={meta['max_pending']}" in r["error"] or \
            r["type"] == "actions" and np.isfinite(r["actions"]).all()
    assert sum(r["type"] == "actions" for r in replies) == meta["max_pending"]
    ws.send(request(1000, 224))
    assert unpack(ws.recv(timeout=10))["id"] == 1000
    ws.close()


def test_a_client_that_lets_replies_pile_up_is_closed_with_a_reason(serve):
    backend = GatedBackend(open_gate=False)
    srv, url = serve(backend, max_pending=2)
    ws, _ = open_raw(url)
    limit = HARD_PENDING_FACTOR * 2
    try:
        assert send_all(ws, [request(i) for i in range(limit + 5)])
        with pytest.raises(ConnectionClosed) as info:
            while True:
                ws.recv(timeout=10)
    finally:
        backend.gate.set()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    assert "max_pending=2" in info.value.rcvd.reason
    with PolicyClient(url, timeout_s=10) as client:  # everyone else is still served
        assert client.infer({"images": {"cam": np.zeros((96, 96, 3), np.uint8)},
                             "state": np.array([7, 0], np.float32), "task": "t"}).actions[0, 0] == 7
