"""Shared inputs for the build-prefs tests (no tests here): a KG-QA-like sft dir, preference/prompt files."""

from __future__ import annotations

import json
from pathlib import Path

from medmill.builders.core.writer import BuildInfo, write_dataset_dir
from medmill.schemas import Message, SFTRecord, Source

# entity -> relation -> values (a toy KG; values of one relation are swappable across entities)
KG: dict[str, dict[str, list[str]]] = {
    "感冒": {"推荐药品": ["复方氨酚烷胺片", "板蓝根颗粒"], "就诊科室": ["呼吸内科"], "检查": ["血常规"], "症状": ["鼻塞", "流涕", "咽痛"]},
    "胃炎": {"推荐药品": ["奥美拉唑肠溶胶囊", "铝碳酸镁片"], "就诊科室": ["消化内科"], "检查": ["胃镜检查"], "症状": ["上腹痛", "反酸", "嗳气"]},
    "高血压": {"推荐药品": ["硝苯地平缓释片", "缬沙坦胶囊"], "就诊科室": ["心血管内科"], "检查": ["动态血压监测"], "症状": ["头晕", "头痛", "心悸"]},
    "糖尿病": {"推荐药品": ["二甲双胍片", "阿卡波糖片"], "就诊科室": ["内分泌科"], "检查": ["糖化血红蛋白"], "症状": ["多饮", "多尿", "消瘦"]},
    "偏头痛": {"推荐药品": ["布洛芬缓释胶囊", "佐米曲普坦片"], "就诊科室": ["神经内科"], "检查": ["头颅磁共振"], "症状": ["搏动性头痛", "畏光", "恶心"]},
    "甲状腺功能减退症": {"推荐药品": ["左甲状腺素钠片"], "就诊科室": ["内分泌科"], "检查": ["甲状腺功能", "甲状腺超声"], "症状": ["乏力", "怕冷", "水肿"]},
    "湿疹": {"推荐药品": ["丁酸氢化可的松乳膏", "氯雷他定片"], "就诊科室": ["皮肤科"], "检查": ["过敏原检测"], "症状": ["瘙痒", "红斑", "渗出"]},
}

QUESTIONS = {
    "推荐药品": "{e}一般推荐吃什么药？",
    "就诊科室": "得了{e}应该挂哪个科？",
    "检查": "{e}需要做什么检查？",
    "症状": "{e}有哪些常见症状？",
}


def _answer(entity: str, relation: str, values: list[str]) -> str:
    listed = "、".join(values[:-1]) + ("和" if len(values) > 1 else "") + values[-1]
    if relation == "推荐药品":
        return f"{entity}常用的推荐药品有{listed}。具体用药请在医生指导下进行，每次剂量按说明书服用。"
    if relation == "就诊科室":
        return f"{entity}患者一般到{listed}就诊。如果症状加重，建议尽快到医院就诊。"
    if relation == "检查":
        return f"{entity}通常需要做{listed}。检查结果需要由医生结合病史解读。"
    return f"{entity}的常见症状有{listed}。出现这些症状可能是{entity}，建议及时就医明确诊断。"


def kg_qa_dir(root: Path) -> Path:
    """A dataset dir shaped like build-kg-qa output: meta names the entity, relations and values stated."""
    records = []
    for entity, relations in KG.items():
        for relation, values in relations.items():
            messages = [
                Message(role="user", content=QUESTIONS[relation].format(e=entity)),
                Message(role="assistant", content=_answer(entity, relation, values)),
            ]
            records.append(
                SFTRecord(
                    id=SFTRecord.make_id(messages),
                    messages=messages,
                    source=Source(file="kg.jsonl", ref=entity, group=f"entity:{entity}", builder="build-kg-qa"),
                    meta={"builder": "kg_qa", "entity": entity, "relations": [relation], "values": {relation: values}},
                )
            )
    out = root / "kg_qa"
    write_dataset_dir(out, records, [], BuildInfo(kind="sft", builder="build-kg-qa", command="test"))
    return out


def write_jsonl(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
