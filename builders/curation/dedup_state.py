"""Dedup over a stream: per-batch compact state, then one global decision that reads candidate texts
back on demand. The decision itself is `dedup.decide`, the one `dedup.find_duplicates` runs in memory;
here it runs without holding texts or record objects.

Memory, per record of the input, while the stream is read: exact key (8 B) + letter count (4 B) +
shingle-set sketch (4 B size + 32 B bits) = 48 B in memory; its LSH band keys (8 B per band, 256 B at
32 bands) go to one file per band when `band_dir` is given (`BandFiles`; a streamed run gives it), and
the decision reads them back one band at a time, in the processes that sort them.
During the decision, per record 17 B more (dup_of, similarity, exact flag) and, per LSH candidate
(records sharing a band bucket with another one): 16 B per band bucket it shares (`dedup_pairs.
BucketTable`: row, bucket start, rank, member; 16.5 entries per candidate on bench/scale.py's corpus at
1M records, ~265 B), 40 B of sketch bound data and ~50 B of per-row arrays (rows: every input that is
not an exact copy, and every index text). P_i, at most `bucket_depth` row numbers per
bucket a candidate shares (4 B each), goes to files, one per block of rows (`dedup_pairs.PairFiles`).
Texts are read back from the spill only for the pairs whose sketch bound reaches the threshold
(`dedup_pairs.bound_pass`) and for the rows the fact guard compares.
Signatures (4 B x num_perm per record) are kept only when a persisted index needs them, and then on
disk (`sig_file`), not in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medmill.builders.curation import minhash as mh
from medmill.builders.curation.dedup import DedupConfig, exact_keys, exact_keys_of_units
from medmill.builders.curation.dedup_pairs import Sketches, sketches

STATE_BYTES_PER_RECORD = "8 B exact key + 4 B letter count + 36 B set sketch in memory, 8 B per LSH band on disk (304 B at 32 bands)"


@dataclass
class BatchState:
    """What dedup keeps of one batch of compared texts."""

    exact: np.ndarray  # (n,) uint64 exact keys
    units: np.ndarray  # (n,) int32 letters and digits per text (0: only exact dedup applies)
    keys: np.ndarray  # (n, bands) uint64 LSH band keys (zeros where units == 0)
    sigs: np.ndarray | None = None  # (n, num_perm) uint32, only when asked for (index)
    sketch: Sketches | None = None  # shingle-set sizes and 256-bit sketches (dedup_pairs.py)


def batch_state(texts: list[str], config: DedupConfig, with_sigs: bool = False) -> BatchState:
    """Exact keys, signatures, band keys and set sketches of one batch; a text's state does not depend
    on the batch. Character shingles reuse the letters the exact keys are made of."""
    params = config.params
    bands, rows = config.bands_rows
    if params.shingle == "char":
        seq, lengths = mh.char_units(texts)
        exact, units = exact_keys_of_units(texts, seq, lengths)
        todo = np.flatnonzero(units > 0)
        hashes, offsets = mh.ngram_hashes(seq, lengths[todo], params.ngram)
    else:
        exact, units = exact_keys(texts)
        todo = np.flatnonzero(units > 0)
        hashes, offsets = params.shingles([texts[i] for i in todo])
    sigs = np.zeros((len(texts), params.num_perm), dtype=np.uint32)
    sketch = Sketches.empty(len(texts))
    if len(todo):
        sigs[todo] = mh.signatures(hashes, offsets, params.num_perm, params.seed)
        part = sketches(hashes, offsets)
        sketch.sizes[todo], sketch.bits[todo] = part.sizes, part.bits
    keys = mh.band_keys(sigs, bands, rows)
    keys[units == 0] = 0
    return BatchState(exact, units.astype(np.int32), keys, sigs if with_sigs else None, sketch)


class BandFiles:
    """LSH band keys on disk, one file per band (8 B per record each), so the decision reads one band
    at a time (`BucketTable` sorts each in a forked worker) and no process holds all of them."""

    def __init__(self, directory: Path, bands: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.bands = bands
        self.rows = 0
        for b in range(bands):
            self.path(b).write_bytes(b"")

    def path(self, band: int) -> Path:
        return self.directory / f"band-{band:03d}.u64"

    def append(self, keys: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.uint64)
        for b in range(self.bands):
            with open(self.path(b), "ab") as f:
                f.write(np.ascontiguousarray(keys[:, b]).tobytes())
        self.rows += len(keys)

    def __len__(self) -> int:
        return self.rows

    def column(self, band: int) -> np.ndarray:
        """The keys of every record in `band`."""
        return np.fromfile(self.path(band), dtype=np.uint64, count=self.rows)

    def remove(self) -> None:
        for b in range(self.bands):
            self.path(b).unlink(missing_ok=True)


@dataclass
class DedupState:
    """Batch states appended in stream order; signatures go to `sig_file` when given, LSH band keys
    to files in `band_dir` when given (else they stay in memory)."""

    config: DedupConfig
    sig_file: Path | None = None
    band_dir: Path | None = None
    _parts: list[BatchState] = field(default_factory=list)
    _sig_rows: int = 0
    _sketch: Sketches | None = None
    _bands: BandFiles | None = None

    def __post_init__(self) -> None:
        if self.band_dir is not None:
            self._bands = BandFiles(self.band_dir, self.config.bands_rows[0])

    def add(self, state: BatchState) -> None:
        if self.sig_file is not None and state.sigs is not None:
            with open(self.sig_file, "ab") as f:
                f.write(np.ascontiguousarray(state.sigs, dtype=np.uint32).tobytes())
            self._sig_rows += len(state.sigs)
        keys = state.keys
        if self._bands is not None:
            self._bands.append(keys)
            keys = np.zeros((len(state.exact), 0), np.uint64)
        self._parts.append(BatchState(state.exact, state.units, keys, sketch=state.sketch))

    def __len__(self) -> int:
        return sum(len(p.exact) for p in self._parts)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | BandFiles]:
        """(exact, units, band keys) of every record so far; the parts are released. Band keys are an
        (n, bands) array, or the `BandFiles` they were written to (`decide` takes either)."""
        bands, _ = self.config.bands_rows
        if not self._parts:
            return np.zeros(0, np.uint64), np.zeros(0, np.int32), self._bands or np.zeros((0, bands), np.uint64)
        exact = np.concatenate([p.exact for p in self._parts])
        units = np.concatenate([p.units for p in self._parts])
        keys: np.ndarray | BandFiles = self._bands if self._bands is not None else np.concatenate([p.keys for p in self._parts])
        if all(p.sketch is not None for p in self._parts):
            self._sketch = Sketches.concat([p.sketch for p in self._parts if p.sketch is not None])
        self._parts = []
        return exact, units, keys

    def sketch(self) -> Sketches | None:
        """The set sketches of every record, once `arrays` took the parts (None if a batch had none)."""
        return self._sketch

    def take_sketch(self) -> Sketches | None:
        """`sketch()`, no longer held here: the decision that takes them frees them when it is done."""
        sketch, self._sketch = self._sketch, None
        return sketch

    def signatures(self, positions: np.ndarray) -> np.ndarray:
        """Signatures of the records at `positions`, read from `sig_file`."""
        num_perm = self.config.params.num_perm
        if self.sig_file is None or not self._sig_rows:
            return np.zeros((len(positions), num_perm), np.uint32)
        table = np.memmap(self.sig_file, dtype=np.uint32, mode="r", shape=(self._sig_rows, num_perm))
        return np.array(table[positions])
