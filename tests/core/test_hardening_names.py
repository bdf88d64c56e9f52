"""Issue 12, item 12: an input file whose name is not valid UTF-8 (a GBK name from a Windows zip) is
read, and its name reaches the manifest, rejects, card and shards in a readable escaped form."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import medmill.cli
from medmill.builders.readers.documents import load_documents
from medmill.builders.readers.literature import read_literature
from medmill.schemas import RejectRow, Source
from medmill.schemas.dataset_dir import split_files

if not any(c.name == "build-kg-qa" for c in medmill.cli.app.registered_commands):
    medmill.cli._register()

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GBK_NAME = "感冒".encode("gbk")  # b"\xb8\xd0\xc3\xb0": not valid UTF-8 as a whole
ESCAPED = "\\xb8\\xd0"

pytestmark = pytest.mark.skipif(sys.platform == "win32" or os.fsencode("x") != b"x" or sys.getfilesystemencoding() != "utf-8",
                                reason="needs a POSIX file system with UTF-8 file names")


def _gbk_file(folder: Path, suffix: bytes, content: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    raw = os.fsencode(folder) + b"/" + GBK_NAME + suffix
    with open(raw, "w", encoding="utf-8") as f:
        f.write(content)
    return Path(os.fsdecode(raw))


def test_printable_name_escapes_only_undecodable_bytes():
    from medmill.schemas.names import printable_json, printable_name

    name = os.fsdecode(b"kg/" + GBK_NAME + b".jsonl")
    shown = printable_name(name)
    shown.encode("utf-8")  # writable
    assert shown.startswith("kg/" + ESCAPED) and shown.endswith(".jsonl")
    assert printable_name("正常名字.txt") == "正常名字.txt"
    line = printable_json(json.dumps({"file": name}, ensure_ascii=False))
    assert json.loads(line)["file"] == shown


def test_kg_build_over_a_gbk_named_file_succeeds_and_writes_escaped_names(tmp_path):
    kg = tmp_path / "kg"
    # a few diseases are enough: this is about the file's name, not its size
    good = "".join((EXAMPLES / "kg" / "diseases.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:8])
    _gbk_file(kg, b".jsonl", good + "{broken line\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(medmill.cli.app, ["build-kg-qa", str(kg), "--out", str(out)])
    assert result.exception is None, result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["records_total"] > 0
    assert any(ESCAPED in i["path"] for i in manifest["inputs"])
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    read_rejects = [r for r in rejects if r["stage"] == "read"]
    assert read_rejects and all(ESCAPED in r["source"]["file"] for r in read_rejects)
    files = {row["source"]["file"] for f in split_files(out)["train"] for row in pq.read_table(f).to_pylist()}
    assert files and all(ESCAPED in f for f in files)
    assert ESCAPED in (out / "README.md").read_text(encoding="utf-8")


def test_document_and_literature_readers_give_writable_sources_and_rejects(tmp_path):
    doc = _gbk_file(tmp_path / "docs", b".txt", "")  # an empty document: a reject naming the file
    loaded = load_documents([doc.parent])
    assert loaded.rejects
    for row in loaded.rejects:
        json.loads(row.to_json())
        assert ESCAPED in row.source.file
    _gbk_file(tmp_path / "lit", b".jsonl", '{"title": "t"}\n{oops\n')
    lit = read_literature([tmp_path / "lit"])
    assert lit.rejects and all(ESCAPED in json.loads(r.to_json())["source"]["file"] for r in lit.rejects)


def test_reject_rows_with_surrogates_in_message_and_raw_stay_valid_json():
    from medmill.schemas.names import printable_name

    bad = os.fsdecode(GBK_NAME)
    row = RejectRow(stage="read", reason="unreadable", message=f"cannot read {bad}", source=Source(file=bad), raw={bad: bad})
    parsed = json.loads(row.to_json())
    assert parsed["message"] == "cannot read " + printable_name(bad) and ESCAPED in parsed["message"]
    assert ESCAPED in parsed["source"]["file"] and ESCAPED in next(iter(parsed["raw"]))


def test_a_gbk_named_file_given_on_the_command_line_reaches_command_params_and_card(tmp_path):
    few = "".join((EXAMPLES / "kg" / "diseases.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:8])
    f = _gbk_file(tmp_path / "kg", b".jsonl", few)  # the file's name is the point, not its size
    out = tmp_path / "out"
    result = CliRunner().invoke(medmill.cli.app, ["build-kg-qa", str(f), "--out", str(out)])
    assert result.exception is None, result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert ESCAPED in manifest["params"]["inputs"][0]
    assert ESCAPED in (out / "README.md").read_text(encoding="utf-8")
