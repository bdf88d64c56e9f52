"""Issue 12 #24: `datasets.load_dataset(DIR)` keys its cache on the card's YAML; a rebuild with other
rows of the same sizes must load the new rows (a content fingerprint in the YAML)."""

from __future__ import annotations

import yaml

from tests.curation.test_curation_cli import make_dir, sft


def _header(path) -> dict:
    return yaml.safe_load((path / "README.md").read_text(encoding="utf-8").split("---")[1])


def _records(ch: str) -> list:
    return [sft(f"问题{i}{ch}", f"答案{i}{ch * 4}", f"g{i}") for i in range(5)]


def test_rebuild_with_same_sizes_loads_the_new_rows(tmp_path):
    import datasets  # here, not at module level: collecting the file would cost every xdist worker ~2 s

    datasets.disable_progress_bars()
    out, cache = tmp_path / "ds", tmp_path / "cache"
    make_dir(out, _records("甲"))
    first = _header(out)
    loaded = datasets.load_dataset(str(out), cache_dir=str(cache))["train"]
    assert loaded[0]["messages"][0]["content"].endswith("甲")
    # another content whose shards have exactly the same sizes (what the card's dataset_info says)
    for ch in "乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥":
        make_dir(out, _records(ch))
        if _header(out)["dataset_info"] == first["dataset_info"]:
            break
    else:
        raise AssertionError("no same-size rebuild found")
    second = _header(out)
    assert second["configs"][0]["description"] != first["configs"][0]["description"]
    reloaded = datasets.load_dataset(str(out), cache_dir=str(cache))["train"]
    assert sorted(m[0]["content"] for m in reloaded["messages"]) == [f"问题{i}{ch}" for i in range(5)]


def test_same_content_keeps_the_same_fingerprint(tmp_path):
    make_dir(tmp_path / "a", _records("甲"))
    make_dir(tmp_path / "b", _records("甲"))
    assert _header(tmp_path / "a")["configs"] == _header(tmp_path / "b")["configs"]
    assert _header(tmp_path / "a")["configs"][0]["description"].startswith("medmill content sha256:")
