"""Checks for LLM-written questions and answers grounded in a source text (book chunks, paper conclusions).

- References are verified in the source after whitespace/width normalisation (NFKC, no spaces).
- Grounding is measured as character-bigram containment: the share of the answer's bigrams found in
  the source. Character n-grams work for Chinese without word segmentation; ROUGE from
  rouge_score tokenises on ASCII and scores identical Chinese strings 0.
- Near-duplicate questions are found with MinHash LSH over character bigrams, confirmed by exact Jaccard.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)
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

# answers: talk about the text or the model, or admissions that the text does not answer
_META_TALK = re.compile(
    r"作为(?:一[个名])?(?:AI|人工智能|语言模型|智能助手)|我是(?:一[个名])?(?:AI|人工智能|语言模型|助手)"
    r"|根据(?:您|你)?(?:提供|给出|给定|所给|所提供)的|根据(?:上述|以上|本|该|这段|此)(?:文本|资料|材料|段落|内容|指南|文献|文章|结论)"
    r"|(?:文本|原文|段落|资料|材料|上文|文中|本文)(?:中)?(?:提到|指出|所述|显示|表明|描述|介绍)"
    r"|<\s*(?:user|bot)\s*>",
    re.IGNORECASE,
)
_NO_ANSWER = re.compile(
    r"(?:文本|原文|文中|资料|材料|段落|上述内容|所给内容|结论)(?:中)?.{0,6}(?:未|没有|并未|并没有|无法|不能)"
    r"(?:明确)?(?:提及|提到|说明|给出|涉及|找到|回答|确定|描述|包含)"
    r"|无法(?:根据|从|依据).{0,12}(?:回答|确定|得知|判断|得出)|没有(?:足够|相关)的?信息"
)


def normalise(text: str) -> str:
    """NFKC (full-width -> half-width), no whitespace, lower case."""
    return "".join(unicodedata.normalize("NFKC", text).split()).lower()


def _bigrams(text: str) -> set[str]:
    s = _PUNCT.sub("", normalise(text))
    return {s[i : i + 2] for i in range(len(s) - 1)} if len(s) > 1 else ({s} if s else set())


def containment(answer: str, source: str) -> float:
    """Share of the answer's character bigrams (punctuation dropped) that occur in the source."""
    a = _bigrams(answer)
    if not a:
        return 0.0
    return len(a & _bigrams(source)) / len(a)


def jaccard(a: str, b: str) -> float:
    x, y = _bigrams(a), _bigrams(b)
    return len(x & y) / len(x | y) if x | y else 1.0


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
    m = _META_TALK.search(a)
    if m:
        return "meta_talk", f"meta-talk {m.group(0)!r}"
    if len(a) < min_chars:
        return "answer_too_short", f"{len(a)} characters"
    return None


def near_duplicates(texts: Sequence[str], threshold: float, num_perm: int = 128) -> dict[int, int]:
    """index -> index of the earlier text it near-duplicates (bigram Jaccard >= threshold)."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=max(0.05, min(threshold, 0.99)), num_perm=num_perm)
    dupes: dict[int, int] = {}
    for i, text in enumerate(texts):
        grams = _bigrams(text)
        mh = MinHash(num_perm=num_perm, seed=1)
        mh.update_batch([g.encode("utf-8") for g in sorted(grams)])
        candidates = sorted(int(k) for k in lsh.query(mh))
        match = next((j for j in candidates if jaccard(texts[j], text) >= threshold), None)
        if match is not None:
            dupes[i] = match
            continue
        lsh.insert(str(i), mh)
    return dupes
