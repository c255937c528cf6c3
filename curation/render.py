"""The renderer: a conversation as the model sees it, and which of its tokens carry loss.

Validation (`curation.validate`) and the trainer (`trainer.data`) both use this module, so what
is validated is what is trained. `ChatRenderer` wraps a tokenizer and its chat template (compiled
once) and tokenizes whole batches; `render_conversation` renders one conversation, locates each
turn's text in the render, and computes the loss-carrying character spans:

- from the template's `{% generation %}` blocks when it has them (what
  `return_assistant_tokens_mask=True` uses);
- otherwise from rendering prefixes: an assistant turn starts where `messages[:i]` rendered with
  the generation prompt ends, and ends where `messages[:i+1]` ends.

Loading a tokenizer stays in `load_renderer` (one small function), so how it is loaded can change
without touching the rest.
"""

from __future__ import annotations

import bisect
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from curation.errors import StageError
from curation.records import ContentPart, Conversation, Message, canonical_json, sha256_hex

# Bump when a check changes: cached measurements of older versions are then recomputed.
CHECKS_VERSION = 2

# What happens to a leading system prompt before rendering (see `apply_system_policy`).
SYSTEM_POLICIES = ("keep", "fold", "drop")

# Probe turns for what a template writes around an answer (nothing a real answer would be).
_PROBE_USER = "Sift probe question"
_PROBE_ANSWER = "Sift probe answer"
_MARKUP_RE = re.compile(r"<[^<>\s]{1,40}>|\[/?[A-Z_]{2,20}\]")
_ROLE_WORDS_RE = re.compile(r"^\s*(system|user|assistant|model|human|developer)\b", re.IGNORECASE)


class ValidateError(StageError):
    """The tokenizer or template cannot be used (no template, no fast tokenizer, does not compile)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """A problem found in a conversation, before a config gives it a severity."""

    reason: str
    message: str
    details: dict[str, Any] | None = None


def _turn(i: int, m: Message) -> str:
    return f"turn {i + 1} ({m.role})"


def _tool_schemas(conv: Conversation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for t in conv.tools:
        fn = t.get("function") if isinstance(t.get("function"), dict) else t
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            out[fn["name"]] = fn.get("parameters")
    return out


# ---------------------------------------------------------------- template rendering


def to_template_messages(conv: Conversation) -> list[dict[str, Any]]:
    """Messages as chat templates expect them (what a trainer passes to `apply_chat_template`).

    Content is kept as is (a tool-call turn's missing content stays missing); tool calls take the
    OpenAI shape with arguments as an object when they parse (the Hugging Face convention),
    otherwise as the text written; reasoning goes under `reasoning_content` (and `thinking`, as
    transformers aliases it).
    """
    return [m.to_openai(template=True) for m in conv.messages]


@dataclass(frozen=True, slots=True)
class Identity:
    """Which tokenizer and template results were computed with (the cache key of a measurement)."""

    tokenizer_sha256: str
    template_sha256: str
    key: str


_GENERATION_RE = re.compile(r"\{%-?\s*generation\s*-?%\}")


def _sha_of(template: str | dict[str, str]) -> str:
    return sha256_hex(template if isinstance(template, str) else canonical_json(template))


class _Encoded:
    """Token count of one rendered text plus the map from character positions to tokens."""

    __slots__ = ("_offsets", "_starts", "n", "pieces")

    def __init__(self, n: int, pieces: list[tuple[int, int, int, Any]], offsets: dict[int, Any]) -> None:
        self.n = n
        # (char start, char end, first token, Encoding or None for one added token)
        self.pieces = pieces
        self._starts = [p[0] for p in pieces]
        self._offsets = offsets  # shared by a batch: id(Encoding) → (Encoding, starts, ends)

    def _piece(self, pos: int) -> tuple[int, int, int, Any]:
        k = max(0, bisect.bisect_right(self._starts, pos) - 1)
        return self.pieces[k]

    def _bounds(self, enc: Any) -> tuple[list[int], list[int]]:
        hit = self._offsets.get(id(enc))
        if hit is None:
            offs = enc.offsets
            hit = self._offsets[id(enc)] = (enc, [o[0] for o in offs], [o[1] for o in offs])
        return hit[1], hit[2]

    def first_token_ending_after(self, pos: int) -> int:
        """Index of the first token whose text ends after character `pos` (the token holding it)."""
        if pos < 0:
            return 0
        cs, ce, t0, enc = self._piece(pos)
        if pos >= ce:
            return t0 + (1 if enc is None else len(enc))
        if enc is None:
            return t0
        k = enc.char_to_token(pos - cs)
        if k is None:  # a character no token covers: fall back to the offsets
            k = bisect.bisect_right(self._bounds(enc)[1], pos - cs)
        return t0 + k

    def tokens_starting_before(self, pos: int) -> int:
        """How many tokens start before character `pos`."""
        if pos <= 0:
            return 0
        cs, ce, t0, enc = self._piece(pos - 1)
        if enc is None or pos >= ce:
            return t0 + (1 if enc is None else len(enc))
        k = enc.char_to_token(pos - cs)
        if k is None:
            return t0 + bisect.bisect_left(self._bounds(enc)[0], pos - cs)
        start = enc.token_to_chars(k)[0]
        return t0 + k + (1 if start < pos - cs else 0)

    def token_range(self, start: int, end: int) -> tuple[int, int]:
        """Tokens covering characters [start, end), the way `return_assistant_tokens_mask` maps them."""
        if end <= start:
            return (0, 0)
        a = self.first_token_ending_after(start)
        b = self.first_token_ending_after(end - 1) + 1
        return (a, max(a, min(b, self.n)))


class ChatRenderer:
    """A tokenizer and its chat template, compiled once, rendering and tokenizing batches.

    Build it with `ChatRenderer(tokenizer)` from any transformers tokenizer with a fast backend
    (`curation.models.load_tokenizer()` for the embedded model).
    """

    def __init__(self, tokenizer: Any, name: str | None = None, system_prompt: str = "keep") -> None:
        if system_prompt not in SYSTEM_POLICIES:
            raise ValidateError(
                f"system-prompt policy must be one of {', '.join(SYSTEM_POLICIES)}, got {system_prompt!r}"
            )
        self.system_prompt = system_prompt
        self.tokenizer = tokenizer
        self.name = name or getattr(tokenizer, "name_or_path", "") or "tokenizer"
        template = getattr(tokenizer, "chat_template", None)
        if not template:
            raise ValidateError(
                f"{self.name}: the tokenizer has no chat template, so conversations cannot be rendered "
                "as the model will see them; pick a chat (instruct) model"
            )
        self.template: str | dict[str, str] = template
        backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
        if backend is None or not hasattr(backend, "encode_batch"):
            raise ValidateError(f"{self.name}: validation needs a fast tokenizer (a tokenizer.json)")
        self._tk = backend
        self.kwargs = dict(tokenizer.special_tokens_map)
        tok_sha = sha256_hex(backend.to_str())
        tmpl_sha = _sha_of(template)
        self.identity = Identity(
            tok_sha,
            tmpl_sha,
            sha256_hex(
                canonical_json(
                    [tok_sha, tmpl_sha, self.kwargs, CHECKS_VERSION]
                    + ([{"system_prompt": system_prompt}] if system_prompt != "keep" else [])
                )
            )[:32],
        )
        self._compiled: dict[str, Any] = {}
        self._markers: dict[str, tuple[str, str] | None] = {}
        self._default_system: dict[str, str] = {}
        self._generation: dict[str, bool] = {}
        self._split_re = self._piece_splitter()
        self._piece_cache: dict[str, Any] = {}
        self._verified = False

    # -- templates

    def _plain(self) -> Any:
        """The fast backend with no padding or truncation switched on. It is the tokenizer object's own
        backend, and a padded `tokenizer(texts, padding=True)` call elsewhere (the trainer's
        generation batches) leaves padding on in it: every count would then include pad tokens."""
        if getattr(self._tk, "padding", None):
            self._tk.no_padding()
        if getattr(self._tk, "truncation", None):
            self._tk.no_truncation()
        return self._tk

    def template_for(self, tools: Sequence[dict[str, Any]] | None) -> str:
        """The template `apply_chat_template` would pick (a tool-use template when tools are given)."""
        return self.tokenizer.get_chat_template(None, list(tools) if tools else None)

    def _compile(self, template: str) -> Any:
        compiled = self._compiled.get(template)
        if compiled is None:
            try:
                from transformers.utils.chat_template_utils import _compile_jinja_template
            except ImportError as e:  # pragma: no cover - transformers moved its template compiler
                raise ValidateError(f"this transformers version has no chat-template compiler we know ({e})") from e
            try:
                compiled = _compile_jinja_template(template)
            except Exception as e:
                raise ValidateError(f"{self.name}: the chat template does not compile: {e}") from None
            self._compiled[template] = compiled
        return compiled

    def has_generation_blocks(self, template: str) -> bool:
        hit = self._generation.get(template)
        if hit is None:
            hit = self._generation[template] = bool(_GENERATION_RE.search(template))
        return hit

    def end_of_turn(self, template: str) -> tuple[str, str] | None:
        """(closing, stop): what the template writes after an answer's text (`<|im_end|>\\n`) and
        its end-of-turn marker (`<|im_end|>`), found by rendering a probe exchange; the
        tokenizer's eos token when the probe tells nothing; None when neither is known."""
        if template in self._markers:
            return self._markers[template]
        found: tuple[str, str] | None = None
        user = {"role": "user", "content": _PROBE_USER}
        answer = {"role": "assistant", "content": _PROBE_ANSWER}
        for head in ([], [{"role": "system", "content": "Sift probe system"}]):
            try:
                last = self.render([*head, user, answer], None, template=template)
            except Exception:
                continue
            closing = last[last.rfind(_PROBE_ANSWER) + len(_PROBE_ANSWER) :]
            try:  # an answer followed by another exchange: what every turn ends with, not only the last
                two = self.render([*head, user, answer, user, answer], None, template=template)
                after = two[two.find(_PROBE_ANSWER) + len(_PROBE_ANSWER) :]
            except Exception:
                after = closing
            k = 0
            while k < min(len(closing), len(after)) and closing[k] == after[k]:
                k += 1
            common = closing[:k]
            if "<" in common and ">" not in common[common.rfind("<") :]:
                common = common[: common.rfind("<")]  # cut where a next header's markup began
            if common.strip():
                stripped = common.strip()
                first = _MARKUP_RE.match(stripped)
                found = (common, first.group(0) if first else stripped)
                break
        if found is None:
            eos = self.kwargs.get("eos_token")
            found = ("", eos) if isinstance(eos, str) and eos else None
        self._markers[template] = found
        return found

    def default_system_prompt(self, template: str) -> str:
        """The text the template writes before a first user turn when the conversation has no
        system prompt, less markup and role names ("" when it adds none: Llama 3, Gemma, Qwen3)."""
        hit = self._default_system.get(template)
        if hit is not None:
            return hit
        out = ""
        try:
            text = self.render([{"role": "user", "content": _PROBE_USER}], None, template=template)
        except Exception:
            text = ""
        at = text.find(_PROBE_USER)
        if at > 0:
            before = text[:at]
            for tok in sorted((str(v) for v in self.kwargs.values() if isinstance(v, str)), key=len, reverse=True):
                if tok:
                    before = before.replace(tok, "<x>")
            # What is left between markup, less a role name heading a piece ("system\n...").
            pieces = [_ROLE_WORDS_RE.sub("", p, count=1).strip(" \n:") for p in _MARKUP_RE.split(before)]
            out = " ".join(" ".join(p.split()) for p in pieces if re.search(r"\w", p))
        self._default_system[template] = out
        return out

    def render(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        *,
        add_generation_prompt: bool = False,
        template: str | None = None,
    ) -> str:
        """What `apply_chat_template(messages, tools=tools, tokenize=False)` returns."""
        compiled = self._compile(template or self.template_for(tools))
        return compiled.render(
            messages=messages, tools=tools, documents=None, add_generation_prompt=add_generation_prompt, **self.kwargs
        )

    def render_with_generation(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, *, template: str | None = None
    ) -> tuple[str, list[tuple[int, int]]]:
        """Rendered text plus the character spans of `{% generation %}` blocks."""
        compiled = self._compile(template or self.template_for(tools))
        blocks: list[str] = []
        spans: list[tuple[int, int]] = []
        with compiled.environment.activate_tracker(blocks, spans):
            for block in compiled.generate(
                messages=messages, tools=tools, documents=None, add_generation_prompt=False, **self.kwargs
            ):
                blocks.append(block)
            text = "".join(blocks)
        return text, [(int(a), int(b)) for a, b in spans]

    # -- tokenization

    def _piece_splitter(self) -> re.Pattern[str] | None:
        """A regex cutting text at added tokens, when encoding the pieces alone is exactly
        what encoding the whole text does; None otherwise."""
        try:
            added = list(self._tk.get_added_tokens_decoder().values())
            cfg = json.loads(self._tk.to_str())
        except Exception:
            return None
        if any(t.lstrip or t.rstrip or t.single_word for t in added):
            return None
        if cfg.get("normalizer") is not None and any(t.normalized for t in added):
            return None
        # SentencePiece-style pre-tokenizers add a prefix to the first piece of a text only.
        if "Metaspace" in json.dumps(cfg.get("pre_tokenizer")) or "Prepend" in json.dumps(cfg.get("normalizer")):
            return None
        contents = sorted({t.content for t in added if t.content}, key=len, reverse=True)
        if not contents:
            return None
        return re.compile("(" + "|".join(map(re.escape, contents)) + ")")

    def _encode_whole(self, texts: list[str]) -> list[_Encoded]:
        encs = self._plain().encode_batch(texts, add_special_tokens=False) if texts else []
        offsets: dict[int, Any] = {}
        return [_Encoded(len(e), [(0, len(t), 0, e)], offsets) for t, e in zip(texts, encs, strict=True)]

    def encode(self, texts: list[str]) -> list[_Encoded]:
        """Tokenize rendered texts (no special tokens added: the template wrote them)."""
        if self._split_re is None:
            return self._encode_whole(texts)
        split = [self._split_re.split(t) for t in texts]
        cache = self._piece_cache
        seen: Counter[str] = Counter()
        for parts in split:
            for k in range(0, len(parts), 2):
                p = parts[k]
                if p and p not in cache:
                    seen[p] += 1
        if seen:
            todo = list(seen)
            for p, e in zip(todo, self._plain().encode_batch(todo, add_special_tokens=False), strict=True):
                cache[p] = e
        out: list[_Encoded] = []
        offsets: dict[int, Any] = {}
        for parts in split:
            pieces: list[tuple[int, int, int, Any]] = []
            pos = tok = 0
            for k, p in enumerate(parts):
                if not p:
                    continue
                if k % 2:
                    pieces.append((pos, pos + len(p), tok, None))
                    tok += 1
                else:
                    e = cache[p]
                    pieces.append((pos, pos + len(p), tok, e))
                    tok += len(e)
                pos += len(p)
            out.append(_Encoded(tok, pieces, offsets))
        # Keep only pieces that repeat (system prompts, headers); the rest were this batch's.
        for p, n in seen.items():
            if n < 2:
                cache.pop(p, None)
        if len(cache) > 20_000:
            cache.clear()
        if not self._verified:
            self._verify(texts, out)
        return out

    def _verify(self, texts: list[str], got: list[_Encoded]) -> None:
        """Check the piece-wise counts against whole-text encoding on a sample, once."""
        self._verified = True
        sample = sorted(range(len(texts)), key=lambda i: -len(got[i].pieces))[:32]
        whole = self._plain().encode_batch([texts[i] for i in sample], add_special_tokens=False)
        if any(len(w) != got[i].n for i, w in zip(sample, whole, strict=True)):
            self._split_re = None
            fixed = self._encode_whole(texts)
            got[:] = fixed

    def tokens(self, text: str) -> list[tuple[int, str, int, int]]:
        """(id, token text, char start, char end) of every token of one rendered text."""
        enc = self._plain().encode(text, add_special_tokens=False)
        return [(i, tok, s, e) for i, tok, (s, e) in zip(enc.ids, enc.tokens, enc.offsets, strict=True)]


# ---------------------------------------------------------------- measuring


@dataclass(slots=True)
class Rendered:
    text: str | None = None
    char_spans: list[tuple[int, int, int]] = field(default_factory=list)  # (turn or -1, start, end)
    content_end: list[int | None] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    mask_source: str = ""


def _tools_arg(conv: Conversation) -> list[dict[str, Any]] | None:
    return [dict(t) for t in conv.tools] if conv.tools else None


def _template_error(e: Exception, template: str, conv: Conversation) -> Finding:
    msg = str(e) or type(e).__name__
    hint = ""
    if any(m.tool_calls for m in conv.messages) and "tool_calls" not in template:
        hint = " (this template does not know tool calls)"
    elif any(isinstance(m.content, tuple) for m in conv.messages):
        hint = " (a turn has non-text parts)"
    elif conv.messages and conv.messages[0].role == "system":
        hint = " (a template that refuses a system turn validates with the system-prompt policy 'fold')"
    return Finding("template_error", f"the chat template refuses this conversation: {msg}{hint}")


def apply_system_policy(conv: Conversation, policy: str) -> Conversation:
    """The conversation as it is rendered under a system-prompt policy: `keep` as is; `fold` the
    leading system prompt into the first user turn (system text, a blank line, the user's text:
    what Gemma 3's own template does); `drop` the leading system prompt."""
    msgs = conv.messages
    if policy == "keep" or not msgs or msgs[0].role != "system":
        return conv
    rest = msgs[1:]
    if policy == "fold" and rest and rest[0].role == "user":
        sys_text, first = msgs[0].text, rest[0]
        content: Any
        if isinstance(first.content, tuple):
            content = (ContentPart("text", sys_text + "\n\n"), *first.content)
        else:
            content = sys_text + "\n\n" + (first.content or "")
        rest = (replace(first, content=content), *rest[1:])
    elif policy == "fold":
        return conv  # nothing to fold into: the template decides (a refusal is flagged)
    return replace(conv, messages=tuple(rest))


def render_conversation(renderer: ChatRenderer, conv: Conversation) -> Rendered:
    """Render one conversation, locate its turns, and compute its loss-carrying character spans.

    Under a `fold` or `drop` system-prompt policy the leading system turn is not rendered on its
    own; indices in findings and spans still count the conversation's own turns."""
    shown = apply_system_policy(conv, renderer.system_prompt)
    off = len(conv.messages) - len(shown.messages)
    r = _render(renderer, shown, off)
    if off:
        r.char_spans = [(t + off if t >= 0 else t, a, b) for t, a, b in r.char_spans]
        pad: list[int | None] = [None] * off
        r.content_end = pad + r.content_end
    return r


def _render(renderer: ChatRenderer, conv: Conversation, off: int) -> Rendered:
    r = Rendered()
    messages = to_template_messages(conv)
    tools = _tools_arg(conv)
    template = renderer.template_for(tools)

    def turn(i: int) -> str:
        return _turn(i + off, conv.messages[i])

    if not messages:
        r.findings.append(Finding("template_error", "the conversation has no turns to render"))
        return r
    use_generation = renderer.has_generation_blocks(template)
    try:
        if use_generation:
            text, gspans = renderer.render_with_generation(messages, tools, template=template)
        else:
            text = renderer.render(messages, tools, template=template)
    except ValidateError:
        raise
    except Exception as e:  # the template's own error (raise_exception), or a type error inside it
        r.findings.append(_template_error(e, template, conv))
        return r
    r.text = text

    # Where each turn's text sits in the render (in order; a template may move the system prompt).
    located: list[tuple[int, int] | None] = []
    cursor = 0
    for i, m in enumerate(conv.messages):
        t = m.text.strip()
        pos = -1
        if t:
            pos = text.find(t, cursor)
            if pos < 0:
                pos = text.find(t)
            if pos < 0:
                # A template that passes the text through `tojson` (Llama 3.1's tool results)
                # shows it escaped: the content is there, as a JSON string.
                for esc in dict.fromkeys((json.dumps(t)[1:-1], json.dumps(t, ensure_ascii=False)[1:-1])):
                    if esc != t and (pos := text.find(esc, cursor)) >= 0:
                        t = esc
                        r.findings.append(
                            Finding(
                                "template_escapes_content",
                                f"{turn(i)}: the template shows its text escaped as a JSON string",
                                {"message_index": i + off},
                            )
                        )
                        break
            if pos < 0:
                r.findings.append(
                    Finding(
                        "template_drops_content",
                        f"{turn(i)}: its text does not appear in the rendered template",
                        {"message_index": i + off},
                    )
                )
        if pos >= 0:
            located.append((pos, pos + len(t)))
            cursor = pos + len(t)
        else:
            located.append(None)
    # A tool call must be rendered between the turn's own text and the next turn's text
    # (declared tools and tool results mention the same names elsewhere).
    calls: list[tuple[int, str, int]] = []  # (turn, tool name, where the call is rendered)
    for i, m in enumerate(conv.messages):
        if not m.tool_calls:
            continue
        lo = max((loc[1] for loc in located[: i + 1] if loc), default=0)
        hi = min((loc[0] for loc in located[i + 1 :] if loc and loc[0] >= lo), default=len(text))
        for name in dict.fromkeys(c.name for c in m.tool_calls):
            at = text.find(name, lo, hi)
            if at < 0:
                r.findings.append(
                    Finding(
                        "template_drops_content",
                        f"{turn(i)}: the template does not render the call to {name}",
                        {"message_index": i + off, "tool": name},
                    )
                )
            else:
                calls.append((i, name, at))
    if tools:
        # A template that ignores the declared tools renders the same text without them.
        try:
            bare = renderer.render(messages, None, template=renderer.template_for(None))
        except Exception:
            bare = None
        if bare == text:
            names = list(_tool_schemas(conv))
            r.findings.append(
                Finding(
                    "template_drops_tools",
                    f"the template does not show the model the declared tools ({', '.join(names)})",
                    {"tools": names},
                )
            )
    if conv.messages[0].role != "system":
        added = renderer.default_system_prompt(template)
        if added:
            r.findings.append(
                Finding(
                    "template_adds_system_prompt",
                    f"the template adds a system prompt the conversation does not have: {added!r}",
                    {"system_prompt": added},
                )
            )

    marker = renderer.end_of_turn(template)
    if use_generation:
        r.mask_source = "generation"
        r.char_spans = [(-1, a, b) for a, b in gspans if b > a]
    else:
        r.mask_source = "prefix"
        r.char_spans, anchored = _prefix_spans(renderer, template, conv, messages, tools, text, located, calls, marker)
        if anchored:
            r.mask_source = "prefix+stop"
    r.content_end = [loc[1] if loc else None for loc in located]
    for t_, _a, b in r.char_spans:
        if t_ >= 0:
            r.content_end[t_] = max(b, r.content_end[t_] or 0)
    _check_mask_chars(conv, r, located, calls, off)
    _check_stop(conv, r, located, calls, marker, off)
    return r


def _common_prefix_len(a: str, b: str) -> int:
    """How many leading characters two strings share."""
    n = min(len(a), len(b))
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k


def _turn_end(i: int, located: list[tuple[int, int] | None], calls: list[tuple[int, str, int]]) -> int | None:
    """Where turn i's own text or its last rendered tool call ends (None when neither is rendered)."""
    ends = [at + len(name) for t, name, at in calls if t == i]
    loc = located[i]
    if loc is not None:
        ends.append(loc[1])
    return max(ends) if ends else None


def _prefix_spans(
    renderer: ChatRenderer,
    template: str,
    conv: Conversation,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    text: str,
    located: list[tuple[int, int] | None],
    calls: list[tuple[int, str, int]],
    marker: tuple[str, str] | None,
) -> tuple[list[tuple[int, int, int]], int]:
    """Assistant spans from prefix renders: [end of messages[:i] + generation prompt, end of messages[:i+1]).

    A template that renders a turn differently once later turns follow (Qwen3 strips the empty
    reasoning block from earlier answers) makes `messages[:i+1]` no prefix of the whole render.
    Such a turn is anchored instead: from the end of the generation prompt (or its text) to the
    end-of-turn marker that follows its text and tool calls. Returns the spans and how many turns
    were anchored."""
    spans: list[tuple[int, int, int]] = []
    n = len(messages)
    prev_end = 0
    anchored = 0
    for i, m in enumerate(conv.messages):
        if m.role != "assistant":
            continue
        span = None
        head: str | None
        upto: str | None
        try:
            head = renderer.render(messages[:i], tools, add_generation_prompt=True, template=template)
        except Exception:
            head = None
        try:
            upto = text if i + 1 == n else renderer.render(messages[: i + 1], tools, template=template)
        except Exception:
            upto = None
        head_ok = head is not None and prev_end <= len(head) and text.startswith(head)
        if head_ok and head is not None and upto is not None and len(head) <= len(upto) and text.startswith(upto):
            span = (i, len(head), len(upto))
        else:
            own_end = _turn_end(i, located, calls)
            loc = located[i]
            firsts = [at for t, _n, at in calls if t == i] + ([loc[0]] if loc else [])
            start: int | None = min(firsts) if firsts else None
            if head_ok and head is not None:
                start = len(head)
            elif head is not None:
                # The generation prompt itself differs from the history form (an empty reasoning
                # block, Qwen3.5): the turn starts where the two part.
                k = _common_prefix_len(head, text)
                if prev_end <= k and (start is None or k <= start):
                    start = k
            if start is not None:
                end = own_end if own_end is not None else start
                nxt = next((loc[0] for loc in located[i + 1 :] if loc and loc[0] >= end), len(text))
                if marker is not None:
                    closing, stop = marker
                    at = text.find(closing, end, nxt) if closing else -1
                    if at >= 0:
                        end = at + len(closing)
                    elif (at := text.find(stop, end, nxt)) >= 0:
                        end = at + len(stop)
                span = (i, start, end)
                anchored += 1
        if span is not None and span[2] > span[1]:
            spans.append(span)
            prev_end = span[2]
    return spans, anchored


def _check_mask_chars(
    conv: Conversation,
    r: Rendered,
    located: list[tuple[int, int] | None],
    calls: list[tuple[int, str, int]],
    off: int = 0,
) -> None:
    """The mask covers every assistant text and tool call, and no other turn's text."""
    spans = r.char_spans

    def inside(a: int, b: int) -> bool:
        return any(sa <= a and b <= sb for _t, sa, sb in spans)

    def overlaps(a: int, b: int) -> bool:
        return any(a < sb and sa < b for _t, sa, sb in spans)

    for i, m in enumerate(conv.messages):
        loc = located[i]
        if m.role == "assistant":
            if loc is not None and not inside(*loc):
                r.findings.append(
                    Finding(
                        "loss_mask_wrong",
                        f"{_turn(i + off, m)}: its text carries no loss",
                        {"message_index": i + off},
                    )
                )
        elif loc is not None and overlaps(*loc):
            r.findings.append(
                Finding(
                    "loss_mask_wrong",
                    f"{_turn(i + off, m)}: the loss mask covers this {m.role} turn",
                    {"message_index": i + off},
                )
            )
    for i, name, at in calls:
        if not inside(at, at + len(name)):
            r.findings.append(
                Finding(
                    "loss_mask_wrong",
                    f"{_turn(i + off, conv.messages[i])}: the call to {name} carries no loss",
                    {"message_index": i + off, "tool": name},
                )
            )


def _check_stop(
    conv: Conversation,
    r: Rendered,
    located: list[tuple[int, int] | None],
    calls: list[tuple[int, str, int]],
    marker: tuple[str, str] | None,
    off: int,
) -> None:
    """Every trained assistant turn's loss runs through its end-of-turn marker, or the model
    never learns to stop after that turn."""
    text = r.text or ""
    for i, m in enumerate(conv.messages):
        if m.role != "assistant":
            continue
        end = _turn_end(i, located, calls)
        if end is None:
            continue
        span = next(((a, b) for _t, a, b in r.char_spans if a < end <= b), None)
        if span is None:
            continue  # the turn carries no loss: loss_mask_wrong says so
        if marker is None:
            why = "the template's end-of-turn marker is unknown, so its loss cannot be checked for one"
        elif text.find(marker[1], end, span[1]) >= 0:
            continue
        else:
            why = f"its loss ends before the end-of-turn marker {marker[1]!r}: the model would not learn to stop"
        r.findings.append(Finding("loss_mask_no_stop", f"{_turn(i + off, m)}: {why}", {"message_index": i + off}))


# ---------------------------------------------------------------- loading


def load_renderer(model: str | None = None, name: str | None = None, system_prompt: str = "keep") -> ChatRenderer:
    """The renderer of a model id or folder (the embedded SmolLM2 by default). The one place
    that loads a tokenizer for rendering: swap how it is loaded here."""
    from curation.models import DEFAULT_MODEL, load_tokenizer

    name = name or model or DEFAULT_MODEL
    try:
        tok = load_tokenizer(model or DEFAULT_MODEL)
    except Exception as e:  # ModelError, OSError, ValueError: all mean "not loadable here"
        raise ValidateError(f"cannot load the tokenizer of {name!r}: {e}") from None
    return ChatRenderer(tok, name=name, system_prompt=system_prompt)
