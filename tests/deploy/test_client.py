"""Client behaviour: timeouts bounded and late replies dropped, reconnect after a server restart, wire codec."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vla.policies.client import Metadata, PolicyClient, PolicyConnectionError, WireError, pack, unpack
from vla.policies.server import PolicyServer


class CountingBackend:
    """A numpy backend: the chunk encodes the request count and the state, after `delays[n]` seconds."""

    def __init__(self, delays=None):
        self.metadata = Metadata(action_dim=2, chunk_size=3, n_action_steps=3, cameras={"cam": [8, 8, 3]},
                                 state_dim=2, control_hz=10.0)
        self.calls, self.delays = 0, delays or {}

    def infer(self, observation):
        self.calls += 1
        time.sleep(self.delays.get(self.calls, 0.0))
        return np.full((3, 2), self.calls, np.float32) + observation["state"]


def obs(x=0.0):
    return {"images": {"cam": np.zeros((8, 8, 3), np.uint8)}, "state": np.array([x, x], np.float32), "task": "t"}


def test_timeouts_are_bounded_and_late_replies_are_dropped():
    server = PolicyServer(CountingBackend(delays={2: 1.0}))
    port = server.start()
    try:
        with PolicyClient(f"ws://127.0.0.1:{port}", timeout_s=0.3) as client:
            assert client.infer(obs(0.5)).actions[0, 0] == 1.5
            with pytest.raises(TimeoutError, match="no reply .* within 0.3 s"):  # the reply comes at 1 s
                client.infer(obs())
            client.timeout_s = 5
            # the late reply to call 2 arrives first and is skipped by id; this call gets its own
            assert client.infer(obs(0.25)).actions[0, 0] == 3.25
    finally:
        server.stop()


def test_client_reconnects_after_a_server_restart():
    first = PolicyServer(CountingBackend())
    port = first.start()
    client = PolicyClient(f"ws://127.0.0.1:{port}", timeout_s=5, open_timeout_s=2)
    assert client.infer(obs()).actions[0, 0] == 1
    first.stop()
    deadline = time.monotonic() + 5
    while client.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not client.connected  # noticed without sending anything
    with pytest.raises(PolicyConnectionError, match="cannot connect"):
        client.infer(obs())
    second = PolicyServer(CountingBackend(), port=port)
    second.start()
    try:
        assert client.infer(obs()).actions[0, 0] == 1  # a fresh server: its first request
        assert client.connected
    finally:
        client.close()
        second.stop()


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(st.sampled_from([np.uint8, np.int16, np.int64, np.float16, np.float32, np.float64, np.bool_]),
                  hnp.array_shapes(min_dims=0, max_dims=4, max_side=5)))
def test_arrays_round_trip_exactly(arr):
    out = unpack(pack({"a": arr, "nested": [arr, {"b": arr}]}))
    for got in (out["a"], out["nested"][0], out["nested"][1]["b"]):
        assert got.dtype == arr.dtype and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)


def test_codec_refuses_what_it_cannot_carry():
    with pytest.raises(WireError, match="dtype object"):
        pack({"x": np.array([object()])})
    with pytest.raises(WireError, match="type set"):
        pack({"x": {1, 2}})
    with pytest.raises(WireError, match="not a valid msgpack"):
        unpack(b"\x92\x01")  # an array of 2 with one element
    with pytest.raises(WireError, match="exceeds the limit of 10 bytes"):
        unpack(pack({"pad": b"x" * 20}), max_bytes=10)


def test_serve_forever_runs_inference_on_the_calling_thread():
    """serve_forever: inference on the thread that loaded the model (one OpenMP pool), the event loop elsewhere;
    a failing inference answers with an error frame; stop() from another thread ends it."""
    import threading

    class ThreadRecordingBackend(CountingBackend):
        def infer(self, observation):
            self.thread = threading.get_ident()
            if observation["state"][0] < 0:
                raise ValueError("negative state")
            return super().infer(observation)

    backend = ThreadRecordingBackend()
    server = PolicyServer(backend)
    ports, caller = [], {}

    def run():
        caller["thread"] = threading.get_ident()
        server.serve_forever(on_ready=ports.append)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 10
    while not ports and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        with PolicyClient(f"ws://127.0.0.1:{ports[0]}", timeout_s=5) as client:
            assert client.infer(obs(0.5)).actions[0, 0] == 1.5
            assert backend.thread == caller["thread"] != server._thread.ident
            with pytest.raises(Exception, match="negative state"):
                client.infer(obs(-1.0))
            assert client.infer(obs(0.0)).actions[0, 0] == 2.0  # still serving
    finally:
        server.stop()
        t.join(timeout=10)
    assert not t.is_alive()
