"""Checks for LLM-written questions and answers grounded in a source text (book chunks, paper
conclusions): references verified in the source after normalisation, self-contained questions,
answers without meta-talk or "the text does not say". Grounding overlap and near-duplicate
questions are measured with `medmill.builders.text.ngrams`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from medmill.builders.text.meta_talk import meta_talk
from medmill.builders.text.normalise import normalise

_ELLIPSIS = re.compile(r"…+|\.{3,}|⋯+")

# questions must stand alone: no pointers to a text the reader does not see
_REFERS_TO_TEXT = re.compile(
    r"本文|上文|下文|上述|前述|文中|原文|该文|本段|这段|此段|该段|以上(?:内容|资料|材料|文字|所述)|如上所述|该指南|本指南|这份指南|本章|本节|该章|该节"
    r"|资料中|材料中|文本中|文段|该研究|本研究|这项研究|此研究|该文献|本文献|这篇"
    # a disease or drug the question never names
    r"|(?:(?<![应活])该|(?<![因如彼])此)(?:病|疾病|药|药物|患者|疗法|方案)|这种(?:病|疾病|药|药物|疗法)"
)
_MULTIPLE_CHOICE = re.compile(
    r"以下哪|下列哪|下面哪|如下哪|哪一项|哪个选项|[（(]\s*[A-E]\s*[）)]|\bA[.、]\s*\S+.*\bB[.、]"
)
_INTERROGATIVE = re.compile(
    r"什么|如何|怎样|怎么|哪些|哪|为何|为什么|是否|能否|可否|能不能|是不是|有没有|吗|多少|几|何时|何种|有何|区别|多久"
)
# answers saying the source does not answer
_NO_ANSWER = re.compile(
    r"(?:文本|原文|文中|资料|材料|段落|上述内容|所给内容|结论)(?:中)?.{0,6}(?:未|没有|并未|并没有|无法|不能)"
    r"(?:明确)?(?:提及|提到|说明|给出|涉及|找到|回答|确定|描述|包含)"
    r"|无法(?:根据|从|依据).{0,12}(?:回答|确定|得知|判断|得出)|没有(?:足够|相关)的?信息"
)


@dataclass
class ReferenceCheck:
    verified: list[str]
    unverified: list[str]


def verify_references(references: Sequence[str], source: str, min_chars: int = 6) -> ReferenceCheck:
    """A reference counts when every piece of it (split at ellipses) is in the source, normalised.

    Pieces shorter than `min_chars` (after normalisation) do not count as evidence on their own.
    """
    src = normalise(source)
    verified, unverified = [], []
    for ref in references:
        parts = [normalise(p).strip("\"'“”‘’「」『』") for p in _ELLIPSIS.split(ref)]
        parts = [p for p in parts if p]
        stripped = [p.strip(",.;:!?，。；：！？、") for p in parts]
        ok = bool(stripped) and sum(len(p) for p in stripped) >= min_chars and all(p in src for p in stripped)
        (verified if ok else unverified).append(ref)
    return ReferenceCheck(verified, unverified)


def question_problem(question: str, max_chars: int = 150) -> tuple[str, str] | None:
    """(reason, message) when a question is unusable, else None."""
    q = question.strip()
    if len(q) < 6:
        return "question_too_short", f"{len(q)} characters"
    if len(q) > max_chars:
        return "question_too_long", f"{len(q)} characters (max {max_chars})"
    m = _MULTIPLE_CHOICE.search(q)
    if m:
        return "multiple_choice", f"multiple-choice wording {m.group(0)!r}"
    m = _REFERS_TO_TEXT.search(q)
    if m:
        return "not_self_contained", f"points to an unseen text: {m.group(0)!r}"
    if not (q.endswith(("？", "?")) or _INTERROGATIVE.search(q)):
        return "not_a_question", "no question mark or question word"
    return None


def answer_problem(answer: str, min_chars: int = 10) -> tuple[str, str] | None:
    """(reason, message) for meta-talk, 'the text does not say' answers and stubs, else None."""
    a = answer.strip()
    m = _NO_ANSWER.search(a)
    if m:
        return "no_answer", f"says the source does not answer: {m.group(0)!r}"
    m = meta_talk().answer_pattern.search(a)
    if m:
        return "meta_talk", f"meta-talk {m.group(0)!r}"
    if len(a) < min_chars:
        return "answer_too_short", f"{len(a)} characters"
    return None
