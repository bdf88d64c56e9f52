"""The lit-qa builder (`medmill build-lit-qa`): literature files -> LLM QA pairs or dialogues grounded in
each paper; run_build curates and writes them."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import Field

from medmill.builders.core.builder import BuildContext, Builder, Inputs
from medmill.builders.core.collect import Collector
from medmill.builders.core.config import LLMBuildConfig
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.steps import GlobalStep, Step, StepResult
from medmill.builders.lit_qa import BUILDER, BUILDER_VERSION
from medmill.builders.lit_qa.generate import LitConfig, LitWork, prompt_ref, qa_records
from medmill.builders.readers.literature import read_literature
from medmill.schemas.errors import MedmillError


class LitQAConfig(LLMBuildConfig):
    field_map: dict[str, str] = Field(default_factory=dict, description="Map a field to your column: title=题目, conclusion=结论 ...")
    lit: LitConfig = Field(default_factory=LitConfig)
    seed: int = Field(42, description="Seed of the splits.")
    val_size: float = Field(0.05, ge=0.0, lt=1.0, description="Share of records in the validation split (grouped by paper).")
    test_size: float = Field(0.0, ge=0.0, lt=1.0, description="Share of records in the test split (grouped by paper).")
    limit: int | None = Field(None, ge=1, description="Use only the first N papers (trial runs).")


class LitQABuilder(Builder[LitQAConfig]):
    name = BUILDER
    version = BUILDER_VERSION
    kind = "sft"
    config = LitQAConfig

    def read(self, cfg: LitQAConfig, ctx: BuildContext) -> Inputs:
        if not cfg.llm.model:
            raise MedmillError("--llm-model is required (the model the endpoint serves)")
        read = read_literature(cfg.inputs, cfg.field_map, skip=ctx.own_paths)
        papers = read.records[: cfg.limit] if cfg.limit else read.records
        if not papers:
            raise MedmillError(
                f"no usable literature record in the inputs ({len(read.rejects)} rejected while reading"
                + "".join(f"; {r.source.file}:{r.source.line or '-'} {r.message}" for r in read.rejects[:3])
                + ")"
            )
        counters = {"papers": len(papers), "papers_rejected_at_read": len(read.rejects)}
        return Inputs(papers, read.files, read.rejects, Counter(counters))

    def generation(self, cfg: LitQAConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> list[Step]:
        """One LLM request per paper (item-wise, on the workers); for style "qa" then the dedup of
        questions across papers (whole input, in the driver)."""
        steps: list[Step] = [ctx.llm_step("papers", LitWork(cfg.lit), cfg.llm, out, prompts=[prompt_ref(cfg.lit)])]
        if cfg.lit.style == "qa":
            steps.append(QARecords(cfg.lit))
        return steps

    def describe(self, cfg: LitQAConfig, inputs: Inputs, out: Collector) -> str:
        return _describe(cfg, inputs.items_read)

    def figures(self, cfg: LitQAConfig, inputs: Inputs, out: Collector, manifest: Manifest) -> list[tuple[str, Any]]:
        c = manifest.counters
        rows: list[tuple[str, Any]] = [("style", cfg.lit.style), ("papers", c.get("papers", 0))]
        rows += [(k, v) for k, v in sorted(c.items()) if k.startswith(("dialogues_", "pairs_"))]
        return rows


def _describe(cfg: LitQAConfig, papers: int) -> str:
    if cfg.lit.style == "qa":
        what = (
            f"Question-answer pairs written by an LLM from the conclusions of {papers} papers; each answer was kept "
            "only when a `reference` it quotes was found verbatim in the paper's conclusion or abstract and at least "
            f"{cfg.lit.min_overlap:.0%} of its character bigrams occur in the paper."
        )
    else:
        what = (
            f"Multi-turn patient-doctor dialogues ({cfg.lit.turns_min}-{cfg.lit.turns_max} patient turns) written by "
            f"an LLM from the conclusions of {papers} papers, stored as message lists. The doctor turns together had "
            f"to share at least {cfg.lit.dialogue_min_overlap:.0%} of their character bigrams with the paper; "
            "`meta.cites_paper` says whether a doctor turn names the paper."
        )
    return (
        f"{what} Splits are grouped by paper (`source.group`), so no paper straddles train and validation; "
        "`meta.paper` names the paper (title, year, journal, DOI) each record rests on."
    )


class QARecords(GlobalStep):
    """Style "qa": near-duplicate questions across papers, then the records (needs every pair at once)."""

    name = "qa_dedup"

    def __init__(self, config: LitConfig) -> None:
        self.config = config

    def __call__(self, batch: list[Any]) -> StepResult:
        out = Collector()
        try:
            qa_records(batch, self.config, out)
            return StepResult(out.records, list(out.rejects), out.counters)  # type: ignore[arg-type]
        finally:
            out.rejects.close()
