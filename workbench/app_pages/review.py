"""Review: one conversation at a time from the queue a filter defines, with every flag inline;
accept, reject with a reason, skip, comment, tag, edit or delete turns (a new revision, shown as a
diff); bulk actions on the whole filter after a confirmation that states the count; the store's
review guide beside the queue."""

from __future__ import annotations

from typing import Any

import streamlit as st

from curation.revision_diff import turn_text
from workbench.app_pages.common import (
    attempt,
    current_actor,
    domain_errors,
    filter_bar,
    get_wb,
    may_configure,
    md_escape,
    render_conversation,
    render_diff,
    require_actor,
    run,
    safe_guide_markdown,
)
from workbench.services.review import describe_filters

ss = st.session_state
wb = get_wb()
actor = current_actor()


def open_conversation(cid: str, cursor: Any = None) -> None:
    d = wb.show(cid)
    ss.update(
        rv_id=d["id"],
        rv_rev=d["current_revision"],
        rv_status=d["status"],
        rv_cursor=cursor or wb.cursor_of(d["id"]),
        rv_end=False,
    )


def advance(filters: dict[str, Any]) -> None:
    """The next conversation after the current one under the filter (keyset: no offsets)."""
    nxt = wb.queue_next(filters, after=ss.get("rv_cursor"))
    if nxt is None:
        ss.update(rv_id=None, rv_end=True)
    else:
        open_conversation(*nxt)


def act(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a service; on a domain error keep its message for the top of the conversation (where
    'Load the latest' is) and rerun, so a conflict is shown next to the way out of it."""
    try:
        return fn(*args, **kwargs)
    except domain_errors() as e:
        ss["rv_error"] = str(e)
        st.rerun()


def done(message: str, filters: dict[str, Any]) -> None:
    ss["rv_flash"] = message
    ss["rv_last"] = ss.get("rv_id")
    advance(filters)
    st.rerun()


st.title("Review")
if actor is None:
    st.info("👈 Identify yourself in the sidebar to accept, reject, edit or comment. You can look around meanwhile.")
if flash := ss.pop("rv_flash", None):
    st.success(flash)

with st.expander("Queue filter", expanded=True, key="rv_filter_open"):
    filters = filter_bar("rvf", default_status="pending")
    goto = st.text_input("Or open a conversation by id", key="rv_goto", placeholder="id or its first characters")

# A link (?id=...) or the id box opens one conversation; a new filter restarts the queue.
link_id = st.query_params.get("id")
if link_id:
    del st.query_params["id"]
    run(open_conversation, link_id)
if goto and ss.get("rv_goto_done") != goto:
    ss["rv_goto_done"] = goto
    run(open_conversation, goto.strip())
fkey = repr(sorted(filters.items()))
if ss.get("rv_filters") != fkey:
    first_run = "rv_filters" not in ss
    ss["rv_filters"] = fkey
    if not (first_run and ss.get("rv_id")):
        ss.update(rv_id=None, rv_cursor=None, rv_end=False)
total = wb.count(**filters)
if ss.get("rv_id") is None and not ss.get("rv_end"):
    advance(filters)

main, side = st.columns([3, 1.25], gap="large")

with side:
    st.subheader("Review guide")
    with st.container(height=520, border=True):
        st.markdown(safe_guide_markdown(wb.review_guide()))
    if may_configure():
        with st.expander("Guide and lists", key="rv_settings_open"), st.form("rv_settings"):
            guide = st.text_area(
                "Guide (markdown; images and HTML are not loaded)", wb.review_guide(), height=220, key="rv_guide_text"
            )
            tags_text = st.text_area("Tags reviewers pick from (one per line)", "\n".join(wb.review_tags()))
            reasons_text = st.text_area("Reasons for rejecting (one per line)", "\n".join(wb.reject_reasons()))
            if st.form_submit_button("Save guide and lists"):
                who = require_actor()
                if (
                    attempt(wb.set_review_guide, guide, actor=who)
                    and attempt(wb.set_review_tags, tags_text.splitlines(), actor=who)
                    and attempt(wb.set_reject_reasons, reasons_text.splitlines(), actor=who)
                ):
                    ss["rv_flash"] = "Saved the review guide and lists for this store."
                    st.rerun()

with main:
    cid = ss.get("rv_id")
    if cid is None:
        if total == 0:
            st.info(f"No conversation matches this filter ({describe_filters(filters)}).")
        else:
            st.success(f"🎉 You reached the end of the queue ({total:,} still match this filter).")
            if st.button("Start again from the top"):
                ss.update(rv_cursor=None, rv_end=False)
                advance(filters)
                st.rerun()
    else:
        d = run(wb.show, cid, ss["rv_rev"])
        if d is None:
            if st.button("Go to the next conversation"):
                advance(filters)
                st.rerun()
            st.stop()
        rev = d["revision"]
        stale = d["current_revision"] != rev or d["status"] != ss["rv_status"]
        st.subheader(f"Conversation {d['id']}")
        st.caption(
            f"{ss['rv_status']} · revision {rev} · {len(d['messages'])} turns · {len(d['flags'])} flags · "
            f"{total:,} match this filter · [lineage](lineage?id={d['id']})"
        )
        if err := ss.pop("rv_error", None):
            st.error(err)
        if stale:
            st.warning(
                f"Someone changed this conversation since you opened it (now {d['status']}, revision "
                f"{d['current_revision']}). Your changes would be refused until you load the latest."
            )
        if stale and st.button("Load the latest"):
            open_conversation(d["id"], ss.get("rv_cursor"))
            st.rerun()
        if rev > 1:
            last = next((h for h in reversed(d["history"]) if h.get("revision") == rev), {})
            with st.expander(
                f"What changed in revision {rev} (by {last.get('actor', '?')}"
                + (f": {last['note']}" if last.get("note") else "")
                + ")",
                expanded=ss.get("rv_just_edited") == (d["id"], rev),
            ):
                changes = run(wb.revision_diff, d["id"], rev)
                if changes is not None:
                    render_diff(changes)

        editing = st.toggle("✏️ Edit messages", key=f"rv_editing_{d['id']}_{rev}")
        if not editing:
            render_conversation(d, show_meta=False)
        else:
            with st.form(f"rv_edit_{d['id']}_{rev}"):
                st.caption("Change the text of any turn or tick 'delete this turn'. Saving makes a new revision.")
                texts: list[str | None] = []
                deleted: list[bool] = []
                for i, m in enumerate(d["messages"]):
                    st.markdown(f"**Turn {i + 1} · {md_escape(m['role'])}**")
                    if m.get("content") is None or isinstance(m.get("content"), str):
                        texts.append(
                            st.text_area(
                                f"Text of turn {i + 1}", m.get("content") or "", key=f"rv_t_{d['id']}_{rev}_{i}"
                            )
                        )
                    else:
                        st.text(turn_text(m))
                        st.caption("This turn has non-text parts; only deleting it is possible here.")
                        texts.append(None)
                    deleted.append(st.checkbox("Delete this turn", key=f"rv_del_{d['id']}_{rev}_{i}"))
                note = st.text_input("Note for the history (optional)")
                save = st.form_submit_button(f"Save as revision {rev + 1}", type="primary")
            if save:
                who = require_actor()
                new: list[dict[str, Any]] = []
                edited, dropped = [], []
                for i, m in enumerate(d["messages"]):
                    if deleted[i]:
                        dropped.append(i + 1)
                        continue
                    t = texts[i]
                    if t is not None and t != (m.get("content") or ""):
                        m = {**m, "content": t}
                        edited.append(i + 1)
                    new.append(m)
                if not edited and not dropped:
                    st.info("Nothing changed, nothing saved.")
                elif not new:
                    st.error("A conversation needs at least one turn: reject it instead of deleting every turn.")
                else:
                    summary = "; ".join(
                        x
                        for x in (
                            f"edited turn {', '.join(map(str, edited))}" if edited else "",
                            f"deleted turn {', '.join(map(str, dropped))}" if dropped else "",
                        )
                        if x
                    )
                    new_rev = act(wb.edit, d["id"], new, base_revision=rev, actor=who, note=note.strip() or summary)
                    ss.update(rv_rev=new_rev, rv_just_edited=(d["id"], new_rev), rv_flash=f"Saved revision {new_rev}.")
                    st.rerun()

        if not editing:
            st.divider()
            a1, a2, a3 = st.columns([1, 1, 3])
            if a1.button("✅ Accept", type="primary", width="stretch", disabled=actor is None):
                who = require_actor()
                act(wb.decide, d["id"], "accepted", expected_revision=rev, expected_status=ss["rv_status"], actor=who)
                done(f"Accepted {d['id']}.", filters)
            if a2.button("⏭ Skip", width="stretch"):
                done(f"Skipped {d['id']}; it stays {ss['rv_status']}.", filters)
            with a3:
                r1, r2 = st.columns([3, 1])
                typed = r1.text_input(
                    "Reason for rejecting",
                    key=f"rv_reason_{d['id']}",
                    placeholder="reason for rejecting (type, or pick one below)",
                    label_visibility="collapsed",
                )
                presets = wb.reject_reasons()
                picked = (
                    r1.pills("Common reasons", presets, key=f"rv_preset_{d['id']}", label_visibility="collapsed")
                    if presets
                    else None
                )
                reason = typed.strip() or picked
                if r2.button("❌ Reject", width="stretch", disabled=actor is None):
                    who = require_actor()
                    if not (reason or "").strip():
                        st.error("Give a reason for rejecting (choose one or type your own).")
                    else:
                        act(
                            wb.decide,
                            d["id"],
                            "rejected",
                            expected_revision=rev,
                            expected_status=ss["rv_status"],
                            reason=reason,
                            actor=who,
                        )
                        done(f"Rejected {d['id']}: {reason}", filters)
            if ss["rv_status"] != "pending" and st.button("↩ Back to pending", disabled=actor is None):
                who = require_actor()
                act(wb.decide, d["id"], "pending", expected_revision=rev, expected_status=ss["rv_status"], actor=who)
                ss.update(rv_flash=f"{d['id']} is pending again.", rv_status="pending")
                st.rerun()

            t1, t2 = st.columns([4, 1], vertical_alignment="bottom")
            tag_options = sorted(set(wb.review_tags()) | set(d["tags"]))
            chosen = t1.multiselect(
                "Tags", tag_options, default=d["tags"], accept_new_options=True, key=f"rv_tags_{d['id']}_{rev}"
            )
            if t2.button("Save tags", disabled=actor is None or sorted(chosen) == sorted(d["tags"])):
                who = require_actor()
                add = [t for t in chosen if t not in d["tags"]]
                remove = [t for t in d["tags"] if t not in chosen]
                ok = (not add or attempt(wb.tag, [d["id"]], add, actor=who)) and (
                    not remove or attempt(wb.tag, [d["id"]], remove, actor=who, remove=True)
                )
                if ok:
                    ss["rv_flash"] = f"Tags saved: {', '.join(chosen) or 'none'}."
                    st.rerun()

            comments = [h for h in d["history"] if h["kind"] == "comment"]
            with st.form(f"rv_comment_{d['id']}", clear_on_submit=True):
                st.markdown(f"**Comments ({len(comments)})**")
                for h in comments:
                    st.caption(f"{h['actor']} · {h['at'][:16].replace('T', ' ')}")
                    st.text(h["text"])
                comment = st.text_area("Add a comment", placeholder="a question for a colleague, a note on a fix…")
                if st.form_submit_button("Add comment"):
                    who = require_actor()
                    if attempt(wb.comment, d["id"], comment, actor=who):
                        ss["rv_flash"] = "Comment added."
                        st.rerun()

            with st.expander(f"History ({len(d['history'])} entries)"):
                st.dataframe(
                    [
                        {
                            "at": h["at"][:19].replace("T", " "),
                            "who": h["actor"],
                            "what": h["by"] if h["kind"] == "revision" else h["kind"],
                            "details": "; ".join(
                                f"{k}: {v}"
                                for k, v in h.items()
                                if k not in ("at", "actor", "kind", "by", "provenance")
                            ),
                        }
                        for h in d["history"]
                    ],
                    hide_index=True,
                    width="stretch",
                )

st.divider()
with st.expander(f"Bulk actions on all {total:,} conversations matching this filter", key="rv_bulk_open"):
    st.caption(f"Filter: {describe_filters(filters)}")
    action = st.radio("Action", ["Accept", "Reject", "Add tags", "Remove tags"], horizontal=True, key="rv_bulk_action")
    params: dict[str, Any] = {"filters": filters}
    if action in ("Accept", "Reject"):
        params.update(action="status", status="accepted" if action == "Accept" else "rejected")
        if action == "Reject":
            params["reason"] = st.text_input("Reason for rejecting them all", key="rv_bulk_reason")
    else:
        params.update(
            action="tag_add" if action == "Add tags" else "tag_remove",
            tags=st.multiselect("Tags", wb.review_tags(), accept_new_options=True, key="rv_bulk_tags"),
        )
    if st.button("Count and ask me to confirm", disabled=actor is None):
        count_args = {k: v for k, v in params.items() if k in ("status", "tags")}
        n = run(wb.bulk_count, filters, params["action"], **count_args)
        ss["rv_bulk"] = {**params, "n": n} if n is not None else None
    pending = ss.get("rv_bulk")
    if pending and pending["filters"] == filters and pending.get("action") == params.get("action"):
        verb = {"status": f"mark {pending.get('status')}", "tag_add": "tag", "tag_remove": "untag"}[pending["action"]]
        n = pending["n"]
        if n == 0:
            st.info("Nothing to change: every matching conversation is already in that state.")
        else:
            what = f" with {', '.join(pending['tags'])}" if pending.get("tags") else ""
            why = f" (reason: {pending['reason']})" if pending.get("reason") else ""
            st.warning(
                md_escape(f"This will {verb} {n:,} conversations{what}{why}. Each gets an event with your name.")
            )
            c1, c2, _ = st.columns([2, 1, 3])
            if c1.button(f"Confirm: {verb} {n:,} conversations", type="primary"):
                who = require_actor()
                kw = {k: pending[k] for k in ("status", "reason", "tags") if pending.get(k) is not None}
                changed = run(wb.bulk_apply, filters, pending["action"], expected=n, actor=who, **kw)
                ss["rv_bulk"] = None
                if changed is not None:
                    ss.update(
                        rv_flash=f"Done: {verb} {changed:,} conversations.", rv_id=None, rv_cursor=None, rv_end=False
                    )
                    st.rerun()
            if c2.button("Cancel"):
                ss["rv_bulk"] = None
                st.rerun()
