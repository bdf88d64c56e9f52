"""OUT/report.html: the run's side-by-side table, bars per category / perturbation, the overlap check
and what was read, on one self-contained page (the dataset report's Jinja environment and look)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from medmill.builders.publish.report import _environment
from medmill.evaluation.results import EvalResult
from medmill.evaluation.summary import BREAKDOWN, data_label, fmt, model_label, side_by_side

COLORS = ("#3b82f6", "#10b981", "#ef4444", "#f59e0b", "#8b5cf6", "#14b8a6")


def _load(name: str) -> str | None:
    f = resources.files("medmill.evaluation").joinpath("templates", name)
    return f.read_text(encoding="utf-8") if f.is_file() else None


def _breakdowns(result: EvalResult) -> list[dict[str, Any]]:
    """Per data source: category -> one accuracy per model (for the bars)."""
    if result.settings.task not in BREAKDOWN:
        return []
    key, field = BREAKDOWN[result.settings.task]
    out = []
    for data in result.settings.data:
        per_model = [result.results[m].get(data, {}).get(key) or {} for m in result.results]
        names = list(dict.fromkeys(c for d in per_model for c in d))
        if not names:
            continue
        rows = [(name, [(d.get(name) or {}).get(field) for d in per_model]) for name in names]
        out.append({"data": data_label(data), "rows": rows})
    return out


def render_html(result: EvalResult) -> str:
    env = _environment()
    env.loader = jinja2.ChoiceLoader([jinja2.FunctionLoader(_load), env.loader])
    env.filters["fmt"] = fmt
    columns, rows = side_by_side(result.settings.task, result.results, {s.data: s.role for s in result.sources})
    return env.get_template("eval.html.j2").render(
        title=f"medmill eval {result.settings.task}: " + ", ".join(model_label(m, list(result.results)) for m in result.results),
        result=result,
        columns=columns,
        rows=rows,
        breakdowns=_breakdowns(result),
        models=[model_label(m, list(result.results)) for m in result.results],
        colors=COLORS,
        settings=result.settings.model_dump(mode="json"),
    )


def write_html(result: EvalResult, path: Path) -> Path:
    path.write_text(render_html(result), encoding="utf-8")
    return path
