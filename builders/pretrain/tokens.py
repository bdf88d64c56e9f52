"""Token counts of documents: exact with a local Hugging Face tokenizer dir, otherwise an estimate
from characters that every report labels as an estimate.

The estimate: one token per 1.5 CJK characters and per 4 other non-space characters, the rough rates
of current Chinese-capable BPE vocabularies (Qwen, Llama 3, DeepSeek). It is good for ratios between
sources of the same language, not for exact budgets.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from medmill.builders.core.steps import GlobalStep, StepResult
from medmill.builders.curation.text import record_text
from medmill.schemas import Record
from medmill.schemas.errors import MedmillError

FILES_LISTED = 100
CJK_CHARS_PER_TOKEN = 1.5
OTHER_CHARS_PER_TOKEN = 4.0
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
_SPACE = re.compile(r"\s")


def estimate_tokens(text: str) -> int:
    cjk = len(text) - len(_CJK.sub("", text))
    other = len(text) - cjk - (len(text) - len(_SPACE.sub("", text)))
    return max(1, math.ceil(cjk / CJK_CHARS_PER_TOKEN + other / OTHER_CHARS_PER_TOKEN)) if text.strip() else 0


class TokenCounter:
    """Counts tokens of batches of texts. `method` says how: 'tokenizer:<dir>' or 'estimate (chars)'."""

    def __init__(self, tokenizer: Path | None = None) -> None:
        self.tokenizer = tokenizer
        self._batch: Callable[[Sequence[str]], list[int]]
        if tokenizer is None:
            self.method = "estimate (chars)"
            self.exact = False
            self._batch = lambda texts: [estimate_tokens(t) for t in texts]
        else:
            self.method = f"tokenizer:{Path(tokenizer).name}"
            self.exact = True
            self._batch = _load(Path(tokenizer))

    def count(self, texts: Sequence[str]) -> list[int]:
        return self._batch(list(texts)) if texts else []


def _load(path: Path) -> Callable[[Sequence[str]], list[int]]:
    """Batch counter of a local tokenizer: tokenizer.json through `tokenizers` (batched, in Rust),
    else transformers' AutoTokenizer (sentencepiece-only dirs)."""
    if not path.is_dir():
        raise MedmillError(f"--tokenizer {path}: not a local tokenizer directory")
    try:
        if (path / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            fast = Tokenizer.from_file(str(path / "tokenizer.json"))
            return lambda texts: [len(e.ids) for e in fast.encode_batch(list(texts), add_special_tokens=False)]
        from transformers import AutoTokenizer

        slow = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        return lambda texts: [len(ids) for ids in slow(list(texts), add_special_tokens=False)["input_ids"]]
    except Exception as e:  # noqa: BLE001 - tokenizers/transformers raise many types on a broken dir
        raise MedmillError(f"cannot load tokenizer from {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


class TokenStep(GlobalStep):
    """The last step: sets `meta.tokens` on every record kept and reports totals per input kind and
    per source file (after PII redaction, so the counts are of the texts written)."""

    name = "tokens"

    def __init__(self, tokenizer: Path | None, batch: int = 512) -> None:
        self.tokenizer = tokenizer
        self.batch = batch

    @property
    def counter(self) -> TokenCounter:
        if "_counter" not in self.__dict__:
            self._counter = TokenCounter(self.tokenizer)
        return self._counter

    def __call__(self, records: list[Record]) -> StepResult:
        out, facts = self.per_batch(records)
        stats, counters = self.reduce(facts)
        return StepResult(out, [], counters, stats)

    def per_batch(self, records: list[Record]) -> tuple[list[Record], pa.Table]:
        """Records with `meta.tokens` set, and (tokens, input kind, file) per record: what the stats are
        made of, so a streamed build keeps these facts, not the records (`streaming/build_stream.py`)."""
        out: list[Record] = []
        tokens: list[int] = []
        for i in range(0, len(records), self.batch):
            chunk = records[i : i + self.batch]
            for r, n in zip(chunk, self.counter.count([record_text(r, ["text"]) for r in chunk]), strict=True):
                tokens.append(n)
                out.append(r.model_copy(update={"meta": {**r.meta, "tokens": n}}))
        facts = pa.table({
            "tokens": pa.array(tokens, pa.int64()),
            "kind": pa.array([str(r.meta.get("kind", "text")) for r in records], pa.string()),
            "file": pa.array([r.source.file or "?" for r in records], pa.string()),
        })
        return out, facts

    def reduce(self, facts: pa.Table) -> tuple[dict[str, Any], Counter]:
        """The step's stats and counters over the records these facts describe, in their order."""
        by_kind: Counter = Counter()
        docs_by_kind: Counter = Counter()
        by_file: Counter = Counter()
        docs_by_file: Counter = Counter()
        n_docs = facts.num_rows
        for batch in facts.to_batches(max_chunksize=65_536):
            cols = batch.to_pydict()
            for n, kind, file in zip(cols["tokens"], cols["kind"], cols["file"], strict=True):
                by_kind[kind] += n
                docs_by_kind[kind] += 1
                by_file[file] += n
                docs_by_file[file] += 1
        total = sum(by_kind.values())
        stats = {
            "method": self.counter.method,
            "estimate": not self.counter.exact,
            "tokens_total": total,
            "documents": n_docs,
            "tokens_per_document": round(total / n_docs, 1) if n_docs else 0,
            "tokens_by_input_kind": dict(sorted(by_kind.items())),
            "documents_by_input_kind": dict(sorted(docs_by_kind.items())),
            # the largest sources (a corpus of thousands of files keeps the manifest small)
            "by_file": {f: {"documents": docs_by_file[f], "tokens": t} for f, t in by_file.most_common(FILES_LISTED)},
            "files": len(by_file),
        }
        return stats, Counter({"total": total})
