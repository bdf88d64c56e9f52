"""The curation stages every build runs before writing: validate -> quality -> PII -> safety (map
steps, per batch) -> decontaminate -> dedup (global steps), each a picklable step (records in, kept
records + rejects + counters out; see medmill.builders.core.steps).

`run_build` asks `curation_steps(kind, settings)` for them and puts each step's stats into
manifest.json `curation` (and so into the card). `medmill filter` and `medmill dedup` run the same
steps over existing dataset dirs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medmill.builders.core.steps import GlobalStep, MapStep, Step, StepResult
from medmill.builders.curation.decontam import EvalIndex
from medmill.builders.curation.dedup import DedupConfig
from medmill.builders.curation.pii import PIIScanner
from medmill.builders.curation.quality import QualityConfig, QualityRules
from medmill.builders.curation.safety import SafetyMatcher, default_lexicon, load_lexicon
from medmill.builders.curation.settings import PII_TYPES, CurationSettings
from medmill.builders.curation.text import (
    TextView,
    all_texts,
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


class ValidateStep(MapStep):
    """Re-validate records made in memory against their schema."""

    name = "validate"

    def __call__(self, records: list[Record]) -> StepResult:
        kept, rejects = [], []
        for r in records:
            try:
                kept.append(type(r).model_validate(r.model_dump()))
            except ValidationError as e:
                first = e.errors()[0]
                rejects.append(_reject("validate", "invalid_record", f"{'.'.join(map(str, first['loc']))}: {first['msg']}", r))
        return StepResult(kept, rejects, Counter({"invalid": len(rejects)}) if rejects else Counter())

    def keeps_unchanged(self, view: TextView) -> list[bool]:
        """Per record of `view` (records the model accepted as they are): True when the step keeps it
        as it is and counts nothing for it. A record valid when read is valid again."""
        return [True] * len(view)


class QualityStep(MapStep):
    name = "quality"

    def __init__(self, settings: CurationSettings) -> None:
        self.settings = settings

    @property
    def rules(self) -> QualityRules:
        if "_rules" not in self.__dict__:
            s = self.settings
            self._rules = QualityRules(QualityConfig(min_chars=s.min_chars, max_chars=s.max_chars,
                                                     min_cjk_share=s.min_cjk_share, strip_boilerplate=s.strip_boilerplate))
        return self._rules

    def __call__(self, records: list[Record]) -> StepResult:
        kept, rejects, counters = [], [], Counter()
        for r, verdict in zip(records, self.rules.check_many(records), strict=True):
            if verdict.touched:
                counters.update(verdict.touched)
            if verdict.record is None:
                counters[f"dropped.{verdict.reason}"] += 1
                rejects.append(_reject("quality", verdict.reason, verdict.message, r))
            else:
                kept.append(verdict.record)
        return StepResult(kept, rejects, counters)

    def keeps_unchanged(self, view: TextView) -> list[bool]:
        """See ValidateStep.keeps_unchanged."""
        return self.rules.unchanged_many(view)

    def summary(self, counters: Counter) -> dict[str, Any]:
        return {"rules": dict(sorted(counters.items()))}


class PIIStep(MapStep):
    name = "pii"

    def __init__(self, settings: CurationSettings) -> None:
        self.settings = settings

    @property
    def scanner(self) -> PIIScanner:
        if "_scanner" not in self.__dict__:
            self._scanner = PIIScanner(self.settings.pii_types)
        return self._scanner

    def __call__(self, records: list[Record]) -> StepResult:
        kept, rejects, counters = [], [], Counter()
        find = self.scanner.find
        for r in records:
            if not any(find(text) for _role, text in all_texts(r)):  # most records: nothing to redact
                kept.append(r)
                continue
            found: Counter = Counter()

            def redact(_role: str, text: str, found: Counter = found) -> str:
                new, counts = self.scanner.redact(text)
                found.update(counts)
                return new

            new = rewrite(r, redact)
            if not found:
                kept.append(r)
                continue
            counters.update({f"found.{k}": v for k, v in found.items()})
            kinds = ", ".join(f"{k}x{v}" for k, v in sorted(found.items()))
            if self.settings.pii_action == "drop":
                counters["records_dropped"] += 1
                rejects.append(_reject("pii", "pii", f"contains {kinds}", r))
            else:
                counters["records_redacted"] += 1
                kept.append(with_meta(new, pii=dict(sorted(found.items()))))
        return StepResult(kept, rejects, counters)

    def keeps_unchanged(self, view: TextView) -> list[bool]:
        """See ValidateStep.keeps_unchanged: no text holds anything to redact."""
        find = self.scanner.find
        texts = [text for turns in view.turns for _role, text in turns]
        maybe = iter(self.scanner.may_find_many(texts).tolist())
        return [not any([bool(next(maybe)) and bool(find(text)) for _role, text in turns]) for turns in view.turns]

    def summary(self, counters: Counter) -> dict[str, Any]:
        return {"action": self.settings.pii_action, **dict(sorted(counters.items()))}


def safety_matcher(settings: CurationSettings) -> SafetyMatcher:
    lexicon = default_lexicon()
    for path in settings.lexicons:
        lexicon.merge(load_lexicon(path))
    return SafetyMatcher(lexicon, flag_only=settings.safety_flag_only)


class SafetyStep(MapStep):
    name = "safety"

    def __init__(self, settings: CurationSettings) -> None:
        self.settings = settings

    @property
    def matcher(self) -> SafetyMatcher:
        if "_matcher" not in self.__dict__:
            self._matcher = safety_matcher(self.settings)
        return self._matcher

    def __call__(self, records: list[Record]) -> StepResult:
        matcher = self.matcher
        kept, rejects, counters = [], [], Counter()
        texts = [judged_texts(r) for r in records]
        found = iter(matcher.scan_many([text for judged in texts for _role, text in judged]))
        for r, judged in zip(records, texts, strict=True):
            hits: dict[str, set[str]] = {}
            for _ in judged:
                for h in next(found):
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
        return StepResult(kept, rejects, counters)

    def keeps_unchanged(self, view: TextView) -> list[bool]:
        """See ValidateStep.keeps_unchanged: no judged text hits the lexicon."""
        judged = [view.judged(i) for i in range(len(view))]
        found = iter(self.matcher.scan_many([text for texts in judged for _role, text in texts]))
        return [not [h for _ in texts for h in next(found)] for texts in judged]

    def summary(self, counters: Counter) -> dict[str, Any]:
        lexicon = self.matcher.lexicon
        return {"lexicon": lexicon.name, "lexicon_version": lexicon.version, **dict(sorted(counters.items()))}


class DecontaminateStep(GlobalStep):
    """Drop records sharing a long n-gram with an eval set (the eval index is built on first use)."""

    name = "decontaminate"

    def __init__(self, settings: CurationSettings) -> None:
        self.settings = settings

    @property
    def index(self) -> EvalIndex:
        if "_index" not in self.__dict__:
            s = self.settings
            self._index = EvalIndex.build(s.decontaminate, s.decontam_ngram, field_name=s.decontam_field,
                                          skip_bad_lines=s.decontam_skip_bad_lines)
        return self._index

    def keeps_unchanged(self, view: TextView) -> list[bool]:
        """See ValidateStep.keeps_unchanged: no text shares an n-gram with an eval set."""
        matched = {m.index for m in self.index.matches([view.text(i, ["all"]) for i in range(len(view))])}
        return [i not in matched for i in range(len(view))]

    def __call__(self, records: list[Record]) -> StepResult:
        index = self.index
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
            "skipped_bad_eval_lines": len(index.skipped_lines),
            "matched_by_eval_file": dict(sorted(by_file.items())),
        }
        counters = Counter({"removed": len(matches)})
        if index.skipped_lines:
            counters["skipped_bad_eval_lines"] = len(index.skipped_lines)
        return StepResult(kept, rejects, counters, stats)


def dedup_config(settings: CurationSettings, protected_terms: Iterable[str] = ()) -> DedupConfig:
    return DedupConfig(
        threshold=settings.dedup_threshold,
        shingle=settings.dedup_shingle,
        ngram=settings.dedup_ngram,
        num_perm=settings.dedup_num_perm,
        fact_guard=settings.dedup_fact_guard,
        max_compare=settings.dedup_max_compare,
        bucket_depth=settings.dedup_bucket_depth,
        protected_terms=frozenset(protected_terms),
    )


CLUSTER_EXAMPLES = 20  # duplicate clusters a build keeps in manifest.json (the report shows them)
CLUSTER_EXAMPLE_MEMBERS = 10


def builder_origin(record: Record) -> str:
    """Where a record comes from, for dedup reports: the builder that made it."""
    return record.source.builder or ""


class DedupStep(GlobalStep):
    """Exact + near-duplicate removal; with an index, against earlier runs too (this run's kept records
    are added to the index only after the dataset is written).

    A build keeps its largest clusters in the manifest; `clusters_file` (medmill dedup) writes every
    cluster to clusters.jsonl instead."""

    name = "dedup"

    def __init__(self, fields: list[str], config: DedupConfig, index: Path | None = None,
                 origin: Callable[[Record], str] = builder_origin, clusters_file: bool = False, kind: str | None = None) -> None:
        self.fields, self.config, self.index, self.origin, self.clusters_file = fields, config, index, origin, clusters_file
        self.kind = kind  # checked against the index's kind (an sft index must not take pretrain texts)

    def __call__(self, records: list[Record]) -> StepResult:
        from medmill.builders.curation.index import DedupIndex
        from medmill.builders.curation.record_dedup import dedup_records

        index = DedupIndex.open(self.index, self.config) if self.index else None
        if index is not None and self.kind:
            index.check_kind(self.kind)
        out = dedup_records(records, self.fields, self.config, self.origin, index)
        if self.clusters_file:
            files = {"clusters.jsonl": "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in out.clusters)}
            result = StepResult(out.kept, out.rejects, out.counters, out.stats, files=files)
        else:
            # a build writes no clusters.jsonl: the largest clusters go into the manifest for the report
            largest = sorted(out.clusters, key=lambda c: -len(c["members"]))[:CLUSTER_EXAMPLES]
            examples = [{**c, "members": c["members"][:CLUSTER_EXAMPLE_MEMBERS]} for c in largest]
            result = StepResult(out.kept, out.rejects, out.counters, {**out.stats, "cluster_examples": examples})
        if index is not None:
            # only once the dataset is written: a failed build must not leave its records in the
            # index, or its re-run would find every record "already published"
            result.on_commit.append(lambda: out.add_to(index))
        return result


def dedup_step(
    kind: str, settings: CurationSettings, origin: Callable[[Record], str] = builder_origin, protected_terms: Iterable[str] = ()
) -> DedupStep:
    """`protected_terms` (entity names, KG values the build read) are facts: records differing in them
    are not merged."""
    config = dedup_config(settings, protected_terms)
    return DedupStep(check_fields(kind, settings.dedup_fields), config, settings.dedup_index, origin, kind=kind)


def curation_steps(kind: str, settings: CurationSettings | None = None, protected_terms: Iterable[str] = ()) -> list[Step]:
    """The steps a build of `kind` runs, as `settings` (defaults: all on, PII redacted) asks;
    `protected_terms` go to the dedup fact guard."""
    settings = settings or CurationSettings()
    steps: list[Step] = [ValidateStep()] if settings.validate_records else []
    if settings.quality:
        steps.append(QualityStep(settings))
    if settings.pii:
        steps.append(PIIStep(settings))
    if settings.safety:
        steps.append(SafetyStep(settings))
    if settings.decontaminate:
        steps.append(DecontaminateStep(settings))
    if settings.dedup:
        steps.append(dedup_step(kind, settings, protected_terms=protected_terms))
    return steps
