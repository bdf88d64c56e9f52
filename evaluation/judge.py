"""Pairwise LLM judging: model A's answer against model B's (or the reference answer), each pair shown
to the judge in both orders so position bias cancels. Per pair, a verdict counts 1 for a win, 0.5 for
a tie, 0 for a loss; the two orders' sum above 1 is a win, below 1 a loss, exactly 1 (two ties, or
verdicts that flip with the order) a tie. Judge calls go through the LLM engine and its request cache,
so a re-run pays only for what it has not judged yet."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from medmill.builders.core.progress import Progress, no_progress
from medmill.builders.llm.engine import LLMEngine
from medmill.builders.llm.prompts import load_prompt
from medmill.builders.llm.types import LLMRequest, LLMSettings
from medmill.evaluation.cache import fingerprint
from medmill.evaluation.generation import GenItem

ROLE_NAMES = {"system": "系统", "user": "用户", "assistant": "医生"}


class JudgeVerdict(BaseModel):
    model_config = ConfigDict(extra="ignore")

    better: Literal["A", "B", "tie"]
    rationale: str = ""


def conversation_text(messages: list[dict[str, str]]) -> str:
    return "\n".join(f"{ROLE_NAMES.get(m['role'], m['role'])}：{m['content']}" for m in messages)


def _points(verdict: str, first_is_a: bool) -> float:
    """Points of the first contestant from one verdict."""
    if verdict == "tie":
        return 0.5
    return 1.0 if (verdict == "A") == first_is_a else 0.0


def judge_pairs(
    items: list[GenItem], answers_1: dict[str, str], answers_2: dict[str, str], settings: LLMSettings, out: Path,
    prompt_name: str = "eval_judge", progress: Progress = no_progress,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:  # fmt: skip
    """(summary from contestant 1's side, per-pair details)."""
    prompt = load_prompt(prompt_name)
    requests = []
    for item in items:
        conv = conversation_text(item.prompt)
        one, two = answers_1[item.key], answers_2[item.key]
        for order, (a, b) in (("12", (one, two)), ("21", (two, one))):
            requests.append(
                LLMRequest(
                    key=f"{item.key}:{order}:{fingerprint(a, b)}",
                    messages=prompt.render(conversation=conv, answer_a=a, answer_b=b),
                    schema=JudgeVerdict,
                    prompt=prompt.ref,
                )
            )
    with LLMEngine(settings, out, progress=progress) as engine:
        results = engine.run(requests, desc="judge")
        usage, llm = engine.usage, engine.describe()
    details = []
    counts = {"wins": 0, "losses": 0, "ties": 0, "failed": 0, "consistent": 0}
    for n, item in enumerate(items):
        first, second = results[2 * n], results[2 * n + 1]
        row: dict[str, Any] = {"key": item.key, "origin": item.origin}
        if not (first.ok and second.ok):
            counts["failed"] += 1
            row["error"] = first.error or second.error
            details.append(row)
            continue
        p1, p2 = _points(first.value.better, True), _points(second.value.better, False)
        total = p1 + p2
        outcome = "win" if total > 1 else "loss" if total < 1 else "tie"
        counts[{"win": "wins", "loss": "losses", "tie": "ties"}[outcome]] += 1
        counts["consistent"] += p1 == p2
        row.update(outcome=outcome, verdicts=[first.value.better, second.value.better],
                   rationales=[first.value.rationale, second.value.rationale])  # fmt: skip
        details.append(row)
    judged = counts["wins"] + counts["losses"] + counts["ties"]
    summary: dict[str, Any] = {
        "pairs": len(items),
        "judged": judged,
        **counts,
        "win_rate": (counts["wins"] + 0.5 * counts["ties"]) / judged if judged else 0.0,
        "position_consistency": counts["consistent"] / judged if judged else 0.0,
        "judge_prompt": prompt.ref,
        "judge_llm": llm,
        "judge_usage": usage,
    }
    return summary, details
