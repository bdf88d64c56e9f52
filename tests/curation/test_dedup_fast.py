"""The fast dedup decision (`dedup.decide` over `dedup_pairs.py`) equals the plain reference loop
(`dedup_reference.py`, the decision as it was written one text at a time) record for record and stat
for stat, also where its shortcuts are weakest: crowded buckets with a tiny max_compare or bucket depth,
many copies of one text (removed rows fill P_i), an index, the fact guard, word shingles."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from medmill.builders.curation import dedup as dd
from medmill.builders.curation import dedup_pairs as dp
from medmill.builders.curation import minhash as mh
from medmill.builders.curation.dedup import DedupConfig, Reference, decide, exact_keys, find_duplicates
from medmill.builders.curation.dedup_state import DedupState, batch_state
from tests.curation.dedup_reference import decide_reference

STEM = "高血压患者应低盐低脂饮食，规律作息，按时服用降压药物并定期复查血压"
CLAUSES = ["{d}是常见病", "典型表现为{s}", "治疗常用{m}", "疗程约{n}天", "患者应{a}", "每日剂量不超过{n}毫克", "必要时到{dept}就诊",
           "{s}持续{n}小时应警惕{d}", "复查时应检查{e}"]
FILL = {"d": ["高血压", "糖尿病", "肺炎", "胃炎"], "s": ["头痛", "咳嗽", "乏力", "恶心"], "m": ["阿司匹林", "二甲双胍"],
        "a": ["低盐饮食", "规律作息"], "dept": ["心内科", "呼吸科"], "e": ["血常规", "肝功能"]}


def _templated(rng: random.Random) -> str:
    parts = []
    for c in rng.sample(CLAUSES, 5):
        parts.append(c.format(n=rng.randint(1, 30), **{k: rng.choice(v) for k, v in FILL.items()}))
    return "，".join(parts) + "。"


def _edit(rng: random.Random, text: str, edits: int) -> str:
    chars = list(text)
    for _ in range(edits):
        chars[rng.randrange(len(chars))] = rng.choice("的了是在有和不人一上也到要去会")
    return "".join(chars)


def _corpus(seed: int, n: int, copies_of_one: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(n):
        roll = rng.random()
        if texts and roll < 0.05:
            texts.append(rng.choice(texts))  # exact copy
        elif texts and roll < 0.3:
            texts.append(_edit(rng, rng.choice(texts[-50:]), rng.randint(1, 3)))
        else:
            texts.append(_templated(rng))
    texts += [_edit(rng, STEM, rng.randint(1, 4)) + str(k) for k in range(copies_of_one)]
    rng.shuffle(texts)
    return texts + ["？？", "a"]


def _state(texts: list[str], cfg: DedupConfig, batch: int = 97) -> tuple[np.ndarray, np.ndarray, np.ndarray, dp.Sketches | None]:
    state = DedupState(cfg)
    for s in range(0, len(texts), batch):
        state.add(batch_state(texts[s : s + batch], cfg))
    return (*state.arrays(), state.sketch())


def _fetch(texts: list[str]):
    arr = pa.array(texts, pa.string())
    return lambda pos: arr.take(pa.array(pos))


def _assert_same(texts: list[str], cfg: DedupConfig, reference: Reference | None = None, with_sketch: bool = True) -> dict:
    exact, units, keys, sketch = _state(texts, cfg)
    want = decide_reference(exact, units, keys, cfg, _fetch(texts), reference)
    got = decide(exact, units, keys, cfg, _fetch(texts), reference, sketch if with_sketch else None)
    assert got.dup_of.tolist() == want.dup_of.tolist()
    assert got.similarity.tolist() == want.similarity.tolist()
    assert got.exact.tolist() == want.exact.tolist()
    assert got.stats == want.stats
    return got.stats


@pytest.mark.parametrize(("max_compare", "bucket_depth"), [(64, 16), (64, 1), *(pytest.param(*c, marks=pytest.mark.slow) for c in ((3, 16), (5, 3)))])
def test_equals_reference_on_templated_texts(max_compare, bucket_depth):
    texts = _corpus(1, 1500)
    stats = _assert_same(texts, DedupConfig(max_compare=max_compare, bucket_depth=bucket_depth, workers=1))
    assert stats["near_duplicates"] > 50 and stats["exact_duplicates"] > 30


@pytest.mark.slow  # ~5 s (word shingles load jieba); the character-shingle cases stay in the fast lane
def test_equals_reference_without_sketches_and_with_word_shingles():
    texts = _corpus(2, 600)
    _assert_same(texts, DedupConfig(workers=1), with_sketch=False)
    _assert_same(texts[:300], DedupConfig(shingle="word", workers=1))


@pytest.mark.slow  # ~4 s: 400 copies of one text
def test_many_copies_of_one_text_fill_p_with_removed_rows():
    """Hundreds of near-copies share every bucket: removed ones fill P_i, S_i skips them."""
    texts = _corpus(3, 300, copies_of_one=400)
    for max_compare, depth, threshold in ((3, 16, 0.6), (8, 4, 0.5), (64, 2, 0.7), (2, 64, 0.6)):
        stats = _assert_same(texts, DedupConfig(max_compare=max_compare, bucket_depth=depth, threshold=threshold, fact_guard=False, workers=1))
        assert stats["near_duplicates"] > 100  # most of P_i is removed copies


def test_equals_reference_with_an_index_and_the_fact_guard():
    texts = _corpus(4, 900)
    # records about different facts: same template, another number or drug (the guard keeps both)
    texts += [f"患者每日服用{d}{n}毫克，连续服用{n}天后复查血常规和肝功能，如有不适及时就医。" for d in ("阿司匹林", "二甲双胍") for n in (5, 10, 20)]
    cfg = DedupConfig(workers=1)
    first = find_duplicates(texts[:300], cfg)
    keep = first.keep
    reference = Reference(first.keys[keep], first.sigs[keep], [t for t, k in zip(texts[:300], keep, strict=True) if k])
    stats = _assert_same(texts[300:], cfg, reference)
    assert stats["fact_guarded_pairs"] > 0
    _assert_same(texts[300:], DedupConfig(workers=1, max_compare=2), reference)


def test_parallel_blocks_and_guard_equal_serial(monkeypatch):
    texts = _corpus(5, 1200)
    exact, units, keys, sketch = _state(texts, DedupConfig())
    serial = decide(exact, units, keys, DedupConfig(workers=1), _fetch(texts), None, sketch)
    monkeypatch.setattr(dd, "PARALLEL_MIN_DOCS", 0)
    monkeypatch.setattr(dd, "GUARD_CHUNK", 7)
    monkeypatch.setattr(dd, "SETS_MIN_CHUNK", 3)  # candidate texts read and shingled in many forked chunks
    monkeypatch.setattr(dp, "PAIR_BLOCK", 5_000)
    parallel = decide(exact, units, keys, DedupConfig(workers=2), _fetch(texts), None, sketch)
    assert parallel.dup_of.tolist() == serial.dup_of.tolist() and parallel.stats == serial.stats
    assert parallel.similarity.tolist() == serial.similarity.tolist()


def test_bound_never_rules_out_a_pair_at_the_threshold():
    """The sketch bound against exact Jaccard, on sets built to collide in the sketch (few distinct top
    bits) as well as on real shingle sets."""
    rng = np.random.default_rng(0)
    params = DedupConfig().params
    texts = _corpus(6, 300)
    hashes, offsets = params.shingles(texts)
    sets = mh.unique_sets(hashes, offsets)
    crafted = []
    for _ in range(300):
        top = rng.integers(0, 256, size=rng.integers(1, 6)).astype(np.uint32) << np.uint32(24)
        crafted.append(np.unique(top[rng.integers(0, len(top), 60)] | rng.integers(0, 1 << 10, 60).astype(np.uint32)))
    for group in (sets, crafted):
        flat = np.concatenate(group)
        starts = np.cumsum([0] + [len(s) for s in group[:-1]])
        sk = dp.sketches(flat, starts)
        assert sk.sizes.tolist() == [len(s) for s in group]
        a = rng.integers(0, len(group), 20_000)
        b = rng.integers(0, len(group), 20_000)
        exact = np.array([mh.jaccard(group[x], group[y]) for x, y in zip(a.tolist(), b.tolist(), strict=True)])
        for threshold in (0.3, 0.6, 0.8, 1.0):
            passed = dp.bound_pass(sk, a, b, threshold)
            assert passed[exact >= threshold].all()
        if group is sets:  # and on real shingle sets it does rule pairs out
            assert dp.bound_pass(sk, a, b, 0.6)[exact < 0.2].mean() < 0.05


def test_block_pairs_rank_the_first_rows_of_each_bucket():
    """P_i against the rule written plainly: the earlier rows among the first `depth` of a bucket row i
    shares (one band key equal), ranked by how many bands list them so, then by row."""
    texts = _corpus(7, 800)
    cfg = DedupConfig()
    exact, units, keys, _ = _state(texts, cfg)
    bands, _ = cfg.bands_rows
    todo = np.flatnonzero(units > 0)
    table = dp.BucketTable(np.zeros((0, bands), np.uint64), lambda b: keys[todo, b], len(todo), bands)
    assert table.size == len(todo)  # table row r is input todo[r]
    row_keys = keys[todo]
    # per row r and band: the earlier rows with row r's key in that band, ascending
    same = [[np.flatnonzero(row_keys[:r, b] == row_keys[r, b]).tolist() for b in range(bands)] for r in range(len(todo))]
    later = [(row_keys[r + 1 :] == row_keys[r]).any(axis=1).any() for r in range(len(todo))]
    assert table.new_rows.tolist() == [r for r in range(len(todo)) if any(same[r]) or later[r]]
    crowded = 0
    for depth in (1, 2, 5, 1000):
        for lo, hi in table.blocks(0, depth, budget=500):
            mates, ends = table.block_pairs(lo, hi, depth)
            for r in range(lo, hi):
                score: dict[int, int] = {}
                for rows in same[r]:
                    for g in rows[:depth]:
                        score[g] = score.get(g, 0) + 1
                    crowded += len(rows) > depth
                part = mates[(ends[r - lo - 1] if r > lo else 0) : ends[r - lo]]
                assert part.tolist() == sorted(score, key=lambda g: (-score[g], g)), (r, depth)
    assert crowded > 100  # buckets deeper than `depth` were cut


def test_exact_keys_of_units_equal_exact_keys():
    texts = _corpus(8, 200) + ["", "   ", "？？！", "ＡＢＣ"]
    want = exact_keys(texts)
    got = dd.exact_keys_of_units(texts, *mh.char_units(texts))
    assert (want[0] == got[0]).all() and (want[1] == got[1]).all()


def test_bucket_order_is_a_stable_argsort_also_where_high_bits_collide():
    """`bucket_order` packs positions under the key's high bits; keys differing only in their low bits
    (which the position overwrites) must still come out ordered by key, then position."""
    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 7, 1000, 5000):
        base = rng.integers(0, 1 << 63, size=max(1, n // 20), dtype=np.uint64)
        col = base[rng.integers(0, len(base), n)] if n else np.zeros(0, np.uint64)
        col = col ^ rng.integers(0, 4, n).astype(np.uint64)  # same high bits, different keys
        assert dp.bucket_order(col).tolist() == np.argsort(col, kind="stable").tolist()


def test_bound_of_a_block_equals_the_bound_of_its_pairs(monkeypatch):
    """`BoundData.block` (rows repeated from slices, in steps of whole rows) against the pairwise bound."""
    monkeypatch.setattr(dp, "BOUND_CHUNK", 50)  # many steps, rows longer than a step
    rng = np.random.default_rng(5)
    texts = _corpus(9, 200)
    sk = dp.sketches(*DedupConfig().params.shingles(texts))
    bound = dp.BoundData(sk)
    counts = rng.integers(0, 80, 60)
    counts[[3, 10]] = 0
    b = rng.integers(0, len(texts), int(counts.sum()))
    a = np.repeat(np.arange(40, 100), counts)
    for threshold in (0.3, 0.6):
        want = bound(a, b, threshold)
        assert bound.block(40, counts, b, threshold).tolist() == want.tolist() and want.any() and not want.all()


def test_blocks_keep_the_ranking_key_within_64_bits(monkeypatch):
    """Many bands (low thresholds, many permutations) leave fewer bits for the row: blocks get fewer rows."""
    for bands in (1, 32, 489, 1024):
        table = dp.BucketTable(np.zeros((0, bands), np.uint64), lambda b: np.arange(10, dtype=np.uint64), 10, bands)
        biggest = (table.block_rows - 1) << (32 + bands.bit_length()) | (bands << 32) | 0xFFFFFFFF
        assert biggest < 2**63 and table.block_rows <= dp.BLOCK_ROWS
    monkeypatch.setattr(dp, "BLOCK_ROWS", 3)
    assert all(hi - lo <= 3 for lo, hi in table.blocks(0, 16, budget=10**9))
