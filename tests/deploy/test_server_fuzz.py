"""Fuzzing the policy server with frames built from its own metadata.

Every frame starts as a valid request for the served policy (cameras, image shapes, state size
read from the metadata frame) and gets exactly one defect, or is valid with extreme finite values
(+-3.4e38), or is oversize, random bytes, pipelined, trickled (slowloris) or sent beside many idle
connections. The invariants: every frame gets exactly one reply, every reply is an error frame with
a message or a finite action chunk of the metadata's shape, valid frames (extreme ones included) get
actions, the server never crashes, and a valid request is served afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.request

import msgpack
import numpy as np
from websockets.sync.client import connect

from vla.policies.client import PolicyClient, pack, unpack

TOKEN = "test-token"
F32_MAX = float(np.finfo(np.float32).max)
EXTREMES = np.array([F32_MAX, -F32_MAX, 1e30, -1e30, 1e-45, -1e-45, 0.0], np.float32)


def raw_connection(url):
    ws = connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, open_timeout=10, max_size=2**24,
                 legacy=True)
    meta = unpack(ws.recv(timeout=10))
    assert meta["type"] == "metadata"
    return ws, meta


def valid_observation(meta, rng) -> dict:
    obs = {"images": {cam: rng.integers(0, 256, shape, dtype=np.uint8) for cam, shape in meta["cameras"].items()},
           "task": "touch the red block"}
    if meta["state_dim"] > 0:
        obs["state"] = rng.normal(size=meta["state_dim"]).astype(np.float32)
    return obs


def extreme_request(meta, rng, rid) -> dict:
    """A valid request whose state holds huge finite values (it must be answered with finite actions)."""
    obs = valid_observation(meta, rng)
    obs["state"] = rng.choice(EXTREMES, size=meta["state_dim"]).astype(np.float32)
    obs["state"][int(rng.integers(meta["state_dim"]))] = rng.choice([F32_MAX, -F32_MAX])
    return {"type": "infer", "id": rid, "observation": obs}


def one_defect(meta, rng, rid) -> tuple[str, bytes | str]:
    """-> (defect name, frame): a valid request for this server with exactly one thing wrong."""
    msg = {"type": "infer", "id": rid, "observation": valid_observation(meta, rng)}
    obs, cams, s = msg["observation"], list(meta["cameras"]), meta["state_dim"]
    cam = str(rng.choice(cams))
    h, w, c = meta["cameras"][cam]
    defects = {
        "missing observation field": lambda: obs.pop(str(rng.choice(sorted(obs)))),
        "unknown observation field": lambda: obs.update(depth=np.zeros((h, w), np.float32)),
        "unknown request field": lambda: msg.update(seed=1),
        "missing request field": lambda: msg.pop(str(rng.choice(["type", "id", "observation"]))),
        "state NaN": lambda: obs["state"].__setitem__(int(rng.integers(s)), np.nan),
        "state inf": lambda: obs["state"].__setitem__(int(rng.integers(s)), rng.choice([np.inf, -np.inf])),
        "state dtype": lambda: obs.update(state=obs["state"].astype(rng.choice([np.float64, np.float16, np.int32]))),
        "state size": lambda: obs.update(state=np.zeros(s + int(rng.choice([-s, -1, 1, 7])), np.float32)),
        "state 2-d": lambda: obs.update(state=obs["state"][None]),
        "image shape": lambda: obs["images"].update({cam: np.zeros((h + int(rng.choice([-1, 1])), w, c), np.uint8)}),
        "image transposed": lambda: obs["images"].update({cam: np.zeros((c, h, w), np.uint8)}),
        "image dtype": lambda: obs["images"].update({cam: obs["images"][cam].astype(np.float32) / 255}),
        "image missing": lambda: obs["images"].pop(cam),
        "unknown camera": lambda: obs["images"].update(wrist=obs["images"][cam]),
        "images not a map": lambda: obs.update(images=obs["images"][cam]),
        "task empty": lambda: obs.update(task=str(rng.choice(["", "   "]))),
        "task too long": lambda: obs.update(task="x" * 1001),
        "task not a string": lambda: obs.update(task=int(rng.integers(100))),
        "bad id": lambda: msg.update(id=[-1, "7", 1.5, None, True, 2**64 - 1][int(rng.integers(6))]),
        "bad type": lambda: msg.update(type=str(rng.choice(["INFER", "reset", "", "actions"]))),
    }
    name = str(rng.choice(sorted(defects)))
    defects[name]()
    return name, pack(msg)


def frame_defect(meta, rng, rid) -> tuple[str, bytes | str]:
    """Defects below the schema: bytes, msgpack, arrays, frame kinds, size."""
    valid = pack({"type": "infer", "id": rid, "observation": valid_observation(meta, rng)})
    state_map = {"__ndarray__": 1, "dtype": "<f4", "shape": [meta["state_dim"]],
                 "data": b"\0" * (4 * meta["state_dim"])}
    lies = [{"dtype": "|O"}, {"data": b"\0" * (4 * meta["state_dim"] - 1)}, {"shape": [-1]}, {"shape": [1] * 20},
            {"data": "text"}, {"extra": 1}, {"dtype": "<U4"}]
    kind = int(rng.integers(8))
    if kind == 0:
        return "truncated", valid[: int(rng.integers(1, len(valid)))]
    if kind == 1:
        return "random bytes", rng.bytes(int(rng.integers(0, 600)))
    if kind == 2:
        return "bit flip", bytes(b ^ (1 << int(rng.integers(8))) if i == 0 else b for i, b in enumerate(valid))
    if kind == 3:
        obs = valid_observation(meta, rng)
        obs["state"] = {**state_map, **lies[int(rng.integers(len(lies)))]}
        return "lying array header", pack({"type": "infer", "id": rid, "observation": obs})
    if kind == 4:
        return "ext type", msgpack.packb(msgpack.ExtType(int(rng.integers(1, 100)), b"x"), use_bin_type=True)
    if kind == 5:
        return "text frame", json.dumps({"type": "infer", "id": rid})
    if kind == 6:
        return "oversize", pack({"type": "infer", "id": rid,
                                 "pad": b"\0" * (meta["max_message_bytes"] + 1 + int(rng.integers(1000)))})
    return "not a map", msgpack.packb([1, 2, 3], use_bin_type=True)


def check_reply(reply, meta, expect_actions: bool = False) -> str:
    """-> the reply's type, after checking it is an error frame with a message or a finite action chunk."""
    assert isinstance(reply, dict) and reply.get("type") in ("error", "actions"), reply
    if reply["type"] == "error":
        assert not expect_actions, f"a valid request was refused: {reply['error']}"
        assert isinstance(reply["error"], str) and len(reply["error"]) > 10, reply
    else:
        actions = reply["actions"]
        assert actions.shape == (meta["chunk_size"], meta["action_dim"]) and np.isfinite(actions).all(), actions
    return reply["type"]


def served_after(url, meta) -> None:
    rng = np.random.default_rng(99)
    with PolicyClient(url, token=TOKEN, timeout_s=30) as client:
        assert np.isfinite(client.infer(valid_observation(meta, rng)).actions).all()


def test_one_defect_at_a_time_extreme_values_and_oversize(server):
    srv, url = server
    ws, meta = raw_connection(url)
    rng = np.random.default_rng(1234)
    seen: dict[str, int] = {}
    n_frames = 1200
    for i in range(n_frames):
        roll = rng.random()
        if roll < 0.04:
            label, frame, expect = "extreme finite state", pack(extreme_request(meta, rng, i)), True
        else:
            label, frame = (one_defect if roll < 0.7 else frame_defect)(meta, rng, i)
            expect = False
        ws.send(frame)
        kind = check_reply(unpack(ws.recv(timeout=30)), meta, expect_actions=expect)
        assert expect or kind == "error", f"frame {i} ({label}) was not rejected"
        seen[label] = seen.get(label, 0) + 1
    assert sum(seen.values()) == n_frames and len(seen) >= 28 and seen["extreme finite state"] >= 20
    assert srv._thread is not None and srv._thread.is_alive()  # 0 crashes
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/healthz", timeout=10).read())
    assert health["status"] == "ok" and health["errors"] >= n_frames - seen["extreme finite state"]
    ws.send(pack({"type": "infer", "id": 7, "observation": valid_observation(meta, rng)}))
    reply = unpack(ws.recv(timeout=30))
    assert reply["id"] == 7 and check_reply(reply, meta, expect_actions=True) == "actions"
    ws.close()
    served_after(url, meta)


def test_pipelined_mixed_frames_each_get_one_reply_in_order(server):
    srv, url = server
    ws, meta = raw_connection(url)
    rng = np.random.default_rng(7)
    frames, expect = [], []
    for i in range(3 * meta["max_pending"]):
        if i % 3 == 0:
            frames.append(pack(extreme_request(meta, rng, i)))
        else:
            frames.append(one_defect(meta, rng, i)[1])
        expect.append(i % 3 == 0)
    for frame in frames:
        ws.send(frame)
    replies = [unpack(ws.recv(timeout=60)) for _ in frames]
    kinds = [check_reply(r, meta) for r in replies]
    ids = [r["id"] for r in replies]
    assert [i for i in ids if i is not None] == sorted(i for i in ids if i is not None)  # in order
    # a valid frame is served, unless it came after max_pending frames still held (then refused, naming it)
    for r, valid in zip(replies, expect, strict=True):
        if valid and r["type"] == "error":
            assert f"max_pending={meta['max_pending']}" in r["error"], r["error"]
    assert "actions" in kinds
    ws.close()
    served_after(url, meta)


def slow_websocket(port: int) -> socket.socket:
    """A websocket opened by hand (to trickle a frame byte by byte); -> the socket after the metadata."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Authorization: Bearer {TOKEN}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    read_frame(sock)  # the metadata
    return sock


def masked_frame(payload: bytes) -> bytes:
    """A client -> server binary websocket frame (RFC 6455 section 5.2)."""
    mask = os.urandom(4)
    n = len(payload)
    header = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else
                              bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 2**16 else
                              bytes([0x80 | 127]) + n.to_bytes(8, "big"))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frame(sock: socket.socket) -> bytes:
    def exactly(n):
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            assert chunk, "connection closed"
            out += chunk
        return out

    while True:
        first, second = exactly(2)
        n = second & 0x7F
        n = int.from_bytes(exactly(2 if n == 126 else 8), "big") if n >= 126 else n
        payload = exactly(n)
        if first & 0x0F == 0x2:  # binary; skip the server's keepalive pings
            return payload


def test_slowloris_and_many_idle_connections_do_not_starve_others(server):
    srv, url = server
    port = srv.port
    ws, meta = raw_connection(url)
    ws.close()
    rng = np.random.default_rng(3)
    # half-sent HTTP handshakes, a trickled frame, and 100 idle websockets, all open at once
    half_open = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr")
        half_open.append(sock)
    slow = slow_websocket(port)
    frame = masked_frame(pack({"type": "infer", "id": 5, "observation": valid_observation(meta, rng)}))
    slow.sendall(frame[: len(frame) // 2])
    idle = [raw_connection(url)[0] for _ in range(100)]
    try:
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read())
        assert health["clients"] >= 101
        served_after(url, meta)  # while all of those hang on
        for i in range(len(frame) // 2, len(frame), 4096):  # the slow frame completes, and is served
            slow.sendall(frame[i : i + 4096])
            time.sleep(0.001)
        reply = unpack(read_frame(slow))
        assert reply["id"] == 5 and check_reply(reply, meta, expect_actions=True) == "actions"
    finally:
        for ws in idle:
            ws.close()
        for sock in [*half_open, slow]:
            sock.close()
    assert srv._thread is not None and srv._thread.is_alive()
    served_after(url, meta)
