"""One tensor from its OIP description: JSON ``data`` or its slice of the binary buffer.

Numbers go into numpy in one call (``np.asarray`` over the JSON list, ``np.frombuffer``
over the raw bytes), never element by element in Python; only BYTES tensors, whose
elements each carry their own length, are walked one element at a time.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import msgspec
import numpy as np
import orjson

from producer.contract.oip.datatypes import BYTES, DTYPES
from producer.contract.oip.errors import OipDecodeError
from producer.contract.oip.wire import RequestInput, ResponseOutput

Tensor = RequestInput | ResponseOutput
_LENGTH = struct.Struct("<I")
# Which kinds of JSON numbers numpy infers are acceptable for each kind of datatype.
_ACCEPTS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}


def _fail(tensor: Tensor, problem: str) -> OipDecodeError:
    return OipDecodeError(
        f"tensor `{tensor.name}`: {problem}", tensor=tensor.name, field=f"inputs.{tensor.name}"
    )


def dtype_of(tensor: Tensor) -> np.dtype[Any]:
    """The numpy dtype of ``tensor``'s datatype; an unknown datatype is an error."""
    dtype = DTYPES.get(tensor.datatype)
    if dtype is None:
        known = ", ".join(DTYPES)
        raise _fail(tensor, f"unknown datatype {tensor.datatype!r}; use one of {known}")
    return dtype


def binary_size(tensor: Tensor) -> int | None:
    """``parameters.binary_data_size``: how many bytes of the buffer are this tensor's."""
    size = tensor.parameters.get("binary_data_size")
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise _fail(tensor, f"binary_data_size must be a whole number of bytes, got {size!r}")
    return size


def element_count(tensor: Tensor) -> int:
    return math.prod(tensor.shape)


def from_json(tensor: Tensor) -> np.ndarray:
    """The tensor's JSON ``data`` (flat or nested, row-major) as an array of its shape."""
    dtype = dtype_of(tensor)
    if tensor.data is None:
        raise _fail(tensor, "has neither `data` nor parameters.binary_data_size")
    if dtype.kind == "O":
        array = np.array(_json_bytes(tensor, tensor.data), dtype=object)
    else:
        array = _json_numbers(tensor, dtype)
    return _shaped(tensor, array)


def _json_numbers(tensor: Tensor, dtype: np.dtype[Any]) -> np.ndarray:
    try:
        raw = np.asarray(tensor.data)
    except (ValueError, TypeError) as exc:  # ragged nesting
        raise _fail(tensor, f"`data` is not a regular array: {exc}") from exc
    if raw.size and raw.dtype.kind not in _ACCEPTS[dtype.kind]:
        raise _fail(tensor, f"`data` holds values that are not {tensor.datatype}")
    if dtype.kind in "iu" and raw.size:
        limits = np.iinfo(dtype)
        if raw.min() < limits.min or raw.max() > limits.max:
            raise _fail(tensor, f"`data` holds values outside {tensor.datatype}'s range")
    return raw.astype(dtype, copy=False).ravel()


def _json_bytes(tensor: Tensor, data: Any) -> list[bytes]:
    """BYTES elements written as JSON strings, flattened row-major."""
    if isinstance(data, str):
        return [data.encode()]
    if isinstance(data, list):
        return [element for item in data for element in _json_bytes(tensor, item)]
    raise _fail(tensor, f"BYTES `data` must hold strings, got {type(data).__name__}")


def from_buffer(tensor: Tensor, buffer: memoryview) -> np.ndarray:
    """The tensor from its raw bytes: little-endian, row-major, or length-prefixed BYTES."""
    dtype = dtype_of(tensor)
    if dtype.kind == "O":
        return _shaped(tensor, _buffer_bytes(tensor, buffer))
    count = element_count(tensor)
    if len(buffer) != count * dtype.itemsize:
        raise _fail(
            tensor,
            f"binary_data_size is {len(buffer)} bytes, but shape {tensor.shape} of "
            f"{tensor.datatype} needs {count * dtype.itemsize}",
        )
    return np.frombuffer(buffer, dtype=dtype, count=count).reshape(tensor.shape)


def _buffer_bytes(tensor: Tensor, buffer: memoryview) -> np.ndarray:
    if len(buffer) >= 4 and _LENGTH.unpack_from(buffer)[0] == len(buffer) - 4:
        array = np.empty(1, dtype=object)  # one element, the usual text: no walk
        array[0] = bytes(buffer[4:])
        return array
    elements: list[bytes] = []
    offset = 0
    while offset < len(buffer):
        if offset + 4 > len(buffer):
            raise _fail(tensor, "BYTES element truncated inside its 4-byte length")
        (length,) = _LENGTH.unpack_from(buffer, offset)
        offset += 4
        if offset + length > len(buffer):
            raise _fail(tensor, f"BYTES element of {length} bytes runs past binary_data_size")
        elements.append(bytes(buffer[offset : offset + length]))
        offset += length
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array


def _shaped(tensor: Tensor, flat: np.ndarray) -> np.ndarray:
    if tensor.shape == [flat.size]:
        return flat  # already its shape
    count = element_count(tensor)
    if flat.size != count:
        raise _fail(
            tensor,
            f"shape {tensor.shape} holds {count} elements, but `data` has {flat.size}",
        )
    return flat.reshape(tensor.shape)


def to_json(array: np.ndarray) -> Any:
    """The array's elements as a flat, row-major JSON list (BYTES as UTF-8 strings).

    Numbers are printed by orjson straight from the array (float32 in its shortest form
    that reads back the same), returned as :class:`msgspec.Raw` to embed as is.
    """
    flat = np.ascontiguousarray(array.ravel())
    if array.dtype.kind in "OSU":
        return [_text(element) for element in flat]
    try:
        return msgspec.Raw(orjson.dumps(flat, option=orjson.OPT_SERIALIZE_NUMPY))
    except orjson.JSONEncodeError:  # float16, which orjson lacks
        return flat.tolist()


def _text(element: Any) -> str:
    if isinstance(element, bytes):
        return element.decode("utf-8", errors="replace")
    return str(element)


def to_buffer(array: np.ndarray, datatype: str) -> bytes:
    """The array's raw bytes as OIP lays them out (length-prefixed elements for BYTES)."""
    if datatype == BYTES:
        parts: list[bytes] = []
        for element in array.ravel():
            data = element if isinstance(element, bytes) else str(element).encode()
            parts += (_LENGTH.pack(len(data)), data)
        return b"".join(parts)
    dtype = DTYPES[datatype]
    return np.ascontiguousarray(array, dtype=dtype).tobytes()
