"""Value cleaning keeps rates: "85%" is a fact (发病率), "12" or "—" is noise."""

from __future__ import annotations

from pathlib import Path

from medmill.builders.readers.kg import read_kg


def test_rates_are_kept_bare_numbers_dropped(tmp_path: Path):
    f = tmp_path / "kg.jsonl"
    f.write_text('{"中心词": "肝癌", "发病率": ["0.02%"], "相关症状": ["12", "—", "肝区疼痛"]}\n', encoding="utf-8")
    result = read_kg([f])
    entity = result.entities[0]
    assert "0.02%" in [v for vs in entity.relations.values() for v in vs] + list(entity.attributes.values())
    assert entity.relations.get("相关症状") == ["肝区疼痛"]
    assert result.counters["dropped_values.digits_or_punctuation"] == 2
