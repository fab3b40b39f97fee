"""The OIP datatype table: each datatype's numpy dtype (little-endian), and back.

``BYTES`` tensors are numpy object arrays of :class:`bytes`; every other datatype has a
fixed-size little-endian dtype, so its binary form is the array's raw memory.
"""

from __future__ import annotations

import numpy as np

BYTES = "BYTES"

DTYPES: dict[str, np.dtype[np.generic]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    BYTES: np.dtype(object),
}
"""OIP datatype name → numpy dtype (``BYTES`` → object, elements :class:`bytes`)."""

DATATYPES = tuple(DTYPES)

_BY_KIND = {(dtype.kind, dtype.itemsize): name for name, dtype in DTYPES.items() if name != BYTES}


def datatype_of(array: np.ndarray) -> str:
    """The OIP datatype of ``array``: by kind and size; strings and objects are BYTES."""
    if array.dtype.kind in "OSU":
        return BYTES
    name = _BY_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if name is None:
        raise TypeError(f"numpy dtype {array.dtype} has no OIP datatype")
    return name
