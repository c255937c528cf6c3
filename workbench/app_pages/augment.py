"""Augment: paraphrase user turns through an OpenAI-compatible endpoint (dry run, preview on a few
rows, run with progress), then review each paraphrase beside its parent and accept or reject it.
The endpoints and their API keys come from the server's configuration (workbench/llm_endpoints.py);
the page picks one by name and never sees a key, its variable or whether it is set."""

from __future__ import annotations

import streamlit as st

from curation.errors import SiftError
from curation.llm import LLMError
from workbench.app_pages.common import (
    get_wb,
    md_escape,
    render_message,
    require_actor,
    run,
    secrets_mapping,
)
from workbench.llm_endpoints import configured_endpoints, stored_endpoints
from workbench.services.augment import AugmentReport, ParentPreview

wb = get_wb()
st.title("Augment")
st.caption(
    "Paraphrases of user turns become new pending conversations in their parent's family (a freeze keeps "
    "the family on one side). `sift serve-llm` serves the embedded model locally."
)

st.subheader("Endpoint")
try:
    endpoints = configured_endpoints(secrets_mapping(), stored=stored_endpoints(wb.store))
except LLMError as e:
    st.error(md_escape(str(e)))
    st.stop()
c1, c2 = st.columns([3, 2])
by_name = {e.name: e for e in endpoints}
chosen = c1.selectbox(
    "Endpoint",
    list(by_name),
    format_func=lambda name: by_name[name].label,
    key="aug_endpoint_name",
    help="Set on the server: $SIFT_LLM_ENDPOINT, [llm.endpoints.NAME] in .streamlit/secrets.toml, `sift llm-endpoint add`.",
)
endpoint = by_name.get(chosen or "", endpoints[0])
model = c2.text_input("Model", value=endpoint.model or "", key="aug_model", placeholder="first the endpoint lists")
st.caption("The API key, if any, is read on the server from its configuration; it is never shown or stored.")
if st.button("Check endpoint"):
    require_actor()  # calls out: nobody unidentified may make the app send a request
    names = run(wb.llm_models, model=model or None, max_retries=0, **endpoint.options())
    if names is not None:
        st.success(md_escape(f"Reachable; serves: {', '.join(names) or '(no models)'}"))  # the endpoint's words

st.subheader("Paraphrase")
p1, p2, p3, p4, p5 = st.columns(5)
n = int(p1.number_input("Variations per parent", min_value=1, max_value=10, value=3, key="aug_n"))
limit = int(p2.number_input("Parents (at most)", min_value=1, value=5, key="aug_limit"))
turns = p3.selectbox("User turns", ["first", "all"], key="aug_turns")
temperature = float(p4.number_input("Temperature", min_value=0.0, max_value=2.0, value=0.7, step=0.1, key="aug_temp"))
max_tokens = int(p5.number_input("Max tokens", min_value=8, value=256, step=8, key="aug_max_tokens"))
check_pii = st.checkbox("Reject variations that add PII (Presidio; slower)", value=True, key="aug_pii")
# A slow endpoint (the embedded model on a CPU answers a few tokens a second) needs patience, not
# more requests at once: these go to the LLM client as they are.
q1, q2, q3, q4 = st.columns(4)
timeout_s = float(
    q1.number_input(
        "Timeout (s)", min_value=1.0, max_value=3600.0, value=120.0, step=30.0, key="aug_timeout",
        help="Seconds to wait for one answer. The embedded model on a CPU needs minutes for long answers.",
    )
)  # fmt: skip
retries = int(
    q2.number_input(
        "Retries", min_value=0, max_value=10, value=1, key="aug_retries",
        help="Retries after a timeout, a 429 or a 5xx; a timed-out request is dropped by `sift serve-llm`.",
    )
)  # fmt: skip
concurrency = int(
    q3.number_input(
        "Requests at once", min_value=1, max_value=64, value=4, key="aug_concurrency",
        help="Requests in flight together. The embedded server answers one at a time: 1 is enough there.",
    )
)  # fmt: skip
preview_rows = int(q4.number_input("Rows to preview", min_value=1, max_value=10, value=2, key="aug_preview_rows"))
options = {
    **endpoint.options(), "model": model or None, "n": n, "turns": turns,
    "temperature": temperature, "max_tokens": max_tokens, "check_pii": check_pii,
    "timeout_s": timeout_s, "max_retries": retries, "concurrency": concurrency,
}  # fmt: skip


def llm_error(e: BaseException) -> None:
    """An endpoint error, pointing at the field on this page that addresses it."""
    msg = str(e)
    if "raise the timeout" in msg:
        msg += " (Timeout and Max tokens are above; the embedded model on a CPU needs minutes for 256 tokens)"
    st.error(md_escape(msg))  # the endpoint's words: data


b1, b2, b3, _ = st.columns([1, 1, 1, 4])
if b1.button("Dry run"):
    require_actor()
    est = run(wb.augment, limit=limit, dry_run=True, **options)
    if est is not None:
        t = est.estimated_tokens or {}
        st.info(
            f"{est.parents} parents, {est.requested} variations: {est.calls} calls to make "
            f"({est.cached_calls} already cached), about {t.get('prompt')} prompt tokens and at most "
            f"{t.get('completion_max')} completion tokens."
        )
if b2.button(f"Preview {preview_rows} row{'s' if preview_rows > 1 else ''}", key="aug_preview_button"):
    require_actor()  # calls out and caches the answers in the store
    with st.spinner(f"Asking the endpoint (up to {timeout_s:g} s per answer)…"):
        try:
            st.session_state["aug_preview"] = wb.augment_preview(limit=min(preview_rows, limit), **options)
        except SiftError as e:
            llm_error(e)
if st.session_state.pop("aug_running", None):
    st.warning(
        "The last run was stopped. The parents finished before the stop are saved; answers already received "
        "are cached, so running again resumes where it stopped."
    )
if b3.button("Run", type="primary"):
    actor = require_actor()
    st.session_state["aug_running"] = True
    bar = st.progress(0.0, text="starting…")
    # Any click reruns the page, which stops this run between two answers; this button says so.
    st.button("Cancel the run", key="aug_cancel")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"{done} of {total} parents")

    try:
        result: AugmentReport | None = wb.augment(limit=limit, actor=actor, progress=progress, **options)
    except SiftError as e:
        llm_error(e)
        result = None
    st.session_state.pop("aug_running", None)
    if result is not None:
        st.session_state.pop("aug_preview", None)
        st.session_state["aug_last_run"] = result.run_id
        rejected = ", ".join(f"{k} {v}" for k, v in result.rejected.items()) or "none"
        (st.success if result.kept else st.warning)(
            f"{result.kept} of {result.requested} variations kept from {result.parents} parents "
            f"(rejected: {rejected}); {result.calls} calls, {result.cached_calls} from the cache."
        )

last_run = st.session_state.get("aug_last_run")
if last_run:
    rejects = wb.augment_rejects(last_run)
    if rejects:
        with st.expander(f"Variations the last run did not keep ({len(rejects)}), with the reason", expanded=True):
            st.dataframe(
                [
                    {
                        "parent": r["parent_id"],
                        "variation": r["variation"],
                        "reason": r["reason"],
                        "text": r["text"] or "",
                    }
                    for r in rejects
                ],
                hide_index=True,
                width="stretch",
            )

preview: list[ParentPreview] | None = st.session_state.get("aug_preview")
if preview:
    st.markdown("#### Preview (nothing saved)")
    for p in preview:
        with st.container(border=True):
            st.caption(md_escape(f"parent {p.parent_id}"))
            for turn in p.turns:
                st.text(turn)
            rows = [{"variation": k["variation"], "outcome": "kept", "text": " / ".join(k["turns"])} for k in p.kept]
            rows += [{"variation": r["variation"], "outcome": r["reason"], "text": r["text"] or ""} for r in p.rejected]
            st.dataframe(sorted(rows, key=lambda r: r["variation"]), hide_index=True, width="stretch")

st.subheader("Review paraphrases")
show = st.selectbox("Children", ["pending", "any", "accepted", "rejected"], key="aug_show")
fams = wb.augment_families(limit=10, status=None if show == "any" else show)
if not fams.parents:
    st.caption("No paraphrases to show.")
    st.stop()
st.caption(f"{fams.total} parents with paraphrases ({show}); the 10 most recent are shown.")
for fam in fams.parents:
    parent = wb.show(fam.id)
    with st.container(border=True):
        left, right = st.columns(2)
        with left:
            st.markdown(f"**Parent** {md_escape(fam.id)} · {md_escape(fam.status)}")
            for m in parent.messages:
                if m["role"] == "user":
                    render_message(m)
        with right:
            children = [c for c in fam.children if show == "any" or c["status"] == show]
            for child in children:
                cid = child["id"]
                st.markdown(
                    f"**Paraphrase** {md_escape(cid)} · {md_escape(child['status'])} · variation {child['variation']}"
                )
                for m in child["messages"]:
                    if m["role"] == "user":
                        render_message(m)
                a, r, why = st.columns([1, 1, 3])
                reason = why.text_input(
                    "Reason", key=f"aug_reason_{cid}", value="does not keep the meaning", label_visibility="collapsed"
                )
                if a.button("Accept", key=f"aug_accept_{cid}"):
                    actor = require_actor()
                    if run(wb.accept, [cid], actor=actor) is not None:
                        st.rerun()
                if r.button("Reject", key=f"aug_reject_{cid}"):
                    actor = require_actor()
                    if run(wb.reject, [cid], reason or "rejected paraphrase", actor=actor) is not None:
                        st.rerun()
            if fam.rejects:
                with st.expander(f"{len(fam.rejects)} variation(s) filtered out"):
                    st.dataframe(
                        [
                            {"variation": x["variation"], "reason": x["reason"], "text": x["text"] or ""}
                            for x in fam.rejects
                        ],
                        hide_index=True,
                        width="stretch",
                    )
