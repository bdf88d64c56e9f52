"""build-prefs end to end: read inputs, make one pair per prompt with the chosen strategy, curate, write.

- corrupt (default, no LLM): rejected = the reference answer made worse by a recorded perturbation;
- judge: candidates (models' answers, the reference, a given rejected) each scored alone by a judge;
  chosen = strictly best, rejected = worst, kept when the margin is at least `min_margin`;
- reference: chosen = the reference answer, rejected = a model's (or the given) answer, optionally
  confirmed by the judge.
Pairs read from preference files are kept as given under corrupt, and re-checked under judge/reference.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medmill.builders.build import finish_build
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.curation.stages import curation_steps
from medmill.builders.dataset_dir import read_manifest
from medmill.builders.llm.types import LLMSettings
from medmill.builders.manifest import Manifest
from medmill.builders.prefs.inputs import FieldNames, PromptItem, read_inputs
from medmill.builders.prefs.judging import (
    Candidate,
    NoPair,
    PairChoice,
    Scored,
    both_orders_agree,
    confirm_reference,
    select_pair,
    unique_candidates,
)
from medmill.builders.prefs.perturb import PERTURBATIONS, Corrupter
from medmill.builders.prompts import load_prompt
from medmill.builders.writer import BuildInfo
from medmill.schemas import Message, PreferenceRecord, RejectRow
from medmill.schemas.errors import MedmillError
from medmill.version import __version__

BUILDER = "build-prefs"
Strategy = Literal["corrupt", "judge", "reference"]


class PrefsConfig(BaseModel):
    """Everything a build-prefs run depends on (the CLI fills it from flags or a config file)."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Path]
    out: Path
    strategy: Strategy = "corrupt"
    question_field: str | None = None
    answer_field: str | None = None
    perturbations: list[str] = Field(default_factory=lambda: list(PERTURBATIONS))
    candidates: list[LLMSettings] = Field(default_factory=list)
    samples: int = Field(1, ge=1, le=16, description="answers per candidate model and prompt")
    judge: LLMSettings | None = None
    min_margin: float = Field(1.0, ge=0.0)
    pairwise_check: bool = False
    include_reference: bool = True
    limit: int | None = Field(None, ge=1)
    seed: int = 42
    val_size: float = 0.05
    test_size: float = 0.0
    license: str = "other"
    source_licenses: dict[str, str] = Field(default_factory=dict)
    curation: CurationSettings = Field(default_factory=CurationSettings)


def _input_licenses(cfg: PrefsConfig) -> dict[str, str]:
    """--source-license entries, and for input dataset dirs not named there the license in their manifest."""
    licenses: dict[str, str] = {}
    for path in cfg.inputs:
        manifest = read_manifest(path) if Path(path).is_dir() else None
        if manifest and manifest.get("license"):
            licenses[str(path)] = str(manifest["license"])
    return licenses | cfg.source_licenses


@dataclass
class Outcome:
    """What a strategy produced: records, rejects, counters and what the LLMs did."""

    records: list[PreferenceRecord] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    llm: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    prompts: list[dict[str, str]] = field(default_factory=list)

    def pair(self, item: PromptItem, chosen: str, rejected: str, meta: dict[str, Any], stage: str) -> None:
        """Add a validated record, or a reject saying why the pair is not valid."""
        prompt = item.prompt
        chosen_m = [Message(role="assistant", content=chosen)]
        rejected_m = [Message(role="assistant", content=rejected)]
        meta = {**meta, "origin": item.origin}
        if item.meta:
            meta["input_meta"] = item.meta
        try:
            record = PreferenceRecord(
                id=PreferenceRecord.make_id(prompt, chosen_m, rejected_m),
                prompt=prompt,
                chosen=chosen_m,
                rejected=rejected_m,
                source=item.source.model_copy(update={"builder": BUILDER, "builder_version": __version__}),
                meta=meta,
            )
        except ValidationError as e:
            self.reject(stage, "invalid_pair", item, "; ".join(err["msg"] for err in e.errors()), {"chosen": chosen, "rejected": rejected})
            return
        self.records.append(record)
        self.counters[f"pairs.{meta['strategy']}"] += 1

    def reject(self, stage: str, reason: str, item: PromptItem, message: str, extra: Any = None) -> None:
        raw = {"prompt": [m.model_dump() for m in item.prompt]}
        if extra is not None:
            raw["detail"] = extra
        self.rejects.append(RejectRow(stage=stage, reason=reason, message=message, source=item.source, raw=raw))


def build_prefs(cfg: PrefsConfig, command: str = "medmill build-prefs") -> Manifest:
    t0 = time.perf_counter()
    _check(cfg)
    read = read_inputs(cfg.inputs, FieldNames(cfg.question_field, cfg.answer_field))
    items, dup_rejects = _unique_prompts(read.items)
    if cfg.limit is not None:
        items = items[: cfg.limit]
    if not items:
        raise MedmillError(f"no usable prompt in the inputs ({len(read.rejects)} record(s) rejected while reading)")
    t1 = time.perf_counter()
    if cfg.strategy == "corrupt":
        outcome = _corrupt(cfg, items)
    elif cfg.strategy == "judge":
        outcome = _judge(cfg, items)
    else:
        outcome = _reference(cfg, items)
    counters = Counter({"inputs.items": len(read.items), "inputs.duplicate_prompts": len(dup_rejects)})
    counters.update(outcome.counters)
    info = BuildInfo(
        kind="preference",
        builder=BUILDER,
        command=command,
        params=_params(cfg),
        inputs=list(cfg.inputs),
        seed=cfg.seed,
        val_size=cfg.val_size,
        test_size=cfg.test_size,
        license=cfg.license,
        source_licenses=_input_licenses(cfg),
        counters=counters,
        prompts=outcome.prompts,
        llm=outcome.llm,
        usage=outcome.usage,
        timings={"read": t1 - t0, "pairs": time.perf_counter() - t1},
        description=_DESCRIPTIONS[cfg.strategy],
    )
    steps = curation_steps("preference", cfg.curation)
    return finish_build(cfg.out, outcome.records, read.rejects + dup_rejects + outcome.rejects, info, steps)


_DESCRIPTIONS = {
    "corrupt": "Preference pairs: chosen = the source answer, rejected = the same answer made worse by a "
    "recorded perturbation (KG fact swap, truncation, unsafe advice, overconfidence, dose change); see meta.perturbation.",
    "judge": "Preference pairs: several candidate answers per prompt, each scored alone by an LLM judge on a "
    "medical rubric (helpful, honest, harmless, accurate, safe); chosen = strictly best, rejected = worst, "
    "margin at least min_margin; ties and missing scores were dropped.",
    "reference": "Preference pairs: chosen = the corpus/KG-grounded reference answer, rejected = a model's answer "
    "to the same prompt (confirmed by an LLM judge when meta.judge is set).",
}


def _check(cfg: PrefsConfig) -> None:
    if cfg.strategy == "judge" and cfg.judge is None:
        raise MedmillError("--strategy judge needs a judge model (--judge-model or --llm-model)")
    if cfg.pairwise_check and (cfg.judge is None or cfg.strategy == "corrupt"):
        raise MedmillError("--pairwise-check needs a judge: --strategy judge, or reference with --judge-model")
    for s in [*cfg.candidates, *([cfg.judge] if cfg.judge else [])]:
        if s.backend == "openai" and not s.model:
            raise MedmillError("every candidate/judge endpoint needs a model name")


def _unique_prompts(items: list[PromptItem]) -> tuple[list[PromptItem], list[RejectRow]]:
    """One pair per prompt: later copies of a prompt are rejected before any LLM call is paid for."""
    seen: dict[str, PromptItem] = {}
    rejects = []
    for item in items:
        first = seen.get(item.key)
        if first is None:
            seen[item.key] = item
            continue
        where = f"{first.source.file}:{first.source.line}" if first.source.line else str(first.source.file)
        rejects.append(
            RejectRow(stage="select", reason="duplicate_prompt", message=f"same prompt as {where}", source=item.source,
                      raw={"prompt": [m.model_dump() for m in item.prompt]})
        )
    return list(seen.values()), rejects


# ---- corrupt ------------------------------------------------------------------------------------


def _corrupt(cfg: PrefsConfig, items: list[PromptItem]) -> Outcome:
    out = Outcome()
    corrupter = Corrupter(items, cfg.perturbations, cfg.seed)
    out.prompts = [corrupter.lexicon.ref]
    for item in items:
        if item.reference is None:
            out.reject("corrupt", "no_reference", item, "no reference answer to corrupt")
            continue
        if item.given_rejected is not None:
            out.pair(item, item.reference, item.given_rejected, {"strategy": "given"}, "corrupt")
            continue
        perturbed = corrupter.corrupt(item, item.reference)
        if perturbed is None:
            out.reject("corrupt", "no_perturbation", item, f"none of {', '.join(corrupter.enabled)} applies")
            continue
        meta = {"strategy": "corrupt", "perturbation": perturbed.name, "perturbation_detail": perturbed.detail}
        out.pair(item, item.reference, perturbed.text, meta, "corrupt")
        out.counters[f"perturbation.{perturbed.name}"] += 1
    return out


# ---- judge --------------------------------------------------------------------------------------


def _judge(cfg: PrefsConfig, items: list[PromptItem]) -> Outcome:
    from medmill.builders.prefs import llm_steps

    out = Outcome()
    answer_t, judge_t = load_prompt("prefs_answer"), load_prompt("prefs_judge")
    out.prompts = [answer_t.ref, judge_t.ref] if cfg.candidates else [judge_t.ref]
    pools: list[list[Candidate]] = [[] for _ in items]
    for i, item in enumerate(items):
        if cfg.include_reference and item.reference:
            pools[i].append(Candidate(item.reference, "reference"))
        if item.given_rejected:
            pools[i].append(Candidate(item.given_rejected, "given_rejected"))
    for settings in cfg.candidates:
        generated, rejects, described = llm_steps.generate(settings, cfg.out, items, cfg.samples, answer_t)
        _record_llm(out, f"candidate:{llm_steps.model_label(settings)}", described)
        out.rejects.extend(rejects)
        for pool, cands in zip(pools, generated, strict=True):
            pool.extend(cands)
    jobs: list[tuple[PromptItem, Candidate]] = []
    ready: list[tuple[PromptItem, list[Candidate]]] = []
    for item, pool in zip(items, pools, strict=True):
        kept, dropped = unique_candidates(pool)
        out.counters["candidates.duplicates"] += dropped
        if len(kept) < 2:
            out.reject("judge", "too_few_candidates", item, f"{len(kept)} distinct answer(s); a pair needs 2",
                       [c.model for c in pool])
            continue
        ready.append((item, kept))
        jobs.extend((item, c) for c in kept)
    scored, described = llm_steps.judge(cfg.judge, cfg.out, jobs, judge_t)
    _record_llm(out, "judge", described)
    judge_name = llm_steps.model_label(cfg.judge)
    judged = []
    cursor = 0
    for item, kept in ready:
        group, cursor = scored[cursor : cursor + len(kept)], cursor + len(kept)
        choice = select_pair(group, cfg.min_margin)
        summary = [s.summary() for s in group]
        if isinstance(choice, NoPair):
            out.reject("judge", choice.reason, item, choice.message, summary)
            continue
        meta = _judged_meta("judge", choice, judge_name, cfg.min_margin)
        meta["candidates"] = summary
        judged.append((item, choice, meta))
    _add_judged(cfg, out, judged)
    return out


# ---- reference ----------------------------------------------------------------------------------


def _reference(cfg: PrefsConfig, items: list[PromptItem]) -> Outcome:
    from medmill.builders.prefs import llm_steps

    out = Outcome()
    answer_t, judge_t = load_prompt("prefs_answer"), load_prompt("prefs_judge")
    model = cfg.candidates[0] if cfg.candidates else None
    if model is None and not any(i.given_rejected for i in items):
        raise MedmillError("--strategy reference needs a model to answer the prompts (--candidate-model or --llm-model)")
    with_ref = []
    for item in items:
        if item.reference is None:
            out.reject("reference", "no_reference", item, "no reference answer (an sft dir or an answer column)")
        else:
            with_ref.append(item)
    rivals: list[Candidate | None] = [
        Candidate(i.given_rejected, "given_rejected") if i.given_rejected else None for i in with_ref
    ]
    need = [n for n, r in enumerate(rivals) if r is None]
    if need and model is not None:
        out.prompts.append(answer_t.ref)
        generated, rejects, described = llm_steps.generate(model, cfg.out, [with_ref[n] for n in need], 1, answer_t)
        _record_llm(out, f"candidate:{llm_steps.model_label(model)}", described)
        out.rejects.extend(rejects)
        for n, cands in zip(need, generated, strict=True):
            rivals[n] = cands[0] if cands else None
    pairs: list[tuple[PromptItem, Candidate, Candidate]] = []
    for item, rival in zip(with_ref, rivals, strict=True):
        if rival is None:
            if model is None:
                out.reject("reference", "no_model_answer", item, "no given rejected answer and no --candidate-model")
            continue  # the generation failure is already a reject row
        kept, _ = unique_candidates([Candidate(item.reference, "reference"), rival])
        if len(kept) < 2:
            out.reject("reference", "same_answer", item, "the model's answer equals the reference")
            continue
        pairs.append((item, kept[0], kept[1]))
    if cfg.judge is None:
        for item, ref, rival in pairs:
            out.pair(item, ref.text, rival.text, {"strategy": "reference", "rejected_model": rival.model}, "reference")
        return out
    out.prompts.append(judge_t.ref)
    jobs = [(item, c) for item, ref, rival in pairs for c in (ref, rival)]
    scored, described = llm_steps.judge(cfg.judge, cfg.out, jobs, judge_t)
    _record_llm(out, "judge", described)
    judge_name = llm_steps.model_label(cfg.judge)
    judged = []
    for n, (item, _, _) in enumerate(pairs):
        ref_s, rival_s = scored[2 * n], scored[2 * n + 1]
        choice = confirm_reference(ref_s, rival_s, cfg.min_margin)
        if isinstance(choice, NoPair):
            out.reject("judge", choice.reason, item, choice.message, [ref_s.summary(), rival_s.summary()])
            continue
        judged.append((item, choice, _judged_meta("reference", choice, judge_name, cfg.min_margin)))
    _add_judged(cfg, out, judged)
    return out


def _add_judged(cfg: PrefsConfig, out: Outcome, judged: list[tuple[PromptItem, PairChoice, dict[str, Any]]]) -> None:
    """Judged pairs become records; with --pairwise-check only those the judge also prefers side by side,
    in both orders (a verdict that follows the position rather than the answer drops the pair)."""
    from medmill.builders.prefs import llm_steps

    verdicts: list[tuple[Any, Any]] = [(None, None)] * len(judged)
    if cfg.pairwise_check and judged:
        template = load_prompt("prefs_compare")
        out.prompts.append(template.ref)
        jobs = [(item, c.chosen.candidate.text, c.rejected.candidate.text) for item, c, _ in judged]
        verdicts, described = llm_steps.compare(cfg.judge, cfg.out, jobs, template)
        _record_llm(out, "judge_pairwise", described)
    for (item, choice, meta), (first, second) in zip(judged, verdicts, strict=True):
        if cfg.pairwise_check:
            problem = both_orders_agree(first, second)
            detail = {"chosen_first": first.model_dump() if first else None, "chosen_second": second.model_dump() if second else None}
            if problem is not None:
                out.reject("judge", problem.reason, item, problem.message, detail)
                continue
            meta = {**meta, "pairwise": detail}
        out.pair(item, choice.chosen.candidate.text, choice.rejected.candidate.text, meta, "judge")


# ---- helpers ------------------------------------------------------------------------------------


def _judged_meta(strategy: str, choice: PairChoice, judge_name: str, min_margin: float) -> dict[str, Any]:
    def side(s: Scored) -> dict[str, Any]:
        return {"model": s.candidate.model, "sample": s.candidate.sample, "score": s.overall,
                "rubric": s.scores.model_dump() if s.scores else None}

    return {
        "strategy": strategy,
        "judge": judge_name,
        "models": sorted({choice.chosen.candidate.model, choice.rejected.candidate.model}),
        "chosen_model": choice.chosen.candidate.model,
        "rejected_model": choice.rejected.candidate.model,
        "scores": {"chosen": side(choice.chosen), "rejected": side(choice.rejected), "margin": choice.margin},
        "min_margin": min_margin,
    }


def _record_llm(out: Outcome, name: str, described: dict[str, Any]) -> None:
    out.llm[name] = described["llm"]
    out.usage[name] = described["usage"]


def _params(cfg: PrefsConfig) -> dict[str, Any]:
    """Build parameters for the manifest: models by name and endpoint host, never keys."""
    params = cfg.model_dump(mode="json", exclude={"inputs", "out", "candidates", "judge", "curation"})
    params["candidates"] = [s.model for s in cfg.candidates]
    params["judge"] = cfg.judge.model if cfg.judge else None
    params["curation"] = cfg.curation.model_dump(mode="json")
    if cfg.strategy != "corrupt":
        params.pop("perturbations")
    return params
