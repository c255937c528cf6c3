"""Data as text: markdown escaping so that nothing a row holds can form a link, image, HTML or
emphasis; a review guide that loads nothing; escaped links between pages."""

from __future__ import annotations

import functools
import string
from typing import Any

import streamlit as st

_ESCAPE = frozenset(string.punctuation)


def md_escape(text: str, *, at_line_start: bool = True) -> str:
    """Text that st.markdown shows exactly as written: every ASCII punctuation character is
    backslash-escaped (so no link, image, HTML, math, directive or emphasis can form), spaces that
    start a line become no-break spaces (no code block) and each line break is kept.
    `at_line_start=False` for a piece that continues a line."""
    out = []
    for i, line in enumerate(text.split("\n")):
        body = line.lstrip(" \t") if (i > 0 or at_line_start) else line
        lead = line[: len(line) - len(body)].replace("\t", "    ").replace(" ", "\u00a0")
        out.append(lead + "".join("\\" + ch if ch in _ESCAPE else ch for ch in body))
    return "  \n".join(out)


@functools.lru_cache(maxsize=32)
def safe_guide_markdown(md: str) -> str:
    """A review guide as markdown that loads nothing: raw HTML and images are escaped outside code
    (an image becomes a plain link to its address). If a check of the result still finds an image
    or HTML, the whole guide is shown escaped, as text."""
    out: list[str] = []
    fence: str | None = None
    for line in md.split("\n"):
        stripped = line.lstrip(" ")
        if fence is not None:
            out.append(line)
            if stripped.startswith(fence) and not stripped[len(fence) :].strip(fence[0]).strip():
                fence = None
            continue
        if stripped[:3] in ("```", "~~~") and len(line) - len(stripped) < 4:
            char = stripped[0]
            fence = stripped[: len(stripped) - len(stripped.lstrip(char))]
            out.append(line)
            continue
        out.append(_escape_outside_code_spans(line))
    result = "\n".join(out)
    return result if _loads_nothing(result) else md_escape(md)


def _escape_outside_code_spans(line: str) -> str:
    out = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "`":
            j = i
            while j < len(line) and line[j] == "`":
                j += 1
            ticks = line[i:j]
            k = line.find(ticks, j)
            while k != -1 and (line[k + len(ticks) : k + len(ticks) + 1] == "`" or line[k - 1] == "`"):
                k = line.find(ticks, k + 1)
            if k == -1:
                out.append(ticks)
                i = j
            else:
                out.append(line[i : k + len(ticks)])
                i = k + len(ticks)
            continue
        if ch == "\\" and i + 1 < len(line):
            out.append(line[i : i + 2])
            i += 2
            continue
        if ch == "<" or (ch == "!" and line[i + 1 : i + 2] == "["):
            out.append("\\" + ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _loads_nothing(md: str) -> bool:
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).parse(md)
    stack = list(tokens)
    while stack:
        t = stack.pop()
        if t.type in ("image", "html_inline", "html_block"):
            return False
        stack.extend(t.children or [])
    return True


def page_link(url_path: str, label: str, container: Any = None, **params: str) -> None:
    """A link to another page of the app by its url path (e.g. "review", with ?id=…): a plain
    relative link, so it also works where a page runs alone (AppTest). The label is escaped, the
    parameters URL-encoded: data in them cannot form markup."""
    from urllib.parse import urlencode

    query = f"?{urlencode(params)}" if params else ""
    (container or st).markdown(f"[{md_escape(label, at_line_start=False)}]({url_path}{query})")
