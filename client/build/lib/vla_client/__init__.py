"""Torch-free client of the LLaDA-VLA policy server (numpy, msgpack, websockets only).

- `wire`      msgpack encoding with numpy arrays as typed buffers (never pickle)
- `protocol`  message schema, server `Metadata`, request validation (shared with the server)
- `client`    `PolicyClient`: connect, infer, ping, timeouts, reconnect

Nothing here imports torch or the rest of `vla` (relative imports only), so the same files
are also the robot-side distribution `llada-vla-client` (`client/pyproject.toml`), where
they import as `vla_client`: `pip install ./client` on a robot computer.
"""

from .client import InferResult, PolicyClient, PolicyConnectionError, PolicyServerError
from .protocol import Metadata, ProtocolError
from .wire import WireError, pack, unpack

__all__ = ["InferResult", "Metadata", "PolicyClient", "PolicyConnectionError", "PolicyServerError",
           "ProtocolError", "WireError", "pack", "unpack"]
