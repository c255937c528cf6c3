"""Dedup's pure sub-steps, each alone, against datasketch where it has an answer; quality on
planted near-duplicates and the plagiarism corpus."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from bench.bench_dedup import pair_scores, plagiarism_quality, planted_quality, read_text, sift
from curation.dedup import (
    DedupConfig,
    DedupError,
    Features,
    Item,
    MinHasher,
    band_hashes,
    candidate_pairs,
    choose_keeper,
    contamination,
    dedup,
    exact_pairs,
    features,
    find_duplicates,
    lsh_params,
    normalise,
    normalise_many,
    shingles,
    straddling_clusters,
    text_view,
    text_view_dict,
    union_find,
    verify_pairs,
    word_diff,
)
from curation.formats import parse_file
from curation.records import Conversation, Message, ToolCall


def conv(*turns: str, system: str | None = None, **meta) -> Conversation:
    msgs = [Message("system", system)] if system else []
    msgs += [Message("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(turns)]
    return Conversation(tuple(msgs), metadata=meta)


def datasketch_minhash(text: str, n: int = 5, num_perm: int = 128, seed: int = 1) -> MinHash:
    m = MinHash(num_perm=num_perm, seed=seed)
    for s in shingles(text, n):
        m.update(s.encode("utf-8"))
    return m


WORDS = ["alpha", "béta", "γάμμα", "delta", "straße", "x", "日本語", "e\u0301", "ﬁne", "ok!", "(x)"]


def random_texts(k: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = [
        normalise(" ".join(rng.choice(WORDS) for _ in range(rng.choice([0, 1, 2, 4, 5, 6, 9, 30, 80]))))
        for _ in range(k)
    ]
    return out + out[: k // 5]  # repeats exercise the n-gram hash cache


# ---------------------------------------------------------------- view, normalise, shingles


def test_normalise_nfkc_case_whitespace() -> None:
    assert normalise("  The ﬁne\u00a0STRASSE\n\tis  Ｆｕｌｌ ") == "the fine strasse is full"
    assert normalise("Straße") == "strasse"  # case folding, not just lower()
    assert normalise(" \n ") == ""


def test_normalise_many_equals_one_by_one() -> None:
    rng = random.Random(1)
    pieces = ["a\u0301", "\u0301", "ﬁ", "Ｆ", " ", "\n", "ß", "İ", "\u00a0", "x", "\x00", "ǅ", "\u2028"]
    for _ in range(50):
        texts = ["".join(rng.choice(pieces) for _ in range(rng.randrange(0, 12))) for _ in range(8)]
        assert normalise_many(texts) == [normalise(t) for t in texts]
        clean = [t.replace("\x00", "") for t in texts]
        assert normalise_many(clean) == [normalise(t) for t in clean]


def test_text_view_full_user_system_and_tools() -> None:
    c = Conversation(
        (
            Message("system", "Be brief."),
            Message("user", "Weather in Paris?"),
            Message("assistant", None, tool_calls=(ToolCall("get_weather", '{"city": "Paris"}'),)),
            Message("tool", '{"temp": 21}', tool_call_id="c1"),
            Message("assistant", "21 degrees."),
            Message("user", "Thanks"),
        )
    )
    assert text_view(c) == 'Weather in Paris?\nget_weather {"city": "Paris"}\n{"temp": 21}\n21 degrees.\nThanks'
    assert text_view(c, include_system=True).startswith("Be brief.\nWeather")
    assert text_view(c, "user") == "Weather in Paris?\nThanks"
    assert text_view_dict(c.content_dict()) == text_view(c)


def test_text_view_dict_matches_records_on_a_corpus(corpora: Path) -> None:
    for f in ("LLaMA-Factory/glaive_toolcall_en_demo.json", "LLaMA-Factory/reason_tool_use_demo_50.jsonl"):
        for m in parse_file(corpora / f, "auto").mapped[:60]:
            c = m.conversation
            for view in ("full", "user"):
                assert text_view_dict(c.content_dict(), view) == text_view(c, view)


def test_shingles() -> None:
    assert shingles("", 5) == []
    assert shingles("one two", 5) == ["one two"]
    assert shingles("a b c d e", 5) == ["a b c d e"]
    assert shingles("a b c a b c", 2) == ["a b", "b c", "c a"]


# ---------------------------------------------------------------- signatures


def test_signatures_equal_datasketch_across_batches() -> None:
    texts = random_texts(400)
    h = MinHasher(128, 1, 5)
    sig = np.concatenate([h.signatures(texts[:150]), h.signatures(texts[150:])])
    assert h.stats["sha1"] < h.stats["shingles"]  # repeated n-grams were hashed once
    for t, s in zip(texts, sig, strict=True):
        assert (datasketch_minhash(t).hashvalues == s).all(), t


@pytest.mark.parametrize(("num_perm", "seed", "n"), [(64, 7, 3), (256, 1, 1)])
def test_signatures_other_parameters(num_perm: int, seed: int, n: int) -> None:
    texts = random_texts(60, seed=seed)
    sig = MinHasher(num_perm, seed, n).signatures(texts)
    for t, s in zip(texts, sig, strict=True):
        assert (datasketch_minhash(t, n, num_perm, seed).hashvalues == s).all()


def test_features_of_conversations() -> None:
    convs = [conv("Hello there, how do I reset my password today?", "Click reset."), conv("", "")]
    f = features(convs, DedupConfig())
    assert f.n_shingles.tolist() == [7, 0]  # 11 words
    assert f.answer_chars.tolist() == [len("Click reset."), 0]
    assert (f.signatures[1] == 0xFFFFFFFF).all()  # datasketch's empty MinHash
    assert (f.signatures[0] == datasketch_minhash(normalise(text_view(convs[0]))).hashvalues).all()


# ---------------------------------------------------------------- LSH, pairs, clusters


def test_lsh_params_are_datasketchs() -> None:
    for t in (0.5, 0.8, 0.9):
        lsh = MinHashLSH(threshold=t, num_perm=128, weights=(0.1, 0.9))
        assert lsh_params(t, 128, (0.1, 0.9)) == (lsh.b, lsh.r)
    assert DedupConfig().bands_rows == (14, 9)


def test_candidate_pairs_equal_datasketch_lsh() -> None:
    texts = random_texts(300, seed=3)
    texts = [t for t in texts if t]
    sig = MinHasher().signatures(texts)
    b, r = 14, 9
    pairs = {tuple(p) for p in candidate_pairs(band_hashes(sig, b, r)).tolist()}
    lsh = MinHashLSH(num_perm=128, params=(b, r))
    ms = [MinHash(num_perm=128, hashvalues=s, scheme="affine32") for s in sig]
    for i, m in enumerate(ms):
        lsh.insert(i, m)
    expected = {(min(i, j), max(i, j)) for i, m in enumerate(ms) for j in lsh.query(m) if j != i}
    assert pairs == expected and len(pairs) > 50
    p = np.array(sorted(pairs))
    assert np.allclose(verify_pairs(sig, p), [ms[i].jaccard(ms[j]) for i, j in p])


def test_large_bucket_links_to_its_first_member() -> None:
    bands = np.zeros((6, 2), np.uint64)  # everyone shares both buckets
    assert candidate_pairs(bands, max_bucket=3).tolist() == [[0, 1], [0, 2], [0, 3], [0, 4], [0, 5]]
    assert len(candidate_pairs(bands, max_bucket=10)) == 15


def test_union_find_matches_graph_search() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        edges = rng.integers(0, n, size=(int(rng.integers(0, 50)), 2))
        labels = union_find(n, edges)
        adj: dict[int, set[int]] = {i: set() for i in range(n)}
        for a, b in edges.tolist():
            adj[a].add(b)
            adj[b].add(a)
        for i in range(n):
            seen, todo = {i}, [i]
            while todo:
                for j in adj[todo.pop()] - seen:
                    seen.add(j)
                    todo.append(j)
            assert labels[i] == min(seen)


def test_exact_pairs_groups() -> None:
    h = np.array([5, 7, 5, 9, 5, 7], np.uint64)
    pairs, groups = exact_pairs(h)
    assert groups == 2 and sorted(map(tuple, pairs.tolist())) == [(0, 2), (0, 4), (1, 5)]
    pairs, groups = exact_pairs(h, live=np.array([True, True, False, True, True, False]))
    assert groups == 1 and pairs.tolist() == [[0, 4]]


# ---------------------------------------------------------------- keepers and results


def test_keeper_policy_and_override() -> None:
    items = [Item("a", status="pending", age=0), Item("b", status="accepted", age=1), Item("c", age=2)]
    chars = np.array([100, 10, 500])
    policy = ("accepted", "longest_answer", "oldest")
    assert choose_keeper([0, 1, 2], items, chars, policy) == (1, "its review status")
    assert choose_keeper([0, 2], items, chars, policy) == (2, "the longest answer")
    assert choose_keeper([0, 2], items, np.array([5, 5, 5]), policy) == (0, "being the oldest")
    assert choose_keeper([0, 2], items, np.array([5, 5, 5]), ("newest",)) == (2, "being the newest")
    rejected = [Item("a", status="rejected"), Item("b")]
    assert choose_keeper([0, 1], rejected, np.array([900, 1]), policy)[0] == 1  # rejected comes last
    pinned = [Item("a", pinned=5.0), Item("b", status="accepted"), Item("c", pinned=9.0)]
    assert choose_keeper([0, 1, 2], pinned, chars, policy) == (2, "SME choice")  # the latest pin wins


def test_keepers_for_all_clusters_agree_with_choose_keeper() -> None:
    from curation.dedup import _clusters

    rng = random.Random(8)
    n = 400
    items = [
        Item(
            f"id{rng.randrange(10**6):06d}-{i}",
            status=rng.choice(["pending", "accepted", "rejected"]),
            age=rng.randrange(5),
            pinned=rng.choice([None] * 8 + [1.0, 2.0]),
        )
        for i in range(n)
    ]
    chars = np.array([rng.choice([10, 20, 30]) for _ in range(n)], np.int64)
    labels = union_find(n, np.array([(rng.randrange(n), rng.randrange(n)) for _ in range(300)]))
    feats = Features(np.zeros((n, 4), np.uint32), np.arange(n, dtype=np.uint64), np.ones(n, np.int32), chars)
    for policy in (("accepted", "longest_answer", "oldest"), ("newest",), ("longest_answer",)):
        for c in _clusters(items, feats, labels, policy):
            members = [i for i, it in enumerate(items) if it.id in {m.id for m in c.members}]
            k, reason = choose_keeper(members, items, chars, policy)
            assert (c.keeper, c.reason) == (items[k].id, reason)


BASE = (
    "My order number is 4471 and the parcel never arrived at the depot, so I would like a refund please. "
    "I ordered two blue kettles and one toaster on the third of May, paid by card, and the tracking page "
    "has said 'in transit' for eleven days now. Your chat bot told me to wait another week but I already "
    "waited long enough and the kettles were a birthday present for my mother who needed them last weekend."
)


def small_set() -> list[Conversation]:
    return [
        conv(BASE, "Sorry! A refund is on its way."),
        conv(BASE.replace("please", "thanks"), "Sorry! A refund is on its way. Thanks."),
        conv(BASE.upper(), "Sorry! A refund is on its way."),  # exact after normalisation
        conv("How do I rotate the API key of my staging project without downtime", "Use the console."),
        conv("", ""),
        conv("", ""),
    ]


def test_find_duplicates_clusters_keepers_flags() -> None:
    convs = small_set()
    items = [Item(f"c{i}", age=i) for i in range(len(convs))]
    r = dedup(convs, DedupConfig(), items=items)
    assert [sorted(m.id for m in c.members) for c in r.clusters] == [["c0", "c1", "c2"]]
    c = r.clusters[0]
    assert (c.id, c.keeper, c.reason) == ("c0", "c1", "the longest answer")
    assert r.exact_groups == 1 and r.compared == 4  # empty views are not compared
    flags = r.flags()
    assert [f["conversation_id"] for f in flags] == ["c0", "c2"]
    assert flags[0]["reason"] == "near_duplicate" and flags[0]["severity"] == "error"
    assert flags[0]["details"]["keeper"] == "c1" and flags[0]["message"].startswith("near-duplicate (Jaccard ≈ ")
    assert r.summary(DedupConfig()) == {
        "conversations": 6,
        "clusters": 1,
        "duplicates_flagged": 2,
        "exact_groups": 1,
        "borderline_pairs": 0,
        "params": {
            "threshold": 0.8,
            "num_perm": 128,
            "bands": 14,
            "rows": 9,
            "ngram": 5,
            "view": "full",
            "char_scripts": True,
        },
    }


def test_unspaced_scripts_are_shingled_by_characters_per_row() -> None:
    from curation.dedup import segment

    assert segment(normalise("今天天气很好 ok")) == "今 天 天 气 很 好 ok"
    assert segment(normalise("English with two 中文 words here")) == "english with two 中文 words here"
    zh = (
        "我们的集群在高峰时段出现了明显的复制延迟，请提供日志文件以便分析原因并尽快修复这个问题。"
        "另外，备份任务在凌晨两点失败了三次，控制台没有显示任何错误信息，我们希望知道应该如何排查。"
    )
    ja = "データベースの複製が遅れています。ログファイルを送っていただけますか。原因を調べて修正します。"
    convs = [
        conv(zh, "好的"),
        conv(zh.replace("明显", "明確"), "好的"),
        conv(ja, "はい"),
        conv(ja.replace("送", "見"), "はい"),
    ]
    convs.append(conv("Completely different text written in English words only", "ok"))
    items = [Item(f"c{i}", age=i) for i in range(len(convs))]
    by_char = dedup(convs, DedupConfig(), items=items)
    assert sorted(sorted(m.id for m in c.members) for c in by_char.clusters) == [["c0", "c1"], ["c2", "c3"]]
    by_word = dedup(convs, DedupConfig(char_scripts=False), items=items)
    assert by_word.clusters == []  # each row was one shingle: a one-character edit is never found


def test_decisions_override_the_estimate() -> None:
    convs = small_set()[:4]
    items = [Item(f"c{i}", age=i) for i in range(4)]
    cfg = DedupConfig()
    feats = features(convs, cfg)
    r = find_duplicates(items, feats, cfg, decisions={("c0", "c1"): "distinct", ("c1", "c2"): "distinct"})
    assert [sorted(m.id for m in c.members) for c in r.clusters] == [["c0", "c2"]]
    r = find_duplicates(items, feats, cfg, decisions={("c0", "c3"): "duplicate"})
    assert sorted(m.id for m in r.clusters[0].members) == ["c0", "c1", "c2", "c3"]


def test_borderline_pairs_near_the_threshold() -> None:
    rng = random.Random(4)
    vocab = [f"w{i}" for i in range(2000)]
    base = [rng.choice(vocab) for _ in range(200)]
    edited = base[:]
    for k in range(0, 200, 50):  # one word in 50 changed: 5-gram Jaccard ≈ 0.82
        edited[k + 20] = "changed"
    a, b = " ".join(base), " ".join(edited)
    r = dedup([conv(a), conv(b)], DedupConfig(borderline_margin=0.1))
    assert len(r.borderline) == 1 and abs(r.borderline[0].jaccard - 0.8) < 0.1


def test_config_validation_and_json_round_trip() -> None:
    cfg = DedupConfig(**{**DedupConfig().to_dict(), "lsh_weights": [0.2, 0.8], "keeper_policy": ["oldest"]})
    assert cfg.lsh_weights == (0.2, 0.8) and cfg.keeper_policy == ("oldest",)
    assert cfg.signature_key() == DedupConfig(threshold=0.5).signature_key() != DedupConfig(ngram=3).signature_key()
    with pytest.raises(DedupError, match=r"^unknown view 'bot' \(use full, user\)$"):
        DedupConfig(view="bot")
    with pytest.raises(DedupError, match=r"^threshold must be in \(0, 1\], got 1.5$"):
        DedupConfig(threshold=1.5)
    with pytest.raises(
        DedupError, match=r"^unknown keeper criterion 'random' \(use accepted, longest_answer, oldest, newest\)$"
    ):
        DedupConfig(keeper_policy=("random",))


def test_word_diff_marks_changed_words() -> None:
    a, b = word_diff("Hello  World, this is a test", "hello world, this was a test!")
    assert a == [("Hello  World, this ", False), ("is ", True), ("a ", False), ("test", True)]
    assert b == [("hello world, this ", False), ("was ", True), ("a ", False), ("test!", True)]


# ---------------------------------------------------------------- contamination


def test_contamination_near_and_exact_by_store_id() -> None:
    train = {"t1": conv(BASE, "ok"), "t2": conv("Completely different question about invoices and VAT numbers", "ok")}
    evals = [
        conv(BASE.replace("please", "thanks"), "ok", conversation_id="e1"),
        conv(BASE.lower() + "  ", "OK", conversation_id="e2"),
        conv("What is the capital of France, asked nobody in this support queue ever", "Paris", conversation_id="e3"),
    ]
    hits = contamination(train, evals, DedupConfig())
    assert [(h.eval_id, h.train_id, h.exact) for h in hits] == [("e1", "t1", False), ("e2", "t1", True)]
    assert hits[0].jaccard >= 0.8 and hits[1].jaccard == 1.0
    assert contamination(list(train.values()), [], None) == []


def test_contamination_finds_planted_eval_leaks() -> None:
    from tickets import generate_noisy, ticket_row

    rows, gt = generate_noisy(1500, seed=2)
    train = [Conversation.from_dict({"messages": r["messages"]}) for r in rows]
    gold = [Conversation.from_dict(ticket_row(g, "openai")) for g in gt["gold_eval"]]
    hits = contamination(train, gold, DedupConfig())
    leaked = {p["gold_index"] for p in gt["problems"] if p["kind"] == "eval_leakage"}
    found = {int(i) for i in {gold.index(next(g for g in gold if g.id == h.eval_id)) for h in hits}}
    assert found == leaked


def test_straddling_clusters() -> None:
    assert straddling_clusters({"a": "train", "b": "eval", "c": "train"}, {"a": "X", "b": "X", "c": "Y"}) == {
        "X": ["eval", "train"]
    }
    assert straddling_clusters({"a": "train", "b": "train"}, {"a": "X", "b": "X"}) == {}


# ---------------------------------------------------------------- quality on labelled data


def test_planted_near_duplicates_precision_recall() -> None:
    q = planted_quality(3000, seed=1)
    assert q["precision"] >= 0.95 and q["recall"] >= 0.95, q
    assert q["row_precision"] >= 0.95 and q["row_recall"] >= 0.95, q


def test_planted_duplicates_unchanged_by_batching() -> None:
    from bench.bench_dedup import planted_truth, tickets

    rows, gt = tickets(1200, seed=9)
    truth = planted_truth(len(rows), gt)
    one = sift(rows, DedupConfig(batch_size=100_000))
    many = sift(rows, DedupConfig(batch_size=97))
    assert one == many and pair_scores(one, truth)["recall"] >= 0.95


def test_plagiarism_corpus_read_and_scored(corpora: Path) -> None:
    data = corpora / "ML_SageMaker_Studies" / "data"
    cp1252 = [p for p in sorted(data.glob("*.txt")) if not _utf8(p)]
    assert len(cp1252) == 17
    assert all("\ufffd" not in read_text(p) for p in cp1252)
    assert any("’" in read_text(p) or "“" in read_text(p) for p in cp1252)  # 0x92 / 0x93 decoded
    rows = {r["threshold"]: r for r in plagiarism_quality(corpora / "ML_SageMaker_Studies", thresholds=(0.8, 0.2))}
    assert rows[0.8]["precision"] == 1.0 and rows[0.8]["non"] == 0
    assert rows[0.2]["precision"] == 1.0 and rows[0.2]["recall"] >= 0.6
    assert rows[0.2]["cut"] >= rows[0.2]["light"]  # copied text is found more often than edited text


def _utf8(p: Path) -> bool:
    try:
        p.read_bytes().decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_corpora_give_sensible_clusters(corpora: Path) -> None:
    fastchat = list(
        {
            m.conversation.id: m.conversation
            for m in parse_file(corpora / "FastChat" / "dummy_conversation.json", "auto").mapped
        }.values()
    )
    r = dedup(fastchat, DedupConfig(view="user"))
    # templated prompts ("Are you davinci?" ...): exact user-turn copies group together
    assert r.exact_groups > 100 and all(m.exact or m.keeper for c in r.clusters for m in c.members)
    convs: dict[str, Conversation] = {}
    source: dict[str, str] = {}
    for f in ("alpaca_en_demo.json", "v1_sft_demo.jsonl"):
        for m in parse_file(corpora / "LLaMA-Factory" / f, "auto").mapped:
            convs.setdefault(m.conversation.id, m.conversation)
            source.setdefault(m.conversation.id, f)
    alone = dedup([c for i, c in convs.items() if source[i] == "alpaca_en_demo.json"])
    assert alone.clusters == []  # its exact copies were already merged at import
    both = dedup(list(convs.values()))
    # v1_sft_demo repeats alpaca prompts (some glued to their input): the clusters pair the files
    cross = [c for c in both.clusters if {source[m.id] for m in c.members} == set(source.values())]
    assert len(cross) >= 60 and len(cross) >= 0.9 * len(both.clusters)


def test_features_in_worker_processes_equal_one_process() -> None:
    from bench.bench_dedup import tickets
    from curation.dedup import features_all

    rows, _ = tickets(900, seed=3)
    cfg = DedupConfig(batch_size=128)
    one = features_all(rows, cfg, workers=1)
    three = features_all(rows, cfg, workers=3)
    for a, b in zip(
        (one.signatures, one.norm_hashes, one.n_shingles, one.answer_chars),
        (three.signatures, three.norm_hashes, three.n_shingles, three.answer_chars),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_features_concat_and_take() -> None:
    f = features([conv("a b c d e f"), conv("x y")], DedupConfig())
    g = Features.concat([f, f.take([1])], 128)
    assert len(g) == 3 and (g.signatures[2] == f.signatures[1]).all()
