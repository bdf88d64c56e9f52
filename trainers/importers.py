"""Importers for the public file formats users already have, so they can train without a build step.

sft: OpenAI `{"messages": [...]}`, ShareGPT / MedicalGPT `{"conversations": [{"from", "value"}]}`,
alpaca `{"instruction", "input", "output", "system"?, "history"?}`.
preference: MedicalGPT `{"conversations", "chosen", "rejected"}`, the shibing624/medical reward schema
`{"question", "response_chosen", "response_rejected", "system"?, "history"?}`, trl `{"prompt", "chosen",
"rejected"}` (strings or message lists).
pretrain: `{"text"}` rows or, for files that are not JSON, one document per non-empty line.
prompt (ppo / grpo / rloo): any of the above preference rows, `{"question"}`, trl's prompt-only
`{"prompt"}`, or a conversation (its last answer dropped when it ends with one).

Every converter raises `BadRow` with a reason; the loader turns it into a counted, file:line-named problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROLE_ALIASES = {
    "human": "user", "user": "user", "question": "user",
    "gpt": "assistant", "assistant": "assistant", "bot": "assistant", "model": "assistant", "chatgpt": "assistant",
    "system": "system",
}  # fmt: skip


class BadRow(ValueError):
    """A record that cannot become a training example; the message says why."""


def read_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON value) for JSON Lines, a JSON array, or (line, str) for plain text."""
    text = Path(path).read_text(encoding="utf-8-sig", errors="strict")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError:
            rows = None
        if isinstance(rows, list):
            yield from ((i + 1, row) for i, row in enumerate(rows))
            return
    is_json_lines = stripped.startswith("{")
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not is_json_lines:
            yield n, line
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            yield n, BadRow(f"invalid JSON: {e.msg}")


def _text(value: Any, what: str) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = "\n".join(value)
    if not isinstance(value, str) or not value.strip():
        raise BadRow(f"{what} is empty or not a string")
    return value


def _messages(value: Any, what: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [
            {"role": "assistant" if what in ("chosen", "rejected") else "user", "content": _text(value, what)}
        ]
    if not isinstance(value, list) or not value:
        raise BadRow(f"{what} is not a non-empty list of messages")
    out = []
    for m in value:
        if not isinstance(m, dict):
            raise BadRow(f"{what} holds a non-object message")
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if role not in ROLE_ALIASES:
            raise BadRow(f"{what}: unknown role {role!r}")
        out.append({"role": ROLE_ALIASES[role], "content": _text(content, f"{what} content")})
    return out


def _history(row: dict[str, Any]) -> list[dict[str, str]]:
    msgs = []
    if row.get("system"):
        msgs.append({"role": "system", "content": _text(row["system"], "system")})
    for pair in row.get("history") or []:
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise BadRow("history must be a list of [question, answer] pairs")
        msgs += [
            {"role": "user", "content": _text(pair[0], "history")},
            {"role": "assistant", "content": _text(pair[1], "history")},
        ]
    return msgs


def _check_turns(messages: list[dict[str, str]], last: str) -> list[dict[str, str]]:
    body = messages[1:] if messages[0]["role"] == "system" else messages
    for i, m in enumerate(body):
        if m["role"] != ("user" if i % 2 == 0 else "assistant"):
            raise BadRow(f"turn {i + 1} is {m['role']}; roles must alternate user/assistant")
    if not body or body[-1]["role"] != last:
        raise BadRow(f"conversation must end with {'an' if last == 'assistant' else 'a'} {last} turn")
    return messages


def to_sft(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise BadRow("not a JSON object")
    if "chosen" in row or "response_chosen" in row:
        raise BadRow("a preference row (chosen/rejected): train rm or dpo on it, not sft")
    if "messages" in row:
        msgs = _messages(row["messages"], "messages")
    elif "conversations" in row:
        msgs = _messages(row["conversations"], "conversations")
        if row.get("system") and msgs[0]["role"] != "system":
            msgs.insert(0, {"role": "system", "content": _text(row["system"], "system")})
    elif "instruction" in row and "output" in row:
        prompt = _text(row["instruction"], "instruction")
        if isinstance(row.get("input"), str) and row["input"].strip():
            prompt = f"{prompt}\n{row['input']}"
        msgs = _history(row) + [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": _text(row["output"], "output")},
        ]
    else:
        raise BadRow(f"no messages / conversations / instruction+output keys (keys: {sorted(row)[:8]})")
    return {"messages": _check_turns(msgs, "assistant")}


def to_preference(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise BadRow("not a JSON object")
    if "response_chosen" in row:
        prompt = _history(row) + [{"role": "user", "content": _text(row.get("question"), "question")}]
        chosen, rejected = row["response_chosen"], row.get("response_rejected")
    elif "conversations" in row or "prompt" in row:
        prompt = _messages(row.get("conversations", row.get("prompt")), "prompt")
        if row.get("system") and prompt[0]["role"] != "system":
            prompt.insert(0, {"role": "system", "content": _text(row["system"], "system")})
        chosen, rejected = row.get("chosen"), row.get("rejected")
    else:
        raise BadRow(f"no conversations / prompt / question keys (keys: {sorted(row)[:8]})")
    if chosen is None and rejected is None:
        raise BadRow("no chosen/rejected answers: an sft row, not a preference pair")
    out = {
        "prompt": _check_turns(prompt, "user"),
        "chosen": _messages(chosen, "chosen"),
        "rejected": _messages(rejected, "rejected"),
    }
    if any(m["role"] != "assistant" for m in out["chosen"] + out["rejected"]):
        raise BadRow("chosen/rejected must hold assistant messages only")
    if out["chosen"] == out["rejected"]:
        raise BadRow("chosen and rejected are identical")
    return out


def to_pretrain(row: Any) -> dict[str, Any]:
    if isinstance(row, str):
        return {"text": _text(row, "line")}
    if isinstance(row, dict) and "text" in row:
        return {"text": _text(row["text"], "text")}
    raise BadRow("no text key")


def to_prompt(row: Any) -> dict[str, Any]:
    """Prompts for RL: a preference prompt, or an sft conversation without its last answer."""
    if isinstance(row, dict) and ("response_chosen" in row or "chosen" in row):
        return {"prompt": to_preference(row)["prompt"]}
    if isinstance(row, dict) and "question" in row:
        return {"prompt": _history(row) + [{"role": "user", "content": _text(row["question"], "question")}]}
    if isinstance(row, dict) and "prompt" in row:  # trl's prompt-only format
        return {"prompt": _check_turns(_messages(row["prompt"], "prompt"), "user")}
    key = next((k for k in ("messages", "conversations") if isinstance(row, dict) and k in row), None)
    if key:  # a conversation that ends with the user's turn is a prompt as it stands
        msgs = _messages(row[key], key)
        if msgs[-1]["role"] == "user":
            if row.get("system") and msgs[0]["role"] != "system":
                msgs.insert(0, {"role": "system", "content": _text(row["system"], "system")})
            return {"prompt": _check_turns(msgs, "user")}
    msgs = to_sft(row)["messages"]
    return {"prompt": msgs[:-1]}


CONVERTERS = {"sft": to_sft, "preference": to_preference, "pretrain": to_pretrain, "prompt": to_prompt}
