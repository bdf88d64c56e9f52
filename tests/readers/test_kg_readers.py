"""KG readers: every format, encodings, CRLF, varying keys, noise, broken lines, unreadable input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medmill.builders.readers.kg import read_kg
from medmill.schemas.errors import MedmillError


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _by_name(result):
    return {e.name: e for e in result.entities}


# ---- cMeKG-style entity records ------------------------------------------------------------------

CMEKG_LINES = [
    {"中心词": "偏头痛", "相关症状": ["头痛", " 恶心 ", "头痛", "", "畏光..."], "所属科室": ["神经内科"],
     "发病部位": "头部", "概述": "偏头痛是一种常见的原发性头痛。多为单侧搏动性疼痛。"},
    {"中心词": " 胃炎\n", "症状": ["上腹痛", "123", "——", "胃炎"], "类型": "疾病", "检查": ["胃镜检查"]},
]


def test_cmekg_jsonl_lists_strings_and_cleaning(tmp_path):
    f = _write(tmp_path / "kg.txt", "\n".join(json.dumps(r, ensure_ascii=False) for r in CMEKG_LINES) + "\n")
    result = read_kg([f])
    kg = _by_name(result)
    assert kg["偏头痛"].relations["相关症状"] == ["头痛", "恶心"]
    assert kg["偏头痛"].relations["发病部位"] == ["头部"]  # a short string is one relation value
    assert kg["偏头痛"].attributes["概述"].startswith("偏头痛是一种")  # a sentence is a text attribute
    assert kg["偏头痛"].ref.line == 1 and kg["胃炎"].ref.line == 2
    assert kg["胃炎"].type == "疾病" and kg["胃炎"].relations["症状"] == ["上腹痛"]
    c = result.counters
    assert c["dropped_values.duplicate"] == 1
    assert c["dropped_values.empty"] == 1
    assert c["dropped_values.truncated"] == 1
    assert c["dropped_values.digits_or_punctuation"] == 2
    assert c["dropped_values.self_reference"] == 1
    assert c["files.entities"] == 1


def test_nested_value_lists_are_opened_not_dropped(tmp_path):
    records = [
        {"_id": {"$oid": "5bb578b6831b973a137e3ee6"}, "name": "肺炎", "symptom": ["发热", ["咳嗽", "咳痰"]],
         "cure_department": [["内科", "呼吸内科"]]},
        {"中心词": "高血压", "检查": [["血压测量"], ["心电图", {"x": 1}]]},
    ]
    f = _write(tmp_path / "kg.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    result = read_kg([f])
    kg = _by_name(result)
    assert kg["肺炎"].relations["症状"] == ["发热", "咳嗽", "咳痰"]
    assert kg["肺炎"].relations["就诊科室"] == ["内科", "呼吸内科"]
    assert kg["高血压"].relations["检查"] == ["血压测量", "心电图"]
    assert result.counters["dropped_values.not_text"] == 1  # the dict inside, nothing else


def test_a_list_written_as_one_string_becomes_its_values(tmp_path):
    records = [
        {"中心词": "偏头痛", "相关症状": "头痛、恶心、畏光", "所属科室": "神经内科", "发病部位": "头部"},
        {"_id": {"$oid": "5bb578b6831b973a137e3ee6"}, "name": "百日咳", "symptom": "阵发性痉挛性咳嗽、鸡鸣样回声",
         "check": "血常规、胸部X线检查", "cure_department": ["儿科"]},
    ]
    f = _write(tmp_path / "kg.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    kg = _by_name(read_kg([f]))
    assert kg["偏头痛"].relations == {"相关症状": ["头痛", "恶心", "畏光"], "所属科室": ["神经内科"],
                                     "发病部位": ["头部"]}
    assert kg["百日咳"].relations["症状"] == ["阵发性痉挛性咳嗽", "鸡鸣样回声"]
    assert kg["百日咳"].relations["检查"] == ["血常规", "胸部X线检查"]


def test_cmekg_json_array_with_bom_and_crlf(tmp_path):
    text = json.dumps(CMEKG_LINES, ensure_ascii=False, indent=1).replace("\n", "\r\n")
    f = _write(tmp_path / "kg.json", text, "utf-8-sig")
    result = read_kg([f])
    assert sorted(_by_name(result)) == ["偏头痛", "胃炎"]
    assert result.counters["encodings.utf-8-sig"] == 1
    assert _by_name(result)["胃炎"].ref.line > _by_name(result)["偏头痛"].ref.line > 1


def test_huatuo_readme_record(samples_dir):
    result = read_kg([samples_dir / "huatuo_cmekg_style_readme_example.jsonl"])
    (e,) = result.entities
    assert e.name == "偏头痛"
    assert set(e.relations) == {"相关疾病", "相关症状", "所属科室", "发病部位"}
    assert e.relations["所属科室"] == ["中西医结合科", "内科"]


# ---- QASystemOnMedicalKG / DiseaseKG -------------------------------------------------------------

def test_qasystem_sample_mapped_and_cleaned(samples_dir):
    result = read_kg([samples_dir / "qasystem_medical_sample.json"])
    kg = _by_name(result)
    assert len(kg) == 10 and result.counters["files.qasystem"] == 1
    pap = kg["肺泡蛋白质沉积症"]
    assert pap.type == "疾病"
    assert pap.relations["就诊科室"] == ["内科", "呼吸内科"]
    assert pap.relations["所属类别"] == ["内科", "呼吸内科"]  # the site section 疾病百科 is dropped
    assert "毓卓" not in pap.relations["症状"]  # a scraped person name
    assert {"简介", "病因", "预防措施", "治愈率", "医保"} <= set(pap.attributes)
    assert "推荐药品" not in pap.relations  # an empty list is no relation
    assert "闫鹏辉" not in kg["百日咳"].relations["症状"]
    assert "冬春季的慢性咳..." not in kg["喘息样支气管炎"].relations["症状"]
    assert "易感人群" not in pap.attributes and "易感人群" in kg["百日咳"].attributes  # keys vary per record
    assert result.counters["dropped_values.person_name"] == 2
    assert result.counters["dropped_values.truncated"] == 1
    assert not result.rejects


def test_qasystem_gb18030(tmp_path):
    rec = {"_id": {"$oid": "1"}, "name": "感冒", "symptom": ["鼻塞", "流涕"], "desc": "常见的上呼吸道感染。",
           "cure_department": ["内科"]}
    f = _write(tmp_path / "medical.json", json.dumps(rec, ensure_ascii=False) + "\r\n", "gb18030")
    result = read_kg([f])
    (e,) = result.entities
    assert e.relations == {"症状": ["鼻塞", "流涕"], "就诊科室": ["内科"]}
    assert e.attributes == {"简介": "常见的上呼吸道感染。"}
    assert result.counters["encodings.gb18030"] == 1


# ---- triples --------------------------------------------------------------------------------------

def test_cmekg_tools_spo_sample_grouped_by_subject(samples_dir):
    result = read_kg([samples_dir / "cmekg_train_example_sample.json"])
    kg = _by_name(result)
    assert len(kg) == 8 and result.counters["files.spo"] == 1
    e = kg["12小时尿沉渣计数"]
    assert "单纯型尿路感染" in e.relations["相关疾病"] and "血尿" in e.relations["相关症状"]
    assert e.ref.line == 2  # the line of the first record naming this subject
    assert result.counters["triples_read"] == 64


def test_triples_cmeie_dicts_and_diseasekg_rels(tmp_path):
    lines = [
        {"text": "x", "triples": [["阿司匹林", "不良反应", "胃肠道不适"], ["阿司匹林", "禁忌", "消化道出血"]]},
        {"text": "y", "spo_list": [{"subject": "阿司匹林", "predicate": "适应症", "object": {"@value": "冠心病"}}]},
        {"head": " 布洛芬\n", "relation": "适应症", "tail": "发热"},
        {"start_entity_type": "Disease", "end_entity_type": "Symptom", "rel_type": "has_symptom",
         "rel_name": "症状", "rels": [{"start_entity_name": "感冒", "end_entity_name": "鼻塞"},
                                      {"start_entity_name": "感冒", "end_entity_name": "流涕"}]},
    ]
    f = _write(tmp_path / "t.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines))
    result = read_kg([f])
    kg = _by_name(result)
    assert kg["阿司匹林"].relations == {"不良反应": ["胃肠道不适"], "禁忌": ["消化道出血"], "适应症": ["冠心病"]}
    assert kg["布洛芬"].relations == {"适应症": ["发热"]}
    assert kg["感冒"].relations == {"症状": ["鼻塞", "流涕"]} and kg["感冒"].ref.line == 4
    assert result.counters["triples_read"] == 6


@pytest.mark.parametrize(
    "header",
    ["head,relation,tail", "Subject,Predicate,Object", "头实体,关系,尾实体", "id,subject,predicate,object"],
)
def test_csv_header_names(tmp_path, header):
    cols = header.split(",")
    pad = "7," if len(cols) == 4 else ""
    body = f'{pad}感冒,症状,鼻塞\n{pad}感冒,症状,"咳嗽"\n{pad}感冒,治疗方式,"休息, 多饮水"\n'
    f = _write(tmp_path / "t.csv", header + "\n" + body)
    (e,) = read_kg([f]).entities
    assert e.relations == {"症状": ["鼻塞", "咳嗽"], "治疗方式": ["休息, 多饮水"]}


def test_json_array_of_triple_lists(tmp_path):
    f = _write(tmp_path / "t.json", '[["感冒", "症状", "鼻塞"],\n ["感冒", "症状", "流涕"],\n ["x"]]')
    result = read_kg([f])
    (e,) = result.entities
    assert e.relations == {"症状": ["鼻塞", "流涕"]}
    assert [(r.source.line, r.reason) for r in result.rejects] == [(3, "not_an_object")]


def test_gbk_csv_with_crlf_and_multiline_field(tmp_path):
    text = '头实体,关系,尾实体\r\n高血压,症状,头晕\r\n高血压,简介,"第一行\r\n第二行"\r\n高血压,检查,心电图\r\n'
    f = _write(tmp_path / "kg.csv", text, "gb18030")
    result = read_kg([f])
    (e,) = result.entities
    assert e.relations["检查"] == ["心电图"] and e.relations["简介"] == ["第一行 第二行"]
    assert result.counters["encodings.gb18030"] == 1


def test_blank_lines_before_the_csv_header_or_first_row(tmp_path):
    f = _write(tmp_path / "kg.csv", "\n\r\nhead,relation,tail\n胃炎,症状,胃痛\n胃炎,检查\n")
    result = read_kg([f])
    (e,) = result.entities
    assert e.relations == {"症状": ["胃痛"]} and e.ref.line == 4
    assert [(r.source.line, r.reason) for r in result.rejects] == [(5, "wrong_column_count")]
    g = _write(tmp_path / "kg.tsv", "\n肝炎\t症状\t黄疸\n")
    (h,) = read_kg([g]).entities
    assert h.relations == {"症状": ["黄疸"]} and h.ref.line == 2


def test_headerless_tsv_and_other_separators(tmp_path):
    f = _write(tmp_path / "kg.tsv", "糖尿病\t症状\t多饮\n糖尿病\t症状\t多尿\n")
    (e,) = read_kg([f]).entities
    assert e.relations == {"症状": ["多饮", "多尿"]}
    g = _write(tmp_path / "kg.txt", "head;relation;tail\n痛风;症状;关节疼痛\n")
    (e,) = read_kg([g]).entities
    assert e.relations == {"症状": ["关节疼痛"]}


# ---- broken input --------------------------------------------------------------------------------

def test_broken_lines_become_rejects_with_line_numbers(tmp_path):
    text = (
        '{"中心词": "感冒", "症状": ["鼻塞"]}\n'
        '{"中心词": "流感", "症状": ["高热"\n'          # line 2: invalid JSON
        '[1, 2]\n'                                      # line 3: not an object
        '{"foo": "bar"}\n'                              # line 4: no name / triple / spo
        '{"中心词": "", "症状": ["x"]}\n'               # line 5: empty name
        '{"head": "", "relation": "症状", "tail": "x"}\n'  # line 6: empty head
        '{"中心词": "肺炎", "症状": ["发热"]}\n'
    )
    f = _write(tmp_path / "kg.jsonl", text)
    result = read_kg([f])
    assert sorted(_by_name(result)) == ["感冒", "肺炎"]
    got = {(r.source.line, r.reason) for r in result.rejects}
    assert got == {(2, "invalid_json"), (3, "not_an_object"), (4, "unknown_record_shape"),
                   (5, "missing_name"), (6, "missing_field")}
    assert all(r.source.file == str(f) and r.stage == "read" for r in result.rejects)


def test_a_json_array_with_a_broken_element_or_trailing_comma_keeps_the_rest(tmp_path):
    trailing = _write(tmp_path / "a.json", '[\n {"中心词": "胃炎", "症状": ["胃痛"]},\n {"中心词": "肠炎", "症状": ["腹泻"]},\n]\n')
    result = read_kg([trailing])
    assert sorted(_by_name(result)) == ["肠炎", "胃炎"] and result.rejects == []
    broken = _write(tmp_path / "b.json", '[\n {"中心词": "胃炎", "症状": ["胃痛"]},\n {"中心词": "肠炎", "症状": ["腹泻"],\n'
                                         ' {"中心词": "肝炎", "症状": ["黄疸"]}\n]\n')
    result = read_kg([broken])
    assert sorted(_by_name(result)) == ["肝炎", "胃炎"]
    assert _by_name(result)["肝炎"].ref.line == 4
    assert [(r.source.line, r.reason) for r in result.rejects] == [(3, "invalid_json")]
    hopeless = _write(tmp_path / "c.json", '[\n {"中心词": \n]\n')
    with pytest.raises(MedmillError, match="no record parses as JSON"):
        read_kg([hopeless])


def test_csv_short_row_rejected(tmp_path):
    f = _write(tmp_path / "kg.csv", "head,relation,tail\n感冒,症状,鼻塞\n感冒,症状\n,症状,x\n")
    result = read_kg([f])
    assert {(r.source.line, r.reason) for r in result.rejects} == {(3, "wrong_column_count"), (4, "missing_field")}


def test_wrong_path_and_unreadable_formats(tmp_path):
    with pytest.raises(MedmillError, match="no such file"):
        read_kg([tmp_path / "missing.json"])
    plain = _write(tmp_path / "notes.txt", "这不是知识图谱，只是一段文字。\n第二行。\n")
    with pytest.raises(MedmillError, match="not a KG file"):
        read_kg([plain])
    other_csv = _write(tmp_path / "dialogues.csv", "department,title,ask,answer\n内科,头痛,问,答\n")
    with pytest.raises(MedmillError, match="head/relation/tail"):
        read_kg([other_csv])
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\x00\x01\x02PK\x00")
    with pytest.raises(MedmillError):
        read_kg([binary])
    not_kg_json = _write(tmp_path / "qa.json", '[{"instruction": "问", "output": "答"}]')
    with pytest.raises(MedmillError, match="not a KG file"):
        read_kg([not_kg_json])


def test_directory_merges_entities_and_reports_stray_files(tmp_path):
    _write(tmp_path / "a.jsonl", '{"中心词": "感冒", "症状": ["鼻塞"], "简介": "一种常见病。"}\n')
    _write(tmp_path / "b.tsv", "head\trelation\ttail\n感冒\t症状\t流涕\n感冒\t症状\t鼻塞\n")
    _write(tmp_path / "README.md", "# docs are skipped\n")
    _write(tmp_path / "notes.txt", "随手记\n")
    _write(tmp_path / "qa.jsonl", '{"instruction": "问", "output": "答"}\n{"broken": \n')
    (tmp_path / ".hidden").mkdir()
    _write(tmp_path / ".hidden" / "x.jsonl", "garbage\n")
    result = read_kg([tmp_path])
    (e,) = result.entities
    assert e.relations["症状"] == ["鼻塞", "流涕"] and e.attributes["简介"] == "一种常见病。"
    assert result.counters["entities_merged"] == 1
    assert [(Path(r.source.file).name, r.reason) for r in result.rejects] == [
        ("notes.txt", "unrecognised_file"), ("qa.jsonl", "unrecognised_file")]
    assert [p.name for p in result.files] == ["a.jsonl", "b.tsv", "notes.txt", "qa.jsonl"]
    assert "rejected_records.invalid_json" not in result.counters


def test_person_name_filter_spares_symptom_words():
    from medmill.builders.readers.kg_clean import PersonNameFilter

    is_name = PersonNameFilter()
    assert [w for w in ["闫鹏辉", "毓卓", "王某", "李娜"] if not is_name(w)] == []
    symptoms = ["阴虚", "阳虚", "麻木", "纳呆", "目赤", "乏力", "胸痛", "黄疸", "口干", "咳铁锈色痰", "呼吸困难"]
    assert [w for w in symptoms if is_name(w)] == []


def test_a_file_named_twice_is_read_once(tmp_path, monkeypatch):
    _write(tmp_path / "kg.jsonl", '{"中心词": "感冒", "症状": ["鼻塞"]}\n')
    monkeypatch.chdir(tmp_path)
    result = read_kg([Path("."), Path("kg.jsonl"), tmp_path / "kg.jsonl", Path("./kg.jsonl")])
    assert result.files == [Path("kg.jsonl")]
    assert result.counters["entities_merged"] == 0 and result.counters["files.entities"] == 1
    _write(tmp_path / "bad.jsonl", "garbage\n")
    with pytest.raises(MedmillError, match="bad.jsonl: not a KG file"):  # named directly, by any spelling
        read_kg([Path("."), tmp_path / "bad.jsonl"])
