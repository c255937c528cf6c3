"""Dedup: speed against two datasketch baselines in the same run, and quality on labelled data.

    .venv/bin/python bench/run.py bench_dedup                       # 100k conversations, both corpora
    SIFT_BENCH_DEDUP_N=20000 .venv/bin/python bench/run.py bench_dedup
    SIFT_BENCH_DEDUP_CORPORA=tickets .venv/bin/python bench/bench_dedup.py

Speed, on the same conversations, each pipeline from the conversation dicts to clusters (same text
view, normalisation and shingles for all three; clusters are checked equal):
  (a) naive datasketch: a new `MinHash(num_perm)` per conversation, `update()` per shingle,
      `MinHashLSH.query` then `insert` one at a time, `MinHash.jaccard` on each candidate;
  (b) datasketch bulk: `MinHash.bulk` over all shingle lists, an LSH insertion session, a query
      per conversation, `jaccard` on each candidate;
  (c) Sift: `curation.dedup.features` in batches + `find_duplicates` (bands, group-by buckets,
      verification, union-find, keepers).
Corpora: "tickets" = `tickets.generate_noisy` (templated support tickets with 5% exact
and 5% planted near-duplicates; n-grams repeat a lot, as in real chat data with shared prompts),
"diverse" = random Zipf-distributed words (almost every 5-gram is unique: the worst case for
Sift's n-gram hash cache).

Quality: pairwise precision/recall of the clusters against planted duplicates (generate_noisy,
ground truth closed transitively), and the Clough & Stevenson plagiarism corpus
(../shared/corpora/ML_SageMaker_Studies: answers labelled cut / light / heavy / non against a
Wikipedia source; cut+light count as duplicates, non as not, heavy is reported apart).
"""

from __future__ import annotations

import csv
import itertools
import os
import platform
import random
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent.parent / "datasets"))  # the sample generator, `tickets`

from curation.dedup import (
    DedupConfig,
    Item,
    MinHasher,
    dedup,
    features,
    features_all,
    find_duplicates,
    normalise,
    shingles,
    text_view_dict,
    union_find,
    worker_count,
)
from curation.records import Conversation

CORPORA = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora"


# ---------------------------------------------------------------- data


def tickets(n: int, seed: int = 5) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from tickets import generate_noisy

    return generate_noisy(n, seed=seed)


def diverse(n: int, seed: int = 5) -> list[dict[str, Any]]:
    """Conversations of random Zipf-distributed words; 5% are edited copies of others."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(50_000)]
    ranks = np.minimum(rng.zipf(1.2, size=n * 120), len(vocab)) - 1
    rows: list[dict[str, Any]] = []
    pos = 0
    py = random.Random(seed)
    for i in range(n):
        if i > 10 and py.random() < 0.05:
            words = rows[py.randrange(i)]["_words"][:]
            for _ in range(2):
                words[py.randrange(len(words))] = vocab[py.randrange(len(vocab))]
        else:
            k = 80 + int(rng.integers(0, 40))
            words = [vocab[r] for r in ranks[pos : pos + k]]
            pos += k
        half = len(words) // 3
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": " ".join(words[:half])},
                    {"role": "assistant", "content": " ".join(words[half:])},
                ],
                "_words": words,
            }
        )
    for r in rows:
        del r["_words"]
    return rows


# ---------------------------------------------------------------- the three pipelines


def _clusters(n: int, edges: list[tuple[int, int]]) -> set[frozenset[int]]:
    labels = union_find(n, np.array(edges, np.int64).reshape(-1, 2))
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        groups.setdefault(label, []).append(i)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def naive_datasketch(rows: Sequence[dict[str, Any]], cfg: DedupConfig) -> set[frozenset[int]]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(num_perm=cfg.num_perm, params=cfg.bands_rows)
    sketches: list[Any] = []
    edges: list[tuple[int, int]] = []
    for i, row in enumerate(rows):
        sh = shingles(normalise(text_view_dict(row, cfg.view, cfg.include_system)), cfg.ngram)
        if not sh:
            sketches.append(None)
            continue
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        for s in sh:
            m.update(s.encode("utf-8"))
        for j in lsh.query(m):
            if m.jaccard(sketches[j]) >= cfg.threshold:
                edges.append((j, i))
        lsh.insert(i, m)
        sketches.append(m)
    return _clusters(len(rows), edges)


def bulk_datasketch(rows: Sequence[dict[str, Any]], cfg: DedupConfig) -> set[frozenset[int]]:
    from datasketch import MinHash, MinHashLSH

    sh = [shingles(normalise(text_view_dict(r, cfg.view, cfg.include_system)), cfg.ngram) for r in rows]
    live = [i for i, s in enumerate(sh) if s]
    sketches = MinHash.bulk([[s.encode("utf-8") for s in sh[i]] for i in live], num_perm=cfg.num_perm, seed=cfg.seed)
    lsh = MinHashLSH(num_perm=cfg.num_perm, params=cfg.bands_rows)
    with lsh.insertion_session() as session:
        for i, m in zip(live, sketches, strict=True):
            session.insert(i, m, check_duplication=False)
    by_index = dict(zip(live, sketches, strict=True))
    edges = [
        (i, j) for i, m in by_index.items() for j in lsh.query(m) if j > i and m.jaccard(by_index[j]) >= cfg.threshold
    ]
    return _clusters(len(rows), edges)


def sift(
    rows: Sequence[dict[str, Any]],
    cfg: DedupConfig,
    timings: dict[str, float] | None = None,
    workers: int | None = 1,
) -> set[frozenset[int]]:
    """Sift's pipeline; `workers=None` lets it pick (one process per CPU up to 8 from 20k rows)."""
    t0 = time.perf_counter()
    feats = features_all(rows, cfg, workers=workers)
    t1 = time.perf_counter()
    result = find_duplicates([Item(f"{i:09d}", age=i) for i in range(len(rows))], feats, cfg)
    if timings is not None:
        timings.update(signatures=t1 - t0, clusters=time.perf_counter() - t1)
    return {frozenset(int(m.id) for m in c.members) for c in result.clusters}


def sha1_share(rows: Sequence[dict[str, Any]], cfg: DedupConfig) -> float:
    """Distinct n-grams hashed / all shingles, in one process (how much the n-gram cache saves)."""
    hasher = MinHasher(cfg.num_perm, cfg.seed, cfg.ngram)
    for s in range(0, len(rows), cfg.batch_size):
        features(rows[s : s + cfg.batch_size], cfg, hasher)
    return hasher.stats["sha1"] / max(1, hasher.stats["shingles"])


# ---------------------------------------------------------------- quality


def _pairs(groups: Iterable[frozenset[int]]) -> set[tuple[int, int]]:
    return {p for g in groups for p in itertools.combinations(sorted(g), 2)}


def pair_scores(predicted: set[frozenset[int]], truth: set[frozenset[int]]) -> dict[str, float]:
    """Pairwise precision/recall of predicted clusters against true groups, and the same per row
    (a row counts as found when it is in a predicted cluster of two or more)."""
    pp, tp = _pairs(predicted), _pairs(truth)
    hit = len(pp & tp)
    rows_p = {i for g in predicted for i in g}
    rows_t = {i for g in truth for i in g}
    return {
        "precision": hit / len(pp) if pp else 1.0,
        "recall": hit / len(tp) if tp else 1.0,
        "row_precision": len(rows_p & rows_t) / len(rows_p) if rows_p else 1.0,
        "row_recall": len(rows_p & rows_t) / len(rows_t) if rows_t else 1.0,
        "true_pairs": len(tp),
        "predicted_pairs": len(pp),
    }


def exact_jaccard_precision(
    rows: Sequence[dict[str, Any]], predicted: set[frozenset[int]], cfg: DedupConfig, truth: set[frozenset[int]]
) -> float:
    """Share of predicted pairs that are planted or whose exact n-gram Jaccard reaches the threshold
    (at scale the ticket generator repeats its own templates, so unplanted near-duplicates exist)."""
    planted = _pairs(truth)
    cache: dict[int, set[str]] = {}

    def sh(i: int) -> set[str]:
        if i not in cache:
            cache[i] = set(shingles(normalise(text_view_dict(rows[i], cfg.view, cfg.include_system)), cfg.ngram))
        return cache[i]

    pairs = _pairs(predicted)
    ok = sum(1 for a, b in pairs if (a, b) in planted or len(sh(a) & sh(b)) >= cfg.threshold * len(sh(a) | sh(b)))
    return ok / len(pairs) if pairs else 1.0


def planted_truth(n: int, ground_truth: dict[str, Any]) -> set[frozenset[int]]:
    edges = [
        (p["row"], p["source"] if p["kind"] == "near_duplicate" else p["duplicate_of"])
        for p in ground_truth["problems"]
        if p["kind"] in ("near_duplicate", "exact_duplicate")
    ]
    return _clusters(n, edges)


def planted_quality(n: int = 3000, seed: int = 1, cfg: DedupConfig | None = None) -> dict[str, float]:
    """Clusters on generate_noisy(n) (5% exact + 5% near-duplicates with 5-gram Jaccard ≥ 0.8,
    the rest unrelated) against the planted groups."""
    cfg = cfg or DedupConfig()
    rows, gt = tickets(n, seed)
    return pair_scores(sift(rows, cfg), planted_truth(len(rows), gt))


def read_text(path: Path) -> str:
    """UTF-8, or Windows-1252 where the bytes are not UTF-8 (17 answers of the corpus are)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252")


def plagiarism_quality(
    corpus: Path, thresholds: Sequence[float] = (0.8, 0.5, 0.3, 0.2, 0.1), ngram: int = 3
) -> list[dict[str, Any]]:
    """For each threshold: does an answer land in its Wikipedia source's cluster? cut + light are
    positives, non negatives; heavy is counted apart."""
    data = corpus / "data"
    with open(data / "file_information.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    convs = [
        Conversation.from_dict({"messages": [{"role": "user", "content": read_text(data / r["File"])}]}) for r in rows
    ]
    items = [Item(r["File"], age=i) for i, r in enumerate(rows)]
    source = {r["Task"]: r["File"] for r in rows if r["Category"] == "orig"}
    out = []
    for t in thresholds:
        cfg = DedupConfig(threshold=t, ngram=ngram, view="user")
        cluster_of = dedup(convs, cfg, items=items).cluster_of()
        found = {
            r["File"]: r["File"] in cluster_of and cluster_of.get(r["File"]) == cluster_of.get(source[r["Task"]])
            for r in rows
            if r["Category"] != "orig"
        }
        cat = {r["File"]: r["Category"] for r in rows}
        tp = sum(found[f] for f in found if cat[f] in ("cut", "light"))
        fp = sum(found[f] for f in found if cat[f] == "non")
        pos = sum(1 for f in found if cat[f] in ("cut", "light"))
        out.append(
            {
                "threshold": t,
                "ngram": ngram,
                "bands_rows": cfg.bands_rows,
                "precision": tp / (tp + fp) if tp + fp else 1.0,
                "recall": tp / pos,
                "cut": sum(found[f] for f in found if cat[f] == "cut"),
                "light": sum(found[f] for f in found if cat[f] == "light"),
                "heavy": sum(found[f] for f in found if cat[f] == "heavy"),
                "non": fp,
            }
        )
    return out


# ---------------------------------------------------------------- CJK: text without spaces

_ZH = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"
_JA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんアイウエオカキクケコサシスセソタチツテトナニヌネノ日本語会社時間問題情報"


def cjk_corpus(n: int = 2000, pairs: int = 200, seed: int = 7) -> tuple[list[Conversation], set[frozenset[int]]]:
    """Chinese and Japanese conversations (no spaces between words) built from a shared pool of
    sentences, with `pairs` planted near-copies that differ by one to three edited characters."""
    rnd = random.Random(seed)
    pools = [
        ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(12, 30))) + "。" for _ in range(300)]
        for alphabet in (_ZH, _JA)
    ]
    convs: list[Conversation] = []
    truth: set[frozenset[int]] = set()
    for i in range(n):
        pool = pools[i % 2]
        user = "".join(rnd.sample(pool, 4))
        answer = "".join(rnd.sample(pool, 5))
        convs.append(
            Conversation.from_dict(
                {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}
            )
        )
    for k in range(pairs):
        src = convs[k].to_dict()
        msg = src["messages"][1]["content"]
        chars = list(msg)
        for _ in range(rnd.randint(1, 3)):
            chars[rnd.randrange(len(chars))] = rnd.choice(_ZH)
        src["messages"][1]["content"] = "".join(chars)
        convs.append(Conversation.from_dict(src))
        truth.add(frozenset((k, len(convs) - 1)))
    return convs, truth


def cjk_quality() -> list[dict[str, Any]]:
    """Planted one-to-three-character edits in Chinese/Japanese rows: word shingles (every
    sentence one 'word') against per-row character shingles; time of the signatures alike."""
    convs, truth = cjk_corpus()
    out = []
    for char_scripts in (False, True):
        cfg = DedupConfig(char_scripts=char_scripts)
        t = time.perf_counter()
        cluster_of = dedup(convs, cfg, items=[Item(str(i), age=i) for i in range(len(convs))]).cluster_of()
        dt = time.perf_counter() - t
        groups: dict[Any, set[int]] = {}
        for key, c in cluster_of.items():
            groups.setdefault(c, set()).add(int(key))
        predicted = {frozenset(g) for g in groups.values() if len(g) > 1}
        out.append({"char_scripts": char_scripts, "seconds": dt, **pair_scores(predicted, truth)})
    return out


# ---------------------------------------------------------------- main


def speed(name: str, rows: list[dict[str, Any]], cfg: DedupConfig) -> dict[str, Any]:
    t = time.perf_counter()
    t1: dict[str, float] = {}
    c_one = sift(rows, cfg, t1, workers=1)
    s_one = time.perf_counter() - t
    t = time.perf_counter()
    tw: dict[str, float] = {}
    c_sift = sift(rows, cfg, tw, workers=None)
    s_sift = time.perf_counter() - t
    t = time.perf_counter()
    c_bulk = bulk_datasketch(rows, cfg)
    s_bulk = time.perf_counter() - t
    t = time.perf_counter()
    c_naive = naive_datasketch(rows, cfg)
    s_naive = time.perf_counter() - t
    return {
        "corpus": name,
        "n": len(rows),
        "naive_s": s_naive,
        "bulk_s": s_bulk,
        "sift_s": s_sift,
        "sift_1_s": s_one,
        "workers": worker_count(cfg, len(rows)),
        "vs_naive": s_naive / s_sift,
        "vs_bulk": s_bulk / s_sift,
        "vs_naive_1": s_naive / s_one,
        "vs_bulk_1": s_bulk / s_one,
        "clusters": len(c_sift),
        "equal": c_sift == c_naive == c_bulk == c_one,
        "sift_signatures_s": tw["signatures"],
        "sift_clusters_s": tw["clusters"],
        "sift_1_signatures_s": t1["signatures"],
        "sha1_share": sha1_share(rows[:20_000], cfg),
    }


def main() -> dict[str, Any]:
    n = int(os.environ.get("SIFT_BENCH_DEDUP_N", "100000"))
    which = os.environ.get("SIFT_BENCH_DEDUP_CORPORA", "tickets,diverse").split(",")
    cfg = DedupConfig()
    out: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "speed": [],
    }
    b, r = cfg.bands_rows
    print(
        f"machine: {out['machine']}; threshold {cfg.threshold}, {cfg.num_perm} permutations = {b} bands × {r} rows, "
        f"{cfg.ngram}-word shingles, view {cfg.view}\n"
    )
    print(
        "| corpus | conversations | (a) naive datasketch | (b) datasketch bulk | (c) Sift, 1 process | vs (a) | vs (b) "
        "| (c) Sift, N processes | vs (a) | vs (b) | clusters (all equal) | sha1 calls / shingles |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in which:
        if name == "tickets":
            rows, gt = tickets(n)
        else:
            rows, gt = diverse(n), None
        s = speed(name, rows, cfg)
        if gt is not None:
            predicted = sift(rows, cfg, workers=None)
            truth = planted_truth(len(rows), gt)
            s["planted"] = pair_scores(predicted, truth)
            s["planted"]["precision_exact_jaccard"] = exact_jaccard_precision(rows, predicted, cfg, truth)
        out["speed"].append(s)
        print(
            f"| {name} | {s['n']:,} | {s['naive_s']:.1f} s | {s['bulk_s']:.1f} s "
            f"| {s['sift_1_s']:.1f} s (signatures {s['sift_1_signatures_s']:.1f}) | {s['vs_naive_1']:.1f}× "
            f"| {s['vs_bulk_1']:.1f}× | {s['sift_s']:.1f} s ({s['workers']} processes; signatures "
            f"{s['sift_signatures_s']:.1f}, clusters {s['sift_clusters_s']:.1f}) | {s['vs_naive']:.1f}× "
            f"| {s['vs_bulk']:.1f}× | {s['clusters']:,} ({s['equal']}) | {s['sha1_share']:.3f} |",
            flush=True,
        )
    for s in out["speed"]:
        if "planted" in s:
            p = s["planted"]
            print(
                f"\nplanted duplicates at {s['n']:,}: pairwise precision {p['precision']:.3f}, recall {p['recall']:.3f} "
                f"({p['true_pairs']:,} true pairs); rows: precision {p['row_precision']:.3f}, recall {p['row_recall']:.3f}; "
                f"precision counting unplanted pairs with exact Jaccard ≥ {cfg.threshold} as true: "
                f"{p['precision_exact_jaccard']:.3f}"
            )
    q = planted_quality()
    out["planted_3000"] = q
    print(
        f"\nplanted duplicates (generate_noisy(3000, seed=1)): pairwise precision {q['precision']:.3f}, "
        f"recall {q['recall']:.3f}; rows: precision {q['row_precision']:.3f}, recall {q['row_recall']:.3f}"
    )
    cjk = cjk_quality()
    out["cjk"] = cjk
    print("\nChinese/Japanese rows (2,000, 200 planted copies with 1–3 characters edited), same run:\n")
    print("| shingles | pairwise precision | recall | dedup seconds |")
    print("|---|---|---|---|")
    for c in cjk:
        unit = "characters where the row is unspaced script (default)" if c["char_scripts"] else "words only"
        print(f"| {unit} | {c['precision']:.3f} | {c['recall']:.3f} | {c['seconds']:.2f} |")
    corpus = CORPORA / "ML_SageMaker_Studies"
    if corpus.exists():
        plag = plagiarism_quality(corpus)
        out["plagiarism"] = plag
        print(
            "\nplagiarism corpus (95 answers; positives cut 19 + light 19, negatives non 38; heavy 19 apart), "
            "3-word shingles, user view:\n"
        )
        print("| threshold | bands × rows | precision | recall | cut found | light found | heavy found | non found |")
        print("|---|---|---|---|---|---|---|---|")
        for p in plag:
            print(
                f"| {p['threshold']} | {p['bands_rows'][0]} × {p['bands_rows'][1]} | {p['precision']:.2f} "
                f"| {p['recall']:.2f} | {p['cut']}/19 | {p['light']}/19 | {p['heavy']}/19 | {p['non']}/38 |"
            )
    return out


if __name__ == "__main__":
    main()
