"""Walking an input folder, the same way for every reader: hidden entries, the build's own paths
(`skip`: its out dir and LLM cache) and every medmill dataset dir found inside (manifest.json beside
data/: a build's output, never raw input) are left out, so a build whose --out sits inside its input
folder never reads its own card, manifest or rejects on the next run."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from medmill.schemas.dataset_dir import is_medmill_dataset_dir


def _is_under(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(r) for r in roots)


def walk_files(root: Path, skip: Iterable[Path] = ()) -> Iterator[Path]:
    """Every non-hidden file under `root`, in sorted order, outside `skip` and outside dataset dirs."""
    root = Path(root)
    skipped = [Path(x).resolve() for x in skip]
    for current, dirs, files in os.walk(root):
        here = Path(current)
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith(".")
            and not _is_under((here / d).resolve(), skipped)
            and not is_medmill_dataset_dir(here / d)
        )
        for name in sorted(files):
            f = here / name
            if name.startswith(".") or not f.is_file() or _is_under(f.resolve(), skipped):
                continue
            yield f


def nested_dataset_dirs(inputs: Iterable[Path]) -> list[Path]:
    """The medmill dataset dirs inside input folders (the build's own out dir among them) that the
    readers leave out; an input that is itself a dataset dir is read, not counted."""
    found: list[Path] = []
    for given in map(Path, inputs):
        if not given.is_dir() or is_medmill_dataset_dir(given):
            continue
        for current, dirs, _files in os.walk(given):
            here = Path(current)
            keep = []
            for d in sorted(dirs):
                if d.startswith("."):
                    continue
                if is_medmill_dataset_dir(here / d):
                    found.append(here / d)
                else:
                    keep.append(d)
            dirs[:] = keep
    unique: dict[Path, Path] = {}
    for d in found:
        unique.setdefault(d.resolve(), d)
    return list(unique.values())
