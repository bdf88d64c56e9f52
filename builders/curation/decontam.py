"""Decontamination: remove training records that share a long n-gram with an evaluation set.

Texts are compared as their letters and digits (NFKC, lower case; whitespace and punctuation
ignored), in character n-grams (13 by default) hashed to 64 bits. An eval text shorter than n but at
least `min_short` characters is matched whole (an exact containment check), so short exam
questions (CMExam / TCMChat choice items are often 10-20 characters) are still caught.

Eval sets: a medmill dataset dir, or JSON / JSON Lines / CSV files. From JSON objects and CSV rows
every string field is used except template-like ones (`instruction`, `system`), unless a field is named.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medmill.builders.curation import minhash as mh
from medmill.schemas.errors import MedmillError

SKIP_FIELDS = {"instruction", "system", "id", "idx", "_id", "label", "category", "type"}


@dataclass
class EvalText:
    origin: str  # file:line or dir:id
    text: str


def _strings(value: object, field_name: str | None) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        if field_name is not None:
            v = value.get(field_name)
            return _strings(v, None) if v is not None else []
        return [s for k, v in value.items() if k not in SKIP_FIELDS for s in _strings(v, None)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v, field_name)]
    return []


def load_eval_texts(path: Path, field_name: str | None = None) -> list[EvalText]:
    from medmill.builders.readers.textio import iter_json_items, read_text, sniff_json_layout

    path = Path(path)
    if path.is_dir():
        from medmill.builders.curation.text import record_text
        from medmill.schemas import record_class
        from medmill.schemas.dataset_dir import detect_kind, iter_rows

        kind = detect_kind(path)
        cls = record_class(kind)
        out = []
        for _split, _f, _i, row in iter_rows(path):
            rec = cls.from_row(row)
            fields = {"sft": ["user", "assistant"], "preference": ["prompt", "chosen"], "pretrain": ["text"]}[kind]
            out.append(EvalText(f"{path.name}:{rec.id}", record_text(rec, fields)))
        return out
    decoded = read_text(path)
    out = []
    if sniff_json_layout(decoded.text) != "none":
        for item in iter_json_items(decoded):
            if item.error is None:
                out += [EvalText(f"{path.name}:{item.line}", s) for s in _strings(item.value, field_name)]
        return out
    if path.suffix.lower() in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(decoded.text), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        if field_name is not None and field_name not in (reader.fieldnames or []):
            raise MedmillError(f"{path}: no column {field_name!r} (columns: {reader.fieldnames})")
        for i, row in enumerate(reader, start=2):
            out += [EvalText(f"{path.name}:{i}", s) for s in _strings(dict(row), field_name)]
        return out
    return [EvalText(f"{path.name}:{i}", line) for i, line in enumerate(decoded.text.splitlines(), start=1) if line.strip()]


@dataclass
class ContaminationMatch:
    index: int  # position of the training text
    eval_origin: str
    ngram: str


@dataclass
class EvalIndex:
    """Sorted 64-bit n-gram hashes of every eval text, with the eval text each came from."""

    n: int
    grams: np.ndarray
    owner: np.ndarray
    texts: list[EvalText]
    short_lengths: list[int] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, paths: list[Path], n: int = 13, min_short: int = 8, field_name: str | None = None) -> EvalIndex:
        texts: list[EvalText] = []
        for p in paths:
            if not Path(p).exists():
                raise MedmillError(f"--decontaminate {p}: no such file or directory")
            texts += load_eval_texts(Path(p), field_name)
        seq, lengths = mh.char_units([t.text for t in texts])
        keep = lengths >= min_short
        grams, owner, shorts = [], [], set()
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else np.zeros(0, np.int64)
        for size in sorted({int(x) for x in lengths[keep]} & set(range(min_short, n))) + [n]:
            sel = np.flatnonzero(keep & ((lengths == size) if size < n else (lengths >= n)))
            if not len(sel):
                continue
            sub = np.concatenate([seq[starts[i] : starts[i] + lengths[i]] for i in sel])
            h, off = mh.ngram_hashes(sub, lengths[sel], size, wide=True)
            counts = np.diff(np.append(off, len(h)))
            grams.append(h)
            owner.append(np.repeat(sel, counts))
            if size < n:
                shorts.add(size)
        if grams:
            g, o = np.concatenate(grams), np.concatenate(owner)
            order = np.argsort(g, kind="stable")
            g, o = g[order], o[order]
        else:
            g, o = np.zeros(0, np.uint64), np.zeros(0, np.int64)
        return cls(n, g, o, texts, sorted(shorts), [str(p) for p in paths])

    def matches(self, texts: list[str]) -> list[ContaminationMatch]:
        """The first match of each contaminated training text (texts without one are clean)."""
        found: dict[int, ContaminationMatch] = {}
        if not len(self.grams) or not texts:
            return []
        seq, lengths = mh.char_units(texts)
        for size in [self.n, *self.short_lengths]:
            h, off = mh.ngram_hashes(seq, lengths, size, wide=True)
            counts = np.diff(np.append(off, len(h)))
            real = np.repeat(lengths >= size, counts)  # a text shorter than `size` gives a padded hash
            pos = np.searchsorted(self.grams, h)
            pos_ok = np.minimum(pos, len(self.grams) - 1)
            hit = (self.grams[pos_ok] == h) & real
            if not hit.any():
                continue
            doc_of = np.repeat(np.arange(len(texts)), counts)
            for k in np.flatnonzero(hit):
                d = int(doc_of[k])
                if d in found:
                    continue
                clean = mh.clean_for_shingles(texts[d])
                start = int(k - off[d])
                ev = self.texts[int(self.owner[pos_ok[k]])]
                found[d] = ContaminationMatch(d, ev.origin, clean[start : start + size])
        return [found[d] for d in sorted(found)]
