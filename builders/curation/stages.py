"""The curation stages every build runs before writing: validate -> quality -> PII -> safety ->
decontaminate -> dedup, each a `Step` (records in, kept records + rejects + counters + stats out).

Builders call `curation_steps(kind, settings)` and pass the steps to `finish_build`, which puts each
step's stats into manifest.json `curation` (and so into the card). `medmill filter` and `medmill dedup`
run the same steps over existing dataset dirs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from medmill.builders.core.pipeline import Step, StepResult
from medmill.builders.curation.decontam import EvalIndex
from medmill.builders.curation.dedup import DedupConfig
from medmill.builders.curation.pii import PIIScanner
from medmill.builders.curation.quality import QualityConfig, QualityRules
from medmill.builders.curation.safety import SafetyMatcher, default_lexicon, load_lexicon
from medmill.builders.curation.settings import PII_TYPES, CurationSettings
from medmill.builders.curation.text import (
    check_fields,
    judged_texts,
    record_text,
    rewrite,
    with_meta,
)
from medmill.schemas import Record, RejectRow

__all__ = ["PII_TYPES", "CurationSettings", "curation_steps"]

def _reject(stage: str, reason: str, message: str, record: Record) -> RejectRow:
    return RejectRow(stage=stage, reason=reason, message=message, source=record.source, raw=record.to_row())


def validate_step() -> Step:
    def run(records: list[Record]) -> StepResult:
        kept, rejects = [], []
        for r in records:
            try:
                kept.append(type(r).model_validate(r.model_dump()))
            except ValidationError as e:
                first = e.errors()[0]
                rejects.append(_reject("validate", "invalid_record", f"{'.'.join(map(str, first['loc']))}: {first['msg']}", r))
        return StepResult(kept, rejects, Counter({"invalid": len(rejects)}) if rejects else Counter())

    return Step("validate", run)


def quality_step(settings: CurationSettings) -> Step:
    rules = QualityRules(
        QualityConfig(
            min_chars=settings.min_chars,
            max_chars=settings.max_chars,
            min_cjk_share=settings.min_cjk_share,
            strip_boilerplate=settings.strip_boilerplate,
        )
    )

    def run(records: list[Record]) -> StepResult:
        kept, rejects, counters = [], [], Counter()
        for r in records:
            verdict = rules.check(r)
            counters.update(verdict.touched)
            if verdict.record is None:
                counters[f"dropped.{verdict.reason}"] += 1
                rejects.append(_reject("quality", verdict.reason, verdict.message, r))
            else:
                kept.append(verdict.record)
        return StepResult(kept, rejects, counters, {"rules": dict(sorted(counters.items()))})

    return Step("quality", run)


def pii_step(settings: CurationSettings) -> Step:
    scanner = PIIScanner(settings.pii_types)

    def run(records: list[Record]) -> StepResult:
        kept, rejects, counters = [], [], Counter()
        for r in records:
            found: Counter = Counter()

            def redact(_role: str, text: str, found: Counter = found) -> str:
                new, counts = scanner.redact(text)
                found.update(counts)
                return new

            new = rewrite(r, redact)
            if not found:
                kept.append(r)
                continue
            counters.update({f"found.{k}": v for k, v in found.items()})
            kinds = ", ".join(f"{k}x{v}" for k, v in sorted(found.items()))
            if settings.pii_action == "drop":
                counters["records_dropped"] += 1
                rejects.append(_reject("pii", "pii", f"contains {kinds}", r))
            else:
                counters["records_redacted"] += 1
                kept.append(with_meta(new, pii=dict(sorted(found.items()))))
        return StepResult(kept, rejects, counters, {"action": settings.pii_action, **dict(sorted(counters.items()))})

    return Step("pii", run)


def safety_matcher(settings: CurationSettings) -> SafetyMatcher:
    lexicon = default_lexicon()
    for path in settings.lexicons:
        lexicon.merge(load_lexicon(path))
    return SafetyMatcher(lexicon, flag_only=settings.safety_flag_only)


def safety_step(settings: CurationSettings) -> Step:
    matcher = safety_matcher(settings)

    def run(records: list[Record]) -> StepResult:
        kept, rejects, counters = [], [], Counter()
        for r in records:
            hits: dict[str, set[str]] = {}
            for _role, text in judged_texts(r):
                for h in matcher.scan(text):
                    hits.setdefault(h.category, set()).add(h.term)
            if not hits:
                kept.append(r)
                continue
            dropping = sorted(c for c in hits if matcher.actions[c] == "drop")
            if dropping:
                cat = dropping[0]
                counters[f"dropped.{cat}"] += 1
                rejects.append(_reject("safety", f"safety_{cat}", f"{cat}: {', '.join(sorted(hits[cat]))}", r))
                continue
            for c in hits:
                counters[f"flagged.{c}"] += 1
            kept.append(with_meta(r, safety_flags={c: sorted(t) for c, t in sorted(hits.items())}))
        stats = {"lexicon": matcher.lexicon.name, "lexicon_version": matcher.lexicon.version, **dict(sorted(counters.items()))}
        return StepResult(kept, rejects, counters, stats)

    return Step("safety", run)


def decontaminate_step(kind: str, settings: CurationSettings) -> Step:
    state: dict[str, EvalIndex] = {}

    def run(records: list[Record]) -> StepResult:
        if "index" not in state:  # read the eval sets once, on first use
            state["index"] = EvalIndex.build(settings.decontaminate, settings.decontam_ngram, field_name=settings.decontam_field)
        index = state["index"]
        texts = [record_text(r, ["all"]) for r in records]
        matches = {m.index: m for m in index.matches(texts)}
        kept = [r for i, r in enumerate(records) if i not in matches]
        rejects = [
            _reject("decontaminate", "contaminated", f"shares {len(m.ngram)}-char text {m.ngram!r} with {m.eval_origin}", records[i])
            for i, m in sorted(matches.items())
        ]
        by_file = Counter(m.eval_origin.rsplit(":", 1)[0] for m in matches.values())
        stats: dict[str, Any] = {
            "eval_sets": index.files,
            "eval_texts": len(index.texts),
            "ngram": index.n,
            "removed": len(matches),
            "matched_by_eval_file": dict(sorted(by_file.items())),
        }
        return StepResult(kept, rejects, Counter({"removed": len(matches)}), stats)

    return Step("decontaminate", run)


def dedup_config(settings: CurationSettings) -> DedupConfig:
    return DedupConfig(
        threshold=settings.dedup_threshold,
        shingle=settings.dedup_shingle,
        ngram=settings.dedup_ngram,
        num_perm=settings.dedup_num_perm,
    )


CLUSTER_EXAMPLES = 20  # duplicate clusters a build keeps in manifest.json (the report shows them)
CLUSTER_EXAMPLE_MEMBERS = 10


def dedup_step(kind: str, settings: CurationSettings, origin: Callable[[Record], str] | None = None) -> Step:
    """Exact + near-duplicate removal; with `settings.dedup_index`, against earlier runs too (this
    build's kept records are added to the index after the dataset is written)."""
    fields = check_fields(kind, settings.dedup_fields)
    config = dedup_config(settings)
    origin_of = origin or (lambda r: r.source.builder)

    def run(records: list[Record]) -> StepResult:
        from medmill.builders.curation.index import DedupIndex
        from medmill.builders.curation.record_dedup import dedup_records

        index = DedupIndex.open(settings.dedup_index, config) if settings.dedup_index else None
        out = dedup_records(records, fields, config, origin_of, index)
        # a build writes no clusters.jsonl: the largest clusters go into the manifest for the report
        largest = sorted(out.clusters, key=lambda c: -len(c["members"]))[:CLUSTER_EXAMPLES]
        examples = [{**c, "members": c["members"][:CLUSTER_EXAMPLE_MEMBERS]} for c in largest]
        result = StepResult(out.kept, out.rejects, out.counters, {**out.stats, "cluster_examples": examples})
        if index is not None:
            # only once the dataset is written: a failed build must not leave its records in the
            # index, or its re-run would find every record "already published"
            result.on_commit.append(lambda: out.add_to(index))
        return result

    return Step("dedup", run)


def curation_steps(kind: str, settings: CurationSettings | None = None) -> list[Step]:
    """The steps a build of `kind` runs, as `settings` (defaults: all on, PII redacted) asks."""
    settings = settings or CurationSettings()
    steps = [validate_step()] if settings.validate_records else []
    if settings.quality:
        steps.append(quality_step(settings))
    if settings.pii:
        steps.append(pii_step(settings))
    if settings.safety:
        steps.append(safety_step(settings))
    if settings.decontaminate:
        steps.append(decontaminate_step(kind, settings))
    if settings.dedup:
        steps.append(dedup_step(kind, settings))
    return steps
