"""`medmill build-pt` end to end: the project's own textbook fixture, every input kind, curation
counts, token counts, t2s, mixing through the CLI, datasets.load_dataset and medmill validate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import medmill.cli
from medmill.schemas.dataset_dir import split_files
from tests.pretrain.corpus import GENERAL, MEDICAL, write_corpus

if not any(c.name == "build-pt" for c in medmill.cli.app.registered_commands):
    medmill.cli._register()

FIXTURES = Path(__file__).parent / "fixtures"
COPYRIGHT = "版权所有，侵权必究。本书由示例医学出版社出版，未经许可不得复制。"


def run(*args):
    return CliRunner().invoke(medmill.cli.app, [str(a) for a in args])


def build(*args):
    result = run("build-pt", *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def rows(out: Path) -> dict[str, list[dict]]:
    return {s: [r for f in fs for r in pq.read_table(f).to_pylist()] for s, fs in split_files(out).items()}


def all_rows(out: Path) -> list[dict]:
    return [r for rs in rows(out).values() for r in rs]


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def _books(root: Path) -> tuple[Path, list[str]]:
    """Six paged 'books' (the textbook fixture and five written here the same way): running header
    and page number on every page, lines wrapped mid-sentence, the same copyright page in each.
    Returns the folder and the paragraphs as they were before wrapping."""
    import random

    from tests.pretrain.corpus import sentence

    books = root / "books"
    books.mkdir(parents=True)
    (books / "book0.txt").write_text(f"{COPYRIGHT}\n\f" + (FIXTURES / "textbook.txt").read_text(encoding="utf-8"), encoding="utf-8")
    paragraphs: list[str] = []
    rng = random.Random(3)
    for b in range(1, 6):
        pages, lines = [], []
        for sec in ("一", "二", "三"):
            lines.append(f"第{sec}节 {rng.choice(MEDICAL)}的{rng.choice(['病因', '诊断', '治疗', '预防'])}")
            for _ in range(2):
                para = "".join(sentence(rng, MEDICAL) for _ in range(rng.randint(3, 6)))
                paragraphs.append(para)
                lines += _wrap(para, 38)
        per_page = len(lines) // 4 + 1
        for p in range(4):
            body = lines[p * per_page : (p + 1) * per_page]
            pages.append("\n".join(["传染病学（第9版）", *body, str(10 * b + p + 1)]))
        (books / f"book{b}.txt").write_text(f"{COPYRIGHT}\n\f" + "\f".join(pages), encoding="utf-8")
    return books, paragraphs


def _wrap(para: str, width: int) -> list[str]:
    """PDF-style wrapping; a wrapped line never ends in 。 (a reader could not tell it from a paragraph end)."""
    out = []
    while len(para) > width:
        cut = width - 1 if para[width - 1] == "。" else width
        out.append(para[:cut])
        para = para[cut:]
    return out + [para]


def test_textbooks_come_out_clean_and_load(tmp_path):
    out = tmp_path / "pt"
    books, paragraphs = _books(tmp_path)
    build(books, "--out", out, "--doc-unit", "section", "--val-size", "0.2")
    texts = [r["text"] for r in all_rows(out)]
    assert len(texts) == 18  # 6 books x 3 sections
    joined = "\n".join(texts)
    lines = set(joined.split("\n"))
    assert all(p in lines for p in paragraphs)  # every wrapped paragraph rejoined exactly, headers gone
    assert "传染病学（第9版）" not in joined  # running header
    assert COPYRIGHT not in joined  # repeated across the 6 books
    assert not any(line.strip().isdigit() for t in texts for line in t.split("\n"))  # page numbers
    assert "包括传染源、传播途径和人群易感性。" in joined  # broken across a page break
    assert all(t.rstrip()[-1] == "。" for t in texts)
    assert any("大肠埃希菌和某些真菌。" in t for t in texts)  # a word broken over two lines, joined
    m = manifest(out)
    bp = m["stats"]["boilerplate"]
    assert bp["paragraphs_removed"] == 6 and bp["top"][0]["documents"] == 6
    assert m["counters"]["clean.repeated_header_lines"] >= 6 * 8
    assert m["curation"]["tokens"]["estimate"] is True
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "estimated from characters" in card and "版权所有" in card
    by_file = m["curation"]["tokens"]["by_file"]
    assert sorted(by_file) == [f"books/book{i}.txt" for i in range(6)] and all(v["documents"] == 3 for v in by_file.values())
    metas = [json.loads(r["meta"]) for r in all_rows(out)]
    assert all(meta["tokens"] > 0 for meta in metas)
    # a section's heading path (the first section of a book starts under its copyright page: none)
    assert sum(bool(meta.get("headings")) for meta in metas) >= 12
    for r in all_rows(out):
        assert r["source"]["file"].startswith("books/book") and r["source"]["builder"] == "pt"
    import datasets

    ds = datasets.load_dataset(str(out))
    assert set(ds) == {"train", "validation"} and ds["train"].column_names == ["id", "text", "source", "meta"]
    assert run("validate", out).exit_code == 0


def _other_inputs(root: Path) -> dict[str, Path]:
    from medmill.builders.core.writer import BuildInfo, write_dataset_dir
    from medmill.schemas import Message, SFTRecord, Source

    root.mkdir(parents=True, exist_ok=True)
    qa = root / "qa.txt"  # JSON Lines in a .txt, keys 问/答 (MedicalGPT's medical_corpus.txt)
    qa.write_text(
        "\n".join(
            json.dumps({"问": f"{d}患者平时需要注意什么？", "答": f"{d}患者应规律作息，遵医嘱用药，定期复查，出现不适及时就医。"}, ensure_ascii=False)
            for d in MEDICAL[:4]
        ) + "\n",
        encoding="utf-8",
    )
    sft = root / "sft"
    records = []
    for i, d in enumerate(MEDICAL[4:8]):
        msgs = [Message(role="user", content=f"{d}怎么治疗？"), Message(role="assistant", content=f"{d}的治疗包括一般治疗、药物治疗和随访，具体方案需医生评估第{i}种情况。")]
        records.append(SFTRecord(id=SFTRecord.make_id(msgs), messages=msgs, source=Source(builder="test")))
    write_dataset_dir(sft, records, [], BuildInfo(kind="sft", builder="test", command="test"))
    lit = root / "papers.jsonl"
    lit.write_text(
        json.dumps({"title": "二甲双胍对2型糖尿病患者心血管结局的影响", "abstract": "目的 观察二甲双胍治疗2型糖尿病患者的心血管结局。方法 回顾性分析1200例患者。",
                    "conclusion": "二甲双胍可降低2型糖尿病患者的心血管事件风险。", "doi": "10.1000/x1"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    toc = root / "toc.txt"
    toc.write_text("目录\n总论\n病毒\n细菌\n真菌\n寄生虫\n附录一\n附录二\n索引\n", encoding="utf-8")
    english = root / "english.txt"
    english.write_text("Hypertension is a common chronic disease. Patients should take their medicine every day and check blood pressure at home.\n", encoding="utf-8")
    pii = root / "case.txt"
    pii.write_text("患者张某，联系电话13812345678，因反复头痛三年入院。查体血压160/100mmHg，诊断为原发性高血压，给予降压治疗后好转出院。\n", encoding="utf-8")
    dup = root / "case_copy.txt"
    shutil.copy(pii, dup)
    return {"qa": qa, "sft": sft, "lit": lit, "toc": toc, "english": english, "pii": pii, "dup": dup}


def test_every_input_kind_and_curation_counts(tmp_path):
    inputs = _other_inputs(tmp_path / "in")
    out = tmp_path / "pt"
    build(inputs["qa"], inputs["sft"], inputs["toc"], inputs["english"], inputs["pii"], inputs["dup"],
          "--literature", inputs["lit"], "--out", out, "--min-doc-chars", "20", "--val-size", "0")
    got = all_rows(out)
    kinds = {json.loads(r["meta"])["kind"] for r in got}
    assert kinds == {"dialogue", "sft", "literature", "txt"}
    texts = [r["text"] for r in got]
    assert any(t.startswith("问：高血压患者平时需要注意什么？\n答：") for t in texts)
    assert any(t.startswith("问：肺炎怎么治疗？\n答：") for t in texts)
    paper = next(t for t in texts if t.startswith("二甲双胍对2型糖尿病"))
    assert "回顾性分析1200例患者" in paper and paper.endswith("心血管事件风险。")
    case = [t for t in texts if "头痛三年" in t]
    assert len(case) == 1 and "13812345678" not in case[0] and "<PHONE>" in case[0]  # PII redacted, copy deduplicated
    m = manifest(out)
    reasons = m["rejects_by_reason"]
    assert reasons["text_quality/short_lines"] == 1  # the table of contents
    assert reasons["text_quality/low_cjk_share"] == 1  # the English file
    assert reasons["dedup/exact_duplicate"] == 1, open(out / "rejects.jsonl").read()
    assert m["curation"]["pii"]["found.PHONE"] == 2  # PII runs before dedup: both copies redacted
    assert m["curation"]["tokens"]["documents_by_input_kind"] == {"dialogue": 4, "literature": 1, "sft": 4, "txt": 1}
    assert run("validate", out).exit_code == 0


def test_t2s_and_fullwidth_punctuation(tmp_path):
    pytest.importorskip("opencc")
    src = tmp_path / "trad.txt"
    src.write_text("高血壓患者應當長期規律服藥，並監測血壓；若出現頭痛、頭暈等症狀，應及時就醫。\n", encoding="utf-8")
    out = tmp_path / "pt"
    build(src, "--out", out, "--t2s", "--min-doc-chars", "10", "--val-size", "0")
    (text,) = [r["text"] for r in all_rows(out)]
    assert text == "高血压患者应当长期规律服药，并监测血压；若出现头痛、头晕等症状，应及时就医。"
    assert manifest(out)["counters"]["t2s_chars"] > 5


@pytest.mark.slow  # trains a tokenizer, imports transformers, builds; counting itself: test_pt_parts.py (fast)
def test_tokenizer_counts_exactly(tmp_path):
    from medmill.trainers.init_model import train_tokenizer

    corpus = write_corpus(tmp_path / "c.jsonl", 30, MEDICAL, seed=1)
    tok = train_tokenizer([json.loads(x)["text"] for x in corpus.read_text(encoding="utf-8").splitlines()], 400)
    tok.save_pretrained(tmp_path / "tok")
    out = tmp_path / "pt"
    build(corpus, "--out", out, "--tokenizer", tmp_path / "tok", "--val-size", "0")
    got = all_rows(out)
    for r in got:
        assert json.loads(r["meta"])["tokens"] == len(tok(r["text"], add_special_tokens=False)["input_ids"])
    stats = manifest(out)["curation"]["tokens"]
    assert stats == stats | {"method": "tokenizer:tok", "estimate": False}
    assert stats["tokens_total"] == sum(json.loads(r["meta"])["tokens"] for r in got)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.txt"], "no such file or directory"),
        (["--mix", "a=0.5,b=0.5", "x.txt"], "without INPUTs"),
        ([], "give INPUT files"),
        (["--tokenizer", "nowhere", "IN"], "not a local tokenizer directory"),
        (["--mix", "IN=0.5,IN2=0.5"], "holds no parquet shards|is not a directory|has no data"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    import re

    from medmill.schemas.errors import MedmillError

    (tmp_path / "x.txt").write_text("高血压患者应当长期规律服药并监测血压，出现不适及时就医。", encoding="utf-8")
    args = [str(tmp_path / "x.txt") if a == "IN" else a for a in args]
    args = [a.replace("IN=", f"{tmp_path / 'x.txt'}=").replace("IN2=", f"{tmp_path / 'x2'}=") for a in args]
    result = run("build-pt", *args, "--out", tmp_path / "out")
    assert isinstance(result.exception, MedmillError), result.output  # main() prints it as one line, exit 2
    assert re.search(message, str(result.exception)), result.exception


@pytest.mark.slow  # spawns an interpreter
def test_error_exit_code_and_no_traceback(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "medmill.cli", "build-pt", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no such file or directory" in proc.stderr + proc.stdout


def _two_dirs(tmp_path: Path) -> tuple[Path, Path]:
    domain, general = tmp_path / "domain", tmp_path / "general"
    build(write_corpus(tmp_path / "d.jsonl", 60, MEDICAL, seed=1), "--out", domain, "--val-size", "0")
    build(write_corpus(tmp_path / "g.jsonl", 600, GENERAL, seed=2), "--out", general, "--val-size", "0")
    return domain, general


@pytest.mark.slow  # five builds; the ratio and seed rules themselves are in test_mixing.py (fast)
def test_mix_cli_ratios_epochs_and_reproducible(tmp_path):
    domain, general = _two_dirs(tmp_path)
    spec = f"{domain}=0.3,{general}=0.7"
    a, b, c = tmp_path / "mix_a", tmp_path / "mix_b", tmp_path / "mix_c"
    build("--mix", spec, "--max-epochs", "2", "--out", a, "--seed", "5", "--val-size", "0.1")
    build("--mix", spec, "--max-epochs", "2", "--out", b, "--seed", "5", "--val-size", "0.1")
    build("--mix", spec, "--max-epochs", "2", "--out", c, "--seed", "6", "--val-size", "0.1")
    m = manifest(a)
    sources = m["stats"]["mix"]["sources"]
    for name, share in ((str(domain), 0.3), (str(general), 0.7)):
        assert abs(sources[name]["share_reached"] - share) / share <= 0.01
    assert sources[str(domain)]["epochs"] == pytest.approx(2.0, rel=0.01)  # the scarce source, up to the cap
    assert sources[str(general)]["epochs"] < 1.0  # downsampled
    assert sources[str(domain)]["documents_after"] > sources[str(domain)]["documents_before"]
    # the same seed gives the same mixture, byte for byte; another seed another one
    ids = lambda d: sorted(r["id"] for r in all_rows(d))  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)
    assert [f.read_bytes() for fs in split_files(a).values() for f in fs] == [f.read_bytes() for fs in split_files(b).values() for f in fs]
    # copies of a document stay in one split
    split_of: dict[str, set[str]] = {}
    for split, rs in rows(a).items():
        for r in rs:
            split_of.setdefault(r["text"], set()).add(split)
    assert all(len(s) == 1 for s in split_of.values())
    total = sum(json.loads(r["meta"])["tokens"] for r in all_rows(a))
    assert total == m["stats"]["mix"]["tokens_total"]
    card = (a / "README.md").read_text(encoding="utf-8")
    assert "share reached" in card and "epochs" in card
    assert run("validate", a).exit_code == 0
    import datasets

    assert datasets.load_dataset(str(a))["train"].num_rows > 0


@pytest.mark.slow
def test_train_pt_on_a_build_pt_mixture(tmp_path):
    """`medmill train pt` packs a build-pt mixture into blocks and its loss falls."""
    import torch

    from medmill.trainers.init_model import init_model
    from medmill.trainers.options import TrainOptions
    from medmill.trainers.run import run_training
    from tests.trainers.test_train_support import fast_args

    domain, general = _two_dirs(tmp_path)
    mix = tmp_path / "mix"
    build("--mix", f"{domain}=0.3,{general}=0.7", "--out", mix, "--val-size", "0.05")
    model = tmp_path / "model"
    init_model(model, corpus=[mix], size="tiny")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        opts = TrainOptions(stage="pt", model=str(model), data=[str(mix)], out=str(tmp_path / "run"), block_size=64, preview=False)
        result = run_training(opts, {}, fast_args(30))
    finally:
        torch.set_num_threads(before)
    assert result.metrics["blocks"] > 10
    assert result.history["loss"][-1] < 0.8 * result.history["loss"][0]


@pytest.mark.slow  # builds the real samples in ../shared
def test_real_samples_come_out_clean(samples_dir, tmp_path):
    """The textbook, guideline and book_data samples of ../shared/samples (skipped when absent)."""
    import re

    names = ["medicalgpt_pretrain_fever_textbook_sample.txt", "tcmchat_pretrain_book_sample.txt",
             "medicalgpt_zh_book_data_sample.json", "medicalgpt_rag_medical_corpus_sample.txt"]
    out = tmp_path / "pt"
    build(*[samples_dir / n for n in names], "--out", out, "--val-size", "0")
    got = all_rows(out)
    files = {r["source"]["file"] for r in got}
    assert files == set(names)
    for r in got:
        text = r["text"]
        assert not any(re.fullmatch(r"\d{1,4}", line.strip()) for line in text.split("\n"))  # no page numbers
        assert not re.search(r"\[\d{1,3}\]", text)  # citation marks stripped
        assert "，" in text or "。" in text or "：" in text  # full-width punctuation kept
        assert "\u3000" not in text
    fever = [r["text"] for r in sorted(got, key=lambda r: r["source"]["offset"] or 0) if r["source"]["file"].startswith("medicalgpt_pretrain_fever")]
    assert fever[0].startswith("第一章论\n传染病是指由病原微生物")
    tcm = [json.loads(r["meta"]).get("headings") for r in got if r["source"]["file"].startswith("tcmchat")]
    assert any(h and h[-1].startswith("3.1.1") for h in tcm)  # sections keep their heading path
    kinds = {json.loads(r["meta"])["kind"] for r in got}
    assert kinds == {"txt", "json", "dialogue"}  # 问/答 JSON Lines in a .txt rendered as dialogue


def test_docx_input_keeps_its_sections(tmp_path):
    docx = pytest.importorskip("docx")
    doc = docx.Document()
    doc.add_heading("高血压基层诊疗指南", level=1)
    for title, body in (("诊断", "诊室血压收缩压不低于140mmHg和（或）舒张压不低于90mmHg，非同日测量三次，可诊断为高血压。"),
                        ("治疗", "生活方式干预包括减少钠盐摄入、控制体重、戒烟限酒和规律运动，药物治疗需根据危险分层选择。")):
        doc.add_heading(title, level=2)
        doc.add_paragraph(body)
    doc.save(tmp_path / "guide.docx")
    out = tmp_path / "pt"
    build(tmp_path / "guide.docx", "--out", out, "--val-size", "0", "--min-doc-chars", "20")
    got = sorted(all_rows(out), key=lambda r: r["source"]["offset"])
    assert [json.loads(r["meta"])["headings"] for r in got] == [["高血压基层诊疗指南", "诊断"], ["高血压基层诊疗指南", "治疗"]]
    assert got[0]["text"].endswith("可诊断为高血压。") and json.loads(got[0]["meta"])["kind"] == "docx"
