"""build-lit-qa: literature conclusions -> grounded QA pairs or multi-turn patient-doctor dialogues.

BenTsao's liver-cancer set stored dialogues flattened into `<user>:`/`<bot>:` strings, split samples
by record (prefix expansions of one conversation leaked across splits) and kept no link to the
paper. Here every record is a real message list, its `source.group` is the paper (splits never
separate records of one paper), `meta.paper` says which paper it rests on, and answers / doctor turns
are checked against the conclusion (verified references for QA, character-bigram overlap for both).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medmill.builders.core.collect import Collector
from medmill.builders.lit_qa import BUILDER, BUILDER_VERSION
from medmill.builders.llm.prompts import load_prompt
from medmill.builders.llm.types import LLMRequest, LLMResult, Runner
from medmill.builders.readers.literature import paper_key
from medmill.builders.text.grounding import answer_problem, question_problem, verify_references
from medmill.builders.text.ngrams import containment, near_duplicates
from medmill.builders.text.normalise import normalise
from medmill.schemas import LiteratureRecord, Message, RejectRow, SFTRecord, Source

_ROLES = {
    "patient": "user",
    "患者": "user",
    "病人": "user",
    "user": "user",
    "doctor": "assistant",
    "医生": "assistant",
    "医师": "assistant",
    "大夫": "assistant",
    "用户": "user",
    "助手": "assistant",
    "assistant": "assistant",
}


class LitQAPair(BaseModel):
    model_config = ConfigDict(extra="ignore")

    question: str
    answer: str
    reference: list[str] = Field(default_factory=list)


class LitQASet(BaseModel):
    """Structured output of --style qa."""

    model_config = ConfigDict(extra="ignore")

    pairs: list[LitQAPair]


class DialogueTurn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str


class LitDialogue(BaseModel):
    """Structured output of --style dialogue."""

    model_config = ConfigDict(extra="ignore")

    turns: list[DialogueTurn]


class LitConfig(BaseModel):
    """Style, counts and grounding thresholds (the `lit` section of the build config)."""

    model_config = ConfigDict(extra="forbid")

    style: Literal["qa", "dialogue"] = "qa"
    pairs_per_paper: int = Field(3, ge=1, le=20)
    dialogues_per_paper: int = Field(1, ge=1, le=10)
    turns_min: int = Field(2, ge=1, le=10)
    turns_max: int = Field(4, ge=1, le=10)
    min_overlap: float = Field(0.5, ge=0.0, le=1.0)  # QA answers: share of bigrams found in the paper
    dialogue_min_overlap: float = Field(0.35, ge=0.0, le=1.0)  # doctor turns together (they add advice)
    dedup_threshold: float = Field(0.7, gt=0.0, le=1.0)
    qa_prompt: str = "lit_qa_qa"
    dialogue_prompt: str = "lit_qa_dialogue"

    @model_validator(mode="after")
    def _turns(self) -> LitConfig:
        if self.turns_min > self.turns_max:
            raise ValueError(f"turns {self.turns_min}-{self.turns_max}: the minimum is above the maximum")
        return self


def paper_group(paper: LiteratureRecord) -> str:
    return "p" + hashlib.sha256(paper_key(paper).encode()).hexdigest()[:16]


def _source(paper: LiteratureRecord) -> Source:
    return Source(
        file=paper.ref.file if paper.ref else None,
        line=paper.ref.line if paper.ref else None,
        ref=paper.doi or paper.title,
        group=paper_group(paper),
        builder=BUILDER,
        builder_version=BUILDER_VERSION,
    )


def _paper_meta(paper: LiteratureRecord) -> dict[str, Any]:
    return {"title": paper.title, "year": paper.year, "journal": paper.journal, "doi": paper.doi}


def _evidence(paper: LiteratureRecord) -> str:
    """What answers may rest on: title, conclusion and abstract."""
    return "\n".join(x for x in (paper.title, paper.conclusion, paper.abstract or "") if x)


def _variables(paper: LiteratureRecord) -> dict[str, Any]:
    return {
        "title": paper.title,
        "year": paper.year,
        "journal": paper.journal,
        "conclusion": paper.conclusion,
        "abstract": paper.abstract or "",
        "keywords": paper.keywords,
    }


def _reject(stage: str, reason: str, message: str, paper: LiteratureRecord, raw: Any = None) -> RejectRow:
    return RejectRow(
        stage=f"{BUILDER}.{stage}", reason=reason, message=message, source=_source(paper), raw=raw
    )


def _llm_reject(stage: str, result: LLMResult, paper: LiteratureRecord) -> RejectRow:
    return _reject(stage, result.error or "llm_error", result.message, paper, {"raw": result.raw})


def turns_for(paper: LiteratureRecord, sample: int, config: LitConfig) -> int:
    """A patient-turn count in [turns_min, turns_max], fixed per paper and sample (so re-runs hit the cache)."""
    span = config.turns_max - config.turns_min + 1
    h = int(hashlib.sha256(f"{paper_key(paper)}\x00{sample}".encode()).hexdigest()[:8], 16)
    return config.turns_min + h % span


def build_lit_qa(papers: Sequence[LiteratureRecord], config: LitConfig, engine: Runner,
                 out: Collector | None = None) -> Collector:
    """QA pairs or dialogues (by `config.style`) for every paper, into `out`."""
    out = out if out is not None else Collector()
    if config.style == "qa":
        _qa(papers, config, engine, out)
    else:
        _dialogues(papers, config, engine, out)
    return out


def _qa(papers: Sequence[LiteratureRecord], config: LitConfig, engine: Runner, out: Collector) -> None:
    prompt = load_prompt(config.qa_prompt)
    out.prompt(prompt.ref)
    qa_records(qa_pairs(papers, config, engine, out), config, out)


# a checked pair waiting for the dedup across papers: (paper, pair, verified references, overlap)
QAPair = tuple[LiteratureRecord, LitQAPair, list[str], float]


@dataclass
class LitWork:
    """The item-wise LLM step of a build (picklable): papers in; for style "qa" checked pairs
    (`QAPair`, deduplicated across papers by `qa_records` afterwards), for "dialogue" the records."""

    config: LitConfig

    def __call__(self, papers: list[LiteratureRecord], engine: Runner, out: Collector) -> None:
        if self.config.style == "qa":
            out.records.extend(qa_pairs(papers, self.config, engine, out))  # type: ignore[arg-type]
        else:
            _dialogues(papers, self.config, engine, out)


def prompt_ref(config: LitConfig) -> dict[str, str]:
    return load_prompt(config.qa_prompt if config.style == "qa" else config.dialogue_prompt).ref


def qa_pairs(papers: Sequence[LiteratureRecord], config: LitConfig, engine: Runner, out: Collector) -> list[QAPair]:
    """One QA request per paper; the pairs that pass the checks (rejects into `out`)."""
    prompt = load_prompt(config.qa_prompt)
    requests = [
        LLMRequest(
            key=f"lit-qa:{paper_group(p)}",
            messages=prompt.render(n=config.pairs_per_paper, **_variables(p)),
            schema=LitQASet,
            prompt=prompt.ref,
        )
        for p in papers
    ]
    kept: list[QAPair] = []
    for paper, result in zip(papers, engine.run(requests, desc="literature QA"), strict=True):
        if not result.ok:
            out.reject(_llm_reject("qa", result, paper))
            continue
        evidence = _evidence(paper)
        for n, pair in enumerate(result.value.pairs):
            out.counters["pairs_generated"] += 1
            raw = pair.model_dump()
            problem = question_problem(pair.question) or answer_problem(pair.answer)
            if problem is None and n >= config.pairs_per_paper:
                problem = ("beyond_requested", f"more than {config.pairs_per_paper} pairs returned")
            if problem is not None:
                out.reject(_reject("qa", problem[0], problem[1], paper, raw))
                continue
            refs = verify_references(pair.reference, evidence)
            out.counters["references_unverified"] += len(refs.unverified)
            if not refs.verified:
                out.reject(
                    _reject(
                        "qa",
                        "reference_not_in_paper",
                        "no reference found in the conclusion or abstract",
                        paper,
                        raw,
                    )
                )
                continue
            overlap = containment(pair.answer, evidence)
            if overlap < config.min_overlap:
                msg = f"{overlap:.2f} of the answer's character bigrams are in the paper (min {config.min_overlap})"
                out.reject(_reject("qa", "low_overlap", msg, paper, raw))
                continue
            kept.append((paper, pair, refs.verified, overlap))
    return kept


def qa_records(kept: Sequence[QAPair], config: LitConfig, out: Collector) -> None:
    """The whole-input end of style "qa": near-duplicate questions across papers dropped (the first
    stays), records for the rest, `papers_with_records`."""
    prompt = load_prompt(config.qa_prompt)
    dupes = near_duplicates([pair.question for _, pair, _, _ in kept], config.dedup_threshold)
    for i, j in sorted(dupes.items()):
        paper, pair = kept[i][0], kept[i][1]
        msg = f"near-duplicate of {kept[j][1].question!r}"
        out.reject(_reject("dedup", "near_duplicate_question", msg, paper, pair.model_dump()))
    for i, (paper, pair, refs, overlap) in enumerate(kept):
        if i in dupes:
            continue
        messages = [
            Message(role="user", content=pair.question.strip()),
            Message(role="assistant", content=pair.answer.strip()),
        ]
        meta = {"style": "qa", "paper": _paper_meta(paper), "reference": refs, "overlap": round(overlap, 3)}
        meta["cites_paper"] = _cites(paper, pair.answer)
        meta["prompt"] = prompt.ref
        out.add(
            SFTRecord(id=SFTRecord.make_id(messages), messages=messages, source=_source(paper), meta=meta)
        )
    out.counters["papers_with_records"] = len({r.source.group for r in out.records})


def _cites(paper: LiteratureRecord, text: str) -> bool:
    return normalise(paper.title) in normalise(text)


def _dialogues(papers: Sequence[LiteratureRecord], config: LitConfig, engine: Runner, out: Collector) -> None:
    prompt = load_prompt(config.dialogue_prompt)
    out.prompt(prompt.ref)
    jobs = [(p, s, turns_for(p, s, config)) for p in papers for s in range(config.dialogues_per_paper)]
    requests = [
        LLMRequest(
            key=f"lit-dialogue:{paper_group(p)}:{s}",
            messages=prompt.render(turns=t, **_variables(p)),
            schema=LitDialogue,
            prompt=prompt.ref,
            params={"sample": s},
        )
        for p, s, t in jobs
    ]
    for (paper, sample, turns), result in zip(
        jobs, engine.run(requests, desc="literature dialogues"), strict=True
    ):
        if not result.ok:
            out.reject(_llm_reject("dialogue", result, paper))
            continue
        out.counters["dialogues_generated"] += 1
        raw = result.value.model_dump()
        messages, problem = _dialogue_messages(result.value, config)
        if problem is None:
            doctor = "\n".join(m.content for m in messages if m.role == "assistant")
            overlap = containment(doctor, _evidence(paper))
            if overlap < config.dialogue_min_overlap:
                problem = (
                    "low_overlap",
                    f"{overlap:.2f} of the doctor turns' bigrams are in the paper (min {config.dialogue_min_overlap})",
                )
        if problem is not None:
            out.reject(_reject("dialogue", problem[0], problem[1], paper, raw))
            continue
        cites = _cites(paper, doctor)
        out.counters["dialogues_citing_paper"] += int(cites)
        meta = {
            "style": "dialogue",
            "paper": _paper_meta(paper),
            "turns": len(messages) // 2,
            "turns_requested": turns,
            "sample": sample,
            "overlap": round(overlap, 3),
            "cites_paper": cites,
            "prompt": prompt.ref,
        }
        out.add(
            SFTRecord(id=SFTRecord.make_id(messages), messages=messages, source=_source(paper), meta=meta)
        )
        out.counters[f"dialogues_with_{len(messages) // 2}_turns"] += 1


def _dialogue_messages(
    dialogue: LitDialogue, config: LitConfig
) -> tuple[list[Message], tuple[str, str] | None]:
    messages: list[Message] = []
    for i, turn in enumerate(dialogue.turns):
        role = _ROLES.get(turn.role.strip().lower())
        if role is None:
            return [], ("unknown_role", f"turn {i + 1} has role {turn.role!r} (expected patient or doctor)")
        if not turn.content.strip():
            return [], ("empty_turn", f"turn {i + 1} is empty")
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            return [], (
                "bad_turn_order",
                f"turn {i + 1} is the {turn.role}; the patient starts and roles alternate",
            )
        problem = answer_problem(turn.content, min_chars=2)
        if problem is not None and problem[0] != "answer_too_short":
            return [], (problem[0], f"turn {i + 1}: {problem[1]}")
        messages.append(Message(role=role, content=turn.content.strip()))
    if not messages or messages[-1].role != "assistant":
        return [], ("bad_turn_order", "the dialogue must end with the doctor")
    rounds = len(messages) // 2
    if not config.turns_min <= rounds <= config.turns_max:
        return [], (
            "wrong_turn_count",
            f"{rounds} patient turns, expected {config.turns_min}-{config.turns_max}",
        )
    return messages, None
