"""The wire format of the policy server: msgpack with numpy arrays as typed buffers.

This module owns turning messages (dicts of str, numbers, lists, dicts and numpy arrays)
into bytes and back. It imports numpy and msgpack only, so the robot side stays torch-free.

An array travels as a msgpack map ``{"__ndarray__": 1, "dtype": "<f4", "shape": [H, W],
"data": <raw bytes, C order>}`` (the openpi convention, with an explicit marker key).
Decoding never executes anything: no pickle, no object dtypes; the dtype must be one of
`ALLOWED_DTYPES` and the buffer length must equal prod(shape) * itemsize, otherwise
`WireError` says what was wrong. Numpy scalars travel as 0-d arrays.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

ARRAY_MARKER = "__ndarray__"
# numeric dtypes only: bool, ints, floats (either byte order); never object / void / strings
ALLOWED_DTYPES = frozenset(
    np.dtype(t).newbyteorder(order).str
    for t in ("b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8")
    for order in ("<", ">")
)
MAX_NDIM = 8


class WireError(ValueError):
    """Bytes that do not decode into a valid message (the text says what was wrong)."""


def _encode_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic):
        arr = np.asarray(obj)  # tobytes() below writes C order whatever the memory layout
        if arr.dtype.str not in ALLOWED_DTYPES:
            raise WireError(f"cannot send an array of dtype {arr.dtype}; use a numeric dtype (uint8, float32, ...)")
        return {ARRAY_MARKER: 1, "dtype": arr.dtype.str, "shape": list(arr.shape), "data": arr.tobytes()}
    raise WireError(f"cannot send an object of type {type(obj).__name__}; use numbers, str, lists, dicts or arrays")


def _decode_array(obj: dict) -> np.ndarray:
    extra = set(obj) - {ARRAY_MARKER, "dtype", "shape", "data"}
    if extra:
        raise WireError(f"array map has unknown keys {sorted(map(str, extra))}; expected dtype, shape, data")
    dtype, shape, data = obj.get("dtype"), obj.get("shape"), obj.get("data")
    if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
        raise WireError(f"array dtype {dtype!r} is not allowed; use one of uint8, float32, ... (numpy dtype.str)")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape
    ):
        raise WireError(f"array shape {shape!r} must be a list of at most {MAX_NDIM} non-negative ints")
    if not isinstance(data, bytes):
        raise WireError(f"array data must be bytes, got {type(data).__name__}")
    itemsize = np.dtype(dtype).itemsize
    if len(data) != math.prod(shape) * itemsize:
        raise WireError(f"array of dtype {dtype} and shape {shape} needs {math.prod(shape) * itemsize} bytes, "
                        f"got {len(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _decode_hook(obj: dict) -> Any:
    if ARRAY_MARKER in obj:
        return _decode_array(obj)
    return obj


def _reject_ext(code: int, data: bytes) -> Any:
    raise WireError(f"msgpack extension type {code} is not part of the protocol; send plain maps and arrays")


def pack(message: Any) -> bytes:
    """Encode a message (dicts, lists, str, numbers, numpy arrays) as msgpack bytes."""
    return msgpack.packb(message, default=_encode_default, use_bin_type=True)


def unpack(data: bytes | bytearray | memoryview, max_bytes: int | None = None) -> Any:
    """Decode msgpack bytes written by `pack`; raises `WireError` on anything else.

    Arrays come back as read-only numpy views of the received buffer (copy to modify).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireError(f"expected a binary frame, got {type(data).__name__}: send msgpack bytes, not text")
    if max_bytes is not None and len(data) > max_bytes:
        raise WireError(f"message of {len(data)} bytes exceeds the limit of {max_bytes} bytes; "
                        "send smaller images or raise the server's --max-message-bytes")
    try:
        return msgpack.unpackb(data, raw=False, object_hook=_decode_hook, ext_hook=_reject_ext, strict_map_key=True)
    except WireError:
        raise
    except Exception as exc:  # msgpack raises several types (ExtraData, FormatError, ValueError, ...)
        raise WireError(f"not a valid msgpack message ({type(exc).__name__}: {exc}); "
                        "encode requests with vla.policies.client.wire.pack") from None
