"""Triples -> entities: CSV/TSV with head/relation/tail columns, JSON {head, relation, tail} records,
CMeKG_tools `{"text", "spo_list" | "triples": [[s, p, o], …]}` records and DiseaseKG `relations.json`
records, grouped by subject.

Header names vary between dumps (head/relation/tail, subject/predicate/object, 头实体/关系/尾实体 …), so
columns are found by name; GBK files, quoted fields and CRLF are handled by textio + the csv module.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from medmill.builders.readers.csvio import CsvRow, read_csv_table, sniff_delimiter
from medmill.schemas.errors import MedmillError

HEAD_NAMES = {"head", "subject", "sub", "s", "h", "头实体", "头", "主体", "主语", "实体", "实体1", "source",
              "start", "start_entity_name", "from", "name", "entity", "名称", "实体名称"}
RELATION_NAMES = {"relation", "predicate", "pred", "rel", "r", "p", "关系", "关系类型", "属性", "谓语",
                  "relation_type", "rel_name", "rel_type", "type"}
TAIL_NAMES = {"tail", "object", "obj", "o", "t", "尾实体", "尾", "客体", "宾语", "值", "属性值", "实体2",
              "value", "target", "end", "end_entity_name", "to"}
SPO_KEYS = ("spo_list", "triples")


@dataclass
class RawTriple:
    line: int
    head: str
    relation: str
    tail: str


@dataclass
class TripleProblem:
    line: int
    reason: str
    message: str
    raw: Any


def _norm(name: str) -> str:
    return name.strip().lower().lstrip("\ufeff")


def _pick(record: dict[str, Any], names: set[str]) -> Any:
    for key, value in record.items():
        if _norm(str(key)) in names:
            return value
    return None


def _text(value: Any) -> str:
    """A triple part as one line of text: CMeIE wraps objects as {"@value": …}."""
    if isinstance(value, dict) and "@value" in value:
        value = value["@value"]
    if value is None or isinstance(value, (dict, list, bool)):
        return ""
    return " ".join(str(value).split())


def is_triple_record(record: dict[str, Any]) -> bool:
    keys = {_norm(str(k)) for k in record}
    return bool(keys & HEAD_NAMES) and bool(keys & RELATION_NAMES) and bool(keys & TAIL_NAMES)


def is_spo_record(record: dict[str, Any]) -> bool:
    return any(isinstance(record.get(k), list) for k in SPO_KEYS)


def is_rels_record(record: dict[str, Any]) -> bool:
    """DiseaseKG's relations.json: {"rel_name", "rel_type", "rels": [{"start_entity_name", "end_entity_name"}]}."""
    return isinstance(record.get("rels"), list) and ("rel_name" in record or "rel_type" in record)


def triples_from_rels(record: dict[str, Any], line: int) -> Iterator[RawTriple | TripleProblem]:
    relation = _text(record.get("rel_name")) or _text(record.get("rel_type"))
    for i, item in enumerate(record["rels"]):
        if not isinstance(item, dict):
            yield TripleProblem(line, "bad_triple", f"rels item {i} is not an object", item)
            continue
        head, tail = _text(item.get("start_entity_name")), _text(item.get("end_entity_name"))
        if not head or not relation:
            yield TripleProblem(line, "missing_field", f"rels item {i} has an empty start entity or relation", item)
            continue
        yield RawTriple(line, head, relation, tail)


def triple_from_record(record: dict[str, Any], line: int) -> RawTriple | TripleProblem:
    head = _text(_pick(record, HEAD_NAMES))
    relation = _text(_pick(record, RELATION_NAMES))
    tail = _text(_pick(record, TAIL_NAMES))
    if not head or not relation:
        return TripleProblem(line, "missing_field", "triple has an empty head or relation", record)
    return RawTriple(line, head, relation, tail)


def triple_from_list(item: list[Any], line: int) -> RawTriple | TripleProblem:
    """A bare `[subject, predicate, object]` array element."""
    head, relation, tail = (_text(x) for x in item)
    if not head or not relation:
        return TripleProblem(line, "missing_field", "triple has an empty subject or predicate", item)
    return RawTriple(line, head, relation, tail)


def is_triple_list(item: Any) -> bool:
    return isinstance(item, list) and len(item) == 3 and all(isinstance(x, (str, int, float)) for x in item)


def triples_from_spo(record: dict[str, Any], line: int) -> Iterator[RawTriple | TripleProblem]:
    """Each item of `spo_list`/`triples`: a [s, p, o] list or a CMeIE {subject, predicate, object} dict."""
    items = next(record[k] for k in SPO_KEYS if isinstance(record.get(k), list))
    for i, item in enumerate(items):
        if isinstance(item, (list, tuple)) and len(item) == 3:
            head, relation, tail = (_text(x) for x in item)
        elif isinstance(item, dict):
            head = _text(item.get("subject"))
            relation = _text(item.get("predicate"))
            tail = _text(item.get("object"))
        else:
            yield TripleProblem(line, "bad_triple", f"spo item {i} is not [subject, predicate, object]", item)
            continue
        if not head or not relation:
            yield TripleProblem(line, "missing_field", f"spo item {i} has an empty subject or predicate", item)
            continue
        yield RawTriple(line, head, relation, tail)


def iter_csv_triples(text: str, path: str) -> Iterator[RawTriple | TripleProblem]:
    """Triples of a CSV/TSV file; raises MedmillError when no head/relation/tail columns are found.

    A badly quoted row (a quote never closed) becomes a `csv_error` problem on its line and the rows
    after it are still read (csvio).
    """
    delimiter = sniff_delimiter(text)
    table = read_csv_table(text, delimiter)
    if table is None:
        raise MedmillError(f"{path}: empty file")
    if table.header_error:
        raise MedmillError(f"{path}: not a readable CSV/TSV file (line {table.header_line}: {table.header_error})")
    header, rows = table.header, table.rows
    names = [_norm(h) for h in header]
    columns = [next((i for i, n in enumerate(names) if n in group), None)
               for group in (HEAD_NAMES, RELATION_NAMES, TAIL_NAMES)]
    if None in columns:
        if len(header) == 3 and not (set(names) & (HEAD_NAMES | RELATION_NAMES | TAIL_NAMES)):
            columns = [0, 1, 2]  # headerless head<TAB>relation<TAB>tail dump: the first row is data
            rows = itertools.chain([CsvRow(line=table.header_line, cells=header)], rows)
        else:
            raise MedmillError(
                f"{path}: not a KG file: no head/relation/tail columns in the header "
                f"({', '.join(h.strip() for h in header[:8]) or 'empty'})"
            )
    width = max(columns) + 1
    for row in rows:
        if row.cells is None:
            yield TripleProblem(row.line, "csv_error", row.error or "unreadable row", row.raw)
            continue
        cells = row.cells
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) < width:
            yield TripleProblem(row.line, "wrong_column_count",
                                f"{len(cells)} column(s), expected at least {width}", delimiter.join(cells))
            continue
        head, relation, tail = (_text(cells[i]) for i in columns)
        if not head or not relation:
            yield TripleProblem(row.line, "missing_field", "empty head or relation", delimiter.join(cells))
            continue
        yield RawTriple(row.line, head, relation, tail)
