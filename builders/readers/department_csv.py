"""Dialogue corpora that carry a department: Toyhom's Chinese-medical-dialogue-data CSVs.

Header `department,title,ask,answer` (the README says `question`; Chinese headers 科室/标题/问题/回答
are accepted too), GBK/GB18030 without BOM (decoded by textio), quoted fields with commas and
newlines (the csv module, never split(','); a badly quoted row is one reject, `csvio`). `ask == "无"` is a placeholder: the title is the question.
Each record keeps the line it starts on; a row without a department or a question is a reject.
Kept small on purpose: the general dialogue readers may absorb it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medmill.builders.readers.csvio import read_csv_table
from medmill.builders.readers.textio import read_text
from medmill.schemas import RejectRow, Source
from medmill.schemas.errors import MedmillError

_COLUMNS = {
    "department": ("department", "科室", "dept"),
    "title": ("title", "标题"),
    "ask": ("ask", "question", "问题", "提问"),
    "answer": ("answer", "回答", "回复"),
}
_PLACEHOLDERS = {"", "无", "无。", "none", "null"}


@dataclass(frozen=True)
class DepartmentQuestion:
    department: str
    title: str
    ask: str
    answer: str
    file: str
    line: int

    @property
    def question(self) -> str:
        """What the patient asked: title and ask, without the 无 placeholder or a repeated title."""
        ask = "" if self.ask.strip().lower() in _PLACEHOLDERS else self.ask.strip()
        title = self.title.strip()
        if not ask or ask.startswith(title):
            return ask or title
        return f"{title}\n{ask}" if title else ask


@dataclass
class DepartmentRead:
    questions: list[DepartmentQuestion] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    files: list[Path] = field(default_factory=list)


def read_department_csv(paths: list[Path], exclude: list[Path] = ()) -> DepartmentRead:
    """Every row of every CSV under `paths` (files or directories, `.csv` inside directories)."""
    out = DepartmentRead()
    skip = [Path(x).resolve() for x in exclude]
    files: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise MedmillError(f"no such file or directory: {p}")
        found = sorted(f for f in p.rglob("*.csv") if not any(f.resolve().is_relative_to(x) for x in skip)) \
            if p.is_dir() else [p]
        if not found:
            raise MedmillError(f"{p}: directory holds no .csv files")
        files += found
    for path in files:
        _read_one(path, out)
        out.files.append(path)
    if not out.questions:
        raise MedmillError(f"no department-labelled questions in {', '.join(map(str, paths))} "
                           f"({len(out.rejects)} row(s) rejected)")
    return out


def _read_one(path: Path, out: DepartmentRead) -> None:
    decoded = read_text(path)
    out.counters[f"encodings.{decoded.encoding}"] += 1
    table = read_csv_table(decoded.text, ",")
    if table is None or table.header_error is not None:
        raise MedmillError(f"{path}: empty or unreadable CSV" + (f" (line {table.header_line}: {table.header_error})" if table else ""))
    header = [h.strip().lower().lstrip("\ufeff") for h in table.header]
    cols = {key: next((header.index(n) for n in names if n in header), None) for key, names in _COLUMNS.items()}
    if cols["department"] is None or (cols["title"] is None and cols["ask"] is None):
        raise MedmillError(f"{path}: expected a department,title,ask,answer header, got {','.join(header[:6])}")
    for got in table.rows:  # a badly quoted row is a reject on its line; the rows after it are still read
        start, row = got.line, got.cells
        if row is None:
            _reject(out, path, start, "csv_error", got.error or "unreadable row", got.raw)
            continue
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            _reject(out, path, start, "wrong_field_count", f"{len(row)} fields, header has {len(header)}", row)
            continue

        def cell(key: str, row: list[str] = row) -> str:
            i = cols[key]
            return row[i].strip() if i is not None else ""

        q = DepartmentQuestion(cell("department"), cell("title"), cell("ask"), cell("answer"), str(path), start)
        if not q.department:
            _reject(out, path, start, "no_department", "empty department", row)
        elif not q.question:
            _reject(out, path, start, "no_question", "empty title and ask", row)
        else:
            out.questions.append(q)
            out.counters["rows_read"] += 1


def _reject(out: DepartmentRead, path: Path, line: int, reason: str, message: str, raw: object) -> None:
    out.counters[f"rejected_rows.{reason}"] += 1
    out.rejects.append(RejectRow(stage="read", reason=reason, message=f"{path}:{line}: {message}",
                                 source=Source(file=str(path), line=line, builder="department_csv"), raw=raw))
