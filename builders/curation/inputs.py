"""Read one or more dataset dirs as records for `medmill filter` / `medmill dedup`, remembering for each
record its dir and split, so the output keeps the splits and says where every survivor came from.

Order matters for dedup (the first seen record is kept): dirs in the order given, and within a dir
test, then validation, then train (then any other split), so a duplicate is removed from training
data rather than from an evaluation split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from medmill.schemas import Record, RejectRow, Source, record_class
from medmill.schemas.dataset_dir import detect_kind, split_files
from medmill.schemas.errors import MedmillError

SPLIT_ORDER = ("test", "validation", "train")
ORIGIN_KEY = "source_dir"
_SPLIT_KEY = "_medmill_split"  # carried through the steps in meta, removed before writing


@dataclass
class LoadedDirs:
    kind: str
    records: list[Record] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    per_dir: dict[str, int] = field(default_factory=dict)


def dir_label(path: Path) -> str:
    return str(Path(path))


def dirs_kind(dirs: list[Path]) -> str:
    """The one record kind the dataset dirs hold (an error when they hold several, or none is given)."""
    if not dirs:
        raise MedmillError("give at least one dataset dir")
    kinds = {str(d): detect_kind(Path(d)) for d in dirs}
    if len(set(kinds.values())) > 1:
        listing = ", ".join(f"{d} is {k}" for d, k in kinds.items())
        raise MedmillError(f"the dataset dirs hold different record kinds ({listing}); curate them separately")
    return next(iter(kinds.values()))


def load_dirs(dirs: list[Path]) -> LoadedDirs:
    kind = dirs_kind(dirs)
    cls = record_class(kind)
    out = LoadedDirs(kind)
    import pyarrow as pa
    import pyarrow.parquet as pq

    for d in dirs:
        label = dir_label(d)
        files = split_files(Path(d))
        order = [s for s in SPLIT_ORDER if s in files] + sorted(s for s in files if s not in SPLIT_ORDER)
        count = 0
        for split in order:
            for f in files[split]:
                try:
                    rows = pq.read_table(f).to_pylist()
                except (OSError, pa.ArrowException) as e:
                    raise MedmillError(f"cannot read {f}: {e}") from None
                for i, row in enumerate(rows):
                    try:
                        rec = cls.from_row(row)
                    except (ValidationError, ValueError, TypeError) as e:
                        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                        out.rejects.append(
                            RejectRow(stage="read", reason="invalid_record", message=f"{f} row {i}: {msg}",
                                      source=Source(file=str(f), line=i, builder="read"), raw=row)
                        )
                        continue
                    out.records.append(rec.model_copy(update={"meta": {**rec.meta, ORIGIN_KEY: label, _SPLIT_KEY: split}}))
                    count += 1
        out.per_dir[label] = count
    return out


def origin_of(record: Record) -> str:
    return str(record.meta.get(ORIGIN_KEY, ""))


def finalise(records: list[Record]) -> tuple[list[Record], dict[str, str]]:
    """Drop the split marker from meta; return the records and their id -> split map for the writer."""
    splits: dict[str, str] = {}
    out = []
    for r in records:
        meta = dict(r.meta)
        splits[r.id] = str(meta.pop(_SPLIT_KEY, "train"))
        out.append(r.model_copy(update={"meta": meta}))
    return out, splits
