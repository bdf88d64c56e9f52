"""The LLM side of build-prefs: candidate answers from one or more models, and rubric scores from a judge.

Each function takes the engine of one model (its own endpoint and settings; on workers, each worker's
engine: see `steps.py`); all share the build's request cache, so a re-run or a resumed run pays for
nothing twice. Results come in item order.
"""

from __future__ import annotations

from medmill.builders.llm.prompts import PromptTemplate
from medmill.builders.llm.types import LLMRequest, LLMResult, LLMSettings, Runner
from medmill.builders.prefs.judging import Candidate, PairVerdict, RubricScores, Scored
from medmill.builders.readers.prompt_items import PromptItem
from medmill.schemas import Message, RejectRow
from medmill.schemas.errors import MedmillError

ROLE_LABELS = {"system": "系统", "user": "患者", "assistant": "医生"}


def model_settings(spec: str, base: LLMSettings) -> LLMSettings:
    """`model` or `model@base_url` -> a copy of the shared LLM settings for that endpoint."""
    model, _, url = spec.partition("@")
    if not model.strip():
        raise MedmillError(f"model spec {spec!r} has no model name (expected MODEL or MODEL@BASE_URL)")
    update: dict = {"model": model.strip()}
    if url.strip():
        update["base_url"] = url.strip()
    return base.model_copy(update=update)


def model_label(settings: LLMSettings) -> str:
    return settings.model or "default"


def generate(
    engine: Runner,
    items: list[PromptItem],
    samples: int,
    template: PromptTemplate,
    label: str,
    seed: int | None,
) -> tuple[list[list[Candidate]], list[RejectRow]]:
    """`samples` answers per item from the model `label`: (candidates per item, rejects)."""
    requests = []
    for item in items:
        messages = _with_system(item.prompt, template)
        for s in range(samples):
            params: dict = {"sample": s}
            if seed is not None:
                params["seed"] = seed + s
            requests.append(LLMRequest(key=f"{item.key}:{label}:{s}", messages=messages, prompt=template.ref, params=params))
    results = engine.run(requests, desc=f"answers from {label}")
    per_item: list[list[Candidate]] = [[] for _ in items]
    rejects = []
    for n, result in enumerate(results):
        i, s = divmod(n, samples)
        if result.ok:
            per_item[i].append(Candidate(text=str(result.value).strip(), model=label, sample=s))
        else:
            rejects.append(_failure("generate", items[i], result, label))
    return per_item, rejects


def judge(engine: Runner, jobs: list[tuple[PromptItem, Candidate]], template: PromptTemplate, label: str) -> list[Scored]:
    """Score every (item, answer) alone on the rubric; a failed call is a Scored without scores."""
    requests = [
        LLMRequest(
            key=f"{item.key}:judge:{cand.model}:{cand.sample}",
            messages=template.render(conversation=conversation_text(item.prompt), answer=cand.text),
            schema=RubricScores,
            prompt=template.ref,
            params={"temperature": 0.0},
        )
        for item, cand in jobs
    ]
    results = engine.run(requests, desc=f"judge {label}")
    scored = []
    for (_, cand), result in zip(jobs, results, strict=True):
        if result.ok and isinstance(result.value, RubricScores):
            scored.append(Scored(cand, result.value))
        else:
            scored.append(Scored(cand, None, error=result.error or "invalid_output"))
    return scored


def compare(
    engine: Runner, jobs: list[tuple[PromptItem, str, str]], template: PromptTemplate, label: str
) -> list[tuple[PairVerdict | None, PairVerdict | None]]:
    """Each (item, chosen, rejected) judged side by side twice: chosen shown first (A), then second (B)."""
    requests = []
    for item, chosen, rejected in jobs:
        conversation = conversation_text(item.prompt)
        for order, (a, b) in enumerate(((chosen, rejected), (rejected, chosen))):
            requests.append(
                LLMRequest(
                    key=f"{item.key}:compare:{order}",
                    messages=template.render(conversation=conversation, answer_a=a, answer_b=b),
                    schema=PairVerdict,
                    prompt=template.ref,
                    params={"temperature": 0.0},
                )
            )
    results = engine.run(requests, desc=f"side-by-side {label}")
    values = [r.value if r.ok and isinstance(r.value, PairVerdict) else None for r in results]
    return list(zip(values[0::2], values[1::2], strict=True))


def conversation_text(prompt: list[Message]) -> str:
    return "\n".join(f"{ROLE_LABELS[m.role]}：{m.content}" for m in prompt)


def _with_system(prompt: list[Message], template: PromptTemplate) -> list[dict[str, str]]:
    messages = [m.model_dump() for m in prompt]
    if template.system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": template.system.strip()})
    return messages


def _failure(stage: str, item: PromptItem, result: LLMResult, label: str) -> RejectRow:
    return RejectRow(
        stage=stage,
        reason=result.error or "llm_error",
        message=f"{label}: {result.message}"[:500],
        source=item.source,
        raw={"prompt": [m.model_dump() for m in item.prompt], "model": label, "output": result.raw},
    )
