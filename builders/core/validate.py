"""`medmill validate`: check every record of a dataset dir against its kind's schema."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from medmill.schemas import record_class
from medmill.schemas.dataset_dir import detect_kind, iter_rows, read_manifest


@dataclass
class Problem:
    split: str
    file: str
    row: int
    record_id: str | None
    message: str


@dataclass
class ValidationReport:
    path: str
    kind: str
    records: Counter = field(default_factory=Counter)
    invalid: int = 0
    duplicate_ids: int = 0
    problems: list[Problem] = field(default_factory=list)
    manifest_mismatch: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.invalid == 0 and self.duplicate_ids == 0 and not self.manifest_mismatch


def _short(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e["loc"])
        parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
    return "; ".join(parts)


def validate_dir(path: Path, *, keep: int = 20) -> ValidationReport:
    kind = detect_kind(path)
    cls = record_class(kind)
    report = ValidationReport(path=str(path), kind=kind)
    seen: set[str] = set()
    for split, f, i, row in iter_rows(path):
        report.records[split] += 1
        rid = row.get("id")
        messages = []
        try:
            cls.from_row(row)
        except ValidationError as e:
            messages.append(_short(e))
        except (ValueError, TypeError) as e:
            messages.append(f"unreadable record: {e}")
        if messages:
            report.invalid += 1
        if rid in seen:
            report.duplicate_ids += 1
            messages.append(f"duplicate id {rid}")
        elif rid:
            seen.add(rid)
        if messages and len(report.problems) < keep:
            report.problems.append(Problem(split, f.name, i, rid, "; ".join(messages)))
    manifest = read_manifest(path)
    if manifest:
        for split, info in (manifest.get("splits") or {}).items():
            if report.records.get(split, 0) != info.get("records"):
                report.manifest_mismatch.append(
                    f"manifest says {split} has {info.get('records')} records, data has {report.records.get(split, 0)}"
                )
    return report
