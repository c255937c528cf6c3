"""Review: one conversation at a time from the queue a filter defines, with every flag inline;
accept, reject with a reason, skip, comment, tag, edit or delete turns (a new revision, shown as a
diff); bulk actions on the whole filter after a confirmation that states the count; the store's
review guide beside the queue.

Actions run as button callbacks, before the page is drawn, so each click draws the page once.
Their outcome is left in session state (rv_flash / rv_info / rv_error) and shown at the top."""

from __future__ import annotations

from typing import Any

import streamlit as st

from curation.errors import SiftError
from curation.revision_diff import turn_text
from workbench.app_pages.common import (
    current_actor,
    filter_bar,
    get_wb,
    may_configure,
    md_escape,
    render_conversation,
    render_diff,
    run,
    safe_guide_markdown,
)
from workbench.services.core import ConversationView
from workbench.services.review import describe_filters

ss = st.session_state
wb = get_wb()
actor = current_actor()


# ---------------------------------------------------------------- the queue


def open_conversation(cid: str, cursor: Any = None, *, remember: bool = True) -> None:
    """Make `cid` the conversation under review, as it is now (its revision and status are what
    every later action is checked against). The one it replaces goes on the "previous" stack."""
    cid, status, rev = wb.conversation_state(cid)
    here = ss.get("rv_id")
    if remember and here and here != cid:
        ss["rv_back"] = [*(ss.get("rv_back") or [])[-199:], (here, ss.get("rv_cursor"))]
    ss.update(rv_id=cid, rv_rev=rev, rv_status=status, rv_cursor=cursor or wb.cursor_of(cid), rv_end=False)


def advance(filters: dict[str, Any]) -> None:
    """The next conversation after the current one under the filter (keyset: no offsets).

    One query fetches the next few (it costs what fetching one does on a large store); each is
    checked to be still in the queue's status when its turn comes, since others review too."""
    buf = ss.get("rv_ahead") or []
    while True:
        if not buf:
            buf = wb.queue_ahead(filters, after=ss.get("rv_cursor"))
            if not buf:
                if ss.get("rv_id"):
                    ss["rv_back"] = [*(ss.get("rv_back") or [])[-199:], (ss["rv_id"], ss.get("rv_cursor"))]
                ss.update(rv_id=None, rv_end=True, rv_ahead=[])
                return
        cid, cursor = buf.pop(0)
        ss["rv_cursor"] = cursor
        _, status, _ = wb.conversation_state(cid)
        if not filters.get("status") or status == filters["status"]:
            ss["rv_ahead"] = buf
            open_conversation(cid, cursor)
            return


def attempt(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a service as the identified reviewer; a domain error is kept for the page to show."""
    who = current_actor()
    if who is None:
        ss["rv_error"] = "Identify yourself in the sidebar before changing anything."
        return None
    try:
        result = fn(*args, **kwargs, actor=who)
    except SiftError as e:
        ss["rv_error"] = str(e)
        return None
    return True if result is None else result


def decide(status: str, filters: dict[str, Any], reason: str | None = None) -> None:
    cid = ss["rv_id"]
    if attempt(wb.decide, cid, status, expected_revision=ss["rv_rev"], expected_status=ss["rv_status"], reason=reason):
        if status == "pending":
            ss.update(rv_flash=f"{cid} is pending again.", rv_status="pending")
            return
        ss["rv_flash"] = f"Accepted {cid}." if status == "accepted" else f"Rejected {cid}: {reason}"
        advance(filters)


def on_reject(filters: dict[str, Any]) -> None:
    cid = ss["rv_id"]
    reason = (ss.get(f"rv_reason_{cid}") or "").strip() or ss.get(f"rv_preset_{cid}")
    if not reason:
        ss["rv_error"] = "Give a reason for rejecting (type one, or pick a common one)."
        return
    decide("rejected", filters, reason)


def on_skip(filters: dict[str, Any]) -> None:
    ss["rv_flash"] = f"Skipped {ss['rv_id']}; it stays {ss['rv_status']}."
    advance(filters)


def on_reload() -> None:
    open_conversation(ss["rv_id"], ss.get("rv_cursor"))


def on_previous() -> None:
    """Back to the conversation reviewed before this one (as it is now); the queue then goes on
    after it."""
    back = ss.get("rv_back") or []
    if not back:
        ss["rv_info"] = "This is the first conversation of this session's queue."
        return
    cid, cursor = back.pop()
    ss["rv_back"] = back
    ss["rv_ahead"] = []
    open_conversation(cid, cursor, remember=False)


def on_reject_preset(filters: dict[str, Any], reason: str) -> None:
    decide("rejected", filters, reason)


def on_edit(key: str, value: bool) -> None:
    ss[key] = value


def on_restart(filters: dict[str, Any]) -> None:
    ss.update(rv_cursor=None, rv_end=False, rv_ahead=[], rv_back=[])
    advance(filters)


def on_save_edit(d: ConversationView) -> None:
    cid, rev = d.id, d.revision
    new: list[dict[str, Any]] = []
    edited, dropped = [], []
    for i, m in enumerate(d.messages):
        if ss.get(f"rv_del_{cid}_{rev}_{i}"):
            dropped.append(i + 1)
            continue
        t = ss.get(f"rv_t_{cid}_{rev}_{i}")
        if t is not None and t != (m.get("content") or ""):
            m = {**m, "content": t}
            edited.append(i + 1)
        new.append(m)
    if not edited and not dropped:
        ss["rv_info"] = "Nothing changed, nothing saved."
        return
    if not new:
        ss["rv_error"] = "A conversation needs at least one turn: reject it instead of deleting every turn."
        return
    parts = [
        f"edited turn {', '.join(map(str, edited))}" if edited else "",
        f"deleted turn {', '.join(map(str, dropped))}" if dropped else "",
    ]
    note = (ss.get(f"rv_note_{cid}_{rev}") or "").strip() or "; ".join(p for p in parts if p)
    new_rev = attempt(wb.edit, cid, new, base_revision=rev, note=note)
    if new_rev:
        ss.update(rv_rev=new_rev, rv_just_edited=(cid, new_rev), rv_flash=f"Saved revision {new_rev}.")


def on_tags(d: ConversationView) -> None:
    chosen = ss.get(f"rv_tags_{d.id}_{d.revision}") or []
    add = [t for t in chosen if t not in d.tags]
    remove = [t for t in d.tags if t not in chosen]
    if (not add or attempt(wb.tag, [d.id], add)) and (not remove or attempt(wb.tag, [d.id], remove, remove=True)):
        ss["rv_flash"] = f"Tags saved: {', '.join(chosen) or 'none'}."


def on_comment(cid: str) -> None:
    if attempt(wb.comment, cid, ss.get(f"rv_comment_{cid}") or ""):
        ss["rv_flash"] = "Comment added."


def on_settings() -> None:
    if not may_configure():
        ss["rv_error"] = "Only an administrator may change the review guide and lists."
        return
    if (
        attempt(wb.set_review_guide, ss.get("rv_guide_text") or "")
        and attempt(wb.set_review_tags, (ss.get("rv_tags_text") or "").splitlines())
        and attempt(wb.set_reject_reasons, (ss.get("rv_reasons_text") or "").splitlines())
    ):
        ss["rv_flash"] = "Saved the review guide and lists for this store."


def on_bulk_count(params: dict[str, Any]) -> None:
    count_args = {k: v for k, v in params.items() if k in ("status", "tags")}
    try:
        n = wb.bulk_count(params["filters"], params["action"], **count_args)
    except SiftError as e:
        ss["rv_error"] = str(e)
        return
    ss["rv_bulk"] = {**params, "n": n}


def on_bulk_confirm(verb: str) -> None:
    b = ss.pop("rv_bulk", None)
    if not b:
        return
    kw = {k: b[k] for k in ("status", "reason", "tags") if b.get(k) is not None}
    changed = attempt(wb.bulk_apply, b["filters"], b["action"], expected=b["n"], **kw)
    if changed is not None:
        ss.update(
            rv_flash=f"Done: {verb} {changed:,} conversations.", rv_id=None, rv_cursor=None, rv_end=False, rv_ahead=[]
        )


# ---------------------------------------------------------------- the page

st.title("Review")
if actor is None:
    st.info(
        "Identify yourself in the sidebar to accept, reject, edit or comment. You can look around meanwhile.",
        icon=":material/badge:",
    )
if flash := ss.pop("rv_flash", None):
    st.success(md_escape(flash))  # holds ids and typed reasons
if note := ss.pop("rv_info", None):
    st.info(md_escape(note))
cfg = wb.review_config()

# A link from another page (Validate's drill-down: ?flag=REASON) sets the queue's flag filter.
if link_flag := st.query_params.get("flag"):
    del st.query_params["flag"]
    ss["rvf_flag"] = link_flag
with st.expander("Queue filter", expanded=True, key="rv_filter_open"):
    filters = filter_bar("rvf", default_status="pending", tags=cfg.tags)
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
    keep_opened = "rv_filters" not in ss and ss.get("rv_id")
    ss["rv_filters"] = fkey
    if not keep_opened:
        ss.update(rv_id=None, rv_cursor=None, rv_end=False, rv_ahead=[])
COUNT_LIMIT = 1000  # a bounded count: "1,000+" rather than an exact count of a million on each rerun
total = wb.count(**filters, limit=COUNT_LIMIT)
total_text = f"{COUNT_LIMIT:,}+" if total > COUNT_LIMIT else f"{total:,}"
if ss.get("rv_id") is None and not ss.get("rv_end"):
    advance(filters)

main, side = st.columns([3, 1.25], gap="large")

with side:
    st.subheader("Review guide")
    with st.container(height=520, border=True):
        st.markdown(safe_guide_markdown(cfg.guide))
    if may_configure() and st.toggle("Edit the guide and lists", key="rv_settings_open"):
        with st.form("rv_settings"):
            st.text_area("Guide (markdown; images and HTML are not loaded)", cfg.guide, height=220, key="rv_guide_text")
            st.text_area("Tags reviewers pick from (one per line)", "\n".join(cfg.tags), key="rv_tags_text")
            st.text_area("Reasons for rejecting (one per line)", "\n".join(cfg.reject_reasons), key="rv_reasons_text")
            st.form_submit_button("Save guide and lists", on_click=on_settings)

with main:
    cid = ss.get("rv_id")
    d = run(wb.show, cid, ss["rv_rev"]) if cid else None
    if err := ss.pop("rv_error", None):
        st.error(md_escape(err))  # service messages quote names and ids
    if cid is None:
        if total == 0:
            st.info(md_escape(f"No conversation matches this filter ({describe_filters(filters)})."))
        else:
            st.success(
                f"You reached the end of the queue ({total_text} still match this filter).",
                icon=":material/celebration:",
            )
            st.button("Start again from the top", on_click=on_restart, args=(filters,))
    elif d is None:
        st.button("Go to the next conversation", on_click=on_skip, args=(filters,))
    else:
        rev = d.revision
        stale = d.current_revision != rev or d.status != ss["rv_status"]
        st.subheader(f"Conversation {d.id}")
        st.caption(
            f"{ss['rv_status']} · revision {rev} · {len(d.messages)} turns · {len(d.flags)} flags · "
            f"{total_text} match this filter · [lineage](lineage?id={d.id})"
        )
        if stale:
            st.warning(
                f"Someone changed this conversation since you opened it (now {d.status}, revision "
                f"{d.current_revision}). Your changes would be refused until you load the latest."
            )
            st.button("Load the latest", on_click=on_reload)
        if rev > 1:
            last: dict[str, Any] = next((h for h in reversed(d.history) if h.get("revision") == rev), {})
            who = last.get("actor", "?") + (f": {last['note']}" if last.get("note") else "")
            label = f"What changed in revision {rev} (by {md_escape(who, at_line_start=False)})"  # names are data
            # Lazy: only an open expander reads and renders the diff.
            box = st.expander(
                label,
                expanded=ss.get("rv_just_edited") == (d.id, rev),
                key=f"rv_diff_{d.id}_{rev}",
                on_change="rerun",
            )
            with box:
                if box.open and (changes := run(wb.revision_diff, d.id, rev)) is not None:
                    render_diff(changes)

        edit_key = f"rv_editing_{d.id}_{rev}"
        editing = st.toggle("✏️ Edit messages", key=edit_key)
        if editing:
            st.button("Stop editing", shortcut="Esc", on_click=on_edit, args=(edit_key, False), key="rv_stop_edit")
            with st.form(f"rv_edit_{d.id}_{rev}"):
                st.caption("Change the text of any turn or tick 'delete this turn'. Saving makes a new revision.")
                for i, m in enumerate(d.messages):
                    st.markdown(f"**Turn {i + 1} · {md_escape(m['role'])}**")
                    if m.get("content") is None or isinstance(m.get("content"), str):
                        st.text_area(f"Text of turn {i + 1}", m.get("content") or "", key=f"rv_t_{d.id}_{rev}_{i}")
                    else:
                        st.text(turn_text(m))
                        st.caption("This turn has non-text parts; only deleting it is possible here.")
                    st.checkbox("Delete this turn", key=f"rv_del_{d.id}_{rev}_{i}")
                st.text_input("Note for the history (optional)", key=f"rv_note_{d.id}_{rev}")
                st.form_submit_button(f"Save as revision {rev + 1}", type="primary", on_click=on_save_edit, args=(d,))
        else:
            render_conversation(d, show_meta=False)
            st.divider()
            a1, a2, a3 = st.columns([1, 1, 3])
            a1.button(
                "✅ Accept", type="primary", width="stretch", disabled=actor is None,
                on_click=decide, args=("accepted", filters), shortcut="A",
            )  # fmt: skip
            a2.button("⏭ Skip", width="stretch", on_click=on_skip, args=(filters,), shortcut="S")
            with a3:
                r1, r2 = st.columns([2, 1.3])
                r1.text_input(
                    "Reason for rejecting",
                    key=f"rv_reason_{d.id}",
                    placeholder="reason for rejecting (type, or pick one below)",
                    label_visibility="collapsed",
                )
                if cfg.reject_reasons:
                    r1.pills(
                        "Common reasons",
                        cfg.reject_reasons,
                        key=f"rv_preset_{d.id}",
                        label_visibility="collapsed",
                    )
                r2.button(
                    "❌ Reject", width="stretch", disabled=actor is None, on_click=on_reject, args=(filters,),
                    shortcut="X",
                )  # fmt: skip
            if cfg.reject_reasons:
                # Keyboard-only rejecting: 1–9 reject with the n-th common reason.
                quick = st.columns(min(len(cfg.reject_reasons), 9))
                for n, (col, why) in enumerate(zip(quick, cfg.reject_reasons[:9], strict=False), 1):
                    col.button(
                        f"Reject: {why}", key=f"rv_quick_{n}", width="stretch", disabled=actor is None,
                        on_click=on_reject_preset, args=(filters, why), shortcut=str(n), type="tertiary",
                    )  # fmt: skip
            n1, n2, n3 = st.columns([1, 1, 3])
            n1.button(
                "← Previous", width="stretch", on_click=on_previous, shortcut="K",
                disabled=not ss.get("rv_back"), key="rv_prev",
            )  # fmt: skip
            n2.button("✏️ Edit", width="stretch", on_click=on_edit, args=(edit_key, True), shortcut="E", key="rv_edit")
            n3.caption(
                "Keyboard: **A** accept · **X** reject (with the reason above) · **1–9** reject with a common "
                "reason · **S** skip to the next · **K** previous · **E** edit (**Esc** stops editing)"
            )
            if ss["rv_status"] != "pending":
                st.button("↩ Back to pending", disabled=actor is None, on_click=decide, args=("pending", filters))

            t1, t2 = st.columns([4, 1], vertical_alignment="bottom")
            chosen = t1.multiselect(
                "Tags",
                sorted(set(cfg.tags) | set(d.tags)),
                default=d.tags,
                accept_new_options=True,
                key=f"rv_tags_{d.id}_{rev}",
            )
            t2.button(
                "Save tags", disabled=actor is None or sorted(chosen) == sorted(d.tags), on_click=on_tags, args=(d,)
            )

            comments = [h for h in d.history if h["kind"] == "comment"]
            with st.form(f"rv_comment_form_{d.id}", clear_on_submit=True):
                st.markdown(f"**Comments ({len(comments)})**")
                for h in comments:
                    st.caption(md_escape(f"{h['actor']} · {h['at'][:16].replace('T', ' ')}"))  # names are data
                    st.text(h["text"])
                st.text_area(
                    "Add a comment",
                    placeholder="a question for a colleague, a note on a fix…",
                    key=f"rv_comment_{d.id}",
                )
                st.form_submit_button("Add comment", on_click=on_comment, args=(d.id,))

            box = st.expander(f"History ({len(d.history)} entries)", key="rv_history_open", on_change="rerun")
            with box:
                if box.open:
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
                            for h in d.history
                        ],
                        hide_index=True,
                        width="stretch",
                    )

st.divider()
# A fixed label: the expander's identity (and so its open state) must not change with the count.
bulk_box = st.expander("Bulk actions on every conversation this filter matches", key="rv_bulk_open", on_change="rerun")
with bulk_box:
    if bulk_box.open:
        st.caption(md_escape(f"{total_text} conversations match: {describe_filters(filters)}"))
        action = st.radio(
            "Action", ["Accept", "Reject", "Add tags", "Remove tags"], horizontal=True, key="rv_bulk_action"
        )
        params: dict[str, Any] = {"filters": filters}
        if action in ("Accept", "Reject"):
            params.update(action="status", status="accepted" if action == "Accept" else "rejected")
            if action == "Reject":
                params["reason"] = st.text_input("Reason for rejecting them all", key="rv_bulk_reason")
        else:
            params.update(
                action="tag_add" if action == "Add tags" else "tag_remove",
                tags=st.multiselect("Tags", cfg.tags, accept_new_options=True, key="rv_bulk_tags"),
            )
        st.button("Count and ask me to confirm", disabled=actor is None, on_click=on_bulk_count, args=(params,))
        pending = ss.get("rv_bulk")
        if pending and pending["filters"] == filters and pending.get("action") == params.get("action"):
            verb = {"status": f"mark {pending.get('status')}", "tag_add": "tag", "tag_remove": "untag"}[
                pending["action"]
            ]
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
                c1.button(
                    f"Confirm: {verb} {n:,} conversations", type="primary", on_click=on_bulk_confirm, args=(verb,)
                )
                c2.button("Cancel", on_click=lambda: ss.pop("rv_bulk", None))
