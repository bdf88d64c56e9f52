"""Chinese text metrics on jieba words: ROUGE-L F1 (rouge-score with jieba plugged in as its tokenizer;
its default tokenizer keeps only [a-z0-9] and scores every Chinese pair 0), corpus BLEU (sacrebleu on
the same words, its own tokenizer off), and grounding: does an answer state the record's KG values or
book references."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

_PUNCT_OR_SPACE = re.compile(r"^[\W_]+$")


def words(text: str) -> list[str]:
    """jieba words of NFKC, lower-cased text, punctuation and spaces dropped."""
    import jieba

    jieba.setLogLevel(60)
    norm = unicodedata.normalize("NFKC", text).lower()
    return [w for w in jieba.lcut(norm) if w.strip() and not _PUNCT_OR_SPACE.match(w)]


class _JiebaTokenizer:
    def tokenize(self, text: str) -> list[str]:
        return words(text)


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_JiebaTokenizer())


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over jieba words: 1 for identical texts, 0 when they share no word."""
    if not words(prediction) or not words(reference):
        return 0.0
    return float(_scorer().score(reference, prediction)["rougeL"].fmeasure)


def corpus_bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU (0-100) over jieba words, one reference per prediction."""
    import sacrebleu

    if not predictions:
        return 0.0
    hyp = [" ".join(words(p)) for p in predictions]
    ref = [" ".join(words(r)) for r in references]
    return float(sacrebleu.corpus_bleu(hyp, [ref], tokenize="none").score)


def _norm(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).lower() if ch.isalnum())


def reference_stated(answer: str, reference: str, threshold: float) -> bool:
    """A book reference sentence counts as stated when that share of its character bigrams is in the
    answer (the containment book-qa itself grounds answers with)."""
    from medmill.builders.text.ngrams import containment

    return containment(reference, answer) >= threshold


def value_stated(answer: str, value: str) -> bool:
    """A KG value is stated when its letters and digits appear in the answer's."""
    v = _norm(value)
    return bool(v) and v in _norm(answer)


def grounding_facts(meta: dict[str, Any]) -> tuple[str, list[str]] | None:
    """("kg", values) for kg-qa records, ("reference", sentences) for book-qa ones, else None."""
    values = meta.get("values")
    if isinstance(values, dict):
        flat = [str(v) for vs in values.values() if isinstance(vs, list) for v in vs if str(v).strip()]
        if flat:
            return "kg", list(dict.fromkeys(flat))
    refs = meta.get("reference", meta.get("references"))
    if isinstance(refs, str):
        refs = [refs]
    if isinstance(refs, list):
        refs = [str(r) for r in refs if str(r).strip()]
        if refs:
            return "reference", refs
    return None


def grounding_recall(answer: str, kind: str, facts: list[str], threshold: float) -> float:
    """Share of the record's facts the answer states."""
    if kind == "kg":
        hits = sum(value_stated(answer, v) for v in facts)
    else:
        hits = sum(reference_stated(answer, r, threshold) for r in facts)
    return hits / len(facts)
