"""`medmill report`: one self-contained HTML page to look at one or several dataset dirs.

Everything is inline (CSS, SVG charts); the page loads nothing from the network and reads well in
Chinese (CJK font stack, wrapping of long unbroken text).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import pyarrow.parquet as pq
from markupsafe import Markup, escape

from medmill.builders.core.fileinfo import describe_os_error
from medmill.builders.curation.pii import PIIScanner
from medmill.builders.publish.stats import DatasetStats, Distribution, compute_stats
from medmill.schemas.dataset_dir import detect_kind, read_manifest, shard_errors, split_files
from medmill.schemas.errors import MedmillError
from medmill.schemas.records import meta_of

_PII = PIIScanner()
SAMPLE_RECORDS = 8
REJECT_EXAMPLES = 3
MAX_CLUSTERS = 20
MAX_TEXT = 600
PII_SAFETY_WORDS = ("pii", "safety", "unsafe", "phone", "id_card", "email", "privacy", "toxic", "danger")


@dataclass
class RejectGroup:
    reason: str
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Cluster:
    kept_id: str
    kept_text: str
    members: list[dict[str, Any]]


@dataclass
class DatasetView:
    """Everything the page shows about one dataset dir."""

    path: Path
    name: str
    kind: str
    manifest: dict[str, Any]
    stats: DatasetStats
    samples: list[dict[str, Any]]
    rejects: list[RejectGroup]
    rejects_unreadable: int
    clusters: list[Cluster] | None
    clusters_total: int
    clusters_unreadable: int
    pii_safety: list[tuple[str, str, Any]]
    curation: list[tuple[str, list[tuple[str, Any]]]]
    anchor: str = ""


def _clip(text: Any, limit: int = MAX_TEXT) -> str:
    text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


def _shown(value: Any, limit: int) -> str:
    """A reject's text for the page, PII redacted first: rejects.jsonl keeps the raw input (records
    dropped for PII among them), but a report is made to be looked at and passed around."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return _clip(_PII.redact(text)[0], limit)


def _samples(path: Path, n: int = SAMPLE_RECORDS) -> list[dict[str, Any]]:
    """`n` records spread evenly over the first shard of train (or of the first split)."""
    try:
        shards = split_files(path)
    except MedmillError:  # a build that kept no record (e.g. every one a duplicate): nothing to sample
        if (path / "manifest.json").exists():
            return []
        raise
    files = shards.get("train") or next(iter(shards.values()))
    with shard_errors(files[0]):
        parquet = pq.ParquetFile(files[0])
        total = parquet.metadata.num_rows
        if total == 0:
            return []
        table = parquet.read()
    picks = sorted({int(i * total / min(n, total)) for i in range(min(n, total))})
    rows = table.take(picks).to_pylist()
    for row in rows:
        meta = meta_of(row.get("meta"))
        if meta is not None:
            row["meta"] = meta
    return rows


def _rejects(path: Path) -> tuple[list[RejectGroup], int]:
    groups: dict[str, RejectGroup] = {}
    unreadable = 0
    f = path / "rejects.jsonl"
    if not f.exists():
        return [], 0
    with open(f, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                reason = f"{row.get('stage', '?')}/{row.get('reason', '?')}"
            except (json.JSONDecodeError, AttributeError):
                unreadable += 1
                continue
            group = groups.setdefault(reason, RejectGroup(reason))
            group.count += 1
            if len(group.examples) < REJECT_EXAMPLES:
                src = row.get("source") or {}
                where = ":".join(str(x) for x in (src.get("file"), src.get("line") or src.get("offset")) if x)
                group.examples.append(
                    {"message": _shown(row.get("message", ""), 300), "where": where, "raw": _shown(row.get("raw"), 400)}
                )
    return sorted(groups.values(), key=lambda g: -g.count), unreadable


def _cluster_rows(path: Path, manifest: dict[str, Any]) -> tuple[list[Any] | None, int]:
    """Raw cluster rows: clusters.jsonl, else the examples the dedup stage kept in the manifest."""
    f = path / "clusters.jsonl"
    if f.exists():
        rows: list[Any] = []
        unreadable = 0
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        unreadable += 1
        return rows, unreadable
    for stats in (manifest.get("curation") or {}).values():
        if isinstance(stats, dict) and isinstance(stats.get("cluster_examples"), list):
            return stats["cluster_examples"], 0
    return None, 0


def _clusters(path: Path, manifest: dict[str, Any]) -> tuple[list[Cluster] | None, int, int]:
    """Largest duplicate clusters (None when neither clusters.jsonl nor the manifest has any)."""
    rows, unreadable = _cluster_rows(path, manifest)
    if rows is None:
        return None, 0, 0
    clusters: list[Cluster] = []
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("members"), list):
            unreadable += 1  # another shape: counted, not guessed at
            continue
        members = [
            {"id": str(m.get("id", "")), "text": _clip(m.get("text", ""), 300), "similarity": m.get("similarity")}
            for m in row["members"]
            if isinstance(m, dict)
        ]
        clusters.append(Cluster(str(row.get("kept_id", "")), _clip(row.get("kept_text", ""), 300), members))
    clusters.sort(key=lambda c: -len(c.members))
    return clusters[:MAX_CLUSTERS], len(clusters), unreadable


def _flat(stats: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if not isinstance(stats, dict):
        return [(prefix or "value", stats)]
    rows: list[tuple[str, Any]] = []
    for k, v in stats.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, list) and any(isinstance(x, dict) for x in v):
            continue  # examples such as dedup's cluster_examples have their own section
        rows.extend(_flat(v, key) if isinstance(v, dict) else [(key, _clip(v, 200) if isinstance(v, list) else v)])
    return rows


def _pii_safety(manifest: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(where, measure, value) for every curation/counter/reject entry about PII or safety."""
    hits: list[tuple[str, str, Any]] = []
    for stage, stats in (manifest.get("curation") or {}).items():
        for key, value in _flat(stats):
            if any(w in f"{stage}.{key}".lower() for w in PII_SAFETY_WORDS):
                hits.append((f"curation.{stage}", key, value))
    for key, value in (manifest.get("counters") or {}).items():
        if any(w in key.lower() for w in PII_SAFETY_WORDS):
            hits.append(("counters", key, value))
    for key, value in (manifest.get("rejects_by_reason") or {}).items():
        if any(w in key.lower() for w in PII_SAFETY_WORDS):
            hits.append(("rejects", key, value))
    return hits


def load_view(path: Path) -> DatasetView:
    path = Path(path)
    kind = detect_kind(path)
    manifest = read_manifest(path) or {}
    rejects, bad_rejects = _rejects(path)
    clusters, n_clusters, bad_clusters = _clusters(path, manifest)
    return DatasetView(
        path=path,
        name=path.resolve().name,
        kind=kind,
        manifest=manifest,
        stats=compute_stats(path, kind),
        samples=_samples(path),
        rejects=rejects,
        rejects_unreadable=bad_rejects,
        clusters=clusters,
        clusters_total=n_clusters,
        clusters_unreadable=bad_clusters,
        pii_safety=_pii_safety(manifest),
        # the builder's own tables (manifest `stats`; per-item tables are in the card) beside the curation stages
        curation=[(f"{name} (build)", _flat(s)) for name, s in (manifest.get("stats") or {}).items() if isinstance(s, dict)]
        + [(stage, _flat(s)) for stage, s in (manifest.get("curation") or {}).items()],
    )


# --- inline SVG charts -------------------------------------------------------------------------


def histogram_svg(dist: Distribution, label: str, color: str = "#3b82f6", width: int = 460, height: int = 150) -> Markup:
    """A bar histogram as inline SVG (axis labels in the page font, so CJK renders)."""
    counts, edges = dist.histogram(bins=24)
    if not counts:
        return Markup("<p class='muted'>no data</p>")
    pad_l, pad_b, pad_t = 40, 22, 8
    plot_w, plot_h = width - pad_l - 8, height - pad_b - pad_t
    top = max(counts) or 1
    bar_w = plot_w / len(counts)
    parts = [
        f"<svg class='hist' viewBox='0 0 {width} {height}' width='{width}' height='{height}' role='img' "
        f"aria-label='{escape(label)}'>"
    ]
    for i, c in enumerate(counts):
        h = plot_h * c / top
        x = pad_l + i * bar_w
        parts.append(
            f"<rect x='{x:.1f}' y='{pad_t + plot_h - h:.1f}' width='{max(bar_w - 1, 1):.1f}' height='{h:.1f}' "
            f"fill='{color}'><title>{edges[i]:.0f}–{edges[i + 1]:.0f}: {c}</title></rect>"
        )
    axis_y = pad_t + plot_h
    parts.append(f"<line x1='{pad_l}' y1='{axis_y}' x2='{width - 8}' y2='{axis_y}' stroke='#9ca3af'/>")
    parts.append(f"<text x='{pad_l}' y='{height - 6}' class='tick'>{edges[0]:.0f}</text>")
    parts.append(f"<text x='{width - 8}' y='{height - 6}' class='tick' text-anchor='end'>{edges[-1]:.0f}</text>")
    parts.append(f"<text x='{pad_l - 4}' y='{pad_t + 10}' class='tick' text-anchor='end'>{top}</text>")
    parts.append(f"<text x='{pad_l - 4}' y='{axis_y}' class='tick' text-anchor='end'>0</text>")
    parts.append("</svg>")
    return Markup("".join(parts))


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """One environment per process: the report template is package data, compiled once (~0.1 s)."""

    def load(name: str) -> str:
        return resources.files("medmill.builders.publish").joinpath("templates", name).read_text(encoding="utf-8")

    env = jinja2.Environment(loader=jinja2.FunctionLoader(load), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda v: f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else v
    env.filters["clip"] = _clip
    env.globals["histogram_svg"] = histogram_svg
    return env


def comparison_rows(views: list[DatasetView]) -> list[tuple[str, list[Any]]]:
    """Metrics side by side, one column per dataset."""
    rows: list[tuple[str, list[Any]]] = [
        ("kind", [v.kind for v in views]),
        ("builder", [v.manifest.get("builder", "?") for v in views]),
        ("records", [v.stats.total for v in views]),
    ]
    splits = sorted({s for v in views for s in v.stats.records})
    rows += [(f"records in {s}", [v.stats.records.get(s, 0) for v in views]) for s in splits]
    rows.append(("rejects", [sum(g.count for g in v.rejects) for v in views]))
    fields = list(dict.fromkeys(f for v in views for f in v.stats.chars))
    for f in fields:
        rows.append(
            (f"{f} chars p50 / p90", [(f"{v.stats.chars[f].quantile(0.5)} / {v.stats.chars[f].quantile(0.9)}" if f in v.stats.chars else "–") for v in views])
        )
    rows.append(("duplicate clusters", [v.clusters_total if v.clusters is not None else "–" for v in views]))
    rows.append(("PII / safety entries", [len(v.pii_safety) for v in views]))
    return rows


def render_report(dirs: list[Path], title: str | None = None) -> str:
    if not dirs:
        raise MedmillError("give at least one dataset dir")
    views = [load_view(Path(d)) for d in dirs]
    counts = Counter(v.name for v in views)
    for i, v in enumerate(views):
        if counts[v.name] > 1:
            v.name = f"{v.name} ({v.path})"
        v.anchor = f"ds{i}"
    return _environment().get_template("report.html.j2").render(
        title=title or ("medmill report: " + ", ".join(v.name for v in views)),
        views=views,
        comparison=comparison_rows(views) if len(views) > 1 else [],
        colors=("#3b82f6", "#10b981", "#ef4444", "#f59e0b"),
    )


def write_report(dirs: list[Path], out: Path, title: str | None = None) -> Path:
    html = render_report(dirs, title)
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(html, encoding="utf-8")
    except OSError as e:
        raise MedmillError(f"cannot write the report to {out}: {describe_os_error(out, e)}") from None
    return out
