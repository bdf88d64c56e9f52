"""One `medmill eval` run: read every --data source once, then each --model in turn (one model in memory
at a time), per-item results cached under OUT/items/, summaries into OUT/results.json and OUT/report.html."""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any

from medmill.builders.core.progress import Progress, no_progress
from medmill.builders.llm.types import LLMSettings
from medmill.evaluation.cache import item_cache
from medmill.evaluation.results import EvalResult, SourceInfo
from medmill.evaluation.settings import EvalSettings
from medmill.schemas.errors import MedmillError


def _free() -> None:
    """Give back the memory of the model the caller just dropped (the next one loads after it)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def run_eval(settings: EvalSettings, llm: LLMSettings | None = None, progress: Progress = no_progress) -> EvalResult:
    from medmill.evaluation.report_html import write_html

    t0 = time.perf_counter()
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    runner = {"mcq": _run_mcq, "generation": _run_generation, "ppl": _run_ppl, "rm": _run_rm, "judge": _run_judge}[settings.task]
    result = runner(settings, llm, progress) if settings.task == "judge" else runner(settings, progress)
    result.out = out
    result.seconds = time.perf_counter() - t0
    (out / "results.json").write_text(json.dumps(result.to_json(), ensure_ascii=False, indent=2), encoding="utf-8")
    write_html(result, out / "report.html")
    return result


def _info(data: str, read: str, n: int, problems: Any, role: str = "domain") -> SourceInfo:
    return SourceInfo(data=data, read=read, role=role, items=n, unusable=problems.count, problems=problems.examples)


def _load(settings: EvalSettings, model: str, kind: str = "causal"):
    """The model, loaded when the first uncached item needs it."""
    from medmill.evaluation.models import LazyModel

    return LazyModel(model, kind, settings.device, settings.bf16, settings.template)


# --- mcq --------------------------------------------------------------------------------------------


def _run_mcq(s: EvalSettings, progress: Progress) -> EvalResult:
    from medmill.evaluation.mcq import run_mcq, summarize
    from medmill.evaluation.mcq_data import load_mcq
    from medmill.evaluation.overlap import check_overlap
    from medmill.evaluation.sources import eval_split

    loaded = []
    sources = []
    overlap = {}
    for data in s.data:
        items, problems, read = load_mcq(Path(data), s.columns, s.split, s.max_items)
        loaded.append(items)
        sources.append(_info(data, read, len(items), problems))
        if s.train_dirs:
            is_dir = Path(data).is_dir()
            split = eval_split(Path(data), s.split) if is_dir else None
            work = Path(s.out) / "overlap" / Path(data).name
            overlap[data] = check_overlap(items, s.train_dirs, work, Path(data) if is_dir else None, split)
    results: dict[str, dict[str, Any]] = {}
    max_new = min(s.max_new_tokens, 32)
    for model in s.models:
        lm = _load(s, model)
        results[model] = {}
        for data, items in zip(s.data, loaded, strict=True):
            cache = item_cache(s.out, "mcq", model, data, s.scoring, s.continuation, s.length_norm, max_new, s.template, s.split)
            with progress(f"mcq {Path(model).name}", len(items)) as advance:
                rows = run_mcq(lm, items, cache, scoring=s.scoring, continuation=s.continuation, length_norm=s.length_norm,
                               batch_size=s.batch_size, max_new_tokens=max_new, advance=advance)  # fmt: skip
            summary = summarize(rows)
            if data in overlap and overlap[data]["overlapping_items"]:
                seen = set(overlap[data]["overlapping_keys"])
                clean = [r for r in rows if r["key"] not in seen]
                summary["accuracy_without_overlap"] = sum(r["correct"] for r in clean) / len(clean) if clean else None
            summary["item_results"] = str(cache.path)
            results[model][data] = summary
        del lm
        _free()
    return EvalResult(s, sources, results, overlap)


# --- generation / judge ---------------------------------------------------------------------------


def _gen_sources(s: EvalSettings):
    from medmill.evaluation.generation import gen_items
    from medmill.evaluation.sources import load_records

    loaded, sources = [], []
    for data in s.data:
        records, problems, read = load_records(Path(data), "sft", s.split, s.max_items)
        items = gen_items(records, problems)
        if not items:
            raise MedmillError(f"{data}: no conversation ends with an answer to compare against")
        loaded.append(items)
        sources.append(_info(data, read, len(items), problems))
    return loaded, sources


def _answers(s: EvalSettings, model: str, data: str, items, progress: Progress) -> tuple[list[dict[str, Any]], str]:
    from medmill.evaluation.generation import run_generation

    cache = item_cache(s.out, "generation", model, data, s.max_new_tokens, s.template, s.split)
    todo = [i for i in items if i.key not in cache]
    if todo:
        lm = _load(s, model)
        with progress(f"generate {Path(model).name}", len(items)) as advance:
            rows = run_generation(lm, items, cache, max_new_tokens=s.max_new_tokens, batch_size=s.batch_size, advance=advance)
        del lm
        _free()
    else:
        rows = cache.rows([i.key for i in items])
    return rows, str(cache.path)


def _run_generation(s: EvalSettings, progress: Progress) -> EvalResult:
    from medmill.evaluation.generation import score_generation

    loaded, sources = _gen_sources(s)
    results: dict[str, dict[str, Any]] = {}
    for model in s.models:
        results[model] = {}
        for data, items in zip(s.data, loaded, strict=True):
            rows, path = _answers(s, model, data, items, progress)
            summary, details = score_generation(items, rows, s.grounding_threshold)
            detail_file = Path(s.out) / "details" / f"{Path(path).parent.name}-{Path(path).stem}.jsonl"
            detail_file.parent.mkdir(parents=True, exist_ok=True)
            detail_file.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in details), encoding="utf-8")
            summary["item_results"] = str(detail_file)
            results[model][data] = summary
    return EvalResult(s, sources, results)


def _run_judge(s: EvalSettings, llm: LLMSettings | None, progress: Progress) -> EvalResult:
    from medmill.evaluation.judge import judge_pairs

    if llm is None or not llm.model:
        raise MedmillError("--task judge needs a judge model: --llm-model NAME (and --llm-base-url for a local server)")
    loaded, sources = _gen_sources(s)
    first = s.models[0]
    opponent = s.models[1] if len(s.models) > 1 else "reference"
    results: dict[str, dict[str, Any]] = {first: {}}
    for data, items in zip(s.data, loaded, strict=True):
        rows_1, _ = _answers(s, first, data, items, progress)
        if opponent == "reference":
            answers_2 = {i.key: i.reference for i in items}
        else:
            rows_2, _ = _answers(s, opponent, data, items, progress)
            answers_2 = {r["key"]: r["output"] for r in rows_2}
        answers_1 = {r["key"]: r["output"] for r in rows_1}
        summary, details = judge_pairs(items, answers_1, answers_2, llm, Path(s.out), s.judge_prompt, progress)
        summary["opponent"] = opponent
        detail_file = Path(s.out) / "details" / f"judge-{Path(data).name}.jsonl"
        detail_file.parent.mkdir(parents=True, exist_ok=True)
        detail_file.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in details), encoding="utf-8")
        summary["item_results"] = str(detail_file)
        results[first][data] = summary
    return EvalResult(s, sources, results)


# --- ppl / rm -------------------------------------------------------------------------------------


def _run_ppl(s: EvalSettings, progress: Progress) -> EvalResult:
    from medmill.evaluation.ppl import run_ppl, summarize_ppl
    from medmill.evaluation.sources import is_dir_source, load_records
    from medmill.schemas.dataset_dir import detect_kind

    loaded, sources = [], []
    for data, role in [(d, "domain") for d in s.data] + [(g, "general") for g in s.general]:
        kind = detect_kind(Path(data)) if is_dir_source(Path(data), allow_text_folder=True) else "pretrain"
        if kind == "preference":
            raise MedmillError(f"{data}: perplexity reads pretrain or sft dirs, or text files")
        records, problems, read = load_records(Path(data), kind, s.split, s.max_items)
        loaded.append((data, kind, records))
        sources.append(_info(data, read, len(records), problems, role))
    results: dict[str, dict[str, Any]] = {}
    for model in s.models:
        lm = _load(s, model)
        results[model] = {}
        for (data, kind, records), info in zip(loaded, sources, strict=True):
            cache = item_cache(s.out, "ppl", model, data, s.max_length, s.split)
            with progress(f"ppl {Path(model).name}", len(records)) as advance:
                rows = run_ppl(lm, records, kind, cache, max_length=s.max_length, batch_size=s.batch_size, advance=advance)
            results[model][data] = {**summarize_ppl(rows), "role": info.role, "item_results": str(cache.path)}
        del lm
        _free()
    return EvalResult(s, sources, results)


def _run_rm(s: EvalSettings, progress: Progress) -> EvalResult:
    from medmill.evaluation.rm import run_rm, summarize_rm
    from medmill.evaluation.sources import load_records

    loaded, sources = [], []
    for data in s.data:
        records, problems, read = load_records(Path(data), "preference", s.split, s.max_items)
        loaded.append(records)
        sources.append(_info(data, read, len(records), problems))
    results: dict[str, dict[str, Any]] = {}
    for model in s.models:
        lm = _load(s, model, "scorer")
        results[model] = {}
        for data, records in zip(s.data, loaded, strict=True):
            cache = item_cache(s.out, "rm", model, data, s.split, s.template)
            with progress(f"rm {Path(model).name}", len(records)) as advance:
                rows = run_rm(lm, records, cache, batch_size=s.batch_size, advance=advance)
            results[model][data] = {**summarize_rm(rows), "item_results": str(cache.path)}
        del lm
        _free()
    return EvalResult(s, sources, results)
