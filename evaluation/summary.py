"""The side-by-side view of a run (one column per model) shared by the terminal table and the HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HEADLINE = {
    "mcq": ["accuracy", "accuracy_norm", "accuracy_sum", "accuracy_single", "accuracy_multi", "accuracy_without_overlap", "unparsed", "items"],
    "generation": ["rouge_l", "bleu", "grounding_rate", "grounding_rate_kg", "grounding_rate_reference", "grounding_recall", "empty_answers", "mean_answer_chars", "items"],
    "ppl": ["perplexity", "nll_per_token", "tokens", "texts"],
    "rm": ["accuracy", "ties", "mean_margin", "pairs"],
    "judge": ["win_rate", "wins", "ties", "losses", "failed", "position_consistency", "judged"],
}
BREAKDOWN = {"mcq": ("by_category", "accuracy"), "rm": ("by_perturbation", "accuracy")}


def data_label(data: str, role: str | None = None) -> str:
    name = Path(data.rstrip("/")).name or data
    return f"{name} ({role})" if role else name


def model_label(model: str, others: list[str] | None = None) -> str:
    """The checkpoint dir's name, with its parent's when another model has the same name."""
    p = Path(model.rstrip("/"))
    clash = [o for o in others or [] if o != model and Path(o.rstrip("/")).name == p.name]
    return f"{p.parent.name}/{p.name}" if clash and p.parent.name else p.name


def side_by_side(task: str, results: dict[str, dict[str, dict[str, Any]]], roles: dict[str, str] | None = None) -> tuple[list[str], list[tuple[str, str, list[Any]]]]:
    """(model column labels, rows of (data label, metric, one value per model))."""
    models = list(results)
    datas = list(dict.fromkeys(d for m in models for d in results[m]))
    rows: list[tuple[str, str, list[Any]]] = []
    for data in datas:
        label = data_label(data, (roles or {}).get(data) if task == "ppl" else None)
        for metric in HEADLINE[task]:
            values = [results[m].get(data, {}).get(metric) for m in models]
            if any(v is not None for v in values):
                rows.append((label, metric, values))
        if task in BREAKDOWN:
            key, field = BREAKDOWN[task]
            names = list(dict.fromkeys(c for m in models for c in (results[m].get(data, {}).get(key) or {})))
            if len(names) > 1 or (names and names[0] != "(none)"):
                for name in names:
                    values = [(results[m].get(data, {}).get(key) or {}).get(name) for m in models]
                    rows.append((label, f"{key.removeprefix('by_')}: {name}",
                                 [f"{v[field]:.3f} (n={v['items' if 'items' in v else 'pairs']})" if v else None for v in values]))  # fmt: skip
    if task == "judge":
        opponents = [results[m][d].get("opponent") for m in models for d in results[m]]
        if opponents:
            models = [f"{model_label(m)} vs {model_label(opponents[0])}" for m in models]
            return models, rows
    return [model_label(m, models) for m in models], rows


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
