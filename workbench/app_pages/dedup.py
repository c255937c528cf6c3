"""Dedup: run with progress, cluster sizes, clusters, side-by-side diff, keeper choice, borderline queue."""

from __future__ import annotations

from typing import Any

import streamlit as st

from curation.errors import SiftError
from workbench.app_pages.common import (
    current_actor,
    diff_markdown,
    get_wb,
    md_escape,
    require_actor,
    run,
)

PAGE_SIZE = 50

wb = get_wb()
st.title("Dedup")
st.caption(
    "Exact and near-duplicate clusters (MinHash over word n-grams). One conversation per cluster is kept "
    "(accepted first, then the longest answer, then the oldest, unless an SME picks another); the others "
    "are flagged near_duplicate and stay out of train and eval. A cluster never straddles train and eval."
)


def side_by_side(a: str, b: str) -> None:
    """Two conversations' compared text, words that differ highlighted (escaped markdown)."""
    cmp = run(wb.dedup_compare, a, b)
    if not cmp:
        return
    st.caption(md_escape(f"estimated Jaccard {cmp.jaccard:.2f} · view: {cmp.view}"))
    left, right = st.columns(2)
    left.markdown(f"**{md_escape(a)}**")
    left.markdown(diff_markdown(cmp.a.runs, "red"))
    right.markdown(f"**{md_escape(b)}**")
    right.markdown(diff_markdown(cmp.b.runs, "green"))


with st.form("dedup_run"):
    c1, c2, c3, c4 = st.columns(4)
    threshold = c1.slider("Threshold (Jaccard)", 0.5, 1.0, 0.8, 0.01)
    num_perm = c2.selectbox("Permutations", [64, 128, 256], index=1)
    ngram = int(c3.number_input("Words per shingle", min_value=1, max_value=10, value=5))
    view = c4.radio("Compare", ["full", "user"], horizontal=True, help="every turn, or user turns only")
    go = st.form_submit_button("Run dedup")
if go:
    actor = require_actor()
    bar = st.progress(0.0, text="starting")

    def progress(stage: str, done: int, total: int) -> None:
        bar.progress(min(1.0, done / total) if total else 1.0, text=f"{stage}: {done}/{total}")

    r = run(wb.dedup, threshold=threshold, num_perm=num_perm, ngram=ngram, view=view, actor=actor, progress=progress)
    if r:
        st.success(
            f"{r.conversations} conversations: {r.clusters} clusters, {r.duplicates_flagged} flagged, "
            f"{r.exact_groups} exact groups, {r.borderline_pairs} borderline pairs "
            f"({r.params['bands']} bands × {r.params['rows']} rows)"
        )
if msg := st.session_state.pop("dedup_notice", None):
    st.success(msg)

status = wb.dedup_status()
last_run = status.run
if last_run is None:
    st.info("No dedup run yet.")
    st.stop()
stats: dict[str, Any] = last_run["stats"]
m = st.columns(5)
m[0].metric("Conversations", stats.get("conversations", 0))
m[1].metric("Clusters", stats.get("clusters", 0))
m[2].metric("Flagged", stats.get("duplicates_flagged", 0))
m[3].metric("Exact groups", stats.get("exact_groups", 0))
m[4].metric("Borderline pairs", stats.get("borderline_pairs", 0))
p = status.params or {}
st.caption(
    f"Latest run {last_run['id']} by {md_escape(last_run['actor'], at_line_start=False)} · threshold {p['threshold']}, {p['num_perm']} "
    f"permutations ({p['bands']} bands × {p['rows']} rows), {p['ngram']}-word shingles, view {p['view']}"
)
if status.stale:
    st.warning(f"{status.stale} conversation(s) were imported or edited since this run: run dedup again.")

st.subheader("Clusters")
page = int(st.session_state.get("dedup_page", 0))
listed = wb.dedup_cluster_list(limit=PAGE_SIZE, offset=page * PAGE_SIZE)
if listed.sizes:
    # Sizes as numbers in order (2, 3, 5, 10, 37), one bar each: a text axis would sort 10 before 2.
    sizes = sorted((int(k), int(v)) for k, v in listed.sizes.items())
    width = len(str(sizes[-1][0]))
    st.bar_chart(
        {"members": [str(k).rjust(width, "\u2007") for k, _ in sizes], "clusters": [v for _, v in sizes]},
        x="members",
        y="clusters",
        x_label="cluster size (members)",
        y_label="clusters",
        sort=False,
    )
clusters = listed.clusters
if not clusters:
    st.info("No duplicates found.")
else:
    st.dataframe(
        [
            {
                "cluster": c["id"],
                "size": c["size"],
                "keeper": c["keeper"],
                "kept for": c["reason"],
                "preview": next(x["preview"] for x in c["members"] if x["keeper"])[:100],
            }
            for c in clusters
        ],
        hide_index=True,
        width="stretch",
    )
    pages = max(1, (listed.total + PAGE_SIZE - 1) // PAGE_SIZE)
    if pages > 1:
        new_page = int(st.number_input("Page", 1, pages, page + 1)) - 1
        if new_page != page:
            st.session_state["dedup_page"] = new_page
            st.rerun()
    by_id = {c["id"]: c for c in clusters}
    chosen = st.selectbox(
        "Cluster", list(by_id), format_func=lambda c: f"{c} ({by_id[c]['size']} members)", key="dedup_cluster"
    )
    cluster = by_id[chosen]
    ids = [x["id"] for x in cluster["members"]]
    st.dataframe(
        [
            {
                "id": x["id"],
                "keeper": x["keeper"],
                "status": x["status"],
                "Jaccard with keeper": x["jaccard"],
                "exact copy": x["exact"],
                "preview": x["preview"],
            }
            for x in cluster["members"]
        ],
        hide_index=True,
        width="stretch",
    )
    below = [
        x for x in cluster["members"] if not x["keeper"] and x["jaccard"] is not None and x["jaccard"] < p["threshold"]
    ]
    if below:
        st.caption(
            f"{len(below)} member(s) are below the threshold ({p['threshold']}) with the keeper: they joined through "
            "another member (chaining — A~B and B~C put A and C in one cluster even when A and C differ more). "
            "Compare them with the keeper below; if one is not a duplicate, make it a keeper of its own or "
            "decide its borderline pair as 'Not a duplicate'."
        )
    c1, c2 = st.columns(2)
    a = c1.selectbox("Left", ids, index=0, key=f"dedup_a_{chosen}")
    b = c2.selectbox("Right", ids, index=min(1, len(ids) - 1), key=f"dedup_b_{chosen}")
    if a != b:
        side_by_side(a, b)
    k1, k2 = st.columns([3, 1])
    keeper = k1.selectbox("Keeper", ids, index=ids.index(cluster["keeper"]), key=f"dedup_keep_{chosen}")
    if k2.button("Keep this one", disabled=keeper == cluster["keeper"]):
        actor = require_actor()
        if run(wb.keep, keeper, actor=actor):
            st.session_state["dedup_notice"] = f"{keeper} is now the keeper of its cluster."
            st.rerun()

st.subheader("Borderline pairs")
ss = st.session_state


def on_decide(a: str, b: str, decision: str) -> None:
    who = current_actor()
    if who is None:
        ss["dedup_error"] = "Identify yourself in the sidebar before deciding."
        return
    try:
        wb.decide_pair(a, b, decision, actor=who)
    except SiftError as e:
        ss["dedup_error"] = str(e)
        return
    ss["dedup_notice"] = f"{a} ~ {b}: {decision}."


def on_move(step: int, n: int) -> None:
    ss["dedup_pair_i"] = min(max(0, int(ss.get("dedup_pair_i", 0)) + step), max(0, n - 1))


def on_range_count(low: float, high: float, decision: str) -> None:
    ss["dedup_bulk"] = {"low": low, "high": high, "decision": decision, "n": len(wb.borderline_in_range(low, high))}


def on_range_confirm() -> None:
    b = ss.pop("dedup_bulk", None)
    who = current_actor()
    if not b or who is None:
        return
    try:
        r = wb.decide_range(b["low"], b["high"], b["decision"], expected=b["n"], actor=who)
    except SiftError as e:
        ss["dedup_error"] = str(e)
        return
    ss["dedup_notice"] = f"Decided {r.decided:,} pairs in {b['low']:.2f}–{b['high']:.2f}: {b['decision']}."


pairs = wb.dedup_pairs(borderline=True, undecided=True)
if err := ss.pop("dedup_error", None):
    st.error(err)
if not pairs:
    st.info("No undecided pairs near the threshold.")
else:
    st.caption(
        f"{len(pairs):,} undecided pairs with an estimated Jaccard close to the threshold: say whether each "
        "pair is a duplicate. Keyboard: **D** duplicate · **N** not a duplicate · **J** next · **K** previous."
    )
    with st.expander("Decide every pair in a Jaccard range at once"):
        js = [x["jaccard"] for x in pairs]
        lo_default, hi_default = float(min(js)), float(max(js))
        low, high = st.slider(
            "Estimated Jaccard range",
            0.0,
            1.0,
            (round(lo_default, 2), round(hi_default, 2)),
            0.01,
            key="dedup_bulk_range",
        )
        decision = st.radio(
            "Decision", ["duplicate", "distinct"], horizontal=True, key="dedup_bulk_decision",
            format_func=lambda d: "Duplicate" if d == "duplicate" else "Not a duplicate",
        )  # fmt: skip
        st.button(
            "Count and ask me to confirm", key="dedup_bulk_count", disabled=current_actor() is None,
            on_click=on_range_count, args=(low, high, decision),
        )  # fmt: skip
        b = ss.get("dedup_bulk")
        if b and (b["low"], b["high"], b["decision"]) == (low, high, decision):
            if b["n"] == 0:
                st.info("No undecided pair in that range.")
            else:
                st.warning(
                    f"This will mark {b['n']:,} pairs with an estimated Jaccard in {low:.2f}–{high:.2f} as "
                    f"'{decision}' and redo the clusters. Each pair gets an event with your name."
                )
                st.button(
                    f"Confirm: {decision} for {b['n']:,} pairs", type="primary", key="dedup_bulk_confirm",
                    on_click=on_range_confirm,
                )  # fmt: skip
    st.dataframe(
        [
            {"a": x["a"], "b": x["b"], "Jaccard": x["jaccard"], "now": "merged" if x["merged"] else "apart"}
            for x in pairs
        ],
        hide_index=True,
        width="stretch",
        height=220,
    )
    i = min(int(ss.get("dedup_pair_i", 0)), len(pairs) - 1)
    pair = pairs[i]
    st.markdown(f"**Pair {i + 1} of {len(pairs):,}:** {md_escape(pair['a'], at_line_start=False)} ~ "
                f"{md_escape(pair['b'], at_line_start=False)} ({pair['jaccard']:.2f})")  # fmt: skip
    d1, d2, d3, d4, _ = st.columns([1, 1.3, 1, 1, 2])
    d1.button(
        "Duplicate", key="dedup_decide_duplicate", shortcut="D", disabled=current_actor() is None,
        on_click=on_decide, args=(pair["a"], pair["b"], "duplicate"),
    )  # fmt: skip
    d2.button(
        "Not a duplicate", key="dedup_decide_distinct", shortcut="N", disabled=current_actor() is None,
        on_click=on_decide, args=(pair["a"], pair["b"], "distinct"),
    )  # fmt: skip
    d3.button("← Previous", key="dedup_prev", shortcut="K", on_click=on_move, args=(-1, len(pairs)))
    d4.button("Next →", key="dedup_next", shortcut="J", on_click=on_move, args=(1, len(pairs)))
    side_by_side(pair["a"], pair["b"])
