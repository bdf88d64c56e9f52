"""Dataset dirs as a stream of record batches, in the order `curation.inputs.load_dirs` reads them
(dirs as given; within a dir test, validation, train, then other splits; shards in order; rows in
order), so first-seen rules give the same answer streamed or not."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medmill.builders.curation.inputs import SPLIT_ORDER, dir_label
from medmill.schemas.dataset_dir import split_files
from medmill.schemas.errors import MedmillError

DEFAULT_BATCH_ROWS = 20_000


@dataclass
class InputBatch:
    """Rows `first_row`.. of one shard file."""

    seq: int  # batch number in the stream
    table: pa.Table
    file: str
    split: str
    origin: str  # the dir label records carry in meta.source_dir
    first_row: int


def ordered_files(d: Path) -> list[tuple[str, Path]]:
    files = split_files(Path(d))
    order = [s for s in SPLIT_ORDER if s in files] + sorted(s for s in files if s not in SPLIT_ORDER)
    return [(split, f) for split in order for f in files[split]]


def count_rows(dirs: list[Path]) -> int:
    """Records in every shard, from parquet footers (for progress bars)."""
    total = 0
    for d in dirs:
        for _split, f in ordered_files(d):
            try:
                total += pq.ParquetFile(f).metadata.num_rows
            except (OSError, pa.ArrowException) as e:
                raise MedmillError(f"cannot read {f}: {e}") from None
    return total


def iter_batches(dirs: list[Path], batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[InputBatch]:
    seq = 0
    for d in dirs:
        label = dir_label(d)
        for split, f in ordered_files(d):
            try:
                reader = pq.ParquetFile(f)
                row = 0
                for batch in reader.iter_batches(batch_size=batch_rows):
                    yield InputBatch(seq, pa.Table.from_batches([batch]), str(f), split, label, row)
                    seq += 1
                    row += batch.num_rows
            except (OSError, pa.ArrowException) as e:
                raise MedmillError(f"cannot read {f}: {e}") from None
