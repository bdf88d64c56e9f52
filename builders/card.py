"""Render a dataset dir's README.md (Hub dataset card) from datasets_cards/ templates."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import jinja2
import yaml

from medmill.builders.manifest import Manifest
from medmill.schemas import KIND_COLUMNS

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


def size_category(n: int) -> str:
    for bound, name in SIZE_CATEGORIES:
        if n < bound:
            return name
    return "n>1T"


def card_metadata(m: Manifest, config_name: str = "default") -> dict:
    """The YAML header: valid for the Hub (huggingface_hub's DatasetCardData round-trips it)."""
    meta = {
        "language": ["zh"],
        "license": m.license,
        "task_categories": TASK_CATEGORIES.get(m.kind, ["text-generation"]),
        "size_categories": [size_category(m.records_total)],
        "tags": ["medical", "chinese", m.kind, "medmill", m.builder],
        "configs": [
            {
                "config_name": config_name,
                "data_files": [{"split": split, "path": f"data/{split}-*"} for split in m.splits],
            }
        ],
    }
    if m.license == "other":
        meta["license_name"] = "see-sources"
        meta["license_link"] = "LICENSE"
    return meta


def _template(name: str) -> jinja2.Template:
    text = resources.files("medmill.datasets_cards").joinpath(name).read_text(encoding="utf-8")
    return jinja2.Environment(keep_trailing_newline=True, autoescape=False).from_string(text)


def render_card(m: Manifest, out_dir: Path, description: str = "") -> str:
    title = f"medmill {m.builder} ({m.kind})"
    header = yaml.safe_dump(card_metadata(m), allow_unicode=True, sort_keys=False)
    summary = description or f"A {m.kind} dataset built by medmill's `{m.builder}` from {len(m.inputs)} input file(s)."
    return _template("dataset_card.md.j2").render(
        yaml_header=header,
        title=title,
        summary=summary,
        m=m,
        kind_help=KIND_HELP.get(m.kind, m.kind),
        columns=", ".join(f"`{c}`" for c in KIND_COLUMNS.get(m.kind, [])),
    )
