"""Headings, heading paths, chunk sizes and boundaries, stable ids, token-based sizes."""

from __future__ import annotations

import pytest

from medmill.builders.readers.chunks import prepare_chunks
from medmill.builders.text.chunking import Chunker, ChunkSettings, chunk_id
from medmill.builders.text.clean import clean_text
from medmill.builders.text.sections import detect_heading, split_sections


@pytest.mark.parametrize(
    ("line", "rank"),
    [
        ("# 高血压", 1),
        ("### 1.2 血压测量方法", 3),
        ("第一篇 总论", 10),
        ("第三章病毒性肝炎", 11),
        ("第二节 流行病学", 12),
        ("一、传染源", 13),
        ("（二）血液和体液传播", 14),
        ("3外感病类术语", 15),
        ("3.1 外感时令类病", 16),
        ("3.1.2.3 中暑", 18),
    ],
)
def test_heading_kinds_and_ranks(line, rank):
    heading = detect_heading(line)
    assert heading is not None and heading.rank == rank


@pytest.mark.parametrize(
    "line",
    [
        "1细胞免疫致敏T细胞与相应抗原再次相遇时，通过细胞毒性淋巴因子来杀伤病原体。",
        "2.体液免疫致敏B细胞受抗原刺激后，即转化为浆细胞。",
        "2020年发布的共识",
        "传染病学是一门研究各种传染病在人体内外发生、发展规律的学科。",
        "（李兰娟）",
        "",
    ],
)
def test_sentences_and_list_items_are_not_headings(line):
    assert detect_heading(line) is None


def test_heading_paths_follow_the_hierarchy():
    text = "第一章 总论\n引言。\n第一节 感染\n一、概念\n正文一。\n（一）清除\n正文二。\n二、表现\n正文三。\n第二节 机制\n正文四。"
    paths = [s.headings for s in split_sections(text)]
    assert paths == [
        ["第一章 总论"],
        ["第一章 总论", "第一节 感染"],
        ["第一章 总论", "第一节 感染", "一、概念"],
        ["第一章 总论", "第一节 感染", "一、概念", "（一）清除"],
        ["第一章 总论", "第一节 感染", "二、表现"],
        ["第一章 总论", "第二节 机制"],
    ]


def _chunks(path, size=2000, overlap=200):
    text = clean_text(path.read_text(encoding="utf-8")).text
    return text, Chunker(ChunkSettings(chunk_size=size, chunk_overlap=overlap)).chunk(path.name, text)


def test_fever_textbook_chunks_carry_heading_paths_and_offsets(samples_dir):
    text, chunks = _chunks(
        samples_dir / "medicalgpt_pretrain_fever_textbook_sample.txt", size=800, overlap=100
    )
    assert len(chunks) >= 8
    for c in chunks:
        assert text[c.offset : c.offset + len(c.text)] == c.text
        assert len(c.text) <= 800
        assert c.headings and c.headings[0] == "第一章论"
    paths = [c.headings for c in chunks]
    assert ["第一章论", "第一节感染与免疫", "二、感染过程的表现"] in paths
    assert any(p[:2] == ["第一章论", "第二节传染病的发病机制"] for p in paths)
    # chunks do not straddle the two 节 (the document's second heading level)
    for c in chunks:
        assert not ("第一节感染与免疫" in c.text and "第二节传染病的发病机制" in c.text)


def test_long_sections_split_on_sentence_ends_with_overlap(examples_dir):
    text, chunks = _chunks(examples_dir / "texts" / "infectious_textbook.txt", size=150, overlap=40)
    assert all(len(c.text) <= 150 for c in chunks)
    treatment = [c for c in chunks if c.headings == ["第三章病毒性肝炎", "第四节治疗", "二、慢性乙型肝炎"]]
    assert len(treatment) >= 2 and treatment[0].text.startswith("二、慢性乙型肝炎\n抗病毒治疗")
    ends = [c.text[-1] for c in chunks]
    assert sum(e in "。；！？，" for e in ends) / len(ends) >= 0.9
    overlapping = [
        (a, b) for a, b in zip(chunks, chunks[1:], strict=False) if b.offset < a.offset + len(a.text)
    ]
    assert overlapping, "split pieces of one section overlap"


def test_chunk_ids_are_stable_and_depend_on_file_offset_and_text(examples_dir):
    path = examples_dir / "texts" / "hypertension_guideline.md"
    _, first = _chunks(path, size=500, overlap=50)
    _, second = _chunks(path, size=500, overlap=50)
    assert [c.id for c in first] == [c.id for c in second]
    assert len({c.id for c in first}) == len(first)
    c = first[1]
    assert c.id == chunk_id(c.file, c.offset, c.text)
    assert chunk_id("other.md", c.offset, c.text) != c.id
    assert chunk_id(c.file, c.offset + 1, c.text) != c.id
    assert chunk_id(c.file, c.offset, c.text + "。") != c.id


def test_markdown_guideline_heading_paths(examples_dir):
    _, chunks = _chunks(examples_dir / "texts" / "hypertension_guideline.md", size=500, overlap=50)
    drug = next(c for c in chunks if "ACEI最常见的不良反应是干咳" in c.text)
    assert drug.headings[:2] == ["成人原发性高血压基层管理要点（示例）", "2 治疗"]
    assert drug.text.startswith("###")  # the section's own heading line stays in the text
    diagnosis = next(c for c in chunks if "诊断阈值为135/85" in c.text)
    assert diagnosis.headings[:2] == ["成人原发性高血压基层管理要点（示例）", "1 诊断"]


def _char_tokenizer(directory, text):
    """A WordPiece tokenizer (tokenizer.json) whose vocab is the characters of `text`: CJK characters are one
    token each, an unknown Latin word ("mmHg") is one [UNK]."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", *sorted(set(text) - set(" \n"))])}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(handle_chinese_chars=True, lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    directory.mkdir()
    tok.save(str(directory / "tokenizer.json"))
    return directory


def test_token_sized_chunks_with_a_local_tokenizer(tmp_path, examples_dir):
    text = clean_text((examples_dir / "texts" / "hypertension_guideline.md").read_text(encoding="utf-8")).text
    settings = ChunkSettings(
        chunk_size=120, chunk_overlap=20, unit="tokens", tokenizer=_char_tokenizer(tmp_path / "tok", text)
    )
    chunker = Chunker(settings)
    chunks = chunker.chunk("guide.md", text)
    sizes = [chunker.length(c.text) for c in chunks]
    assert max(sizes) <= 120 and len(chunks) >= 8
    assert any(
        chunker.length(c.text) < len(c.text) - 10 for c in chunks
    )  # tokens, not characters, were counted


def test_bad_tokenizer_dir_is_a_one_line_error(tmp_path):
    from medmill.schemas.errors import MedmillError

    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(MedmillError, match="cannot load tokenizer"):
        Chunker(ChunkSettings(unit="tokens", tokenizer=tmp_path / "tok"))
    with pytest.raises(MedmillError, match="not a local tokenizer directory"):
        Chunker(ChunkSettings(unit="tokens", tokenizer=tmp_path / "missing"))


def test_settings_are_checked():
    with pytest.raises(ValueError, match="chunk_overlap"):
        ChunkSettings(chunk_size=100, chunk_overlap=100)
    with pytest.raises(ValueError, match=r"chunk_overlap \(200\) must be smaller than chunk_size \(150\)"):
        ChunkSettings(chunk_size=150)  # only --chunk-size given: the message names the default overlap
    with pytest.raises(ValueError, match="tokenizer"):
        ChunkSettings(unit="tokens")


def test_prepare_chunks_on_samples_and_examples(samples_dir, examples_dir):
    prepared = prepare_chunks(
        [
            samples_dir / "medicalgpt_zh_book_data_sample.json",
            samples_dir / "tcmchat_pretrain_book_sample.txt",
            examples_dir / "texts",
        ]
    )
    assert prepared.rejects == []
    assert prepared.counts["documents"] == 34 and prepared.counts["chunks"] == len(prepared.chunks)
    book = [c for c in prepared.chunks if c.file.startswith("medicalgpt_zh_book_data_sample.json#")]
    assert len(book) == 30 and all(c.meta["line"] >= 2 for c in book)
    tcm = [c for c in prepared.chunks if c.file == "tcmchat_pretrain_book_sample.txt"]
    assert any(
        c.headings == ["3外感病类术语"] and c.text.startswith("3外感病类术语\n3.1 外感时令类病") for c in tcm
    )
    assert any(c.headings == ["3外感病类术语", "3.2 伤寒类病"] for c in tcm)
    gb = [c for c in prepared.chunks if c.file == "texts/diabetes_notes_gb18030.txt"]
    assert gb and gb[0].headings[0] == "第一章 糖尿病的基本知识"
    assert {d.encoding for d in prepared.documents if d.name.startswith("texts/diabetes")} == {"gb18030"}
    assert prepared.counts["clean.fullwidth_spaces"] > 0
    assert prepared.counts["encoding.gb18030"] == 1 and prepared.counts["encoding.utf-8"] == 4


@pytest.mark.parametrize(("size", "overlap"), [(60, 0), (120, 100), (500, 50), (2000, 200)])
def test_chunks_cover_every_character_fit_the_size_and_are_substrings(
    samples_dir, examples_dir, size, overlap
):
    for path in (
        samples_dir / "medicalgpt_pretrain_fever_textbook_sample.txt",
        samples_dir / "tcmchat_pretrain_book_sample.txt",
        examples_dir / "texts" / "hypertension_guideline.md",
    ):
        text, chunks = _chunks(path, size=size, overlap=overlap)
        covered: set[int] = set()
        for c in chunks:
            assert text[c.offset : c.offset + len(c.text)] == c.text
            assert len(c.text) <= size
            covered.update(range(c.offset, c.offset + len(c.text)))
        lost = [i for i, ch in enumerate(text) if not ch.isspace() and i not in covered]
        assert lost == [], f"{path.name}: {len(lost)} characters in no chunk"


def test_hash_lines_inside_markdown_code_blocks_are_not_headings():
    text = "# 肺炎诊疗\n\n## 病原学\n\n```python\n# not a heading\nprint(1)\n```\n\n## 治疗\n\n阿莫西林是首选药物之一。\n"
    sections = split_sections(text)
    assert [s.headings for s in sections] == [["肺炎诊疗"], ["肺炎诊疗", "病原学"], ["肺炎诊疗", "治疗"]]
    assert "# not a heading" in text[sections[1].start : sections[1].end]


def test_offsets_of_a_split_section_with_repeated_sentences_point_at_their_own_copy():
    repeated = "甲型肝炎病毒（HAV）属于小RNA病毒科，对外界抵抗力较强，耐酸碱，在室温下可存活1周，高血压是常见的慢性病。"
    text = "第一章 总论\n" + repeated * 3
    for overlap in (0, 30):
        chunks = Chunker(ChunkSettings(chunk_size=100, chunk_overlap=overlap, min_chunk_chars=1)).chunk("d", text)
        offsets = [c.offset for c in chunks]
        assert offsets == sorted(set(offsets))  # strictly increasing: no piece mapped back onto an earlier copy
        assert all(text[c.offset : c.offset + len(c.text)] == c.text for c in chunks)
        covered = {i for c in chunks for i in range(c.offset, c.offset + len(c.text))}
        assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())
