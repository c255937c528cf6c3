"""Data shown through markdown stays text: md_escape and the guide sanitizer, checked with a
CommonMark parser on generated input (hypothesis) and on known attacks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from workbench.app_pages.common import FlagSpan, flag_spans, highlight_markdown, md_escape, safe_guide_markdown

MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
ATTACKS = [
    "<img src=x onerror=alert(1)>",
    "![t](https://remote.example/t.png)",
    "![t][r]\n\n[r]: https://remote.example/r.png",
    "<script>alert(1)</script>",
    "[click](javascript:alert(1))",
    "<https://remote.example/auto>",
    "    indented <b>code</b>",
    "# heading\n---\n* list\n> quote",
    "&lt;img src=x&gt; &#x3C;b&#x3E;",
    "`code <b>` and ``a ` b`` <i>",
    "\\<img src=x>",
]
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)
# Control characters are replaced or dropped by any markdown renderer; they are kept out of the
# round-trip check (the only-text check gets them).
printable = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=200)
markdownish = st.lists(
    st.sampled_from([*ATTACKS, "`", "``", "![", "<", "\n", "\n\n", "```", "~~~", " ", "a", "\\"]), max_size=25
).map("".join)


def tokens(md: str):
    stack = list(MD.parse(md))
    while stack:
        t = stack.pop()
        yield t
        stack.extend(t.children or [])


def plain(md: str) -> str:
    """What a reader sees: the text of every inline token, line breaks as newlines."""
    out = []
    for block in MD.parse(md):
        if block.type == "inline":
            for t in block.children or []:
                out.append("\n" if t.type in ("softbreak", "hardbreak") else t.content)
            out.append("\n")
    return "".join(out)


@settings(max_examples=150, deadline=None)
@given(st.one_of(text, markdownish))
def test_md_escape_is_only_text(s: str) -> None:
    kinds = {t.type for t in tokens(md_escape(s))}
    assert kinds <= {"paragraph_open", "paragraph_close", "inline", "text", "hardbreak", "softbreak"}, kinds


@settings(max_examples=150, deadline=None)
@given(st.one_of(printable, markdownish))
def test_md_escape_keeps_every_character(s: str) -> None:
    # Leading blanks of a line become no-break spaces; blank lines and blanks at either end of a
    # line are layout, not content.
    def norm(x: str) -> list[str]:
        return [ln.replace("\u00a0", " ").strip(" \t") for ln in x.split("\n") if ln.strip(" \t\u00a0")]

    assert norm(plain(md_escape(s))) == norm(s)


@settings(max_examples=150, deadline=None)
@given(markdownish)
def test_guide_never_loads_anything(s: str) -> None:
    kinds = {t.type for t in tokens(safe_guide_markdown(s))}
    assert not kinds & {"image", "html_inline", "html_block"}


def test_guide_keeps_markdown_and_defuses_images_and_html() -> None:
    g = "# Guide\n\n**Accept** if `<ok>` and see ![diagram](https://x.example/d.png)\n\n<div>raw</div>\n"
    out = safe_guide_markdown(g)
    assert (
        out == "# Guide\n\n**Accept** if `<ok>` and see \\![diagram](https://x.example/d.png)\n\n\\<div>raw\\</div>\n"
    )
    kinds = {t.type for t in tokens(out)}
    assert {"heading_open", "strong_open", "code_inline", "link_open"} <= kinds


def test_highlights_merge_and_stay_escaped() -> None:
    s = "call +1 555 0100 or mail a_b@x.io\nbye"
    spans = [
        FlagSpan(0, "content", 5, 16, "PHONE_NUMBER"),
        FlagSpan(0, "content", 10, 16, "US_SSN"),
        FlagSpan(0, "content", 25, 33, "EMAIL_ADDRESS"),
    ]
    md = highlight_markdown(s, spans)
    assert md == (
        "call :orange-background[\\+1 555 0100] :orange-badge[PHONE\\_NUMBER\\, US\\_SSN] or mail "
        ":orange-background[a\\_b\\@x\\.io] :orange-badge[EMAIL\\_ADDRESS]  \nbye"
    )
    flag = {
        "reason": "pii",
        "details": {"findings": [{"message_index": 1, "start": 0, "end": 3, "entity": "PERSON"}, {"start": 1}]},
    }
    assert flag_spans(flag) == [FlagSpan(1, "content", 0, 3, "PERSON")]
    assert flag_spans({"reason": "x", "details": {"message_index": 0}}) == []
