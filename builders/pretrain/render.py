"""Conversations, QA records, preference pairs and literature records as plain running text.

Pretraining reads text, not roles: a conversation becomes its turns on separate lines, the user's
marked 问： and the assistant's 答： (system prompts are instructions to a model, not text, and are
left out); a paper becomes its title, abstract and conclusion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medmill.schemas import LiteratureRecord

USER_MARK = "问："
ASSISTANT_MARK = "答："
_USER_ROLES = {"user", "human", "patient", "患者", "病人", "用户"}
_ASSISTANT_ROLES = {"assistant", "gpt", "bot", "doctor", "model", "医生", "chatgpt"}
# (question keys, answer keys) of single-turn QA records, tried in order
_QA_KEYS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("instruction",), ("output",)),
    (("问", "问题", "question", "query", "prompt", "input"), ("答", "回答", "答案", "answer", "response", "output", "completion")),
]


def render_messages(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """Turns as 问：/答： lines; None when there is no user or assistant text."""
    lines = []
    for m in messages:
        role = str(m.get("role", m.get("from", ""))).strip().lower()
        content = m.get("content", m.get("value"))
        if not isinstance(content, str) or not content.strip():
            continue
        if role in _USER_ROLES:
            lines.append(USER_MARK + content.strip())
        elif role in _ASSISTANT_ROLES:
            lines.append(ASSISTANT_MARK + content.strip())
    return "\n".join(lines) if lines else None


def render_record(obj: Mapping[str, Any]) -> str | None:
    """A conversation or QA record (messages, ShareGPT conversations, instruction/input/output,
    问/答, question/answer, query/response) as text; None when it is none of these."""
    for key in ("messages", "conversations", "conversation", "dialogue"):
        value = obj.get(key)
        if isinstance(value, list) and value and all(isinstance(m, Mapping) for m in value):
            return render_messages(value)
    for q_keys, a_keys in _QA_KEYS:
        question = next((obj[k] for k in q_keys if isinstance(obj.get(k), str) and obj[k].strip()), None)
        answer = next((obj[k] for k in a_keys if isinstance(obj.get(k), str) and obj[k].strip()), None)
        if question is None or answer is None or question is answer:
            continue
        extra = obj.get("input") if q_keys == ("instruction",) else None
        if isinstance(extra, str) and extra.strip():
            question = f"{question.strip()}\n{extra.strip()}"
        return f"{USER_MARK}{question.strip()}\n{ASSISTANT_MARK}{answer.strip()}"
    return None


def render_literature(record: LiteratureRecord) -> str:
    """Title, abstract and conclusion as one document (the conclusion only when the abstract lacks it)."""
    parts = [record.title.strip()]
    abstract = (record.abstract or "").strip()
    if abstract:
        parts.append(abstract)
    conclusion = record.conclusion.strip()
    if conclusion and conclusion not in abstract:
        parts.append(conclusion)
    return "\n".join(parts)
