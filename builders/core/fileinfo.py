"""Fingerprints of input files for manifests (path, size, sha256)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def describe_inputs(paths: list[Path]) -> list[dict]:
    """One entry per input file (directories are walked), sorted by path."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.is_file()))
        elif p.is_file():
            files.append(p)
    return [
        {"path": str(f), "bytes": f.stat().st_size, "sha256": sha256_file(f)}
        for f in sorted(set(files), key=str)
    ]
