"""Fingerprints of input files for manifests (path, size, sha256)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from medmill.builders.readers.walk import walk_files
from medmill.schemas.names import printable_name


def describe_os_error(path: Path, error: OSError) -> str:
    """Why `path` could not be created, in words: "File exists" / "Not a directory" from mkdir when a
    parent of the path is a regular file becomes "<parent> is a file, not a folder"."""
    for parent in Path(path).parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, not a folder"
            break
    return error.strerror or str(error)


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
            files.extend(sorted(walk_files(p)))  # as the readers walk it: no hidden files, no nested dataset dirs
        elif p.is_file():
            files.append(p)
    return [
        {"path": printable_name(str(f)), "bytes": f.stat().st_size, "sha256": sha256_file(f)}
        for f in sorted(set(files), key=str)
    ]
