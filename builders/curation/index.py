"""A persisted dedup index: what earlier runs kept, so a new build is deduplicated against everything
already published.

A directory: `index.json` (MinHash parameters, the parts, counts) and one `part-NNNNN.parquet` per run
with the kept records' id, origin (dataset dir or build), compared text, exact key and signature.
A run only adds a part (written to a temp name, then renamed, then index.json replaced), so an
interrupted run leaves the index as it was.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medmill.builders.curation.dedup import DedupConfig, Reference
from medmill.schemas.errors import MedmillError

INDEX_VERSION = 1


def _params(config: DedupConfig) -> dict:
    p = config.params
    return {"shingle": p.shingle, "ngram": p.ngram, "num_perm": p.num_perm, "seed": p.seed}


@dataclass
class DedupIndex:
    path: Path
    meta: dict
    ids: list[str]
    origins: list[str]
    reference: Reference

    @classmethod
    def open(cls, path: Path, config: DedupConfig) -> DedupIndex:
        """Load the index at `path` (an empty one when it does not exist yet)."""
        path = Path(path)
        num_perm = config.params.num_perm
        empty = Reference(np.zeros(0, np.uint64), np.zeros((0, num_perm), np.uint32), [])
        meta_file = path / "index.json"
        if not meta_file.exists():
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise MedmillError(f"--index {path} exists but is not a medmill dedup index (no index.json)")
            return cls(path, {"version": INDEX_VERSION, "params": _params(config), "parts": [], "records": 0}, [], [], empty)
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except OSError as e:
            raise MedmillError(f"cannot read dedup index {meta_file}: {e.strerror or e}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise MedmillError(f"dedup index {meta_file} is not a medmill index file (not valid JSON: {e})") from None
        parts = meta.get("parts", []) if isinstance(meta, dict) else None
        if not isinstance(parts, list) or not all(isinstance(p, str) and Path(p).name == p for p in parts):
            raise MedmillError(f"dedup index {meta_file} is not a medmill index file (no list of part files)")
        if meta.get("params") != _params(config):
            raise MedmillError(
                f"dedup index {path} was built with {meta.get('params')}; this run uses {_params(config)} "
                "(use the same --shingle/--ngram/--num-perm, or a new --index)"
            )
        ids: list[str] = []
        origins: list[str] = []
        texts: list[str] = []
        exact, sigs = [], []
        for part in parts:
            try:
                table = pq.read_table(path / part)
                ids += table.column("id").to_pylist()
                origins += table.column("origin").to_pylist()
                texts += table.column("text").to_pylist()
                exact.append(table.column("exact").to_numpy().astype(np.uint64))
                flat = table.column("sig").combine_chunks().values.to_numpy().astype(np.uint32)
                sigs.append(flat.reshape(-1, num_perm))
            except (OSError, pa.ArrowException, KeyError, ValueError) as e:
                detail = (str(e).splitlines() or [type(e).__name__])[0]
                raise MedmillError(f"dedup index part {path / part} is unreadable: {detail}") from None
        if not ids:
            return cls(path, meta, [], [], empty)
        return cls(path, meta, ids, origins, Reference(np.concatenate(exact), np.concatenate(sigs), texts))

    def check_kind(self, kind: str) -> None:
        """Refuse records of another kind than the index holds (sft texts against preference prompts
        compare different fields); an index without a kind (older, or empty) takes this one."""
        held = self.meta.get("kind")
        if held and held != kind:
            raise MedmillError(
                f"dedup index {self.path} holds {held} records; these are {kind} records (use another --index for {kind})"
            )
        self.meta["kind"] = kind

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, ids: list[str], origins: list[str], texts: list[str], exact: np.ndarray, sigs: np.ndarray) -> str | None:
        """Add kept records of this run as a new part; returns the part name (None when nothing to add)."""
        if not ids:
            return None
        self.path.mkdir(parents=True, exist_ok=True)
        name = f"part-{len(self.meta['parts']):05d}.parquet"
        num_perm = sigs.shape[1]
        table = pa.table(
            {
                "id": pa.array(ids, pa.string()),
                "origin": pa.array(origins, pa.string()),
                "text": pa.array(texts, pa.string()),
                "exact": pa.array(exact.astype(np.uint64)),
                "sig": pa.FixedSizeListArray.from_arrays(pa.array(sigs.reshape(-1).astype(np.uint32)), num_perm),
            }
        )
        tmp = self.path / f".{name}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, self.path / name)
        self.meta["parts"].append(name)
        self.meta["records"] = int(self.meta.get("records", 0)) + len(ids)
        meta_tmp = self.path / ".index.json.tmp"
        meta_tmp.write_text(json.dumps(self.meta, indent=2) + "\n", encoding="utf-8")
        os.replace(meta_tmp, self.path / "index.json")
        return name
