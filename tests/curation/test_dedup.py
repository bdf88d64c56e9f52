"""Near-duplicate engine: datasketch-equal signatures, exact-Jaccard verification, the representative
rule (no chains), short texts, determinism, parallel == serial, and the persisted index."""

from __future__ import annotations

import random

import numpy as np
import pytest

from medmill.builders.curation import dedup as dd
from medmill.builders.curation import minhash as mh
from medmill.builders.curation.dedup import DedupConfig, find_duplicates
from medmill.builders.curation.index import DedupIndex
from medmill.schemas.errors import MedmillError

BASE = [
    "高血压患者首先要注意控制食盐摄入量，每天不超过六克，注意不要吃太油腻的食物，多吃新鲜的绿色蔬菜水果，适当运动，规律服用降压药物。",
    "糖尿病患者要控制饮食，少吃含糖量高的食物，定期监测血糖，按医嘱使用降糖药或胰岛素，同时坚持适量运动，控制体重，戒烟限酒。",
    "冠心病的常见症状包括胸痛、胸闷、心悸和气短，劳累或情绪激动时容易诱发，休息或含服硝酸甘油后可缓解，需及时就医明确诊断。",
    "慢性胃炎患者饮食要规律，避免辛辣刺激和过冷过热的食物，戒烟戒酒，必要时在医生指导下使用抑酸药和胃黏膜保护剂进行治疗。",
]


def edit(text: str, rate: float, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(max(1, int(len(chars) * rate))):
        i = rng.randrange(len(chars))
        chars[i] = rng.choice("的了是在有和就不人都一上也很到说要去你会着没看好自己这")
    return "".join(chars)


def sets(texts: list[str], params: mh.MinHashParams) -> list[np.ndarray]:
    h, off = params.shingles(texts)
    ends = np.append(off[1:], len(h))
    return [np.unique(h[a:b]) for a, b in zip(off, ends, strict=True)]


def test_signatures_equal_datasketch():
    from datasketch import MinHash

    params = DedupConfig().params
    h, off = params.shingles(BASE)
    sigs = mh.signatures(h, off, 128, 1)
    ends = np.append(off[1:], len(h))
    for i in range(len(BASE)):
        m = MinHash(num_perm=128, seed=1, hashfunc=int)
        m.update_batch(h[off[i] : ends[i]].tolist())
        assert (m.hashvalues == sigs[i]).all()
    a, b = MinHash(num_perm=64, seed=9).permutations
    mine = mh.permutations(64, 9)
    assert (a == mine[0]).all() and (b == mine[1]).all()


def test_exact_duplicates_ignore_width_space_and_punctuation():
    texts = [BASE[0], BASE[0].replace("，", ",").replace("。", "."), " ".join(BASE[0]), "ＡＢＣ１２３", "abc123"]
    result = find_duplicates(texts, DedupConfig())
    assert result.dup_of.tolist() == [-1, 0, 0, -1, 3]
    assert result.exact.tolist() == [False, True, True, False, True]


def test_short_and_empty_texts_are_kept_not_crashed():
    texts = ["头痛", "头疼", "头痛", "", "？？", "", "a"]
    result = find_duplicates(texts, DedupConfig())
    assert result.dup_of.tolist() == [-1, -1, 0, -1, -1, 3, -1]
    h, off = DedupConfig().params.shingles(["头痛", "", "x"])
    assert len(off) == 3 and len(h) == 3  # one shingle each, even the empty text
    for edge in ([], [""], ["a", ""], ["", "", "？"]):  # empty texts at the end of a batch too
        assert len(find_duplicates(edge, DedupConfig()).dup_of) == len(edge)


def test_candidates_below_threshold_are_not_removed(monkeypatch):
    rng = random.Random(1)
    near, far = edit(BASE[0], 0.01, rng), edit(BASE[0], 0.2, rng)
    params = DedupConfig().params
    s = sets([BASE[0], near, far], params)
    j_near, j_far = mh.jaccard(s[0], s[1]), mh.jaccard(s[0], s[2])
    assert j_near >= 0.8 > j_far
    # one row per band: every pair sharing any shingle is an LSH candidate; only exact Jaccard decides
    monkeypatch.setattr(DedupConfig, "bands_rows", property(lambda self: (128, 1)))
    result = find_duplicates([BASE[0], near, far], DedupConfig(threshold=0.8))
    assert result.stats["lsh_candidates"] == 3
    assert result.dup_of.tolist() == [-1, 0, -1]
    assert result.similarity[1] == pytest.approx(j_near)


def test_no_chains_a_removed_text_makes_no_duplicates(monkeypatch):
    # a ~ b and b ~ c above the threshold, a ~ c below: b goes, c stays
    a = BASE[0]
    b = a[:40] + "注意" + a[40:]
    c = b[:80] + "每天" + b[80:] + "并复查"
    s = sets([a, b, c], DedupConfig().params)
    t = (min(mh.jaccard(s[0], s[1]), mh.jaccard(s[1], s[2])) + mh.jaccard(s[0], s[2])) / 2
    assert mh.jaccard(s[0], s[2]) < t < min(mh.jaccard(s[0], s[1]), mh.jaccard(s[1], s[2]))
    monkeypatch.setattr(DedupConfig, "bands_rows", property(lambda self: (128, 1)))
    result = find_duplicates([a, b, c], DedupConfig(threshold=t))
    assert result.dup_of.tolist() == [-1, 0, -1]


def corpus(n_dups: int = 3, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for base in BASE:
        texts.append(base)
        texts += [edit(base, 0.02, rng) for _ in range(n_dups)]
    rng.shuffle(texts)
    return texts


def test_near_duplicates_found_and_deterministic():
    texts = corpus()
    first = find_duplicates(texts, DedupConfig())
    again = find_duplicates(list(texts), DedupConfig())
    assert first.dup_of.tolist() == again.dup_of.tolist()
    assert len(BASE) <= int(first.keep.sum()) < len(texts) // 2
    assert_matches_exact_jaccard(texts, first, DedupConfig())
    # every removal names an earlier kept text and is verified at or above the threshold
    s = sets(texts, DedupConfig().params)
    for i in np.flatnonzero(~first.keep):
        j = first.dup_of[i]
        assert j < i and first.keep[j] and first.similarity[i] >= DedupConfig().threshold
        assert first.similarity[i] == pytest.approx(mh.jaccard(s[i], s[j]))


def assert_matches_exact_jaccard(texts: list[str], result, config: DedupConfig) -> None:
    """Removed texts are verified duplicates of a kept one; no two kept texts reach the threshold."""
    s = sets(texts, config.params)
    for i in np.flatnonzero(~result.keep):
        assert mh.jaccard(s[i], s[result.dup_of[i]]) >= config.threshold
    kept = np.flatnonzero(result.keep)
    for x in kept:
        for y in kept[kept > x]:
            assert mh.jaccard(s[x], s[y]) < config.threshold


@pytest.mark.slow  # jieba segments the whole corpus (character shingles, the default, stay fast)
def test_word_shingles():
    texts = corpus(2)
    config = DedupConfig(shingle="word")
    result = find_duplicates(texts, config)
    assert result.stats["ngram"] == 3 and int(result.keep.sum()) < len(texts)
    assert_matches_exact_jaccard(texts, result, config)


def test_parallel_equals_serial(monkeypatch):
    texts = corpus(5, seed=3) * 3
    serial = find_duplicates(texts, DedupConfig(workers=1))
    monkeypatch.setattr(dd, "PARALLEL_MIN_DOCS", 10)
    monkeypatch.setattr(dd, "CHUNK_DOCS", 7)
    parallel = find_duplicates(texts, DedupConfig(workers=2))
    assert (serial.sigs == parallel.sigs).all() and serial.dup_of.tolist() == parallel.dup_of.tolist()


def test_incremental_index(tmp_path):
    cfg = DedupConfig()
    path = tmp_path / "idx"
    first = [text for base in BASE for text in (base, edit(base, 0.01, random.Random(5)))]
    index = DedupIndex.open(path, cfg)
    r1 = find_duplicates(first, cfg, index.reference)
    keep = r1.keep
    index.append([f"id{i}" for i in np.flatnonzero(keep)], ["run1"] * int(keep.sum()),
                 [t for t, k in zip(first, keep, strict=True) if k], r1.keys[keep], r1.sigs[keep])

    again = DedupIndex.open(path, cfg)
    assert len(again) == len(BASE) and again.origins == ["run1"] * len(BASE)
    rng = random.Random(7)
    second = [BASE[0], edit(BASE[1], 0.02, rng), "完全不同的一段新文本，讲的是儿童发热时的物理降温方法和就医指征。"]
    r2 = find_duplicates(second, cfg, again.reference)
    assert r2.exact.tolist() == [True, False, False]
    assert 0 <= r2.dup_of[1] < len(again) and r2.dup_of[2] == -1
    assert again.ids[r2.dup_of[0]].startswith("id")

    with pytest.raises(MedmillError, match="was built with"):
        DedupIndex.open(path, DedupConfig(num_perm=64))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(MedmillError, match="not a medmill dedup index"):
        DedupIndex.open(tmp_path / "junk", cfg)


def test_lsh_params_favour_recall():
    bands, rows = mh.lsh_params(0.8, 128)
    assert bands * rows <= 128
    assert 1 - (1 - 0.8**rows) ** bands > 0.97  # P(candidate | J = 0.8)
    assert 1 - (1 - 0.4**rows) ** bands < 0.05  # P(candidate | J = 0.4)


def _rule_by_hand(texts: list[str], cfg: DedupConfig) -> tuple[list[int], list[float]]:
    """The representative rule written plainly (no exact pass needed: the texts are distinct): visit in
    order; the candidates of a text are the earlier texts among the first bucket_depth of a bucket it is
    in, ranked by how many of its buckets list them so, then by order; it is compared with the first
    max_compare kept ones and duplicates the most similar at or above the threshold (earliest on ties)."""
    params = cfg.params
    bands, rows = cfg.bands_rows
    sets = mh.unique_sets(*params.shingles(texts))
    keys = mh.band_keys(mh.signatures(*params.shingles(texts), params.num_perm, params.seed), bands, rows)
    dup_of, sims = [-1] * len(texts), [0.0] * len(texts)
    kept_set: set[int] = set()
    for i in range(len(texts)):
        score = np.zeros(i, dtype=np.int64)
        for b in range(bands):
            score[np.flatnonzero(keys[:i, b] == keys[i, b])[: cfg.bucket_depth]] += 1
        ranked = sorted(np.flatnonzero(score).tolist(), key=lambda g: (-score[g], g))
        cands = [g for g in ranked if g in kept_set][: cfg.max_compare]
        scored = [(mh.jaccard(sets[g], sets[i]), g) for g in cands]
        above = sorted((-s, g) for s, g in scored if s >= cfg.threshold)
        if above:
            dup_of[i], sims[i] = above[0][1], -above[0][0]
        else:
            kept_set.add(i)
    return dup_of, sims


@pytest.mark.parametrize(("max_compare", "bucket_depth"), [(3, 16), (64, 2)])
def test_crowded_buckets_follow_the_rule_with_small_limits(max_compare, bucket_depth):
    """Hundreds of texts share buckets; only the first bucket_depth rows of each bucket are candidates,
    and the max_compare best ranked kept ones are compared."""
    import random

    rng = random.Random(3)
    stem = "高血压患者应低盐低脂饮食，规律作息，按时服用降压药物并定期复查血压"
    texts = []
    for k in range(400):
        chars = list(stem)
        for _ in range(rng.randint(1, 3)):
            chars[rng.randrange(len(chars))] = rng.choice("心肝脾肺肾胃肠骨血糖脂尿")
        texts.append("".join(chars) + str(k))
    texts = list(dict.fromkeys(texts))
    cfg = DedupConfig(threshold=0.6, max_compare=max_compare, bucket_depth=bucket_depth, fact_guard=False, workers=1)
    result = find_duplicates(texts, cfg)
    want_dup, want_sim = _rule_by_hand(texts, cfg)
    assert result.stats["lsh_candidates"] == len(texts) and 50 < int((~result.keep).sum()) < len(texts) - 50
    assert [int(d) for d in result.dup_of] == want_dup
    assert result.similarity.tolist() == want_sim
