"""CSV/TSV rows with the line each starts on, shared by every reader of delimited files.

The csv module, left to itself, lets one cell that opens a quote and never closes it swallow every
later row of the file into that cell (silent loss). Here rows are parsed strictly: a badly quoted
row becomes an error row naming its first line, and reading goes on at the line after it, so the
rows behind a stray quote are still read. Quoted cells that span lines and close properly (GBK
CSVs with multi-line answers) stay one cell.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class CsvRow:
    """One row: `cells` is set, or `error` says why the row starting on `line` could not be read."""

    line: int
    cells: list[str] | None = None
    error: str | None = None
    raw: str | None = None


def sniff_delimiter(text: str, default: str = ",") -> str:
    """Tab, comma, semicolon or bar: the most frequent in the first non-blank line (comma on ties)."""
    first = next((line for line in text.split("\n") if line.strip()), "")
    counts = {d: first.count(d) for d in ("\t", ",", ";", "|")}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else default


def _lines_from(lines: list[str], start: int) -> Iterator[str]:
    for i in range(start, len(lines)):
        yield lines[i]


def iter_csv_rows(text: str, delimiter: str) -> Iterator[CsvRow]:
    """Every row of `text` (LF line ends), blank rows included as empty cell lists, in order."""
    lines = [line + "\n" for line in text.split("\n")]
    if lines and lines[-1] == "\n":
        lines.pop()  # the text ended with a newline: no empty last line
    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(old_limit, len(text) + 1))  # long abstracts / answers are fine
    try:
        pos = 0  # index of the first line the current reader sees
        while pos < len(lines):
            reader = csv.reader(_lines_from(lines, pos), delimiter=delimiter, strict=True)
            done = 0  # lines consumed by complete rows of this reader
            try:
                for cells in reader:
                    yield CsvRow(line=pos + done + 1, cells=cells)
                    done = reader.line_num
                return
            except csv.Error as e:
                first = pos + done  # 0-based index of the line the broken row starts on
                yield CsvRow(line=first + 1, error=_describe(e, first + 1, pos + reader.line_num),
                             raw=lines[first].rstrip("\n")[:2000])
                pos = first + 1  # the row's own line is lost; everything after it is read again
    finally:
        csv.field_size_limit(old_limit)


def _describe(error: csv.Error, first: int, last: int) -> str:
    message = str(error)
    if "unexpected end of data" in message or "field larger than field limit" in message:
        return f"a quote opened on line {first} is never closed; the row is skipped and reading goes on at line {first + 1}"
    if last > first:
        return (f"unbalanced quote: the quote opened on line {first} runs on to line {last} ({message}); "
                f"the row is skipped and reading goes on at line {first + 1}")
    return f"badly quoted row ({message})"


@dataclass
class CsvTable:
    """A header row and the rows after it (`header_error` set when the header row itself is broken)."""

    header: list[str]
    header_line: int
    rows: Iterator[CsvRow]
    header_error: str | None = None


def read_csv_table(text: str, delimiter: str) -> CsvTable | None:
    """The first non-blank row as header, the rest as rows; None for a file without rows."""
    rows = iter_csv_rows(text, delimiter)
    for row in rows:
        if row.error is not None:
            return CsvTable(header=[], header_line=row.line, rows=rows, header_error=row.error)
        if row.cells is not None and any(c.strip() for c in row.cells):
            return CsvTable(header=row.cells, header_line=row.line, rows=rows)
    return None


def row_dict(header: list[str], cells: list[str]) -> tuple[dict[str, str | None], int]:
    """A row as {column: cell} (None for missing cells) and how many cells it has beyond the header."""
    values: dict[str, str | None] = {name: (cells[i] if i < len(cells) else None) for i, name in enumerate(header)}
    return values, max(0, len(cells) - len(header))
