"""One KG-QA build end to end: read the KG, make records, curate, write the dataset dir.

`KGQABuild` is the typed configuration the command fills (and the manifest's `params`);
`run_kg_qa` is what `medmill build-kg-qa --mode template` runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.core.build import finish_build
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.writer import BuildInfo
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.curation.stages import curation_steps
from medmill.builders.kg_qa.template_qa import BUILDER, TemplateQAConfig, build_template_records
from medmill.builders.kg_qa.templates import load_templates
from medmill.builders.readers.kg import read_kg

DESCRIPTION = (
    "Question/answer pairs generated from a medical knowledge graph with fixed paraphrase templates: "
    "one question per entity relation or text attribute, questions combining two relations, and "
    "questions from symptoms back to the diseases that list them. Every fact in an answer is a KG "
    "value; answers are only as correct and complete as the source graph."
)


class KGQABuild(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Path] = Field(min_length=1)
    out: Path
    mode: Literal["template"] = "template"
    templates: Path | None = None
    qa: TemplateQAConfig = Field(default_factory=TemplateQAConfig)
    val_size: float = Field(0.0, ge=0.0, lt=1.0)
    test_size: float = Field(0.0, ge=0.0, lt=1.0)
    license: str = "other"
    source_licenses: dict[str, str] = Field(default_factory=dict)
    curation: CurationSettings = Field(default_factory=CurationSettings)


def params_of(cfg: KGQABuild) -> dict[str, Any]:
    """The manifest's params: the typed config as JSON, without the output path."""
    return cfg.model_dump(mode="json", exclude={"out"})


def run_kg_qa(
    cfg: KGQABuild,
    *,
    command: str,
    progress: Callable[[int], AbstractContextManager[Callable[[], None]]] | None = None,
) -> tuple[Manifest, dict[str, Any]]:
    """Build the dataset dir `cfg.out`; returns its manifest and figures for the summary table.

    `progress(total)` may return a context manager yielding a tick function (one tick per entity).
    """
    t0 = time.perf_counter()
    templates = load_templates(cfg.templates)
    read = read_kg(cfg.inputs, exclude=[cfg.out])
    t1 = time.perf_counter()
    bar = progress(len(read.entities)) if progress else nullcontext(None)
    with bar as tick:
        result = build_template_records(read.entities, templates, cfg.qa, on_entity=tick)
    t2 = time.perf_counter()
    counters = read.counters + result.counters
    # Counter addition drops zeros; keep the explicit entity count even when 0 were read (never is)
    counters["entities_read"] = len(read.entities)
    info = BuildInfo(
        kind="sft",
        builder=BUILDER,
        command=command,
        params=params_of(cfg),
        inputs=read.files,
        seed=cfg.qa.seed,
        val_size=cfg.val_size,
        test_size=cfg.test_size,
        license=cfg.license,
        source_licenses=cfg.source_licenses,
        counters=counters,
        prompts=[templates.ref],
        timings={"read": t1 - t0, "generate": t2 - t1},
        description=DESCRIPTION,
    )
    manifest = finish_build(cfg.out, result.records, read.rejects + result.rejects, info,
                            curation_steps("sft", cfg.curation), started=t0)
    figures = {
        "files read": len(read.files),
        "entities read": len(read.entities),
        "records generated": len(result.records),
    }
    return manifest, figures
