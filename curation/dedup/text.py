"""What of a conversation is compared, and how: text view, normalisation, segmentation, shingles;
and `word_diff` for a side-by-side view of two texts."""

from __future__ import annotations

import hashlib
import re
import struct
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from curation.records import Conversation

# ---------------------------------------------------------------- text view, normalise, shingles


def _content_text(content: Any) -> str:
    """Message.text for a message dict's content (text, None, or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if isinstance(p, dict) and p.get("text"))


def text_view_dict(content: Mapping[str, Any], view: str = "full", include_system: bool = False) -> str:
    """`text_view` over a conversation's content dict (what the store keeps as JSON)."""
    parts: list[str] = []
    for m in content.get("messages") or ():
        role = m.get("role")
        if view == "user":
            if role != "user":
                continue
        elif role == "system" and not include_system:
            continue
        text = _content_text(m.get("content"))
        if text:
            parts.append(text)
        if view == "full":
            for c in m.get("tool_calls") or ():
                parts.append(f"{c.get('name', '')} {c.get('arguments', '')}")
    return "\n".join(parts)


def text_view(conv: Conversation, view: str = "full", include_system: bool = False) -> str:
    """The text compared for duplicates: every turn's text and tool calls ('full', system prompts
    only when asked), or the user turns alone ('user'), one turn per line."""
    parts: list[str] = []
    for m in conv.messages:
        if view == "user":
            if m.role != "user":
                continue
        elif m.role == "system" and not include_system:
            continue
        text = m.text
        if text:
            parts.append(text)
        if view == "full":
            parts.extend(f"{c.name} {c.arguments}" for c in m.tool_calls)
    return "\n".join(parts)


def normalise(text: str) -> str:
    """NFKC, case-folded, whitespace runs collapsed to one space, trimmed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def normalise_many(texts: Sequence[str]) -> list[str]:
    """`normalise` over a batch: one NFKC and one case-fold call for the whole batch (NUL is a
    starter that nothing composes with, so joining on it changes nothing)."""
    if any("\x00" in t for t in texts):
        return [normalise(t) for t in texts]
    big = unicodedata.normalize("NFKC", "\x00".join(texts)).casefold()
    return [" ".join(t.split()) for t in big.split("\x00")]


# Scripts written without spaces between words (CJK ideographs and kana, Thai, Lao, Myanmar, Khmer).
_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f"
    "\u31a0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f]"
)
UNSPACED_SHARE = 0.3  # a row is shingled by characters when this share of its letters is unspaced script


def segment(text: str) -> str:
    """A normalised text with every character of an unspaced script standing alone, when at least
    `UNSPACED_SHARE` of its non-space characters are such; otherwise the text unchanged. Word
    n-grams of the result are character n-grams of the Chinese/Japanese/Thai runs."""
    if text.isascii():
        return text
    n = len(_UNSPACED.findall(text))
    if not n or n < UNSPACED_SHARE * (len(text) - text.count(" ")):
        return text
    return " ".join(_UNSPACED.sub(lambda m: f" {m.group()} ", text).split())


def shingles(text: str, n: int = 5) -> list[str]:
    """Distinct word n-grams of a normalised text, in order of first appearance. A text shorter
    than n words is one shingle (itself); an empty text has none."""
    if not text:
        return []
    words = text.split(" ")
    if len(words) <= n:
        return [text]
    return list(dict.fromkeys(" ".join(words[i : i + n]) for i in range(len(words) - n + 1)))


def sha1_hash32(data: bytes) -> int:
    """datasketch's default hash: the first 4 bytes of sha1, little-endian."""
    return int(struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0])


def norm_hash(text: str) -> int:
    """64 bits of sha256 of the normalised text: equal values are exact duplicates."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def answer_chars(conv: Conversation | Mapping[str, Any]) -> int:
    """Characters of assistant text (the 'longest answer' keeper criterion)."""
    if isinstance(conv, Conversation):
        return sum(len(m.text) for m in conv.messages if m.role == "assistant")
    return sum(len(_content_text(m.get("content"))) for m in conv.get("messages") or () if m.get("role") == "assistant")


def word_diff(a: str, b: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """Two texts as (piece, differs) runs for a side-by-side view: words are compared after
    normalisation, whitespace is kept as it was. A piece is a word or the whitespace after it."""
    import difflib
    import re

    def pieces(t: str) -> tuple[list[str], list[str]]:
        toks = re.findall(r"\S+\s*", t)
        lead = re.match(r"\s*", t)
        if lead and lead.group(0) and toks:
            toks[0] = lead.group(0) + toks[0]
        return toks, [normalise(x) for x in toks]

    pa_, na = pieces(a)
    pb, nb = pieces(b)
    out_a = [(x, True) for x in pa_]
    out_b = [(x, True) for x in pb]
    for block in difflib.SequenceMatcher(None, na, nb, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            out_a[block.a + k] = (pa_[block.a + k], False)
            out_b[block.b + k] = (pb[block.b + k], False)

    def merge(runs: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
        merged: list[tuple[str, bool]] = []
        for text, d in runs:
            if merged and merged[-1][1] == d:
                merged[-1] = (merged[-1][0] + text, d)
            else:
                merged.append((text, d))
        return merged

    return merge(out_a), merge(out_b)
