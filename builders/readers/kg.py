"""Knowledge-graph reader: files or directories in, cleaned `KGEntity`s + rejects + counters out.

Formats are sniffed from content, never from the extension (QASystem's `medical.json` is JSON Lines):
JSON / JSON Lines records are classified one by one (entity record, triple, spo record), anything else
is read as a CSV/TSV of triples. Entities with the same name (across records or files) are merged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medmill.builders.readers.kg_clean import ValueCleaner
from medmill.builders.readers.kg_entities import add_values, entity_from_record, entity_name, is_qasystem
from medmill.builders.readers.kg_triples import (
    RawTriple,
    TripleProblem,
    is_rels_record,
    is_spo_record,
    is_triple_list,
    is_triple_record,
    iter_csv_triples,
    triple_from_list,
    triple_from_record,
    triples_from_rels,
    triples_from_spo,
)
from medmill.builders.readers.textio import iter_json_items, read_text, sniff_json_layout
from medmill.builders.readers.walk import walk_files
from medmill.schemas import RejectRow, Source
from medmill.schemas.errors import MedmillError
from medmill.schemas.sources import KGEntity, SourceRef

STAGE = "read"
# Documentation beside KG files in a folder is not KG data; everything else is sniffed.
_DOC_NAMES = ("readme", "license", "licence", "notice", "changelog")


@dataclass
class KGReadResult:
    entities: list[KGEntity]
    rejects: list[RejectRow] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    files: list[Path] = field(default_factory=list)


def expand_inputs(inputs: Iterable[Path], exclude: Iterable[Path] = ()) -> list[Path]:
    """Files named directly, plus every non-hidden, non-documentation file under named directories
    that is not under an `exclude` directory (the build's own output dir inside an input folder)."""
    skip = [Path(x).resolve() for x in exclude]
    files: list[Path] = []
    for p in map(Path, inputs):
        if not p.exists():
            raise MedmillError(f"no such file or directory: {p}")
        if p.is_dir():
            found = sorted(
                f for f in walk_files(p, skip)
                if not f.name.lower().startswith(_DOC_NAMES) and f.suffix.lower() != ".md"
            )
            if not found:
                raise MedmillError(f"{p}: directory holds no KG files")
            files.extend(found)
        else:
            files.append(p)
    # one file named twice (a folder and a file in it, relative and absolute paths) is read once
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


class _Collector:
    """Accumulates entities by name (merging repeats) and rejects, for all files of one read."""

    def __init__(self) -> None:
        self.by_name: dict[str, KGEntity] = {}
        self.rejects: list[RejectRow] = []
        self.counters: Counter = Counter()
        self.cleaner = ValueCleaner(self.counters)

    def reject(self, file: Path, line: int | None, reason: str, message: str, raw: Any = None) -> None:
        self.counters[f"rejected_records.{reason}"] += 1
        self.rejects.append(
            RejectRow(stage=STAGE, reason=reason, message=message, source=Source(file=str(file), line=line), raw=raw)
        )

    def add(self, entity: KGEntity) -> None:
        known = self.by_name.get(entity.name)
        if known is None:
            self.by_name[entity.name] = entity
            return
        self.counters["entities_merged"] += 1
        for label, values in entity.relations.items():
            add_values(known.relations, label, values)
        for label, text in entity.attributes.items():
            if label not in known.attributes:
                known.attributes[label] = text
            elif known.attributes[label] != text:
                self.counters["attribute_conflicts_kept_first"] += 1
        if known.type is None:
            known.type = entity.type


def read_kg(inputs: Sequence[Path], exclude: Sequence[Path] = ()) -> KGReadResult:
    """Read every KG file under `inputs` (files or directories), leaving out `exclude` directories."""
    files = expand_inputs(inputs, exclude)
    explicit = {Path(p).resolve() for p in inputs if Path(p).is_file()}
    col = _Collector()
    for path in files:
        n_rejects, counters = len(col.rejects), col.counters.copy()
        try:
            fmt = _read_file(path, col)
        except MedmillError as e:
            if path.resolve() in explicit:
                raise
            # a stray file in an input folder: one reject for the file (not one per line), keep going
            del col.rejects[n_rejects:]
            col.counters.clear()
            col.counters.update(counters)
            col.reject(path, None, "unrecognised_file", str(e))
            continue
        col.counters[f"files.{fmt}"] += 1
    entities = list(col.by_name.values())
    if not entities:
        raise MedmillError(f"no KG entities found in {', '.join(str(p) for p in inputs)}")
    col.counters["entities_read"] = len(entities)
    return KGReadResult(entities, col.rejects, col.counters, files)


def _read_file(path: Path, col: _Collector) -> str:
    decoded = read_text(path)
    if "\x00" in decoded.text:
        raise MedmillError(f"{path}: binary file, not a KG (JSON, JSON Lines, CSV or TSV)")
    col.counters[f"encodings.{decoded.encoding}"] += 1
    if sniff_json_layout(decoded.text) == "none":
        triples = list(iter_csv_triples(decoded.text, str(path)))
        _add_triples(path, triples, col)
        return "csv_triples"
    return _read_json(path, decoded, col)


def _read_json(path: Path, decoded, col: _Collector) -> str:
    kinds: Counter = Counter()
    triples: list[RawTriple | TripleProblem] = []
    items = list(iter_json_items(decoded))
    if items and all(item.error for item in items):
        raise MedmillError(f"{path}: not a KG file: no record parses as JSON (line {items[0].line}: {items[0].error})")
    for item in items:
        if item.error:
            col.reject(path, item.line, "invalid_json", item.error, item.raw)
            continue
        record = item.value
        if is_triple_list(record):
            kinds["triples"] += 1
            triples.append(triple_from_list(record, item.line))
            continue
        if not isinstance(record, dict):
            col.reject(path, item.line, "not_an_object", f"expected a JSON object, got {type(record).__name__}",
                       record)
            continue
        if is_spo_record(record):
            kinds["spo"] += 1
            triples.extend(triples_from_spo(record, item.line))
        elif is_rels_record(record):
            kinds["diseasekg_relations"] += 1
            triples.extend(triples_from_rels(record, item.line))
        elif is_triple_record(record):
            kinds["triples"] += 1
            triples.append(triple_from_record(record, item.line))
        else:
            kinds[_read_entity_record(path, item.line, record, col)] += 1
    _add_triples(path, triples, col)
    recognised = {k: n for k, n in kinds.items() if k != "unknown"}
    if not recognised:
        raise MedmillError(
            f"{path}: not a KG file: no entity records (中心词/name), triples (head/relation/tail), spo_list "
            "or DiseaseKG rels"
        )
    return max(recognised, key=lambda k: (recognised[k], k))




def _read_entity_record(path: Path, line: int, record: dict[str, Any], col: _Collector) -> str:
    key, name = entity_name(record)
    if key is None:
        col.reject(path, line, "unknown_record_shape",
                   "no entity name (中心词/name), no head/relation/tail and no spo_list", _short(record))
        return "unknown"
    if not name:
        col.reject(path, line, "missing_name", f"`{key}` is empty or not a string", _short(record))
        return "qasystem" if is_qasystem(record) else "entities"
    qasystem = is_qasystem(record)
    entity = entity_from_record(record, key, name, SourceRef(file=str(path), line=line), col.cleaner)
    col.add(entity)
    return "qasystem" if qasystem else "entities"


def _add_triples(path: Path, triples: Iterable[RawTriple | TripleProblem], col: _Collector) -> None:
    """Group triples by head into entities (first line of a head is the entity's line)."""
    grouped: dict[str, KGEntity] = {}
    for t in _checked(path, triples, col):
        entity = grouped.get(t.head)
        if entity is None:
            entity = grouped[t.head] = KGEntity(name=t.head, ref=SourceRef(file=str(path), line=t.line))
        col.counters["triples_read"] += 1
        add_values(entity.relations, t.relation, col.cleaner.clean_list([t.tail], entity=t.head))
    for entity in grouped.values():
        col.add(entity)


def _checked(path: Path, triples: Iterable[RawTriple | TripleProblem], col: _Collector) -> Iterator[RawTriple]:
    for t in triples:
        if isinstance(t, TripleProblem):
            col.reject(path, t.line, t.reason, t.message, t.raw)
        else:
            yield t


def _short(record: dict[str, Any]) -> dict[str, Any]:
    """A reject's raw copy, without megabytes of text."""
    return {k: (v[:200] + "…" if isinstance(v, str) and len(v) > 200 else v) for k, v in list(record.items())[:20]}
