"""PII: scan and redact with progress, counts per entity, and a queue of findings to accept or
dismiss one by one or in bulk; add a span the detector missed. Message text is shown escaped, the
finding's span highlighted (never as HTML)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from curation import pii
from workbench.app_pages.common import FlagSpan, attempt, get_wb, highlight_markdown, md_escape, require_actor, run
from workbench.services.pii_results import RedactionReport

wb = get_wb()
st.title("PII")

ov = run(wb.pii_overview)
if ov is None:
    st.stop()
c = st.columns(4)
c[0].metric("Conversations", f"{ov.conversations:,}")
c[1].metric("Scanned (current revision)", f"{ov.scanned:,}")
c[2].metric("With unresolved findings", f"{ov.unresolved:,}")
c[3].metric("Redacted", f"{ov.redacted_conversations:,}")
total = ov.conversations
st.progress(ov.scanned / total if total else 0.0, text=f"{ov.scanned:,} of {total:,} scanned")

if ov.entities:
    st.subheader("Findings per entity")
    st.bar_chart(
        [{"entity": e, "status": s, "findings": n} for e, by in ov.entities.items() for s, n in by.items() if n],
        x="entity",
        y="findings",
        color="status",
    )

with st.expander("Scan or redact", expanded=not ov.scanned):
    with st.form("pii_run"):
        entities = st.multiselect("Entities", pii.ENTITIES, default=list(pii.DEFAULT_ENTITIES))
        a, b = st.columns(2)
        one = a.checkbox("One score threshold for every entity", help="otherwise each entity's own threshold")
        threshold = a.slider("Minimum score", 0.0, 1.0, 0.5, 0.05)
        min_score = threshold if one else None
        operator = b.selectbox("Redaction operator", pii.OPERATORS, help="placeholder <PERSON>, pseudonym, mask, hash")
        allow = a.text_area("Allow list (one per line: never reported)", height=80)
        deny = b.text_area("Deny list (one per line: always reported)", height=80)
        st.caption(
            "Per role: redact (reviewed findings, and pending ones above their entity's auto-redact floor), "
            "flag (only findings a reviewer accepted), skip. Without review, a redaction changes only "
            + ", ".join(f"{e} from {v:.2f}" for e, v in pii.DEFAULT_AUTO_REDACT.items() if v and e != "DENY_LIST")
            + "; names, places, addresses and URLs wait for review."
        )
        cols = st.columns(4)
        policy = {
            r: cols[i].selectbox(r, pii.ROLE_POLICIES, key=f"pii_role_{r}")
            for i, r in enumerate(("system", "user", "assistant", "tool"))
        }
        go_scan, go_redact = st.columns(2)
        scan = go_scan.form_submit_button("Scan (store findings for review)")
        redact = go_redact.form_submit_button("Redact… (scan, then preview what would change)", type="primary")
    if scan or redact:
        actor = require_actor()
        bar = st.progress(0.0, text="building the analyzer (once per process)…")

        def progress(done: int, n: int) -> None:
            bar.progress(done / n if n else 1.0, text=f"{done:,} of {n:,} distinct texts analysed")

        options: dict[str, Any] = {
            "entities": entities or None,
            "min_score": min_score,
            "allow_list": [x.strip() for x in allow.splitlines() if x.strip()],
            "deny_list": [x.strip() for x in deny.splitlines() if x.strip()],
            "roles": policy,
        }
        # Scanning stores the findings; the preview and the redaction then reuse that scan.
        r = run(wb.pii_scan_report, actor=actor, progress=progress, **options)
        if r is not None:
            counts = ", ".join(f"{n} {e}" for e, n in r.findings.items()) or "no findings"
            st.session_state["pii_done"] = f"{r.messages_scanned:,} messages scanned: {counts}."
            st.session_state.pop("pii_preview", None)
            if redact:
                options["operator"] = operator
                preview = run(wb.redact, actor=actor, dry_run=True, samples=8, **options)
                if preview is not None:
                    st.session_state["pii_preview"] = {"options": options, "result": preview}
            st.rerun()  # the counters above now include this scan

done_msg = st.session_state.pop("pii_done", None)
if done_msg:
    st.success(md_escape(done_msg))
preview = st.session_state.get("pii_preview")
if preview is not None:
    pr: RedactionReport = preview["result"]
    with st.container(border=True):
        st.subheader("Redaction preview")
        spans = ", ".join(f"{n} {e}" for e, n in pr.spans_redacted.items()) or "nothing"
        left = ", ".join(f"{n} {e}" for e, n in pr.pending_left.items()) or "none"
        st.markdown(
            md_escape(
                f"Would rewrite {pr.conversations_redacted:,} conversation(s): {spans}. "
                f"Left pending for review: {left}."
            )
        )
        for x in pr.samples or []:
            st.caption(md_escape(f"{x['conversation_id']} · message {x['message_index']} {x['field']} · {x['entity']}"))
            st.text(f"before: {x['before']}\nafter:  {x['after']}")
        ok, cancel = st.columns(2)
        confirm = ok.button(
            f"Confirm: redact {pr.conversations_redacted:,} conversation(s)",
            key="pii_confirm",
            type="primary",
            disabled=not pr.conversations_redacted,
        )
        if cancel.button("Cancel", key="pii_cancel"):
            st.session_state.pop("pii_preview", None)
            st.rerun()
        if confirm:
            actor = require_actor()
            red = run(wb.redact, actor=actor, **preview["options"])
            if red is not None:
                st.session_state.pop("pii_preview", None)
                spans = ", ".join(f"{n} {e}" for e, n in red.spans_redacted.items()) or "nothing"
                st.session_state["pii_done"] = (
                    f"{red.conversations_redacted} conversation(s) redacted ({spans}); "
                    f"{red.messages_scanned:,} messages scanned, {red.reused_scan:,} stored scan(s) reused."
                )
                st.rerun()

with st.expander("Bulk review (by entity, exact text, recognizer, score range)"):
    b1, b2, b3 = st.columns(3)
    b_entity = b1.selectbox(
        "Entity", [*pii.ENTITIES, pii.DENY_LIST_ENTITY], index=None, placeholder="any", key="pii_b_entity"
    )
    b_text = b2.text_input("Exact text (e.g. Java)", key="pii_b_text").strip() or None
    b_rec = b3.text_input("Recognizer (e.g. ProperNounRecognizer)", key="pii_b_rec").strip() or None
    lo, hi = st.slider("Score range", 0.0, 1.0, (0.0, 1.0), 0.05, key="pii_b_range")
    b_action = st.radio("Action", ["dismiss", "accept"], horizontal=True, key="pii_b_action")
    remember = st.checkbox(
        "Remember the text: add it to this store's allow-list (later scans never report it)",
        key="pii_b_remember",
        disabled=not (b_text and b_action == "dismiss"),
    )
    sel = {
        "entity": b_entity,
        "text": b_text,
        "recognizer": b_rec,
        "min_score": lo if lo > 0 else None,
        "max_score": hi if hi < 1 else None,
    }
    status_to = "dismissed" if b_action == "dismiss" else "accepted"
    if any(v is not None for v in sel.values()):
        counted = run(wb.pii_bulk_review, status_to, dry_run=True, **sel)
        if counted is not None:
            what = ", ".join(f"{n} {e}" for e, n in counted.by_entity.items()) or "none"
            st.caption(md_escape(f"{counted.matched:,} pending finding(s) match: {what}."))
            if counted.matched and st.button(
                f"Confirm: {b_action} {counted.matched:,} finding(s)", key="pii_b_go", type="primary"
            ):
                actor = require_actor()
                done = run(
                    wb.pii_bulk_review,
                    status_to,
                    actor=actor,
                    remember=bool(remember and b_text and b_action == "dismiss"),
                    **sel,
                )
                if done is not None:
                    kept = "; remembered in the allow-list" if done.remembered else ""
                    st.session_state["pii_done"] = f"{done.updated:,} finding(s) {status_to}{kept}."
                    st.rerun()
    else:
        st.caption("Choose at least one selector.")
    terms = run(wb.pii_allow_list)
    if terms and terms.terms:
        st.caption(md_escape("Store allow-list: " + ", ".join(t["term"] for t in terms.terms)))

st.subheader("Findings to review")
f1, f2, f3 = st.columns(3)
status = f1.selectbox("Status", pii.FINDING_STATUSES, key="pii_status")
entity = f2.selectbox("Entity", [*pii.ENTITIES, pii.DENY_LIST_ENTITY], index=None, placeholder="any", key="pii_entity")
floor = f3.slider("Score at least", 0.0, 1.0, 0.0, 0.05, key="pii_floor")
page_no = st.number_input("Page", min_value=1, value=1, step=1, key="pii_page")
PER_PAGE = 10
q = run(
    wb.pii_queue, status=status, entity=entity, min_score=floor or None, limit=PER_PAGE, offset=(page_no - 1) * PER_PAGE
)
if q is not None:
    st.caption(f"{q.total:,} finding(s) match.")
    bulk_label = f"Accept all {q.total:,} pending {entity} findings scored at least {floor:.2f}"
    if entity and status == "pending" and q.total and st.button(bulk_label, key="pii_bulk"):
        actor = require_actor()
        n = run(wb.pii_bulk_accept, entity, floor, actor=actor)
        if n is not None:
            st.success(f"Accepted {n} finding(s).")
            st.rerun()
    # Keyboard: A accepts and D dismisses the first finding on the page; the queue then moves up.
    first = next((f["id"] for f in q.findings if f["status"] == status), None)
    if first is not None:
        st.caption("Keys: A accepts, D dismisses the first finding below.")
    for f in q.findings:
        with st.container(border=True):
            st.caption(
                md_escape(
                    f"#{f['id']} · conversation {f['conversation_id']} r{f['revision']} · message {f['message_index']} "
                    f"({f['role'] or '?'}) {f['field']} · {f['entity']} {f['score']:.2f} · {f['recognizer']} · {f['status']}"
                )
            )
            if f["text"] is None:
                st.warning("The span no longer matches the text of this revision; rescan.")
            else:
                st.markdown(
                    highlight_markdown(
                        f["text"], [FlagSpan(f["message_index"], f["field"], f["start"], f["end"], f["entity"])]
                    )
                )
            a, d, _ = st.columns([1, 1, 4])
            keys = f["id"] == first
            accept = a.button(
                "Accept", key=f"pii_acc_{f['id']}", disabled=f["status"] == "accepted", shortcut="A" if keys else None
            )
            dismiss = d.button(
                "Dismiss", key=f"pii_dis_{f['id']}", disabled=f["status"] == "dismissed", shortcut="D" if keys else None
            )
            if (accept or dismiss) and attempt(
                wb.pii_review, [f["id"]], "accepted" if accept else "dismissed", actor=require_actor()
            ):
                st.rerun()

with st.expander("Add a span the detector missed"):
    with st.form("pii_add"):
        a, b, e = st.columns([3, 1, 2])
        cid = a.text_input("Conversation id", key="pii_add_cid")
        mi = b.number_input("Message", min_value=0, value=0, step=1, key="pii_add_msg")
        ent = e.selectbox("Entity", pii.ENTITIES)
        needle = st.text_input("Exact text to mark (its first occurrence in the message)", key="pii_add_text")
        added = st.form_submit_button("Add finding")
    if added:
        actor = require_actor()
        conv = run(wb.show, cid.strip()) if cid.strip() else None
        if conv is not None:
            messages = conv.messages
            content = messages[int(mi)].get("content") if int(mi) < len(messages) else None
            pos = content.find(needle) if isinstance(content, str) and needle else -1
            if pos < 0:
                st.error("That text is not in the message's content.")
            elif attempt(wb.pii_add, conv.id, int(mi), pos, pos + len(needle), ent, actor=actor):
                st.success(md_escape(f"Added a {ent} finding to conversation {conv.id}."))
