"""Sort keys for record ids that cost 8 bytes per record instead of the id string.

A key is the first 8 bytes of the id's UTF-8, big-endian, zero-padded: keys order ids exactly as
their strings order (byte order of UTF-8 is code-point order, as Python's `sorted` uses), except that
ids sharing their first 8 bytes tie. The writer sorts keys and orders only the tied runs by their full
ids, read back from the spill."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KEY_BYTES = 8


def id_keys(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """uint64 sort key of every id (string array, no nulls)."""
    arr = pc.cast(ids, pa.binary())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if n == 0:
        return np.zeros(0, np.uint64)
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, np.int32, n + 1, arr.offset * 4)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    starts = offsets[:-1].astype(np.int64)
    lengths = (offsets[1:] - offsets[:-1]).astype(np.int64)
    key_bytes = np.zeros((n, KEY_BYTES), np.uint8)
    for j in range(KEY_BYTES):
        has = lengths > j
        key_bytes[has, j] = data[starts[has] + j]
    return key_bytes.view(">u8").reshape(n).astype(np.uint64)
