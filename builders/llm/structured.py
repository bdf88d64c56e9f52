"""Structured output: how a pydantic schema is asked for, and how a reply is turned back into it.

Servers differ: OpenAI, vLLM, Ollama and llama.cpp accept `response_format={"type": "json_schema"}`;
DeepSeek and older servers only `json_object`; some accept neither. The engine starts with the
strongest mode and steps down when a server rejects it. Whatever the mode, replies are read
tolerantly (code fences, prose around the JSON) and validated by the schema; nothing is coerced.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

Mode = Literal["json_schema", "json_object", "prompt"]
MODES: tuple[Mode, ...] = ("json_schema", "json_object", "prompt")

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


@functools.cache
def plain_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema, computed once per model (it is needed for every call)."""
    return schema.model_json_schema()


@functools.cache
def json_schema_of(schema: type[BaseModel]) -> dict[str, Any]:
    """The schema in the strict form OpenAI wants (all keys required, no extra keys)."""
    try:
        from openai.lib._pydantic import to_strict_json_schema

        return to_strict_json_schema(schema)
    except ImportError:  # a future openai without the helper: the plain schema still works elsewhere
        return plain_schema(schema)


def response_format(schema: type[BaseModel], mode: Mode) -> dict[str, Any] | None:
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": schema.__name__, "schema": json_schema_of(schema), "strict": True},
        }
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def instruction(schema: type[BaseModel]) -> str:
    """Appended to the prompt when the server cannot enforce the schema itself."""
    text = json.dumps(plain_schema(schema), ensure_ascii=False, separators=(",", ":"))
    return f"只输出一个符合以下 JSON Schema 的 JSON 对象，不要输出任何其他文字。\nJSON Schema: {text}"


def with_instruction(messages: list[dict[str, str]], schema: type[BaseModel]) -> list[dict[str, str]]:
    out = [dict(m) for m in messages]
    out[-1]["content"] = f"{out[-1]['content']}\n\n{instruction(schema)}"
    return out


# Reasoning models (DeepSeek-R1, QwQ, Qwen3 served by vLLM/Ollama) put their thoughts before the answer.
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)


def iter_json(text: str) -> Iterator[Any]:
    """Every JSON object/array in `text`, in order: the whole text, inside ``` fences, then any embedded in
    prose (outside `<think>` blocks)."""
    answer = _THINK.sub("", text) if "<think>" in text.lower() else text
    stripped = answer.strip()
    try:
        yield json.loads(stripped)
    except ValueError:
        pass
    candidates = [m.group(1) for m in _FENCE.finditer(answer)] + [answer]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for i, ch in enumerate(candidate):
            if ch not in "{[":
                continue
            try:
                value, _end = decoder.raw_decode(candidate, i)
            except ValueError:
                continue
            yield value


def extract_json(text: str) -> Any:
    """The first JSON object/array in `text`: bare, inside ``` fences, or surrounded by prose.

    Raises ValueError when there is none.
    """
    for value in iter_json(text):
        return value
    raise ValueError("no JSON object found in the output")


def parse(text: str, schema: type[BaseModel]) -> BaseModel:
    """Validate a reply against `schema`; raises ValueError with a short reason (used for re-asks).

    The first JSON value that matches the schema wins, so a stray `[1]` or `{}` in prose before the
    answer does not hide it; when none matches, the reason is the first value's mismatch."""
    if not text or not text.strip():
        raise ValueError("the output was empty")
    first: ValidationError | None = None
    for n, value in enumerate(iter_json(text)):
        try:
            return schema.model_validate(value)
        except ValidationError as e:
            first = first or e
        if n >= 50:  # a reply full of brackets: enough tries
            break
    if first is None:
        raise ValueError("no JSON object found in the output")
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in first.errors()[:5]
    )
    raise ValueError(f"the JSON does not match the schema: {problems}")


def reask_message(error: str, schema: type[BaseModel]) -> dict[str, str]:
    """The follow-up user turn after an invalid reply: say what was wrong and ask again."""
    return {
        "role": "user",
        "content": f"你的输出无效：{error}。请重新回答。\n{instruction(schema)}",
    }
