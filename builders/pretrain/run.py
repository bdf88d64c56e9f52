"""The build-pt run: inputs -> normalised, cleaned texts -> documents -> repeated-paragraph removal
-> running-text rules + curation (validate, quality, PII, safety, dedup) -> token counts -> dataset
dir; or, with `--mix`, a token-ratio mixture of existing pretrain dirs.

Wired through the shared build tail (`finish_build`) until the build skeleton lands; the stages
are the functions of the sibling modules, so porting is a matter of this file only.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from medmill.builders.core.build import finish_build
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.pipeline import LocalExecutor, Step
from medmill.builders.core.writer import BuildInfo
from medmill.builders.curation.stages import curation_steps
from medmill.builders.curation.text_quality import running_text_step
from medmill.builders.pretrain.boilerplate import BoilerplateConfig, boilerplate_step
from medmill.builders.pretrain.config import BUILDER, BUILDER_VERSION, PretrainBuild
from medmill.builders.pretrain.documents import make_documents
from medmill.builders.pretrain.mixing import parse_mix, plan_mix
from medmill.builders.pretrain.normalise import T2S, normalise_text, tidy_whitespace
from medmill.builders.pretrain.sources import InputLog, iter_sources
from medmill.builders.pretrain.tokens import TokenCounter, token_step
from medmill.builders.text.clean import clean_text
from medmill.schemas import PretrainRecord, RejectRow, Source
from medmill.schemas.dataset_dir import detect_kind, iter_rows
from medmill.schemas.errors import MedmillError
from medmill.schemas.records import stable_id

TOKEN_BATCH = 512
Tick = Callable[[int], None]  # progress: called with the number of input characters just processed


def _noop(_n: int) -> None:
    return None


def run_build_pt(cfg: PretrainBuild, command: str = "medmill build-pt", tick: Tick = _noop) -> Manifest:
    """Build (or, with cfg.mix, mix) a pretraining dataset dir."""
    if cfg.mix is not None:
        return run_mix(cfg, command)
    t0 = time.perf_counter()
    counts: Counter = Counter()
    log = InputLog()
    rejects: list[RejectRow] = []
    tokens = TokenCounter(cfg.tokenizer)  # a bad --tokenizer fails before any reading
    records = list(read_documents(cfg, log, counts, rejects, tick))
    t1 = time.perf_counter()
    result = LocalExecutor().run(records, pretrain_steps(cfg, tokens))
    del records
    t2 = time.perf_counter()
    counters = Counter(counts)
    counters.update(log.counts)
    counters.update(result.counters)
    info = BuildInfo(
        kind="pretrain",
        builder=BUILDER,
        command=command,
        params=cfg.model_dump(mode="json", exclude={"inputs", "out"}),
        inputs=log.files,
        seed=cfg.seed,
        val_size=cfg.val_size,
        test_size=cfg.test_size,
        license=cfg.license,
        source_licenses=cfg.source_licenses,
        counters=counters,
        curation=result.stats,
        timings={"read_clean_cut": t1 - t0, **{f"curate.{k}": v for k, v in result.timings.items()}, "curation": t2 - t1},
        description=describe_build(cfg, result.stats["boilerplate"], result.stats["tokens"]),
    )
    manifest = finish_build(cfg.out, result.records, log.rejects + rejects + result.rejects, info, (), started=t0)
    for commit in result.on_commit:
        commit()
    return manifest


def read_documents(
    cfg: PretrainBuild, log: InputLog, counts: Counter, rejects: list[RejectRow], tick: Tick = _noop
) -> Iterator[PretrainRecord]:
    """Inputs -> normalised, cleaned texts -> documents, one input file in memory at a time."""
    t2s = T2S() if cfg.t2s else None
    for src in iter_sources(
        cfg.inputs, log, include=cfg.include, exclude=cfg.exclude, text_field=cfg.text_field, literature=cfg.literature
    ):
        tick(len(src.text))
        counts["input_chars"] += len(src.text)
        text = normalise_text(src.text, counts)
        if t2s is not None:
            text = t2s(text, counts)
        if src.clean:
            cleaned = clean_text(text, cfg.clean)
            counts.update({f"clean.{k}": v for k, v in cleaned.counts.items() if v})
            text = cleaned.text
        else:
            text = tidy_whitespace(text, counts)
        if not text.strip():
            rejects.append(_reject("clean", "empty_after_cleaning", f"{src.name}: nothing left after cleaning", src.name, src.line))
            continue
        unit = cfg.doc_unit if src.clean else "file"  # rendered records are one document each (cut if long)
        counts["texts"] += 1
        group = src.name if src.kind == "json" else src.name.split("#", 1)[0]
        for piece in make_documents(text, unit, cfg.max_doc_chars, cfg.min_doc_chars):
            counts["documents_cut"] += 1
            meta = {"kind": src.kind, "unit": unit, **src.meta}
            if piece.headings:
                meta["headings"] = piece.headings
            # a section (its heading path) never straddles splits; finer than a file, so a single book
            # still gives a validation split near --val-size
            section = "|".join(piece.headings) if piece.headings and unit != "file" else ""
            source = Source(
                file=src.name.partition("#")[0].rpartition("@")[0] or src.name.partition("#")[0],
                line=src.line, offset=piece.offset, ref=f"{src.name}@{piece.offset}",
                group=f"{group}|{section}" if section else group, builder=BUILDER, builder_version=BUILDER_VERSION,
            )
            yield PretrainRecord(id=PretrainRecord.make_id(piece.text), text=piece.text, source=source, meta=meta)


def pretrain_steps(cfg: PretrainBuild, tokens: TokenCounter) -> list[Step]:
    """Repeated-paragraph removal, then the curation steps with the running-text rules after
    validation, then token counts (on the final texts, after PII redaction)."""
    steps = curation_steps("pretrain", cfg.curation)
    at = 1 if steps and steps[0].name == "validate" else 0
    steps.insert(at, running_text_step(cfg.text_quality.rules()))
    bp = BoilerplateConfig(cfg.boilerplate_min_docs, cfg.boilerplate_min_chars)
    return [boilerplate_step(bp, cfg.min_doc_chars), *steps, token_step(tokens)]


def _reject(stage: str, reason: str, message: str, file: str | None, line: int | None, raw: Any = None) -> RejectRow:
    return RejectRow(stage=stage, reason=reason, message=message, source=Source(file=file, line=line, builder=BUILDER, builder_version=BUILDER_VERSION), raw=raw)


def describe_build(cfg: PretrainBuild, boilerplate: dict[str, Any], tokens: dict[str, Any]) -> str:
    """Card summary: method, token count (said as an estimate when it is one), repeated paragraphs."""
    label = "estimated from characters" if tokens["estimate"] else f"counted with {tokens['method']}"
    lines = [
        f"Pretraining documents (`text`) cut per {cfg.doc_unit} (at most {cfg.max_doc_chars} characters, cut at "
        "paragraph and sentence ends) from guideline, textbook and other texts, cleaned of page numbers, running "
        "headers and broken lines; full-width punctuation kept (NFC, not NFKC)"
        + ("; Traditional converted to Simplified Chinese (OpenCC t2s)" if cfg.t2s else "")
        + ". Paragraphs repeated across many documents were removed, documents failing running-text rules "
        "(CJK share, symbol and digit share, repeated lines, mean line length) dropped, PII and safety rules "
        "applied and exact and near-duplicate documents removed.",
        "",
        f"Tokens: {tokens['tokens_total']:,} in {tokens['documents']:,} documents ({label}).",
        "",
    ]
    lines += ["| source | documents | tokens |", "|---|---|---|"]
    lines += [f"| `{f}` | {v['documents']:,} | {v['tokens']:,} |" for f, v in tokens["by_file"].items()]
    if tokens["files"] > len(tokens["by_file"]):
        lines.append(f"| … {tokens['files'] - len(tokens['by_file'])} more | | |")
    lines.append("")
    if boilerplate["top"]:
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


def run_mix(cfg: PretrainBuild, command: str = "medmill build-pt") -> Manifest:
    """A token-ratio mixture of pretrain dirs (see mixing.py), with epochs per source in the card."""
    assert cfg.mix is not None
    t0 = time.perf_counter()
    entries = parse_mix(cfg.mix.spec)
    counter = TokenCounter(cfg.tokenizer)
    rows_by_source: dict[str, list[dict[str, Any]]] = {}
    tokens_by_source: dict[str, list[int]] = {}
    files: list[Path] = []
    for e in entries:
        path = Path(e.name)
        kind = detect_kind(path)
        if kind != "pretrain":
            raise MedmillError(f"--mix: {e.name} holds {kind} records; mix pretrain dirs (build-pt outputs)")
        rows = [row for _split, _shard, _i, row in iter_rows(path)]
        if not rows:
            raise MedmillError(f"--mix: {e.name} holds no records")
        rows_by_source[e.name] = rows
        tokens_by_source[e.name] = [n for i in range(0, len(rows), TOKEN_BATCH) for n in counter.count([r["text"] for r in rows[i : i + TOKEN_BATCH]])]
        if (path / "manifest.json").is_file():
            files.append(path / "manifest.json")
    plans = plan_mix(
        tokens_by_source, {e.name: e.weight for e in entries},
        max_epochs=cfg.mix.max_epochs, seed=cfg.seed, total=cfg.mix.total_tokens,
        keys={name: [str(r["id"]) for r in rows] for name, rows in rows_by_source.items()},
    )
    out_rows: list[dict[str, Any]] = []
    for plan in plans:
        rows, tokens = rows_by_source[plan.name], tokens_by_source[plan.name]
        for index, epoch in plan.selection:
            out_rows.append(_mixed_row(rows[index], tokens[index], plan.name, epoch))
    total = sum(p.tokens_selected for p in plans)
    report = {p.name: p.report(total) for p in plans}
    counters = Counter({"mix.tokens_total": total, "mix.documents_total": len(out_rows)})
    for p in plans:
        counters[f"mix.{p.name}.tokens_before"] = p.tokens_available
        counters[f"mix.{p.name}.tokens_after"] = p.tokens_selected
        counters[f"mix.{p.name}.documents_before"] = p.docs_available
        counters[f"mix.{p.name}.documents_after"] = p.docs_selected
    mix_stats = {
        "token_method": counter.method,
        "estimate": not counter.exact,
        "max_epochs": cfg.mix.max_epochs,
        "total_tokens_requested": cfg.mix.total_tokens,
        "tokens_total": total,
        "seed": cfg.seed,
        "sources": report,
    }
    info = BuildInfo(
        kind="pretrain",
        builder=f"{BUILDER}-mix",
        command=command,
        params=cfg.model_dump(mode="json", exclude={"inputs", "out"}),
        inputs=files,
        seed=cfg.seed,
        val_size=cfg.val_size,
        test_size=cfg.test_size,
        license=cfg.license,
        source_licenses=cfg.source_licenses,
        counters=counters,
        curation={"mix": mix_stats},
        timings={"mix": time.perf_counter() - t0},
        description=describe_mix(mix_stats),
    )
    return finish_build(cfg.out, out_rows, [], info, (), started=t0)


def _mixed_row(row: dict[str, Any], tokens: int, source: str, epoch: int) -> dict[str, Any]:
    """A selected row; repeats (epoch >= 1) get their own id, and every copy keeps the original's
    split group so no document is in train and validation at once."""
    import json

    meta = json.loads(row["meta"]) if isinstance(row.get("meta"), str) and row["meta"] else dict(row.get("meta") or {})
    src = dict(row.get("source") or {})
    src["group"] = src.get("group") or row["id"]
    meta.update({"mix_source": source, "epoch": epoch, "tokens": tokens})
    rid = row["id"] if epoch == 0 else stable_id("pretrain", [row["text"], epoch])
    return {"id": rid, "text": row["text"], "source": src, "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True)}


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
