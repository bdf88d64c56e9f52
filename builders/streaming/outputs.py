"""Where a dataset dir goes: a local path, or any pyarrow filesystem URI (s3://, gs://, hdfs://, file://).

Every build, `filter` and `dedup` opens its output with `staged_output(out, inputs)`, the one place
that checks `--out` against the inputs (`check_out_not_input`) and stages URIs. A URI is built in a
local staging dir (the writer swaps files into place, which object stores cannot do), then published
the way the local writer swaps: the finished dir is uploaded to a hidden staging dir at the URI, and
only then moved into place (manifest.json out first, in last). So a build or an upload that fails
leaves the previous dataset at the URI as it was; only a failure during the final moves leaves a dir
without manifest.json, which marks it unfinished (as a local swap cut short does).

State that must outlive a killed run (the LLM request cache, by default OUT/llm_cache.sqlite) cannot
live in a staging dir: for a URI it goes to `local_state_dir(uri)` under the user's cache dir."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from medmill.schemas.dataset_dir import BUILD_OWNED, check_out_not_input
from medmill.schemas.errors import MedmillError

if TYPE_CHECKING:
    import pyarrow.fs as pafs

_SCHEME = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]+):/+(?P<rest>.*)$")
STAGING_PREFIX = ".medmill-upload-"
FAILED_REJECTS_SUFFIX = ".rejects.jsonl"  # as writer.failed_rejects_path: beside --out


def as_uri(out: str | Path) -> str | None:
    """The URI `out` names, or None for a local path (also when a CLI Path turned `s3://b` into `s3:/b`)."""
    m = _SCHEME.match(str(out))
    if not m:
        return None
    scheme = m.group("scheme").lower()
    return f"{scheme}:///{m.group('rest')}" if scheme == "file" else f"{scheme}://{m.group('rest')}"


def local_path(out: str | Path) -> Path | None:
    """The local path `out` names (a path or a file:// URI); None for a remote URI."""
    uri = as_uri(out)
    if uri is None:
        return Path(out)
    return Path(unquote(uri.removeprefix("file://"))) if uri.startswith("file://") else None


def check_output(out: str | Path, inputs: Iterable[Path]) -> None:
    """Refuse an `out` that is an input, lies inside an input dataset dir or would overwrite an input
    (`check_out_not_input`); a file:// URI is checked as its local path, a remote URI cannot be one."""
    local = local_path(out)
    if local is not None:
        check_out_not_input(local, inputs)


def cache_root() -> Path:
    """medmill's local cache dir: $MEDMILL_CACHE_DIR, else $XDG_CACHE_HOME/medmill, else ~/.cache/medmill."""
    if os.environ.get("MEDMILL_CACHE_DIR"):
        return Path(os.environ["MEDMILL_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "medmill"


def local_state_dir(out: str | Path) -> Path | None:
    """Where a URI out keeps what a resumed run needs (its LLM request cache): the same local dir for
    the same URI on every run, `cache_root()/outputs/<readable part of the URI>-<hash>`; None for a
    local out (its state stays in the out dir)."""
    uri = as_uri(out)
    if uri is None:
        return None
    key = uri.rstrip("/")
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key.split("://", 1)[1]).strip("_.")[-60:] or "out"
    return cache_root() / "outputs" / f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path in it that `uri` names (tests swap this for a non-local one)."""
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(uri)


@contextmanager
def staged_output(out: str | Path, inputs: Iterable[Path] = ()) -> Iterator[Path]:
    """The local dir a command writes its dataset dir into, after checking `out` against `inputs`.

    A local `out` is that dir. For a URI, a fresh local staging dir, published to the URI when the
    block ends without an error (see the module docstring). When the block fails with a MedmillError
    (a build that kept no record), the rejects it left beside the staging dir go beside the URI and
    the message names the URI, not the staging dir."""
    check_output(out, inputs)
    uri = as_uri(out)
    if uri is None:
        yield Path(out)
        return
    import pyarrow as pa

    _check_reachable(uri)  # a typo in the scheme or bucket, or no credentials: said now, not after the build
    tmp = Path(tempfile.mkdtemp(prefix=".medmill-out-"))
    local = tmp / "out"
    try:
        try:
            yield local
        except MedmillError as e:
            failed = local.with_name(local.name + FAILED_REJECTS_SUFFIX)
            message = str(e).replace(str(failed), uri.rstrip("/") + FAILED_REJECTS_SUFFIX)
            if failed.is_file() and not _upload_failed_rejects(failed, uri):
                message = str(e).replace(str(failed), f"(not writable beside {uri})")
            raise MedmillError(message.replace(str(local), uri)) from None
        try:
            publish(local, uri)
        except (OSError, pa.ArrowException) as e:
            raise MedmillError(f"cannot write the dataset dir to {uri}: {str(e).splitlines()[0]}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_reachable(uri: str) -> None:
    """Resolve `uri` and look at what is there: an unknown scheme, an unreachable store or a file in
    the way is a one-line error before anything is built."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        fs, root = filesystem(uri)
        here = fs.get_file_info(root.rstrip("/"))
    except (OSError, pa.ArrowException, ValueError) as e:
        raise MedmillError(f"cannot use --out {uri}: {str(e).splitlines()[0]}") from None
    if here.type == pafs.FileType.File:
        raise MedmillError(f"--out {uri} exists and is not a directory")


def publish(local: Path, uri: str) -> None:
    """Put the finished dataset dir `local` at `uri`: upload it next to the dataset there, then move it
    into place, keeping what a build does not own (BUILD_OWNED) and the previous dataset until then."""
    import pyarrow.fs as pafs

    fs, root = filesystem(uri)
    root = root.rstrip("/")
    here = fs.get_file_info(root)
    if here.type == pafs.FileType.File:
        raise MedmillError(f"--out {uri} exists and is not a directory")
    fs.create_dir(root, recursive=True)
    for old in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        if old.base_name.startswith(STAGING_PREFIX):  # left by an upload that was cut short
            _delete(fs, old.path)
    stage = f"{root}/{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        pafs.copy_files(str(local), stage, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    except BaseException:
        _delete(fs, stage, quiet=True)
        raise
    # the swap: as writer._swap_into_place, with moves of single files (object stores move no dirs)
    _delete(fs, f"{root}/manifest.json")
    for name in BUILD_OWNED:  # a previous build's reports must not pass for this one's
        if not (local / name).exists():
            _delete(fs, f"{root}/{name}")
    for child in sorted(local.iterdir()):
        if child.name != "manifest.json":
            _delete(fs, f"{root}/{child.name}")
            _move(fs, local, child, stage, root)
    fs.move(f"{stage}/manifest.json", f"{root}/manifest.json")
    _delete(fs, stage)
    _delete(fs, root + FAILED_REJECTS_SUFFIX)  # an earlier failed build's rejects are stale now


def _move(fs: pafs.FileSystem, local: Path, child: Path, stage: str, root: str) -> None:
    """Move `child` (a file or dir of the local tree) from `stage` to `root`, file by file."""
    files = [child] if child.is_file() else sorted(p for p in child.rglob("*") if p.is_file())
    made: set[str] = set()
    for f in files:
        rel = f.relative_to(local).as_posix()
        parent = f"{root}/{rel}".rsplit("/", 1)[0]
        if parent != root and parent not in made:
            fs.create_dir(parent, recursive=True)
            made.add(parent)
        fs.move(f"{stage}/{rel}", f"{root}/{rel}")


def _delete(fs: pafs.FileSystem, path: str, quiet: bool = False) -> None:
    import pyarrow.fs as pafs

    try:
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif kind == pafs.FileType.File:
            fs.delete_file(path)
    except OSError:
        if not quiet:
            raise


def _upload_failed_rejects(failed: Path, uri: str) -> bool:
    """Copy a failed build's rejects to `<uri>.rejects.jsonl`; False when that cannot be written."""
    import pyarrow as pa

    try:
        fs, root = filesystem(uri)
        target = root.rstrip("/") + FAILED_REJECTS_SUFFIX
        if "/" in target:
            fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(target) as dst, open(failed, "rb") as src:
            shutil.copyfileobj(src, dst)
    except (OSError, pa.ArrowException):
        return False
    return True
