"""Render a dataset dir's README.md (Hub dataset card) from the per-kind datasets_cards/ templates.

The card is rendered at every build (by the writer) and again at push time, when the repo layout
(config name, data folder) and the other configs already in the repo are known.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import pyarrow.parquet as pq
import yaml

from medmill.builders.core.manifest import Manifest
from medmill.builders.publish.plots import existing_plots
from medmill.builders.publish.stats import TOKEN_PROXY_HELP, DatasetStats, compute_stats
from medmill.schemas import KIND_COLUMNS
from medmill.schemas.dataset_dir import shard_errors

SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
]

TASK_CATEGORIES = {
    "sft": ["text-generation", "question-answering"],
    "preference": ["text-generation"],
    "pretrain": ["text-generation"],
}

KIND_HELP = {
    "sft": "conversational SFT: `messages` is a list of {role, content}",
    "preference": "conversational preference: `prompt`, `chosen`, `rejected` are message lists",
    "pretrain": "language modelling: `text`",
}

GENERATED_START = "<!-- medmill:generated -->"  # push replaces only what lies between these two
GENERATED_END = "<!-- /medmill:generated -->"
SUMMARY_START = "<!-- medmill:summary -->"
SUMMARY_END = "<!-- /medmill:summary -->"
EXAMPLE_CHARS = 240


def size_category(n: int) -> str:
    for bound, name in SIZE_CATEGORIES:
        if n < bound:
            return name
    return "n>1T"


def config_entry(m: Manifest, config_name: str = "default", data_dir: str = "data", fingerprint: str | None = None) -> dict[str, Any]:
    """One item of the card's `configs` list: where each split's shards of this build live, and the
    content fingerprint as the config's `description` (see `content_fingerprint`)."""
    entry: dict[str, Any] = {
        "config_name": config_name,
        "data_files": [{"split": split, "path": f"{data_dir}/{split}-*"} for split in m.splits],
    }
    if fingerprint:
        entry["description"] = f"{FINGERPRINT_PREFIX}{fingerprint}"
    return entry


FINGERPRINT_PREFIX = "medmill content sha256:"


def content_fingerprint(m: Manifest, out_dir: Path) -> str | None:
    """sha256 over every shard's name and bytes (None when a shard is missing).

    `datasets.load_dataset(DIR)` names its cache after the card's YAML (configs with data-file
    *patterns*, dataset_info sizes), not after the files: a rebuild with other rows of the same sizes
    would load the old cached rows. `description` is a BuilderConfig field that datasets passes on
    from the YAML into the config it hashes, so this fingerprint changes the cache key with the content.
    """
    digest = hashlib.sha256()
    for split, info in m.splits.items():
        for name in info.files:
            shard = Path(out_dir) / name
            if not shard.is_file():
                return None
            digest.update(f"{split}\0{name}\0".encode())
            with shard.open("rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:32]


def dataset_info(m: Manifest, out_dir: Path, config_name: str = "default") -> dict[str, Any] | None:
    """`dataset_info` of the YAML header: records and bytes per split, read from the shards.

    Besides informing the Hub viewer, it makes `datasets.load_dataset(DIR)` notice a rebuilt dir:
    with a `configs` list, datasets keys its cache on the card's YAML only (not on the files), so
    without these sizes a rebuilt dir of the same name would load the previous build's cached rows.
    """
    splits, download, total = [], 0, 0
    for split, info in m.splits.items():
        num_bytes = 0
        for name in info.files:
            shard = Path(out_dir) / name
            if not shard.exists():
                return None
            with shard_errors(shard):
                meta = pq.ParquetFile(shard).metadata
            num_bytes += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            download += shard.stat().st_size
        splits.append({"name": split, "num_bytes": num_bytes, "num_examples": info.records})
        total += num_bytes
    if not splits:
        return None
    return {"config_name": config_name, "splits": splits, "download_size": download, "dataset_size": total}


def card_metadata(
    m: Manifest,
    config_name: str = "default",
    data_dir: str = "data",
    other_configs: Sequence[dict[str, Any]] = (),
    info: dict[str, Any] | None = None,
    other_infos: Sequence[dict[str, Any]] = (),
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """The YAML header: valid for the Hub (huggingface_hub's DatasetCardData round-trips it).

    `other_configs` / `other_infos` are the configs and dataset_info entries already in the target
    repo; this build's entries replace their namesakes.
    """
    configs = [c for c in other_configs if c.get("config_name") != config_name]
    configs.append(config_entry(m, config_name, data_dir, fingerprint))
    configs.sort(key=lambda c: (c.get("config_name") != "default", str(c.get("config_name"))))
    if len(configs) > 1:
        for c in configs:
            c.pop("default", None)
    meta: dict[str, Any] = {
        "language": ["zh"],
        "license": m.license,
        "pretty_name": f"medmill {m.builder} ({m.kind})",
        "task_categories": TASK_CATEGORIES.get(m.kind, ["text-generation"]),
        "size_categories": [size_category(m.records_total)],
        "tags": ["medical", "chinese", m.kind, "medmill", m.builder],
        "configs": configs,
    }
    infos = [i for i in other_infos if i.get("config_name") != config_name] + ([info] if info else [])
    if infos:
        infos.sort(key=lambda i: (i.get("config_name") != "default", str(i.get("config_name"))))
        meta["dataset_info"] = infos[0] if len(infos) == 1 else infos
    if m.license == "other":
        meta["license_name"] = "see-sources"
        meta["license_link"] = "LICENSE"
    return meta


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """One environment per process: the card templates are package data, so each is compiled once
    (about 85 ms of jinja compilation) and reused by every later card, not recompiled per build."""

    def load(name: str) -> str:
        return resources.files("medmill.datasets_cards").joinpath(name).read_text(encoding="utf-8")

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load), keep_trailing_newline=True, autoescape=False, trim_blocks=False
    )
    env.filters["fmt"] = _fmt
    env.filters["cell"] = _cell
    env.globals["license_of"] = license_of
    return env


def license_of(path: str, licenses: dict[str, str]) -> str:
    """The license given for an input file, matched as users type `--source-license FILE=LICENSE`:
    the same path, the same path spelled differently (./x, absolute), a folder holding it, or its name."""
    if path in licenses:
        return licenses[path]
    target = Path(path).resolve()
    for key, lic in licenses.items():
        given = Path(key).resolve()
        if given == target or given in target.parents:
            return lic
    by_name = {Path(k).name: v for k, v in licenses.items()}
    return by_name.get(Path(path).name, "not stated (pass --source-license FILE=LICENSE)")


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _cell(value: Any, limit: int = EXAMPLE_CHARS) -> str:
    """Make text safe for one Markdown table cell."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit] + "…"


def _flatten(stats: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Curation stats as (key, scalar) rows, one level of nesting spelled out as `a.b`."""
    if not isinstance(stats, dict):
        return [(prefix or "value", stats)]
    rows: list[tuple[str, Any]] = []
    for k, v in stats.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and not prefix:
            rows.extend(_flatten(v, key))
        elif isinstance(v, list) and any(isinstance(x, dict) for x in v):
            continue  # examples (dedup clusters): the report shows them, a table cell cannot
        else:
            rows.append((key, v if isinstance(v, int | float | str | bool) or v is None else _cell(v, 120)))
    return rows


def _example(out_dir: Path, m: Manifest) -> dict[str, Any] | None:
    """The first record of the first shard, for the card's example block."""
    for split in ("train", *m.splits):
        info = m.splits.get(split)
        if info and info.files and (out_dir / info.files[0]).exists():
            with shard_errors(out_dir / info.files[0]):
                parquet = pq.ParquetFile(out_dir / info.files[0])
                # one row decoded, not the row group (a whole shard: ~1 s at 450k rows)
                columns = [c for c in KIND_COLUMNS[m.kind] if c != "source"]
                first = next(parquet.iter_batches(batch_size=1, row_groups=[0], columns=columns), None) if parquet.num_row_groups else None
            if first is not None and first.num_rows:
                return first.to_pylist()[0]
    return None


def _example_json(row: dict[str, Any] | None) -> str:
    if row is None:
        return ""

    def clip(v: Any) -> Any:
        if isinstance(v, str):
            return v if len(v) <= EXAMPLE_CHARS else v[:EXAMPLE_CHARS] + "…"
        if isinstance(v, list):
            return [clip(x) for x in v]
        if isinstance(v, dict):
            return {k: clip(x) for k, x in v.items()}
        return v

    row = dict(row)
    if isinstance(row.get("meta"), str):
        try:
            row["meta"] = json.loads(row["meta"])
        except json.JSONDecodeError:
            pass
    return json.dumps(clip(row), ensure_ascii=False, indent=2)


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(YAML header as a dict, body) of a card; a card without a valid header has an empty one."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(?:\n|$)", text, re.S)
    if not match:
        return {}, text
    try:
        header = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError:
        return {}, text
    return (header if isinstance(header, dict) else {}), text[match.end() :]


UNION_KEYS = ("tags", "language", "task_categories", "task_ids", "source_datasets")


def merge_card(existing: str, generated: str) -> str:
    """The card to push when the repo already has one: the existing card's own text and YAML keys
    are kept; medmill's YAML keys and its generated block (between GENERATED_START/END) are replaced
    - or the block is added below a hand-written card that has none."""
    old_header, old_body = split_front_matter(existing)
    new_header, new_body = split_front_matter(generated)
    header = {**new_header, **{k: v for k, v in old_header.items() if k not in new_header}}
    for key in UNION_KEYS:  # the user's own tags / languages stay beside medmill's
        mine, theirs = new_header.get(key), old_header.get(key)
        if isinstance(mine, list) and isinstance(theirs, list):
            header[key] = mine + [v for v in theirs if v not in mine]
    start, end = new_body.find(GENERATED_START), new_body.rfind(GENERATED_END)
    block = new_body[start : end + len(GENERATED_END)] if start >= 0 and end >= 0 else new_body.strip()
    o_start, o_end = old_body.find(GENERATED_START), old_body.find(GENERATED_END)
    if o_start >= 0 and o_end > o_start:
        body = old_body[:o_start] + block + old_body[o_end + len(GENERATED_END) :]
    elif old_body.strip():
        body = old_body.rstrip() + "\n\n" + block + "\n"
    else:
        body = block + "\n"
    return f"---\n{yaml.safe_dump(header, allow_unicode=True, sort_keys=False)}---\n{body}"


def summary_of(card_text: str) -> str:
    """The summary paragraph of a card medmill rendered (kept when the card is re-rendered at push)."""
    match = re.search(re.escape(SUMMARY_START) + r"\n(.*?)\n" + re.escape(SUMMARY_END), card_text, re.S)
    return match.group(1).strip() if match else ""


def render_card(
    m: Manifest,
    out_dir: Path,
    description: str = "",
    *,
    config_name: str = "default",
    data_dir: str = "data",
    asset_prefix: str = "",
    other_configs: Sequence[dict[str, Any]] = (),
    other_infos: Sequence[dict[str, Any]] = (),
    plots: bool = True,
    stats: DatasetStats | None = None,
) -> str:
    """Card text for the dataset dir `out_dir` (its shards must already be written).

    Plots are written into `out_dir/plots/` and linked as `{asset_prefix}plots/...` (the prefix is
    the config's folder when the dir is pushed as a named config).
    """
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    stats = stats if stats is not None else compute_stats(out_dir, m.kind)
    if plots and stats.total:
        from medmill.builders.publish.plots import write_plots

        plot_files = write_plots(stats, out_dir)
    else:
        plot_files = existing_plots(out_dir)
    plot_links = [(title, asset_prefix + rel) for title, rel in plot_files]
    title = f"medmill {m.builder} ({m.kind})"
    info = dataset_info(m, out_dir, config_name)
    header = yaml.safe_dump(
        card_metadata(m, config_name, data_dir, other_configs, info, other_infos, content_fingerprint(m, out_dir)),
        allow_unicode=True,
        sort_keys=False,
    )
    summary = description or (
        f"A {m.kind} dataset of {m.records_total:,} records built by medmill's `{m.builder}` "
        f"from {len(m.inputs)} input file(s)."
    )
    configs = [c for c in other_configs if c.get("config_name") != config_name]
    text = (
        _environment()
        .get_template(f"{m.kind}.md.j2")
        .render(
            yaml_header=header,
            title=title,
            generated_start=GENERATED_START,
            generated_end=GENERATED_END,
            summary_start=SUMMARY_START,
            summary_end=SUMMARY_END,
            summary=summary,
            m=m,
            stats=stats,
            token_help=TOKEN_PROXY_HELP,
            kind_help=KIND_HELP.get(m.kind, m.kind),
            columns=", ".join(f"`{c}`" for c in KIND_COLUMNS.get(m.kind, [])),
            config_name=config_name,
            data_dir=data_dir,
            other_configs=[c.get("config_name") for c in configs],
            plots=plot_links,
            example=_example_json(_example(out_dir, m)),
            curation=[(stage, _flatten(s)) for stage, s in m.curation.items()],
            # the builder's own tables; per-item tables (rows of dicts) are in the builder's summary text
            build_stats=[(name, _flatten(s)) for name, s in m.stats.items() if isinstance(s, dict)],
            bibkey=re.sub(r"\W+", "_", f"medmill_{m.builder}_{config_name}").strip("_"),
        )
    )
    m.timings.setdefault("card", round(time.perf_counter() - t0, 3))
    return text
