"""Issue 12 (trainers and model commands): encodings, broken weights, bad option values, missing models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hardening_cli import cli

SENTENCES = ["高血压患者应低盐饮食", "糖尿病患者要控制血糖", "冠心病患者应戒烟限酒", "慢性胃炎要规律饮食"]


def _corpus(path: Path, encoding: str) -> Path:
    lines = [json.dumps({"text": s * 3}, ensure_ascii=False) for s in SENTENCES * 20]
    path.write_bytes("\n".join(lines).encode(encoding))
    return path


def test_corpus_texts_of_a_gbk_jsonl_file_are_decoded_like_the_builds(tmp_path):
    from medmill.builders.readers.textio import iter_corpus_texts
    from medmill.trainers.corpus import iter_texts

    texts = list(iter_texts([_corpus(tmp_path / "c.jsonl", "gb18030")], iter_corpus_texts))
    assert texts[:2] == [SENTENCES[0] * 3, SENTENCES[1] * 3] and len(texts) == 80


@pytest.mark.slow
def test_init_model_reads_a_gbk_corpus_like_the_builds(tmp_path, monkeypatch, capsys):
    from transformers import AutoTokenizer

    counts = {}
    for enc in ("utf-8", "gb18030"):
        corpus = _corpus(tmp_path / f"corpus_{enc}.jsonl", enc)
        code, output = cli(monkeypatch, capsys, "init-model", "--out", tmp_path / enc, "--corpus", corpus, "--vocab-size", "400")
        assert code == 0, output
        tok = AutoTokenizer.from_pretrained(tmp_path / enc)
        counts[enc] = len(tok(SENTENCES[0])["input_ids"])
    # before the fix the GBK corpus was decoded with replacement characters: many more tokens
    assert counts["gb18030"] == counts["utf-8"] <= 4


def test_trainers_default_text_reader_refuses_non_utf8_instead_of_replacing(tmp_path):
    from medmill.schemas.errors import MedmillError
    from medmill.trainers.corpus import iter_texts

    corpus = _corpus(tmp_path / "c.txt", "gb18030")
    with pytest.raises(MedmillError, match="not UTF-8"):
        list(iter_texts([corpus]))
