"""The UI cannot be turned against its users (issue 10): conversation content and every other
piece of imported or typed data, rendered by every page (AppTest), never becomes HTML, an image or
a script link; no page uses unsafe_allow_html, st.html or components; uploaded file names cannot
write outside the upload folder, and oversized uploads are refused with a clear message.

Budget: `SIFT_FUZZ_EXAMPLES` (default 60): twice as many batches of upload names.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

import workbench
from tests.conftest import ROOT, write
from tests.reliability_figures import record
from workbench import uploads

PAGES = ROOT / "workbench" / "app_pages"
FUZZ = int(os.environ.get("SIFT_FUZZ_EXAMPLES", "60"))
EVIL = "evil.example"
PAYLOAD = (
    f"<img src=x onerror=alert(1)> ![p](https://{EVIL}/p.png) [c](javascript:alert(1)) "
    f"<script>alert(2)</script> <https://{EVIL}/auto> :red[x] $x$ ![r][ref]\n\n[ref]: https://{EVIL}/r.png"
)
SHORT = f"<b>b</b>![i](https://{EVIL}/i.png)"  # for fields that keep one line
MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
CHECKED: dict[str, int] = {}


def dangers(md: str) -> list[str]:
    """What a markdown string would do beyond showing text: raw HTML, images, script or remote links."""
    out = []
    stack = list(MD.parse(md))
    while stack:
        t = stack.pop()
        if t.type == "image" or (t.type.startswith("html") and re.search(r"<(/?b|img|script)\b", t.content)):
            out.append(f"{t.type}: {t.content or t.attrs}")
        if t.type == "link_open":
            href = str(t.attrs.get("href", ""))
            if href.startswith(("javascript:", "data:")) or EVIL in href:
                out.append(f"link: {href}")
        stack.extend(t.children or [])
    return out


def markdown_strings(at: AppTest) -> list[tuple[str, str]]:
    """Every string a page hands to Streamlit's markdown renderer: markdown, captions, alerts,
    headings, and the labels and help of widgets, expanders, tabs and popovers."""
    out: list[tuple[str, str]] = []
    for node in at._tree:  # every block and element, depth first
        proto = getattr(node, "proto", None)
        if proto is None:
            continue
        fields = proto.DESCRIPTOR.fields_by_name
        kind = getattr(node, "type", "?")
        if (
            kind
            in (
                "markdown",
                "caption",
                "latex",
                "error",
                "warning",
                "info",
                "success",
                "title",
                "header",
                "subheader",
                "toast",
            )
            and "body" in fields
        ):
            out.append((kind, proto.body))
        for f in ("label", "help", "placeholder"):
            if f in fields and isinstance(getattr(proto, f), str):
                out.append((f"{kind}.{f}", getattr(proto, f)))
        for block in ("expandable", "tab", "popover"):
            if block in fields and proto.HasField(block):
                out.append((f"{block}.label", getattr(proto, block).label))
    return out


def texts(at: AppTest) -> str:
    """What pages show as plain text (st.text, st.code, tables): where the payload should be."""
    parts = [t.value for t in at.text] + [c.value for c in at.code]
    parts += [df.value.to_csv() for df in at.dataframe]
    return "\n".join(parts)


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch) -> dict[str, Any]:
    """A store whose every piece of data carries the payload."""
    store = tmp_path / "ui.duckdb"
    monkeypatch.setenv("SIFT_STORE", str(store))
    monkeypatch.setenv("SIFT_REVIEWERS", str(tmp_path / "no-reviewers.toml"))
    wb = workbench.open(store)

    def conv(i: int) -> dict[str, Any]:
        return {
            "messages": [
                {"role": "system", "content": f"system {i} {PAYLOAD}"},
                {"role": "user", "content": f"user {i} {PAYLOAD}", "name": SHORT},
                {"role": "assistant", "content": None, "reasoning_content": f"thinking {PAYLOAD}",
                 "tool_calls": [{"id": f"call{SHORT}", "type": "function",
                                 "function": {"name": f"lookup{SHORT}", "arguments": json.dumps({"q": PAYLOAD})}}]},
                {"role": "tool", "tool_call_id": f"call{SHORT}", "content": f"result {PAYLOAD}"},
                {"role": "assistant", "content": f"answer {i} {PAYLOAD} the same long closing words for every copy"},
            ],
            "tools": [{"type": "function", "function": {"name": f"lookup{SHORT}", "description": PAYLOAD, "parameters": {}}}],
            "note": PAYLOAD,
        }  # fmt: skip

    name = "x![a](evil.example-p.png)<b>x<b>[l](javascript:alert(1)).jsonl"
    rows = [json.dumps(conv(i)) for i in range(3)] + [f"{{broken {PAYLOAD}"]
    wb.import_files([write(tmp_path / name, "\n".join(rows) + "\n")], licence=SHORT, actor=f"loader{SHORT}")
    ids = [c["id"] for c in wb.list(limit=10).conversations]
    who = f"ana{SHORT}"
    wb.tag(ids[:2], [f"tag{SHORT}"], actor=who)
    wb.comment(ids[0], f"comment {PAYLOAD}", actor=who)
    wb.reject([ids[2]], f"reason {PAYLOAD}", actor=who)
    wb.accept(ids[:1], actor=who)
    first = wb.show(ids[0])
    text = first.messages[1]["content"]
    at = text.index("<img")
    wb.store.start_stage_run("ui-1", "pii", {}, actor=who)
    wb.store.replace_flags(
        "pii",
        "ui-1",
        [{"conversation_id": ids[0], "revision": 1, "reason": f"pii_found{SHORT}", "severity": "warning",
          "message": f"found {PAYLOAD}", "details": {"findings": [
              {"message_index": 1, "field": "content", "start": at, "end": at + 30, "entity": f"E{SHORT}"}]}}],
    )  # fmt: skip
    wb.edit(
        ids[1],
        [*first.messages[:-1], {"role": "assistant", "content": f"edited {PAYLOAD}"}],
        base_revision=1,
        actor=who,
    )
    if hasattr(wb, "dedup"):
        wb.dedup(threshold=0.5, actor=who)
    wb.freeze("v1", eval_fraction=0.0, include="not-rejected", actor=who, exclude_unresolved_pii=False)
    return {"wb": wb, "ids": ids, "who": who}


PAGE_SETUP: dict[str, Any] = {
    "browse.py": lambda at, ids: at.text_input[2].input(ids[0]),
    "lineage.py": lambda at, ids: at.text_input(key="lineage_id").input(ids[1]),
}


@pytest.mark.parametrize("page", sorted(p.name for p in PAGES.glob("*.py") if p.name != "__init__.py"))
def test_pages_render_data_as_text(hostile: dict[str, Any], page: str) -> None:
    at = AppTest.from_file(str(PAGES / page), default_timeout=90)
    at.session_state["reviewer"] = hostile["who"]
    at.run()
    if page in PAGE_SETUP:
        PAGE_SETUP[page](at, hostile["ids"])
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    strings = markdown_strings(at)
    found = [(kind, s[:200], d) for kind, s in strings for d in dangers(s)]
    assert not found, found
    CHECKED[page] = len(strings)
    record(f"UI renders data as text: {page}", markdown_strings_checked=len(strings), injections=0)
    if page in ("browse.py", "lineage.py", "review.py"):
        shown = texts(at) + "\n".join(s for _, s in strings)
        assert "onerror" in shown and EVIL in shown, f"{page} does not show the conversation at all"


def test_no_page_renders_raw_html() -> None:
    sources = {p: p.read_text() for p in [*PAGES.rglob("*.py"), ROOT / "streamlit_app.py"]}  # common/ too
    banned = re.compile(r"unsafe_allow_html\s*=\s*True|st\.html\(|components\.v1|st\.components|\.html\(")
    hits = [f"{p.name}:{m.group(0)}" for p, src in sources.items() for m in banned.finditer(src)]
    assert not hits, hits


# ---------------------------------------------------------------- uploads

names = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(["..", ".", "/", "\\", "a", "x.jsonl", "\x00", "~", "C:", "é", ".json", " "]), max_size=30
    ).map("".join),
    st.text(alphabet="./\\", max_size=20),
    st.just("a" * 400 + ".jsonl"),
    st.just("é" * 300 + ".json"),
)


@settings(max_examples=FUZZ * 2, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(names, min_size=1, max_size=5))
def test_upload_names_stay_in_the_folder(batch: list[str]) -> None:
    CHECKED["upload_names"] = CHECKED.get("upload_names", 0) + 1
    with tempfile.TemporaryDirectory() as outside:
        os.environ["TMPDIR"] = outside
        tempfile.tempdir = None  # read TMPDIR again
        try:
            ups = [uploads.Upload(n, 3, lambda n=n: n.encode("utf-8", "replace")[:50] or b"x") for n in batch]
            with uploads.saved(ups) as paths:
                folder = paths[0].parent
                assert folder.parent == Path(outside).resolve() or folder.parent == Path(outside)
                assert len(set(paths)) == len(paths)  # no upload overwrites another
                for p, n in zip(paths, batch, strict=True):
                    assert p.parent == folder and p.name not in (".", "..") and not p.name.startswith(".")
                    assert len(p.name.encode()) <= 255 and "/" not in p.name and "\x00" not in p.name
                    assert p.read_bytes() == (n.encode("utf-8", "replace")[:50] or b"x")
                written = sorted(str(x) for x in Path(outside).rglob("*"))
                assert written == sorted([str(folder), *map(str, paths)])
            assert not any(Path(outside).iterdir())  # nothing left behind
            if CHECKED["upload_names"] == FUZZ * 2:
                record("upload names stay in the folder", batches=CHECKED["upload_names"], escapes=0, overwrites=0)
        finally:
            os.environ.pop("TMPDIR", None)
            tempfile.tempdir = None


def test_upload_page_refuses_oversized_and_keeps_names_safe(tmp_path: Path, monkeypatch) -> None:
    store = tmp_path / "up.duckdb"
    monkeypatch.setenv("SIFT_STORE", str(store))
    monkeypatch.setenv("SIFT_REVIEWERS", str(tmp_path / "no-reviewers.toml"))
    monkeypatch.setenv("SIFT_MAX_UPLOAD_MB", "0.01")  # 10 KiB
    uploads_dir = tmp_path / "tmp"
    uploads_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(uploads_dir))
    row = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    at = AppTest.from_file(str(PAGES / "import_page.py"), default_timeout=60)
    at.session_state["reviewer"] = "ana"
    at.run()
    big = ("x" * 20_000).encode()
    evil_name = "../../![i](https:__evil.example_i.png).jsonl"
    at.file_uploader[0].set_value([(evil_name, big, "application/json")]).run()
    next(b for b in at.button if b.label == "Import uploaded files").click().run()
    assert not at.exception
    (err,) = [e.value for e in at.error]
    shown = re.sub(r"\\(.)", r"\1", err)  # md_escape undone: what the reader sees
    assert shown == f"Refused: {evil_name!r} larger than 0.01 MB (SIFT_MAX_UPLOAD_MB); nothing was imported"
    assert not dangers(err)
    assert workbench.open(store).stats().conversations == 0 and not any(uploads_dir.iterdir())
    # Two small files with hostile names that reduce to the same name: both land, inside the folder.
    other = json.dumps({"messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]})
    files = [
        ("../../../etc/x.jsonl", row.encode(), "application/json"),
        ("..\\x.jsonl", other.encode(), "application/json"),
    ]
    at.file_uploader[0].set_value(files).run()
    next(b for b in at.button if b.label == "Import uploaded files").click().run()
    assert not at.exception and not at.error
    wb = workbench.open(store)
    assert wb.stats().conversations == 2
    assert sorted(s["name"] for s in wb.sources()) == ["x-2.jsonl", "x.jsonl"]
    # The store keeps the upload's own base name (made distinct), not the temporary copy's path.
    assert all(s["path"] == s["name"] for s in wb.sources())
    assert not any(uploads_dir.iterdir())  # the uploaded copies are gone after the import
    assert not (tmp_path.parent / "etc").exists()
