"""Torch-free client of the LLaDA-VLA policy server (numpy, msgpack, websockets only).

- `wire`      msgpack encoding with numpy arrays as typed buffers (never pickle)
- `protocol`  message schema, server `Metadata`, request validation (shared with the server)
- `client`    `PolicyClient`: connect, infer, ping, timeouts, reconnect

Nothing here imports torch or the rest of `vla`, so the package also works when copied
onto a robot computer as it is (it uses relative imports only).
"""

from .client import InferResult, PolicyClient, PolicyConnectionError, PolicyServerError
from .protocol import Metadata, ProtocolError
from .wire import WireError, pack, unpack

__all__ = ["InferResult", "Metadata", "PolicyClient", "PolicyConnectionError", "PolicyServerError",
           "ProtocolError", "WireError", "pack", "unpack"]
