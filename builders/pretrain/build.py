"""The pt builders (`medmill build-pt`): `PretrainBuilder` turns texts into documents (read: load,
normalise, clean, cut, count paragraphs; generate: remove repeated paragraphs; curation: running-text
rules, quality, PII, safety, dedup, then token counts); `MixBuilder` mixes pretrain dirs by token
share. What generation found (repeated paragraphs, the mixture's figures) goes to `out.stats`, so the
manifest's `stats` and the card; run_build curates, splits and writes both."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from medmill.builders.core.builder import BuildContext, Builder, Inputs, ItemStream
from medmill.builders.core.collect import Collector
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.steps import Step
from medmill.builders.curation.stages import ValidateStep, curation_steps
from medmill.builders.curation.text_quality import RunningTextStep
from medmill.builders.pretrain import BUILDER, BUILDER_VERSION
from medmill.builders.pretrain.boilerplate import (
    BoilerplateConfig,
    ParagraphCounter,
    StripBoilerplateStep,
    strip_repeated_paragraphs,
)
from medmill.builders.pretrain.config import MixConfig, PretrainConfig
from medmill.builders.pretrain.mixing import TOKEN_BATCH, mix_figures, mixed_record, plan_mix
from medmill.builders.pretrain.prepare import count_input_files, read_documents
from medmill.builders.pretrain.sources import InputLog
from medmill.builders.pretrain.tokens import TokenCounter, TokenStep
from medmill.builders.readers.batch_spill import BatchSpill
from medmill.schemas.dataset_dir import detect_kind, iter_rows
from medmill.schemas.errors import MedmillError


class PretrainBuilder(Builder[PretrainConfig]):
    name = BUILDER
    version = BUILDER_VERSION
    kind = "pretrain"
    config = PretrainConfig

    def read(self, cfg: PretrainConfig, ctx: BuildContext) -> Inputs:
        TokenCounter(cfg.tokenizer)  # a bad --tokenizer fails before any reading
        log, counts = InputLog(), Counter()
        paragraphs = ParagraphCounter(BoilerplateConfig(cfg.boilerplate_min_docs, cfg.boilerplate_min_chars))
        with ctx.progress("reading and cleaning files", count_input_files(cfg, ctx.own_paths)) as advance:
            docs = list(read_documents(cfg, log, counts, paragraphs, lambda n: advance(n, ""), ctx.own_paths))
        if cfg.limit:
            docs = docs[: cfg.limit]
        if not docs:
            raise MedmillError(
                f"no text in the inputs ({len(log.rejects)} input item(s) rejected"
                + "".join(f"; {r.message}" for r in log.rejects[:3]) + ")"
            )
        counts.update(log.counts)
        return Inputs(docs, log.files, log.rejects, counts, {"paragraphs": paragraphs})

    def read_stream(self, cfg: PretrainConfig, ctx: BuildContext, work: Path, batch_items: int) -> ItemStream:
        """Two passes: this one reads, cleans and cuts every document once, counting paragraphs (the
        whole-input knowledge boilerplate removal needs: 8 B per paragraph) and spilling the documents
        to `work` in pickled batches; the stream then hands those batches out."""
        TokenCounter(cfg.tokenizer)  # a bad --tokenizer fails before any reading
        log, counts = InputLog(), Counter()
        paragraphs = ParagraphCounter(BoilerplateConfig(cfg.boilerplate_min_docs, cfg.boilerplate_min_chars))
        spill = BatchSpill(work / "documents.pickles", batch_items)
        try:  # a bad input ends the read with a MedmillError: the spill file is closed all the same
            with ctx.progress("reading and cleaning files", count_input_files(cfg, ctx.own_paths)) as advance:
                for doc in read_documents(cfg, log, counts, paragraphs, lambda n: advance(n, ""), ctx.own_paths):
                    if not cfg.limit or len(spill) < cfg.limit:  # as `read`: every document counts its paragraphs
                        spill.add(doc)
        finally:
            spill.close()
        if not len(spill):
            raise MedmillError(
                f"no text in the inputs ({len(log.rejects)} input item(s) rejected"
                + "".join(f"; {r.message}" for r in log.rejects[:3]) + ")"
            )
        counts.update(log.counts)
        inputs = Inputs([], log.files, log.rejects, counts, {"paragraphs": paragraphs, "streamed": True})
        return ItemStream(inputs, spill.batches, len(spill))

    def generation(self, cfg: PretrainConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> list[Step]:
        """In memory: `generate` over every document. Streamed: the same removal as a map step."""
        if not inputs.extra.get("streamed"):
            return super().generation(cfg, inputs, ctx, out)
        counter: ParagraphCounter = inputs.extra["paragraphs"]
        repeated = counter.repeated()
        out.count("boilerplate.paragraphs_removed", 0)
        out.count("boilerplate.repeated_paragraphs", len(repeated))
        return [StripBoilerplateStep(repeated, counter.config, cfg.min_doc_chars)]

    def generate(self, cfg: PretrainConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> None:
        kept, rejects, stats = strip_repeated_paragraphs(inputs.items, inputs.extra["paragraphs"], cfg.min_doc_chars)
        inputs.items = []
        out.stats["boilerplate"] = stats
        out.rejects.extend(rejects)
        out.count("boilerplate.paragraphs_removed", stats["paragraphs_removed"])
        out.count("boilerplate.repeated_paragraphs", stats["repeated_paragraphs"])
        out.records.extend(kept)

    def steps(self, cfg: PretrainConfig, kind: str, protected_terms: frozenset[str] = frozenset()) -> list[Step]:
        """Running-text rules after validation, the kind's curation steps, token counts last (on the
        texts written, after PII redaction)."""
        steps: list[Step] = curation_steps(kind, cfg.curation, protected_terms)
        at = 1 if steps and steps[0].name == "validate" else 0
        steps.insert(at, RunningTextStep(cfg.text_quality.rules()))
        return [*steps, TokenStep(cfg.tokenizer)]

    def describe(self, cfg: PretrainConfig, inputs: Inputs, out: Collector) -> str:
        return describe_build(cfg, out.stats.get("boilerplate", {}))

    def figures(self, cfg: PretrainConfig, inputs: Inputs, out: Collector, manifest: Manifest) -> list[tuple[str, Any]]:
        c, tokens = manifest.counters, manifest.curation.get("tokens", {})
        return [
            ("texts read", c.get("texts", 0)),
            ("documents cut", c.get("documents_cut", 0)),
            ("repeated paragraphs removed", c.get("boilerplate.paragraphs_removed", 0)),
            ("tokens" + (" (estimate)" if tokens.get("estimate") else ""), tokens.get("tokens_total", 0)),
        ]


def describe_build(cfg: PretrainConfig, boilerplate: dict[str, Any]) -> str:
    """Card summary: method, how tokens are counted (an estimate when no tokenizer), repeated paragraphs."""
    tokens = f"counted with the tokenizer in `{cfg.tokenizer.name}`" if cfg.tokenizer else "estimated from characters (no --tokenizer)"
    lines = [
        f"Pretraining documents (`text`) cut per {cfg.doc_unit} (at most {cfg.max_doc_chars} characters, cut at "
        "paragraph and sentence ends) from guideline, textbook and other texts, cleaned of page numbers, running "
        "headers and broken lines; full-width punctuation kept (NFC, not NFKC)"
        + ("; Traditional converted to Simplified Chinese (OpenCC t2s)" if cfg.t2s else "")
        + ". Paragraphs repeated across many documents were removed, documents failing running-text rules "
        "(CJK share, symbol and digit share, repeated lines, mean line length) dropped, PII and safety rules "
        "applied and exact and near-duplicate documents removed.",
        "",
        f"Token counts (`meta.tokens`, curation `tokens`) are {tokens}.",
        "",
    ]
    if boilerplate.get("top"):
        lines += [
            f"Repeated paragraphs removed (found in at least {boilerplate['min_docs']} documents; "
            f"{boilerplate['paragraphs_removed']} removals):",
            "",
            "| paragraph | documents |",
            "|---|---|",
        ]
        lines += [f"| {row['paragraph'].replace('|', '/')} | {row['documents']} |" for row in boilerplate["top"]]
    return "\n".join(lines)


# --- mixing --------------------------------------------------------------------------------------


class MixBuilder(Builder[MixConfig]):
    """`build-pt --mix`: a token-share mixture of pretrain dirs (see mixing.py); streamed by default
    (mix_stream.py), the same dir as in memory."""

    name = BUILDER
    version = BUILDER_VERSION
    kind = "pretrain"
    config = MixConfig

    def read(self, cfg: MixConfig, ctx: BuildContext) -> Inputs:
        counter = TokenCounter(cfg.tokenizer)
        sources: dict[str, tuple[list[dict[str, Any]], list[int]]] = {}
        files: list[Path] = []
        for path in cfg.inputs:
            kind = detect_kind(path)
            if kind != "pretrain":
                raise MedmillError(f"--mix: {path} holds {kind} records; mix pretrain dirs (build-pt outputs)")
            rows = [row for _split, _shard, _i, row in iter_rows(path)]
            if not rows:
                raise MedmillError(f"--mix: {path} holds no records")
            tokens = [n for i in range(0, len(rows), TOKEN_BATCH) for n in counter.count([r["text"] for r in rows[i : i + TOKEN_BATCH]])]
            sources[str(path)] = (rows, tokens)
            if (path / "manifest.json").is_file():
                files.append(path / "manifest.json")
        return Inputs([], files, [], Counter(), {"sources": sources, "method": counter.method, "exact": counter.exact})

    def read_stream(self, cfg: MixConfig, ctx: BuildContext, work: Path, batch_items: int) -> ItemStream | None:
        """Every source read once into row files, the plan made, then the picks as a stream (mix_stream.py).
        None (in memory) when the workers may sit on other machines: they read the row files in `work`."""
        if ctx.remote:
            return None
        from medmill.builders.pretrain.mix_stream import mix_stream

        return mix_stream(cfg, work, batch_items)

    def generation(self, cfg: MixConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> list[Step]:
        """In memory: `generate` in the driver. Streamed: the mixture's figures noted here, the records made
        from the picks by `MixStep` on the workers."""
        if "mix_step" not in inputs.extra:
            return super().generation(cfg, inputs, ctx, out)
        out.counters.update(inputs.extra["mix_counters"])
        out.stats["mix"] = inputs.extra["mix_stats"]
        return [inputs.extra["mix_step"]]

    def generate(self, cfg: MixConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> None:
        sources = inputs.extra.pop("sources")
        plans = plan_mix(
            {name: tokens for name, (_rows, tokens) in sources.items()}, cfg.shares,
            max_epochs=cfg.max_epochs, seed=cfg.seed, total=cfg.total_tokens,
            keys={name: [str(r["id"]) for r in rows] for name, (rows, _tokens) in sources.items()},
        )
        for plan in plans:
            rows, tokens = sources[plan.name]
            for index, epoch in plan.selection:
                out.add(mixed_record(rows[index], tokens[index], plan.name, epoch))
        counters, stats = mix_figures(cfg, plans, inputs.extra["method"], inputs.extra["exact"])
        out.counters.update(counters)
        out.stats["mix"] = stats

    def steps(self, cfg: MixConfig, kind: str, protected_terms: frozenset[str] = frozenset()) -> list[Step]:
        # inputs are curated pretrain dirs; dedup would remove the repeats the mixture asks for
        return [ValidateStep()]

    def describe(self, cfg: MixConfig, inputs: Inputs, out: Collector) -> str:
        return describe_mix(out.stats["mix"])

    def figures(self, cfg: MixConfig, inputs: Inputs, out: Collector, manifest: Manifest) -> list[tuple[str, Any]]:
        mix = out.stats["mix"]
        rows: list[tuple[str, Any]] = []
        for name, r in mix["sources"].items():
            rows.append((f"{name}: share asked / reached", f"{r['share_requested']:.3f} / {r['share_reached']:.4f}"))
            rows.append((f"{name}: tokens before -> after", f"{r['tokens_before']:,} -> {r['tokens_after']:,}"))
            rows.append((f"{name}: epochs", f"{r['epochs']:.3f}"))
        rows.append(("tokens" + (" (estimate)" if mix["estimate"] else ""), mix["tokens_total"]))
        return rows

    def params(self, cfg: MixConfig) -> dict[str, Any]:
        return cfg.model_dump(mode="json", exclude={"out"})


def describe_mix(stats: dict[str, Any]) -> str:
    label = "estimated from characters" if stats["estimate"] else f"counted with {stats['token_method']}"
    lines = [
        f"A mixture of pretraining dirs by token share (tokens {label}; seed {stats['seed']}; at most "
        f"{stats['max_epochs']:g} epochs of any source). Repeated documents (epoch ≥ 1) stay in the split of their "
        "first copy.",
        "",
        "| source | share asked | share reached | documents before | tokens before | documents after | tokens after | epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in stats["sources"].items():
        lines.append(
            f"| `{name}` | {r['share_requested']:.3f} | {r['share_reached']:.4f} | {r['documents_before']:,} | "
            f"{r['tokens_before']:,} | {r['documents_after']:,} | {r['tokens_after']:,} | {r['epochs']:.3f} |"
        )
    return "\n".join(lines)
