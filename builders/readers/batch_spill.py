"""Items a reader made, spilled to disk in pickled batches of a fixed size, so a build that needs a
first pass over its whole input (paragraph counts, majorities) keeps only compact state in memory and
streams the items afterwards. A batch stays pickled until a worker takes it."""

from __future__ import annotations

import pickle
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_LEN = struct.Struct("<Q")


class BatchSpill:
    def __init__(self, path: Path, batch_items: int) -> None:
        self.path = Path(path)
        self.batch_items = max(1, batch_items)
        self._file: IO[bytes] | None = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        self._pending: list[Any] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, item: Any) -> None:
        self._pending.append(item)
        self._count += 1
        if len(self._pending) >= self.batch_items:
            self._write()

    def _write(self) -> None:
        assert self._file is not None, "the spill is closed"
        blob = pickle.dumps(self._pending, protocol=pickle.HIGHEST_PROTOCOL)
        self._file.write(_LEN.pack(len(blob)))
        self._file.write(blob)
        self._pending = []

    def close(self) -> None:
        if self._file is None:
            return
        if self._pending:
            self._write()
        self._file.close()
        self._file = None

    def batches(self) -> Iterator[bytes]:
        """Every batch, pickled, in the order the items were added (`batch_items` each, the last fewer)."""
        self.close()
        with open(self.path, "rb") as f:
            while head := f.read(_LEN.size):
                (size,) = _LEN.unpack(head)
                yield f.read(size)
