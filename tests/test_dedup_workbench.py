"""Dedup through the store, the service, the CLI and the page: planted duplicates of the sample
data, stored signatures reused, SME keeper override and pair decisions, clusters for the freeze."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import workbench
from curation.dedup import DedupConfig, MinHasher, band_hashes, candidate_pairs
from curation.formats import parse_file
from tests.conftest import ROOT, SAMPLE, run_sift, write

SAMPLE_FILES = ["tickets_openai.jsonl", "tickets_sharegpt.json", "tickets_alpaca.json", "tickets_alpaca.parquet"]


def _sample_ids() -> dict[tuple[str, int], str]:
    """(file, line or index as the ground truth names it) → conversation id."""
    out = {}
    for f in SAMPLE_FILES:
        pf = parse_file(SAMPLE / f, "auto")
        for m in pf.mapped:
            out[(f, m.line if f.endswith(".jsonl") else m.index)] = m.conversation.id
    return out


def _where(loc: dict) -> tuple[str, int]:
    return loc["file"], loc.get("line", loc.get("index"))


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory) -> Path:
    """The bundled sample imported once; each test works on its own copy of the file."""
    path = tmp_path_factory.mktemp("dedup_sample") / "sample.duckdb"
    workbench.open(path).import_files([SAMPLE / f for f in SAMPLE_FILES])
    return path


@pytest.fixture
def sample_wb(sample_store: Path, store_path: Path):
    shutil.copy(sample_store, store_path)
    return workbench.open(store_path)


def test_sample_planted_duplicates_found(sample_wb) -> None:
    wb = sample_wb
    r = wb.dedup(actor="ana")
    assert set(r.to_dict()) == {
        "conversations",
        "clusters",
        "duplicates_flagged",
        "exact_groups",
        "borderline_pairs",
        "params",
    }
    truth = json.loads((SAMPLE / "ground_truth.json").read_text())
    ids = _sample_ids()
    planted = {
        frozenset({ids[_where(p)], ids[_where(p["source"])]})
        for p in truth["problems"]
        if p["kind"] == "near_duplicate"
    }
    clusters = wb.dedup_cluster_list(limit=100).clusters
    found = {frozenset(m["id"] for m in c["members"]) for c in clusters}
    assert found == planted and r.clusters == len(planted) == 9
    # exact duplicates were already stored once at import (content ids): nothing left to flag
    assert r.exact_groups == 0
    flagged = wb.list(flag="near_duplicate", limit=100)
    assert flagged.total == r.duplicates_flagged == 9
    mapping = wb.dedup_clusters().cluster_of
    assert len(mapping) == wb.stats().conversations
    for c in clusters:
        assert {mapping[m["id"]] for m in c["members"]} == {c["id"]} == {min(m["id"] for m in c["members"])}
    shown = wb.show(next(m["id"] for m in clusters[0]["members"] if not m["keeper"]))
    assert [f["reason"] for f in shown.flags] == ["near_duplicate"]


def test_rerun_reuses_signatures_and_results_carry_params(sample_wb, tmp_path: Path) -> None:
    wb = sample_wb
    wb.dedup(actor="ana")
    first = wb.store.dedup_latest_run()
    n = first["stats"]["conversations"]
    assert first["stats"]["signatures_computed"] == n and first["config"]["threshold"] == 0.8
    wb.dedup(actor="ana")
    assert wb.store.dedup_latest_run()["stats"]["signatures_reused"] == n
    # a new import and an edit: only those two are signed again
    wb.import_files(
        [
            write(
                tmp_path / "new.jsonl",
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": "A brand new question about QuillDB backups"},
                            {"role": "assistant", "content": "Here is how."},
                        ]
                    }
                ),
            )
        ]
    )
    cid = wb.list(limit=1).conversations[0]["id"]
    d = wb.show(cid)
    wb.edit(
        cid, [*d.messages[:-1], {"role": "assistant", "content": "An edited answer."}], base_revision=1, actor="ana"
    )
    assert wb.dedup_status().stale == 2
    wb.dedup(actor="ana")
    s = wb.store.dedup_latest_run()["stats"]
    assert (s["signatures_computed"], s["signatures_reused"]) == (2, n - 1)
    assert wb.dedup_status().stale == 0
    # other parameters are other signatures
    r = wb.dedup(ngram=3, view="user", actor="ana")
    assert r.params == {
        "threshold": 0.8,
        "num_perm": 128,
        "bands": 14,
        "rows": 9,
        "ngram": 3,
        "view": "user",
        "char_scripts": True,
    }
    assert wb.store.dedup_latest_run()["stats"]["signatures_computed"] == n + 1


def test_keeper_override_survives_reruns(sample_wb) -> None:
    wb = sample_wb
    wb.dedup(actor="ana")
    c = wb.dedup_cluster_list(limit=1).clusters[0]
    other = next(m["id"] for m in c["members"] if not m["keeper"])
    r = wb.keep(other, actor="sme")
    assert r.keeper == other and r.flagged == [c["keeper"]]
    assert [f["reason"] for f in wb.show(c["keeper"]).flags] == ["near_duplicate"]
    assert wb.show(other).flags == []
    assert any(h["kind"] == "dedup_keep" and h["actor"] == "sme" for h in wb.show(other).history)
    wb.dedup(actor="ana")
    again = next(x for x in wb.dedup_cluster_list(limit=100).clusters if x["id"] == c["id"])
    assert (again["keeper"], again["reason"]) == (other, "SME choice")
    assert wb.list(flag="near_duplicate", limit=100).total == 9


def test_accepted_copy_is_kept(sample_wb) -> None:
    wb = sample_wb
    wb.dedup(actor="ana")
    c = wb.dedup_cluster_list(limit=1).clusters[0]
    other = next(m["id"] for m in c["members"] if not m["keeper"])
    wb.accept([other], actor="sme")
    wb.dedup(actor="ana")
    again = next(x for x in wb.dedup_cluster_list(limit=100).clusters if x["id"] == c["id"])
    assert (again["keeper"], again["reason"]) == (other, "its review status")


def test_pair_decisions_recluster(sample_wb) -> None:
    wb = sample_wb
    wb.dedup(actor="ana")
    c = wb.dedup_cluster_list(limit=1).clusters[0]
    a, b = sorted(m["id"] for m in c["members"])
    r = wb.decide_pair(b, a, "distinct", actor="sme")
    assert (r.a, r.b, r.clusters, r.duplicates_flagged) == (a, b, 8, 8)
    assert wb.show(a).flags == wb.show(b).flags == []
    assert wb.dedup_clusters().cluster_of[a] == a and wb.dedup_clusters().cluster_of[b] == b
    wb.dedup(actor="ana")  # the decision outlives runs
    assert wb.dedup_cluster_list().total == 8
    assert wb.decide_pair(a, b, "duplicate", actor="sme").clusters == 9
    with pytest.raises(workbench.store.StoreError, match=r"^unknown decision 'maybe' \(use duplicate, distinct\)$"):
        wb.decide_pair(a, b, "maybe", actor="sme")


def test_compare_and_contamination_service(sample_wb) -> None:
    wb = sample_wb
    wb.dedup(actor="ana")
    c = wb.dedup_cluster_list(limit=1).clusters[0]
    a, b = (m["id"] for m in c["members"][:2])
    cmp = wb.dedup_compare(a, b)
    assert cmp.jaccard >= 0.8 and any(d for _, d in cmp.a.runs + cmp.b.runs)
    assert "".join(t for t, _ in cmp.a.runs) == cmp.a.text
    others = [x["id"] for x in wb.list(limit=12).conversations if x["id"] not in (a, b)]
    hits = wb.contamination([a, *others], [b])
    assert [(h.eval_id, h.train_id) for h in hits] == [(b, a)]


def test_sql_group_by_buckets_equal_numpy(wb) -> None:
    texts = [f"word{i % 7} common words here about the order {i % 11} and more text {i % 3}" for i in range(200)]
    sig = MinHasher().signatures(texts)
    bands = band_hashes(sig, *DedupConfig().bands_rows)
    np.testing.assert_array_equal(wb.store.dedup_bucket_pairs_sql(bands), candidate_pairs(bands, max_bucket=10**9))


def test_cli_dedup_keep_clusters_borderline(sample_wb, store_path: Path, capsys) -> None:
    from workbench.cli import main

    r = run_sift(
        "dedup",
        "--threshold",
        "0.8",
        "--num-perm",
        "128",
        "--ngram",
        "5",
        "--view",
        "full",
        "--json",
        store=store_path,
        check=True,
    )
    out = json.loads(r.stdout)
    assert set(out) == {"conversations", "clusters", "duplicates_flagged", "exact_groups", "borderline_pairs", "params"}
    assert set(out["params"]) == {"threshold", "num_perm", "bands", "rows", "ngram", "view", "char_scripts"}
    assert out["clusters"] == 9

    def sift(*args: str) -> tuple[int, str, str]:
        code = main(["--store", str(store_path), *args])
        o = capsys.readouterr()
        return code, o.out, o.err

    code, text, _ = sift("clusters", "--json")
    cl = json.loads(text)
    other = next(m["id"] for m in cl["clusters"][0]["members"] if not m["keeper"])
    assert json.loads(sift("keep", other, "--json")[1])["keeper"] == other
    assert "pairs" in json.loads(sift("borderline", "--all", "--json")[1])
    assert "is now the keeper" in sift("keep", other)[1]
    assert sift("keep", "deadbeef")[0::2] == (1, "error: no conversation 'deadbeef'\n")
    code, _, err = sift("dedup", "--view", "bot")
    assert code == 2 and "invalid choice: 'bot'" in err
    assert sift("dedup", "--threshold", "2")[0::2] == (1, "error: threshold must be in (0, 1], got 2.0\n")


def test_keep_outside_a_cluster_is_refused(sample_wb) -> None:
    wb = sample_wb
    wb.dedup(actor="ana")
    lonely = next(
        cid
        for cid, cl in wb.dedup_clusters().cluster_of.items()
        if cid == cl and cid not in {m["id"] for c in wb.dedup_cluster_list(limit=100).clusters for m in c["members"]}
    )
    with pytest.raises(workbench.store.StoreError, match=f"^conversation {lonely} is in no duplicate cluster"):
        wb.keep(lonely, actor="sme")


def test_dedup_page(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "app.duckdb"
    monkeypatch.setenv("SIFT_STORE", str(path))
    wb = workbench.open(path)
    evil = "<script>alert(1)</script> [link](http://x) **bold** " * 3
    rows = [
        {"instruction": f"{evil} my parcel 4471 never arrived at the depot and I want a refund now", "output": "ok"},
        {"instruction": f"{evil} my parcel 4471 never arrived at the depot and I want a refund today", "output": "ok"},
        {"instruction": "something else entirely about invoices and tax numbers", "output": "fine"},
    ]
    wb.import_files([write(tmp_path / "a.json", json.dumps(rows))])
    at = AppTest.from_file(str(ROOT / "workbench" / "app_pages" / "dedup.py"), default_timeout=60).run()
    assert not at.exception
    assert any("No dedup run yet" in i.value for i in at.info)
    at.session_state["reviewer"] = "ana"
    at.button[0].click().run()  # Run dedup (the form's submit button)
    assert not at.exception
    assert any("1 clusters" in s.value for s in at.success)
    assert [m.value for m in at.metric][:3] == ["3", "1", "1"]
    highlighted = [m.value for m in at.markdown if "-background[" in m.value]
    assert highlighted and all("<script>" not in m and "](http" not in m for m in highlighted)
    assert any("\\<script\\>" in m for m in highlighted)
    keeper = wb.dedup_cluster_list().clusters[0]["keeper"]
    other = next(m["id"] for m in wb.dedup_cluster_list().clusters[0]["members"] if m["id"] != keeper)
    cluster_id = wb.dedup_cluster_list().clusters[0]["id"]
    at.selectbox(key=f"dedup_keep_{cluster_id}").select(other).run()
    next(b for b in at.button if b.label == "Keep this one").click().run()
    assert not at.exception
    assert wb.dedup_cluster_list().clusters[0]["keeper"] == other
    assert any("now the keeper" in s.value for s in at.success)


def test_decide_a_jaccard_range_at_once(tmp_path: Path) -> None:
    # One 80-word text with 0..7 words changed: pairs at several Jaccards around 0.8.
    rows = []
    for k in range(8):
        words = [f"w{i}" for i in range(80)]
        for j in range(k):
            words[5 + j * 9] = f"x{k}_{j}"
        rows.append({"instruction": " ".join(words), "output": "ok"})
    wb = workbench.open(tmp_path / "b.duckdb")
    wb.import_files([write(tmp_path / "b.json", json.dumps(rows))])
    wb.dedup(threshold=0.8, ngram=3, actor="ana")
    pairs = wb.dedup_pairs(borderline=True, undecided=True)
    assert len(pairs) >= 3
    js = sorted(p["jaccard"] for p in pairs)
    low, high = js[0], (js[0] + js[-1]) / 2
    inside = wb.borderline_in_range(low, high)
    assert 0 < len(inside) < len(pairs)
    assert all(low <= p["jaccard"] <= high for p in inside)
    with pytest.raises(workbench.store.StoreError, match="not the 999 you confirmed"):
        wb.decide_range(low, high, "distinct", expected=999, actor="ana")
    assert len(wb.dedup_pairs(borderline=True, undecided=True)) == len(pairs)  # nothing written
    r = wb.decide_range(low, high, "distinct", expected=len(inside), actor="ana")
    assert r.decided == len(inside)
    left = wb.dedup_pairs(borderline=True, undecided=True)
    assert len(left) == len(pairs) - len(inside) and not wb.borderline_in_range(low, high)
    a = inside[0]["a"]
    events = [e for e in wb.show(a).history if e["kind"] == "dedup_pair"]
    assert events and events[-1]["decision"] == "distinct" and events[-1]["actor"] == "ana"
