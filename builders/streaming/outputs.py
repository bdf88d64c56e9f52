"""Where a dataset dir goes: a local path, or any pyarrow filesystem URI (s3://, gs://, hdfs://,
file://). A URI is written to a local staging dir first (the writer swaps files into place, which
object stores cannot do atomically), then copied with `pyarrow.fs.copy_files`."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medmill.schemas.errors import MedmillError

_SCHEME = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]+):/+(?P<rest>.*)$")


def as_uri(out: str | Path) -> str | None:
    """The URI `out` names, or None for a local path (also when a CLI Path turned `s3://b` into `s3:/b`)."""
    m = _SCHEME.match(str(out))
    if not m:
        return None
    scheme = m.group("scheme").lower()
    return f"{scheme}:///{m.group('rest')}" if scheme == "file" else f"{scheme}://{m.group('rest')}"


@contextmanager
def staged_output(out: str | Path) -> Iterator[Path]:
    """A local dir to write into; copied to `out` afterwards when `out` is a URI."""
    uri = as_uri(out)
    if uri is None:
        yield Path(out)
        return
    import pyarrow as pa
    import pyarrow.fs as pafs

    tmp = Path(tempfile.mkdtemp(prefix=".medmill-out-"))
    try:
        local = tmp / "out"
        yield local
        try:
            fs, path = pafs.FileSystem.from_uri(uri)
            fs.create_dir(path, recursive=True)
            pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        except (OSError, pa.ArrowException) as e:
            raise MedmillError(f"cannot write the dataset dir to {uri}: {str(e).splitlines()[0]}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
