"""medmill dedup DIR... --out DIR: exact + MinHash near-duplicate removal across dataset dirs,
optionally against a persisted index of earlier runs; writes clusters.jsonl beside the data."""

from __future__ import annotations

from pathlib import Path

import typer

from medmill.commands._run_options import (
    ExecutorOption,
    OutOption,
    RayAddressOption,
    RunOptions,
    WorkersOption,
)
from medmill.config import ConfigOption
from medmill.schemas.errors import MedmillError


def dedup(
    dirs: list[Path] = typer.Argument(..., help="Dataset dir(s) of one record kind; earlier dirs win ties."),
    out: str = OutOption,
    threshold: float = typer.Option(0.6, "--threshold", help="Exact Jaccard at or above which records are near-duplicate candidates."),
    fact_guard: bool = typer.Option(True, "--fact-guard/--no-fact-guard", help="Keep near-identical records that state different facts (entity names, medical terms, numbers)."),
    protect: list[Path] = typer.Option([], "--protect", help="File of protected terms (entity names, drug names; whitespace-separated): records differing in one are never merged; repeatable."),
    shingle: str = typer.Option("char", "--shingle", help="char (character n-grams) or word (jieba word n-grams, slower)."),
    ngram: int = typer.Option(0, "--ngram", help="Shingle length (0 = 3 for both char and word; char 3 measured best in bench/dedup.py)."),
    num_perm: int = typer.Option(128, "--num-perm", help="MinHash permutations."),
    max_compare: int = typer.Option(64, "--max-compare", help="Exact comparisons per near-duplicate candidate: the N best-ranked kept records sharing an LSH bucket with it (most shared buckets first, then earliest)."),
    bucket_depth: int = typer.Option(16, "--bucket-depth", help="Candidates of a record: the first N records of each LSH bucket it is in. On crowded buckets (templated corpora) more finds more duplicates and costs more time."),
    fields: str = typer.Option("", "--fields", help="Compared text, comma-separated (sft: system,user,assistant,answer,all; preference: prompt,chosen,rejected,all; pretrain: text). Default: sft user,answer; preference prompt; pretrain text."),
    index: Path | None = typer.Option(None, "--index", help="Persisted index dir: dedup against earlier runs, then add this run's survivors."),
    decontaminate: list[Path] = typer.Option([], "--decontaminate", help="Eval set (dataset dir, JSON/JSONL/CSV) to decontaminate against; repeatable."),
    decontam_ngram: int = typer.Option(13, "--decontam-ngram", help="Shared character n-gram length that counts as contamination."),
    workers: int = WorkersOption,
    executor: str = ExecutorOption,
    ray_address: str = RayAddressOption,
    config: Path | None = ConfigOption,
) -> None:
    """Remove exact and near-duplicate records across dataset dirs (MinHash LSH + exact Jaccard check).

    The first record seen is kept: earlier runs in --index, then the dirs in the order given (within a
    dir: test, validation, train). A record is removed only when its exact Jaccard with a kept record
    reaches --threshold and the two do not state different facts (a differing entity name, protected
    term, medical term or number keeps both: counted as fact_guarded_pairs); its reject names that
    record and the similarity. No chains: a removed record never causes another removal.
    clusters.jsonl lists every kept record with its removed copies.
    """
    from medmill.builders.curation.dedup import DedupConfig
    from medmill.builders.curation.index import DedupIndex
    from medmill.builders.curation.inputs import origin_of
    from medmill.builders.curation.stages import DedupStep
    from medmill.builders.curation.text import check_fields
    from medmill.commands._curate_dirs import run_over_dirs
    from medmill.commands._curation_options import curation_config

    if shingle not in ("char", "word"):
        raise MedmillError(f"--shingle must be char or word, got {shingle!r}")
    if not 0.0 < threshold <= 1.0:
        raise MedmillError(f"--threshold must be in (0, 1], got {threshold}")
    if not 16 <= num_perm <= 1024:
        raise MedmillError(f"--num-perm must be in [16, 1024], got {num_perm}")
    if ngram < 0:
        raise MedmillError(f"--ngram must be positive, got {ngram}")
    if max_compare < 1:
        raise MedmillError(f"--max-compare must be at least 1, got {max_compare}")
    if bucket_depth < 1:
        raise MedmillError(f"--bucket-depth must be at least 1, got {bucket_depth}")
    for p in [*decontaminate, *protect]:
        if not p.exists():
            raise MedmillError(f"file not found: {p}")
    terms = _protected_terms(protect)
    cfg = DedupConfig(threshold=threshold, shingle=shingle, ngram=ngram, num_perm=num_perm, workers=workers,
                      fact_guard=fact_guard, protected_terms=terms, max_compare=max_compare,
                      bucket_depth=bucket_depth)
    settings = curation_config(
        validate_records=False, quality=False, pii=False, safety=False, dedup=False, decontaminate=list(decontaminate),
        decontam_ngram=decontam_ngram, dedup_threshold=threshold,
    )
    field_list = [f.strip() for f in fields.split(",") if f.strip()]
    if index:
        DedupIndex.open(index, cfg)  # a bad index is an error before anything is read

    def make_steps(kind: str) -> list:
        return [DedupStep(check_fields(kind, field_list), cfg, index, origin_of, clusters_file=True, kind=kind)]

    params = {"threshold": threshold, "fact_guard": fact_guard, "protect": [str(p) for p in protect], "shingle": shingle,
              "ngram": cfg.params.ngram, "num_perm": num_perm, "max_compare": max_compare,
              "bucket_depth": bucket_depth, "fields": field_list, "index": str(index) if index else None,
              "decontaminate": [str(p) for p in decontaminate]}
    manifest = run_over_dirs("dedup", dirs, out, settings, params, make_steps, RunOptions(executor, workers, ray_address))
    if index is not None:
        grown = DedupIndex.open(index, cfg)
        added = manifest.curation.get("dedup", {}).get("out", 0)
        typer.echo(f"index {index}: {grown.meta['records']} records" + (f" (added {grown.meta['parts'][-1]})" if added else ""))


def _protected_terms(files: list[Path]) -> frozenset[str]:
    from medmill.builders.readers.textio import read_text

    terms: set[str] = set()
    for path in files:
        text = read_text(path).text
        terms |= {w for line in text.splitlines() for w in line.split("#", 1)[0].split()}
    return frozenset(terms)


def register(app: typer.Typer) -> None:
    app.command("dedup")(dedup)
