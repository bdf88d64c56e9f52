"""Read literature records (title, conclusion, optional abstract, year, journal, doi, keywords) from
JSON arrays, JSON Lines and CSV files, with field names mapped by the user (`title=题目`).

Every record that cannot be used (no title, no conclusion, not an object, broken line) becomes a reject
row naming file and line; the same paper twice (same DOI, else same title) is kept once.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medmill.builders.readers.documents import collect_files, not_text_problem, unwrap_keyed_object
from medmill.builders.readers.textio import DecodedText, detect_encoding, iter_json_items, sniff_json_layout
from medmill.schemas import LiteratureRecord, RejectRow, Source
from medmill.schemas.errors import MedmillError
from medmill.schemas.records import normalise_for_compare
from medmill.schemas.sources import SourceRef

FIELDS = ("title", "conclusion", "abstract", "year", "journal", "doi", "keywords")
ALIASES: dict[str, tuple[str, ...]] = {
    "title": ("title", "Title", "题目", "标题", "篇名", "文献标题"),
    "conclusion": ("conclusion", "conclusions", "Conclusion", "结论", "研究结论", "主要结论"),
    "abstract": ("abstract", "Abstract", "摘要"),
    "year": ("year", "Year", "pub_year", "年份", "发表年份", "年"),
    "journal": ("journal", "Journal", "source", "期刊", "刊名", "来源"),
    "doi": ("doi", "DOI"),
    "keywords": ("keywords", "keyword", "Keywords", "关键词", "关键字"),
}
INCLUDE = ("*.json", "*.jsonl", "*.csv", "*.tsv", "*.txt")
_KEYWORD_SEP = re.compile(r"\s*[;；,，、|]\s*")


@dataclass
class LiteratureRead:
    records: list[LiteratureRecord] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def parse_field_map(pairs: Sequence[str]) -> dict[str, str]:
    """['title=题目', 'conclusion=结论'] -> {'title': '题目', ...}; unknown targets are an error."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        target, sep, column = pair.partition("=")
        target, column = target.strip(), column.strip()
        if not sep or not column:
            raise MedmillError(f"--field {pair!r}: expected FIELD=COLUMN, e.g. title=题目")
        if target not in FIELDS:
            raise MedmillError(f"--field {pair!r}: unknown field {target!r}; one of {', '.join(FIELDS)}")
        mapping[target] = column
    return mapping


def read_literature(inputs: Iterable[Path], field_map: Mapping[str, str] | None = None,
                    skip: Iterable[Path] = ()) -> LiteratureRead:
    """Literature records from every input file; `skip` leaves out the build's own out dir and cache."""
    out = LiteratureRead()
    files = collect_files(inputs, include=INCLUDE, skip=skip)
    if not files:
        raise MedmillError("no literature files found (JSON, JSON Lines or CSV)")
    seen: dict[str, str] = {}
    for path, name in files:
        out.files.append(path)
        for line, row, error in _rows(path, name):
            src = Source(file=name, line=line, builder="literature")
            if error is not None:
                out.rejects.append(
                    RejectRow(stage="read", reason=error[0], message=error[1], source=src, raw=row)
                )
                continue
            record, problem = _record(row, field_map or {}, name, line)
            if problem is not None:
                out.rejects.append(
                    RejectRow(stage="read", reason=problem[0], message=problem[1], source=src, raw=row)
                )
                continue
            key = paper_key(record)
            if key in seen:
                out.rejects.append(
                    RejectRow(
                        stage="read",
                        reason="duplicate_paper",
                        message=f"same paper as {seen[key]}",
                        source=src,
                        raw=row,
                    )
                )
                continue
            seen[key] = f"{name}:{line}"
            out.records.append(record)
    return out


_DOI_PREFIX = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:\s*)", re.IGNORECASE)


def paper_key(record: LiteratureRecord) -> str:
    """Same DOI (with or without a doi.org / doi: prefix), else same normalised title."""
    if record.doi:
        return f"doi:{_DOI_PREFIX.sub('', record.doi.strip()).lower()}"
    return f"title:{normalise_for_compare(record.title)}"


def _rows(path: Path, name: str):
    """(line, row dict, None) or (line, raw, (reason, message)) for every record of a file."""
    try:
        data = path.read_bytes()
        problem = not_text_problem(data)
        if problem is not None:
            raise MedmillError(problem)
        encoding = detect_encoding(data)
    except (OSError, MedmillError) as e:
        yield None, None, ("unreadable", f"{name}: {e}")
        return
    text = data.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
    if sniff_json_layout(text) != "none":
        try:
            items = [
                item
                for _, item in unwrap_keyed_object(list(iter_json_items(DecodedText(path, text, encoding))))
            ]
        except MedmillError as e:
            yield None, None, ("not_json", str(e))
            return
        for item in items:
            if item.error:
                yield item.line, item.raw, ("invalid_json", item.error)
            elif isinstance(item.value, dict):
                yield item.line, item.value, None
            else:
                yield (
                    item.line,
                    item.value,
                    ("not_an_object", f"a JSON {type(item.value).__name__}, expected an object"),
                )
        return
    header = text.lstrip("\n").split("\n", 1)[0]
    tabs = path.suffix.lower() == ".tsv" or header.count("\t") > header.count(",")
    # abstracts can be long: lift the csv module's 128 KiB cell limit for this file
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))
    try:
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if tabs else ",")
        if not reader.fieldnames:
            yield None, None, ("empty", f"{name}: no header row")
            return
        start = 2
        try:
            for row in reader:
                extra = row.pop(None, None)
                if extra:
                    yield start, row, ("bad_csv_row", f"{len(extra)} more cells than the header has")
                else:
                    yield start, row, None
                start = reader.line_num + 1
        except csv.Error as e:
            yield start, None, ("bad_csv", f"{name}: unreadable CSV from line {start} on: {e}")
    finally:
        csv.field_size_limit(limit)


def _pick(row: Mapping[str, Any], target: str, field_map: Mapping[str, str]) -> Any:
    if target in field_map:
        return row.get(field_map[target])
    return next((row[k] for k in ALIASES[target] if row.get(k) not in (None, "")), None)


def _record(
    row: Mapping[str, Any], field_map: Mapping[str, str], name: str, line: int | None
) -> tuple[LiteratureRecord | None, tuple[str, str] | None]:
    values = {t: _pick(row, t, field_map) for t in FIELDS}
    if not (isinstance(values["conclusion"], str) and values["conclusion"].strip()):
        values["conclusion"] = _conclusion_from_abstract(values["abstract"]) or values["conclusion"]
    for required in ("title", "conclusion"):
        v = values[required]
        if not isinstance(v, str) or not v.strip():
            present = [field_map[required]] if required in field_map else []
            present = [c for c in present or ALIASES[required] if c in row]
            if present and v is not None and not isinstance(v, str):
                message = f"{required} (column {present[0]}) is a {type(v).__name__}, expected text"
            elif present:
                message = f"{required} is empty (column {present[0]})"
            else:
                column = field_map.get(required, "/".join(ALIASES[required]))
                message = f"no {required} (column {column}); map it with --field {required}=COLUMN"
            return None, (f"no_{required}", message)
    keywords = values["keywords"]
    if isinstance(keywords, str):
        keywords = [k for k in _KEYWORD_SEP.split(keywords.strip()) if k]
    elif isinstance(keywords, list):
        keywords = [str(k).strip() for k in keywords if str(k).strip()]
    else:
        keywords = []
    try:
        record = LiteratureRecord(
            title=values["title"].strip(),
            conclusion=values["conclusion"].strip(),
            abstract=_text_or_none(values["abstract"]),
            year=_year(values["year"]),
            journal=_text_or_none(values["journal"]),
            doi=_text_or_none(values["doi"]),
            keywords=keywords,
            ref=SourceRef(file=name, line=line),
        )
    except ValidationError as e:
        err = e.errors()[0]
        return None, ("invalid_record", f"{'.'.join(map(str, err['loc']))}: {err['msg']}")
    return record, None


_ABSTRACT_CONCLUSION = re.compile(
    r"(?:^|[\s。.;；])(?:[\[【〔(（](?:结论|Conclusions?)[\]】〕)）]\s*[：:]?|(?:结论|Conclusions?)\s*[：:])\s*(\S.*)$",
    re.S | re.I,
)


def _conclusion_from_abstract(abstract: Any) -> str | None:
    """The 结论 / Conclusion(s) part of a structured abstract (目的…方法…结果…结论：…), when there is one."""
    if not isinstance(abstract, str):
        return None
    m = _ABSTRACT_CONCLUSION.search(abstract.strip())
    return m.group(1).strip() if m else None


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def _year(value: Any) -> int | None:
    """2021, '2021', '2021-05-01' -> 2021; anything without a plausible year -> None."""
    if isinstance(value, int) and 1800 <= value <= 2100:
        return value
    m = re.search(r"(18|19|20)\d{2}", str(value or ""))
    return int(m.group(0)) if m else None
