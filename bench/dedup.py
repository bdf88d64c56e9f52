"""Near-duplicate removal: quality (precision / recall against exact Jaccard) and speed, medmill beside
a naive baseline (jieba per doc + datasketch `MinHash.update` per shingle + `MinHashLSH` query/insert),
measured in the same run.

Corpus: real Chinese medical text from ../shared/samples (or dataset dirs given with --dirs), cut into
~250-character documents; then near-duplicates (1-15 % character edits: substitutions, insertions,
deletions; sentence shuffles) and same-topic non-duplicates (overlapping windows of the same source).

    python bench/dedup.py                      # P/R on 4k docs, speed on 30k docs
    python bench/dedup.py --million            # also: 1M short records, peak memory
    python bench/dedup.py --ngram-sweep        # how char n changes what counts as a duplicate
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np

from medmill.builders.curation import minhash as mh
from medmill.builders.curation.dedup import DedupConfig, find_duplicates

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
VOCAB = "的了是在有和就不人都一上也很到说要去你会着没看好自己这患者治疗症状医院检查药物疾病"


def sample_texts(samples: Path) -> list[str]:
    """Paragraph-sized Chinese texts from the sample files (each source's own fields)."""
    out: list[str] = []
    with open(samples / "toyhom_IM_sample.csv", encoding="gb18030", newline="") as f:
        for r in csv.DictReader(f):
            out += [r["ask"], r["answer"]]
    for name in ("medicalgpt_medical_sft_sample.jsonl", "medicalgpt_reward_medical_sample.jsonl", "huatuo_llama_data_sample.json",
                 "medicalgpt_rag_medical_corpus_sample.txt"):
        for line in (samples / name).read_text(encoding="utf-8").splitlines():
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            out += [v for v in _strings(d)]
    for name in ("medicalgpt_zh_book_data_sample.json", "huatuo_liver_cancer_sample.json", "tcmchat_medical_case_sample.json",
                 "tcmchat_rc_sample.json", "medicalgpt_zh_dialogue_seed_task_sample.json"):
        out += _strings(json.loads((samples / name).read_text(encoding="utf-8")))
    out += (samples / "medicalgpt_pretrain_fever_textbook_sample.txt").read_text(encoding="utf-8").splitlines()
    return [t for t in out if len(t) >= 40 and sum("\u4e00" <= c <= "\u9fff" for c in t) > len(t) / 2]


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def dir_texts(dirs: list[Path]) -> list[str]:
    from medmill.builders.curation.inputs import load_dirs
    from medmill.builders.curation.text import record_text

    loaded = load_dirs(dirs)
    return [record_text(r, ["all"]) for r in loaded.records]


def sentence_pool(texts: list[str]) -> list[list[str]]:
    """Each source text as its sentences (neighbouring texts of one file share a topic)."""
    return [[p for p in re.split(r"(?<=[。！？；\n])", t.strip()) if len(p.strip()) >= 4] for t in texts]


def documents(pool: list[list[str]], n: int, size: int, rng: random.Random) -> list[str]:
    """n documents of about `size` characters, each built from the sentences of one source text and
    its neighbours: same-topic texts that share some sentences (hard non-duplicates), never copies."""
    out = []
    for _ in range(n):
        at = rng.randrange(len(pool))
        near = [s for k in range(max(0, at - 3), min(len(pool), at + 4)) for s in pool[k]]
        rng.shuffle(near)
        doc = ""
        for sent in near:
            if len(doc) >= size:
                break
            doc += sent.strip()
        out.append(doc[: size + 40])
    return out


def perturb(text: str, rate: float, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(max(1, round(len(chars) * rate))):
        op, i = rng.random(), rng.randrange(len(chars))
        if op < 0.4:
            chars[i] = rng.choice(VOCAB)
        elif op < 0.7:
            chars.insert(i, rng.choice(VOCAB))
        elif len(chars) > 1:
            del chars[i]
    return "".join(chars)


def shuffle(text: str, rng: random.Random) -> str:
    parts = [p for p in re.split(r"(?<=[。！？；])", text) if p]
    rng.shuffle(parts)
    return "".join(parts)


def make_corpus(texts: list[str], n_base: int, rng: random.Random) -> tuple[list[str], list[tuple[str, int]]]:
    """Base documents plus, for a third of them, 1-2 variants, shuffled; returns the docs and, per
    doc, what it is and the position of the document it was made from (-1 for originals)."""
    docs, kinds = [], []
    for base in documents(sentence_pool(texts), n_base, 250, rng):
        parent = len(docs)
        docs.append(base)
        kinds.append(("original", -1))
        if rng.random() < 1 / 3:
            for _ in range(rng.choice((1, 2))):
                if rng.random() < 0.2:
                    docs.append(shuffle(base, rng))
                    kinds.append(("shuffle", parent))
                else:
                    rate = rng.choice((0.01, 0.03, 0.05, 0.10, 0.15))
                    docs.append(perturb(base, rate, rng))
                    kinds.append((f"edit {rate:4.0%}", parent))
    order = list(range(len(docs)))
    rng.shuffle(order)
    where = {old: new for new, old in enumerate(order)}
    return [docs[i] for i in order], [(kinds[i][0], where.get(kinds[i][1], -1)) for i in order]


def exact_jaccard_pairs(docs: list[str], params: mh.MinHashParams, threshold: float) -> set[tuple[int, int]]:
    """Every pair (i < j) whose exact Jaccard is >= threshold (sparse matrix product: all pairs)."""
    from scipy import sparse

    h, off = params.shingles(docs)
    ends = np.append(off[1:], len(h))
    rows, cols = [], []
    for d, (a, b) in enumerate(zip(off, ends, strict=True)):
        u = np.unique(h[a:b])
        rows.append(np.full(len(u), d))
        cols.append(u)
    r, c = np.concatenate(rows), np.concatenate(cols)
    _, c = np.unique(c, return_inverse=True)
    m = sparse.csr_matrix((np.ones(len(r), dtype=np.int32), (r, c)), shape=(len(docs), c.max() + 1))
    sizes = np.asarray(m.sum(axis=1)).ravel()
    inter = sparse.triu(m @ m.T, k=1).tocoo()
    jac = inter.data / (sizes[inter.row] + sizes[inter.col] - inter.data)
    keep = jac >= threshold
    return set(zip(inter.row[keep].tolist(), inter.col[keep].tolist(), strict=True))


def quality(docs: list[str], kinds: list[tuple[str, int]], threshold: float) -> None:
    config = DedupConfig(threshold=threshold)
    truth = exact_jaccard_pairs(docs, config.params, threshold)
    result = find_duplicates(docs, config)
    keep = result.keep
    removed = np.flatnonzero(~keep)
    # precision: a removal is right when the text it names is within the threshold (exact Jaccard)
    right = sum(1 for i in removed if (min(i, result.dup_of[i]), max(i, result.dup_of[i])) in truth)
    # recall: duplicate pairs that do not survive (at least one side removed)
    survived = sum(1 for i, j in truth if keep[i] and keep[j])
    precision = right / len(removed) if len(removed) else 1.0
    recall = 1 - survived / len(truth) if truth else 1.0
    print(f"\n## quality at threshold {threshold} (char {config.params.ngram}-grams, {config.num_perm} perms, "
          f"{result.stats['bands']} bands x {result.stats['rows']} rows), {len(docs)} docs")
    print(f"pairs with exact Jaccard >= {threshold}: {len(truth)}; removed docs: {len(removed)} "
          f"(exact copies {int(result.exact.sum())}); LSH candidate docs {result.stats['lsh_candidates']}")
    print(f"precision {precision:.4f}   recall {recall:.4f}   (target >= 0.99 / >= 0.95)")
    print("injected variants: exact Jaccard with their original, and share of (original, variant) pairs collapsed")
    sets = mh.unique_sets(*config.params.shingles(docs))
    for kind in sorted({k for k, _ in kinds} - {"original"}):
        pairs = [(p, i) for i, (k, p) in enumerate(kinds) if k == kind]
        js = np.array([mh.jaccard(sets[p], sets[i]) for p, i in pairs])
        collapsed = np.mean([not (keep[p] and keep[i]) for p, i in pairs])
        print(f"  {kind:<10} {len(pairs):>5} pairs   mean J {js.mean():.3f}   J>={threshold}: {(js >= threshold).mean():.3f}"
              f"   collapsed {collapsed:.3f}")


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the signature workers)."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def medmill_speed(docs: list[str], workers: int, **overrides) -> tuple[float, float]:
    config = DedupConfig(workers=workers, **overrides)
    find_duplicates(docs[:200], config)  # warm caches (tables, permutations)
    c0, t0 = _cpu(), time.perf_counter()
    find_duplicates(docs, config)
    return time.perf_counter() - t0, _cpu() - c0


def baseline_speed(docs: list[str]) -> tuple[float, float]:
    """The naive pipeline: jieba per doc, word 3-grams, MinHash.update per shingle, LSH query/insert."""
    import jieba
    from datasketch import MinHash, MinHashLSH

    jieba.setLogLevel(60)
    jieba.lcut("预热")
    c0, t0 = time.process_time(), time.perf_counter()
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    for i, d in enumerate(docs):
        words = jieba.lcut(d)
        m = MinHash(num_perm=128)
        for k in range(max(1, len(words) - 2)):
            m.update("".join(words[k : k + 3]).encode())
        if not lsh.query(m):
            lsh.insert(str(i), m)
    return time.perf_counter() - t0, time.process_time() - c0


def speed(docs: list[str], baseline_docs: int) -> None:
    import os

    cores = len(os.sched_getaffinity(0))
    mean_len = np.mean([len(d) for d in docs])
    print(f"\n## speed: {len(docs)} docs, mean {mean_len:.0f} chars, {cores} cores (times: wall / this process's CPU)")
    wall1, cpu1 = medmill_speed(docs, workers=1)
    print(f"medmill, 1 process     : wall {wall1:7.2f} s  cpu {cpu1:7.2f} s  -> {len(docs) / cpu1:9,.0f} docs per CPU-second")
    wall_o, cpu_o = medmill_speed(docs, workers=1, **OLD_DEFAULT)
    print(f"  old default (J>=0.8, no guard), 1 process: wall {wall_o:7.2f} s  cpu {cpu_o:7.2f} s  -> "
          f"{len(docs) / cpu_o:9,.0f} docs per CPU-second (new default costs {cpu1 / cpu_o:.2f}x)")
    wall_n, cpu_n = medmill_speed(docs, workers=cores)
    print(f"medmill, {cores} processes   : wall {wall_n:7.2f} s  cpu {cpu_n:7.2f} s  -> {len(docs) / wall_n:9,.0f} docs/s wall "
          f"(all processes' CPU; wall gains need idle cores)")
    sub = docs[:baseline_docs]
    wall_b, cpu_b = baseline_speed(sub)
    print(f"baseline, {len(sub)} docs : wall {wall_b:7.2f} s  cpu {cpu_b:7.2f} s  -> {len(sub) / cpu_b:9,.0f} docs per CPU-second")
    print(f"ratio medmill / baseline (per CPU-second): {(len(docs) / cpu1) / (len(sub) / cpu_b):.1f}x   (target >= 10x; "
          f"target >= 10,000 docs/s per core)")


def incremental(docs: list[str]) -> None:
    """Index the first half of the docs, then dedup the second half against the index on disk."""
    import tempfile

    from medmill.builders.curation.index import DedupIndex

    config = DedupConfig(workers=1)
    half = len(docs) // 2
    with tempfile.TemporaryDirectory() as tmp:
        index = DedupIndex.open(Path(tmp) / "index", config)
        first = find_duplicates(docs[:half], config)
        keep = first.keep
        index.append([str(i) for i in np.flatnonzero(keep)], ["first"] * int(keep.sum()),
                     [d for d, k in zip(docs[:half], keep, strict=True) if k], first.keys[keep], first.sigs[keep])
        size = sum(f.stat().st_size for f in (Path(tmp) / "index").iterdir())
        t0, c0 = time.perf_counter(), time.process_time()
        loaded = DedupIndex.open(Path(tmp) / "index", config)
        t1 = time.perf_counter()
        second = find_duplicates(docs[half:], config, loaded.reference)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    from_index = int((second.dup_of[~second.keep] < len(loaded)).sum())
    print(f"\n## incremental: index of {len(loaded):,} kept docs ({size / 1e6:.1f} MB on disk, loaded in {t1 - t0:.2f} s); "
          f"{len(docs) - half:,} new docs deduplicated against it in {wall:.2f} s wall / {cpu:.2f} s CPU; "
          f"removed {int((~second.keep).sum()):,} ({from_index:,} as copies of indexed docs)")


def ngram_sweep(texts: list[str], rng: random.Random) -> None:
    base = documents(sentence_pool(texts), 300, 250, rng)
    print("\n## char n-gram sweep: mean exact Jaccard (share >= 0.8) of a doc and its variant; unrelated = random pairs")
    for n in (2, 3, 4, 5, 6):
        params = mh.MinHashParams(ngram=n)
        row = []
        for label, fn in [("1%", lambda t: perturb(t, 0.01, rng)), ("3%", lambda t: perturb(t, 0.03, rng)),
                          ("5%", lambda t: perturb(t, 0.05, rng)), ("10%", lambda t: perturb(t, 0.10, rng)),
                          ("shuffle", lambda t: shuffle(t, rng)), ("unrelated", lambda t: rng.choice(base))]:
            js = []
            for t in base:
                h, off = params.shingles([t, fn(t)])
                js.append(mh.jaccard(np.unique(h[: off[1]]), np.unique(h[off[1] :])))
            js = np.array(js)
            row.append(f"{label} {js.mean():.3f} ({(js >= 0.8).mean():.2f})")
        print(f"n={n}: " + "  ".join(row))


def million(rng: random.Random, texts: list[str]) -> None:
    """1M short records (~60 chars; 1 in 10 a near copy): time and peak memory of the whole dedup."""
    base = documents(sentence_pool(texts), 900_000, 60, rng)
    docs = base + [perturb(rng.choice(base), 0.02, rng) for _ in range(100_000)]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    result = find_duplicates(docs, DedupConfig())
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\n## 1M short records: {len(docs):,} docs in {wall:.1f} s wall ({len(docs) / wall:,.0f} docs/s); "
          f"removed {int((~result.keep).sum()):,}; peak RSS {rss:,.0f} MB (texts alone {rss0:,.0f} MB), worker peak {kids:,.0f} MB")


OLD_DEFAULT = {"threshold": 0.8, "candidate_margin": 0.0, "fact_guard": False}  # before issue 12 #26


def edited_dialogues(texts: list[str], n: int, rng: random.Random) -> tuple[list[str], list[int]]:
    """n ~230-char medical texts (real records of 150-400 chars first, then same-topic compositions),
    each with one copy with 1-5 % of its characters edited; returns docs (shuffled) and family ids."""
    seen: set[str] = set()
    base = [t for t in texts if 150 <= len(t) <= 400 and not (t in seen or seen.add(t))]
    rng.shuffle(base)
    base = base[:n] + documents(sentence_pool(texts), max(0, n - len(base)), 230, rng)
    # distinct texts only: compositions of neighbouring sentences can overlap heavily; a pair of bases
    # at Jaccard >= 0.4 is not a pair of different dialogues (keeps precision about copies, not sources)
    distinct = find_duplicates(base, DedupConfig(threshold=0.4, fact_guard=False)).keep
    base = [b for b, k in zip(base, distinct, strict=True) if k]
    docs, family = [], []
    for k, b in enumerate(base):
        docs += [b, perturb(b, rng.uniform(0.01, 0.05), rng)]
        family += [k, k]
    order = list(range(len(docs)))
    rng.shuffle(order)
    return [docs[i] for i in order], [family[i] for i in order]


def edit_quality(docs: list[str], family: list[int], overrides: dict) -> tuple[float, float, int, int]:
    """(recall, precision, removed, guarded pairs): recall = share of (text, edited copy) pairs
    collapsed; precision = share of removals naming a text of their own family."""
    result = find_duplicates(docs, DedupConfig(**overrides))
    keep = result.keep
    fams: dict[int, list[int]] = {}
    for i, f in enumerate(family):
        fams.setdefault(f, []).append(i)
    collapsed = sum(1 for members in fams.values() if not all(keep[m] for m in members))
    removed = np.flatnonzero(~keep)
    right = sum(1 for i in removed if family[int(result.dup_of[i])] == family[i])
    return collapsed / len(fams), (right / len(removed) if len(removed) else 1.0), len(removed), result.stats["fact_guarded_pairs"] if "fact_guarded_pairs" in result.stats else 0


def generated_kg(diseases: int, rng: random.Random):
    """A KG of `diseases` diseases in families whose names differ only by a number or a series
    prefix (1型/2型X, 甲型/乙型X); siblings share most values, as subtypes in real KGs do."""
    from medmill.schemas.sources import KGEntity

    organs = ["肝", "肾", "肺", "胃", "心", "脑", "骨", "皮肤", "甲状腺", "胰腺", "结肠", "膀胱", "关节", "视网膜", "血管"]
    kinds = ["炎", "病", "综合征", "功能障碍", "感染", "营养不良", "纤维化", "囊肿", "硬化症", "结节"]
    prefixes = [["1型", "2型", "3型", "4型"], ["甲型", "乙型", "丙型", "丁型"], ["Ⅰ型", "Ⅱ型", "Ⅲ型", "Ⅳ型"]]
    symptoms = ["发热", "乏力", "头痛", "恶心", "呕吐", "腹痛", "腹泻", "咳嗽", "胸闷", "水肿", "关节痛", "皮疹", "消瘦", "黄疸"]
    exams = ["血常规", "尿常规", "肝功能", "肾功能", "腹部超声", "胸部CT", "心电图", "病理活检"]
    drugs = ["布洛芬", "泼尼松", "甲氨蝶呤", "阿莫西林", "奥美拉唑", "二甲双胍", "胰岛素", "呋塞米"]
    depts = ["内科", "外科", "消化内科", "肾内科", "呼吸内科", "内分泌科"]
    bases = [f"{o}{k}" for o in organs for k in kinds]
    rng.shuffle(bases)
    entities = []
    for b, base in enumerate(bases[: diseases // 4]):
        shared = {"症状": rng.sample(symptoms, 4), "检查": rng.sample(exams, 3), "常用药物": rng.sample(drugs, 2),
                  "就诊科室": rng.sample(depts, 1)}
        for p in prefixes[b % len(prefixes)]:
            rel = {k: list(v) for k, v in shared.items()}
            if rng.random() < 0.3:
                rel["常用药物"] = rng.sample(drugs, 2)
            entities.append(KGEntity(name=f"{p}{base}", type="疾病", relations=rel,
                                     attributes={"简介": f"{p}{base}是{base}的一种亚型，临床表现与其他亚型相似。"}))
    return entities


def kg_removals(entities, overrides: dict, terms_from: str) -> tuple[int, int]:
    """(template records, removed by dedup) for a KG's template records. terms_from: "build" (the
    build passes entity names and values, as build-kg-qa does), "dir" (`medmill dedup` of the built
    dir: the terms in the records' meta), "none" (bare texts, no protected terms)."""
    from medmill.builders.curation.record_dedup import dedup_records
    from medmill.builders.curation.text import record_text
    from medmill.builders.kg_qa.template_qa import build_template_records, protected_terms
    from medmill.builders.kg_qa.templates import load_templates

    records = build_template_records(entities, load_templates(None)).records
    if terms_from == "none":
        texts = [record_text(r, ["user", "answer"]) for r in records]
        return len(records), int((~find_duplicates(texts, DedupConfig(**overrides)).keep).sum())
    terms = protected_terms(entities) if terms_from == "build" else frozenset()
    out = dedup_records(records, ["user", "answer"], DedupConfig(**overrides, protected_terms=terms), lambda r: "kg")
    return len(records), len(records) - len(out.kept)


def facts(texts: list[str], n_dialogues: int, rng: random.Random) -> None:
    """Issue 12 #26: both sides of the dedup default, old and new, in one run."""
    from medmill.builders.readers.kg import read_kg

    docs, family = edited_dialogues(texts, n_dialogues, rng)
    mean = np.mean([len(d) for d in docs])
    example = read_kg([Path(__file__).resolve().parents[1] / "examples" / "kg"]).entities
    generated = generated_kg(600, rng)
    print(f"\n## near-duplicates that are not copies: {len(docs)} texts (mean {mean:.0f} chars, each with a copy "
          f"edited 1-5 %); example KG ({len(example)} entities); generated KG ({len(generated)} diseases, names "
          "differing by a number or prefix)")
    print(f"{'':44} {'edit recall':>11} {'precision':>9} {'guarded':>8} | {'example KG removed':>18} | {'600-disease KG removed':>22}")
    rows = [("old default (J>=0.8, no guard)", OLD_DEFAULT, "build"), ("J>=0.6, no guard", {"fact_guard": False}, "build"),
            ("new default, in the build", {}, "build"), ("new default, medmill dedup of the dir", {}, "dir"),
            ("new default, bare texts (no terms)", {}, "none")]
    for label, overrides, terms_from in rows:
        recall, precision, _, guarded = edit_quality(docs, family, overrides)
        ex_n, ex_rm = kg_removals(example, overrides, terms_from)
        gen_n, gen_rm = kg_removals(generated, overrides, terms_from)
        print(f"{label:44} {recall:11.4f} {precision:9.4f} {guarded:8d} | {ex_rm:>6} of {ex_n:<9} | {gen_rm:>8} of {gen_n:<11}")
    print("targets: edit recall >= 0.98, precision >= 0.99 (edited texts: no protected terms, the bundled lexicon "
          "and numbers only); no KG record removed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dirs", nargs="*", type=Path, help="dataset dirs to take texts from (default: the samples)")
    ap.add_argument("--pr-base", type=int, default=3000, help="base docs for the precision/recall run")
    ap.add_argument("--speed-docs", type=int, default=30_000)
    ap.add_argument("--baseline-docs", type=int, default=2_000)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--million", action="store_true")
    ap.add_argument("--facts-only", action="store_true", help="only the edited-copies / KG figures (issue 12 #26)")
    ap.add_argument("--dialogues", type=int, default=1500, help="texts (each with an edited copy) for the facts run")
    ap.add_argument("--ngram-sweep", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    texts = dir_texts(args.dirs) if args.dirs else sample_texts(SAMPLES)
    print(f"# bench/dedup.py  source texts: {len(texts)} ({sum(map(len, texts)):,} chars) from "
          f"{', '.join(map(str, args.dirs)) if args.dirs else SAMPLES}")
    if args.ngram_sweep:
        ngram_sweep(texts, rng)
    facts(texts, args.dialogues, rng)
    if args.facts_only:
        return
    docs, kinds = make_corpus(texts, args.pr_base, rng)
    quality(docs, kinds, args.threshold)
    speed_docs, _ = make_corpus(texts, int(args.speed_docs / 1.5), rng)
    speed(speed_docs[: args.speed_docs], args.baseline_docs)
    incremental(speed_docs[: args.speed_docs])
    if args.million:
        million(rng, texts)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
