"""Entity records -> KGEntity: cMeKG-style `{"中心词": …, "<relation>": [values]}` and QASystemOnMedicalKG /
DiseaseKG `medical.json` records (mongoexport, English keys).

Both are "one JSON object per entity"; they differ in the name key and in QASystem's English field
names, which are mapped to the Chinese labels of the site they were scraped from (prepare_data/
build_data.py of QASystemOnMedicalKG) so templates and questions speak Chinese either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from medmill.builders.readers.kg_clean import ValueCleaner, normalise_text
from medmill.schemas.sources import KGEntity, SourceRef

NAME_KEYS = ("中心词", "name", "名称", "实体", "entity", "实体名称")
TYPE_KEYS = ("类型", "实体类型", "类", "type", "class", "label")
IGNORED_KEYS = ("_id",)


@dataclass(frozen=True)
class Field:
    label: str
    text: bool  # free text -> attribute; otherwise a list of values -> relation


QASYSTEM_FIELDS: dict[str, Field] = {
    "desc": Field("简介", True),
    "cause": Field("病因", True),
    "prevent": Field("预防措施", True),
    "easy_get": Field("易感人群", True),
    "get_way": Field("传染方式", True),
    "get_prob": Field("患病比例", True),
    "cure_lasttime": Field("治疗周期", True),
    "cured_prob": Field("治愈率", True),
    "cost_money": Field("治疗费用", True),
    "yibao_status": Field("医保", True),
    "category": Field("所属类别", False),
    "symptom": Field("症状", False),
    "acompany": Field("并发症", False),
    "cure_department": Field("就诊科室", False),
    "cure_way": Field("治疗方式", False),
    "check": Field("检查", False),
    "common_drug": Field("常用药品", False),
    "recommand_drug": Field("推荐药品", False),
    "do_eat": Field("宜食", False),
    "not_eat": Field("忌食", False),
    "recommand_eat": Field("推荐食谱", False),
    "drug_detail": Field("药品明细", False),
}
# QASystem's `category` always starts with the site section, which says nothing about the disease.
_CATEGORY_NOISE = {"疾病百科"}
# A short string value without sentence punctuation is one relation value; anything else is free text.
_SENTENCE = re.compile(r"[。；;！？!?\n]")
SHORT_VALUE_CHARS = 30
# The enumeration comma separates the items of a list flattened into one string (never inside a name).
_ENUMERATION = re.compile(r"[、]")


def clean_name(value: Any) -> str | None:
    """An entity name on one line with single spaces, or None when it is not usable text."""
    if not isinstance(value, str):
        return None
    name = normalise_text(value).replace("\n", " ")
    return name or None


def entity_name(record: dict[str, Any]) -> tuple[str | None, str | None]:
    """(name key, name) of an entity record, or (None, None) when it has no name key."""
    for key in NAME_KEYS:
        if key in record:
            return key, clean_name(record[key])
    return None, None


def is_qasystem(record: dict[str, Any]) -> bool:
    oid = record.get("_id")
    if isinstance(oid, dict) and "$oid" in oid:
        return True
    return "name" in record and sum(k in QASYSTEM_FIELDS for k in record) >= 2


def add_values(relations: dict[str, list[str]], label: str, values: list[str]) -> None:
    """Append `values` to `relations[label]`, skipping ones already there (order kept)."""
    if not values:
        return
    current = relations.setdefault(label, [])
    current.extend(v for v in values if v not in current)


def entity_from_record(
    record: dict[str, Any], name_key: str, name: str, ref: SourceRef, cleaner: ValueCleaner
) -> KGEntity:
    """Map one entity record to a KGEntity; values are cleaned (drops counted by `cleaner`)."""
    qasystem = is_qasystem(record)
    attributes: dict[str, str] = {}
    relations: dict[str, list[str]] = {}
    entity_type: str | None = "疾病" if qasystem else None
    for key, raw in record.items():
        if key == name_key or key in IGNORED_KEYS:
            continue
        if key in TYPE_KEYS and isinstance(raw, str) and raw.strip():
            entity_type = raw.strip()
            continue
        field = QASYSTEM_FIELDS.get(key) if qasystem else None
        label = field.label if field else str(key).strip()
        if not label:
            cleaner.counters["dropped_keys.empty_key"] += 1
            continue
        if isinstance(raw, list):
            values = [v for v in raw if not (key == "category" and v in _CATEGORY_NOISE)]
            kept = cleaner.clean_list(values, entity=name, names=qasystem and label == "症状")
            if kept:
                add_values(relations, label, kept)
            elif not raw:
                cleaner.counters["empty_relations"] += 1
            continue
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str):
            cleaner.drop("not_text")
            continue
        if (field is not None and field.text) or (
            field is None and (len(raw.strip()) > SHORT_VALUE_CHARS or _SENTENCE.search(raw.strip()))
        ):
            text = cleaner.clean_text(raw)
            if text:
                attributes[label] = text
        else:  # a list written as one string ("头痛、恶心、呕吐") holds several values
            add_values(relations, label, cleaner.clean_list(_ENUMERATION.split(raw), entity=name,
                                                           names=qasystem and label == "症状"))
    return KGEntity(name=name, type=entity_type, attributes=attributes, relations=relations, ref=ref)
