"""Validation gate: structure, real chat-template rendering, assistant loss mask, token lengths.

Every conversation is rendered with the target model's own chat template (tools passed through)
and tokenized with its own tokenizer, so what is checked is what the trainer will see. The work
splits in two:

- `measure(conversations, renderer)` does everything that depends only on the conversation and the
  (tokenizer, template) pair: structure findings, template render, loss-mask spans, token counts.
  A `Measurement` has no severities and no length limit, so it can be cached per conversation
  revision and per `Identity` of the tokenizer and template.
- `judge(measurement, config)` turns a measurement into flags under a config (severities,
  `max_seq_len`); it is cheap, so changing the limit or a severity needs no re-rendering.

Speed: conversations are rendered with the compiled template (no per-call overhead of
`apply_chat_template`) and tokenized in one `encode_batch` call per batch. The rendered text is cut
at the tokenizer's added tokens, exactly where the tokenizer itself cuts it before anything else
runs, and each distinct piece is encoded once (system prompts and role headers repeat in every
row). That shortcut is taken only when the tokenizer's configuration makes it exact, and it is
checked against whole-text encoding on the first batch.

The loss mask comes from the template's `{% generation %}` blocks when it has them (what
`return_assistant_tokens_mask=True` uses), otherwise from rendering prefixes: an assistant turn
starts where `messages[:i]` rendered with the generation prompt ends, and ends where
`messages[:i+1]` ends.
"""

from __future__ import annotations

import bisect
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from curation.errors import StageError
from curation.models import DEFAULT_MODEL
from curation.records import ROLES, Conversation, Message, canonical_json, sha256_hex

# Bump when a check changes: cached measurements of older versions are then recomputed.
CHECKS_VERSION = 1

ERROR = "error"
WARNING = "warning"
SEVERITIES = (ERROR, WARNING)

# Every reason code with what it means (help text for the CLI, the app and the docs).
REASONS: dict[str, str] = {
    "unknown_role": "a turn has a role other than system, user, assistant or tool",
    "system_not_first": "a system turn comes after the first turn",
    "first_turn_not_user": "the first turn after the system prompt is not from the user (or there is no user turn)",
    "consecutive_same_role": "two consecutive turns have the same role (tool results after a tool call excepted)",
    "empty_content": "a turn is empty or whitespace (an assistant turn that only calls tools may be empty)",
    "no_final_assistant": "the conversation does not end with an assistant turn",
    "tool_call_without_result": "a tool call has no tool result",
    "tool_result_without_call": "a tool result answers no tool call",
    "tool_arguments_invalid_json": "tool-call arguments are not a JSON object",
    "tool_arguments_schema": "tool-call arguments do not satisfy the JSON schema of the declared tool",
    "tool_not_declared": "a tool call names a tool the conversation does not declare",
    "template_error": "the chat template refuses to render the conversation",
    "template_drops_content": "the rendered text lacks a turn's text or a tool call",
    "template_drops_tools": "the declared tools do not appear in the rendered text",
    "loss_mask_empty": "no token carries loss",
    "loss_mask_wrong": "the loss mask misses assistant text or covers another turn",
    "over_max_seq_len": "the conversation has more tokens than max_seq_len",
}
# Every check blocks freezing unless a config downgrades it; the one check the issue did not
# ask for (tools missing from the prompt) only warns.
DEFAULT_SEVERITY: dict[str, str] = {**dict.fromkeys(REASONS, ERROR), "template_drops_tools": WARNING}

CUTOFF_POLICIES = ("drop_row", "drop_trailing_turns", "truncate")


class ValidateError(StageError):
    pass


# ---------------------------------------------------------------- config


@dataclass(frozen=True)
class ValidateConfig:
    model: str = field(
        default=DEFAULT_MODEL,
        metadata={
            "help": "target model: a Hugging Face id or local folder; default the embedded SmolLM2-135M-Instruct"
        },
    )
    max_seq_len: int = field(default=2048, metadata={"help": "the trainer's maximum sequence length in tokens"})
    severity: dict[str, str] = field(
        default_factory=dict,
        metadata={
            "help": "per-reason overrides, reason → 'error' (blocks freezing) or 'warning' (shown only); "
            "e.g. {'over_max_seq_len': 'warning'} for a team that keeps long rows and truncates"
        },
    )
    batch_size: int = field(default=1000, metadata={"help": "conversations rendered and tokenized per batch"})

    def __post_init__(self) -> None:
        if not isinstance(self.max_seq_len, int) or self.max_seq_len < 1:
            raise ValidateError(f"max_seq_len must be a positive number of tokens, got {self.max_seq_len!r}")
        if self.batch_size < 1:
            raise ValidateError(f"batch_size must be positive, got {self.batch_size!r}")
        for reason, sev in self.severity.items():
            if reason not in REASONS:
                raise ValidateError(f"unknown reason {reason!r} in severity overrides (known: {', '.join(REASONS)})")
            if sev not in SEVERITIES:
                raise ValidateError(f"severity of {reason} must be 'error' or 'warning', got {sev!r}")

    def severity_of(self, reason: str) -> str:
        return self.severity.get(reason) or DEFAULT_SEVERITY[reason]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["severity"] = {r: self.severity_of(r) for r in REASONS}
        return d

    @staticmethod
    def help() -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(ValidateConfig)}


# ---------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Finding:
    """A problem found in a conversation, before a config gives it a severity."""

    reason: str
    message: str
    details: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Flag:
    reason: str
    severity: str
    message: str
    details: dict[str, Any] | None = None


@dataclass(slots=True)
class Measurement:
    """What validation found in one conversation under one (tokenizer, template).

    `tokens` is None when the template refused to render. `spans` are the loss-carrying token
    ranges [start, end), in order; `turn_tokens[k]` counts the template text from the end of turn
    k-1's text through the end of turn k's text (headers count with the turn they open).
    """

    tokens: int | None
    loss_tokens: int = 0
    spans: list[tuple[int, int]] = field(default_factory=list)
    turn_tokens: list[int] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    mask_source: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "tokens": self.tokens,
                "loss_tokens": self.loss_tokens,
                "spans": [list(s) for s in self.spans],
                "turn_tokens": self.turn_tokens,
                "findings": [
                    {"reason": f.reason, "message": f.message, **({"details": f.details} if f.details else {})}
                    for f in self.findings
                ],
                "mask_source": self.mask_source,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Measurement:
        d = json.loads(text)
        return cls(
            tokens=d["tokens"],
            loss_tokens=d["loss_tokens"],
            spans=[(s[0], s[1]) for s in d["spans"]],
            turn_tokens=d["turn_tokens"],
            findings=[Finding(f["reason"], f["message"], f.get("details")) for f in d["findings"]],
            mask_source=d.get("mask_source", ""),
        )


# ---------------------------------------------------------------- structure


def _role_list(conv: Conversation) -> str:
    return ", ".join(m.role for m in conv.messages)


def _turn(i: int, m: Message) -> str:
    return f"turn {i + 1} ({m.role})"


def _tool_schemas(conv: Conversation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for t in conv.tools:
        fn = t.get("function") if isinstance(t.get("function"), dict) else t
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            out[fn["name"]] = fn.get("parameters")
    return out


_VALIDATORS: dict[str, Any] = {}


def _schema_errors(schema: Any, value: Any) -> str | None:
    """The first way `value` breaks `schema` (None when it conforms or there is no schema)."""
    if not isinstance(schema, dict) or not schema:
        return None
    key = canonical_json(schema)
    validator = _VALIDATORS.get(key)
    if validator is None:
        import jsonschema

        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as e:
            validator = f"the declared schema is not a valid JSON schema ({e.message})"
        else:
            validator = cls(schema)
        if len(_VALIDATORS) < 4096:
            _VALIDATORS[key] = validator
    if isinstance(validator, str):
        return validator
    err = next(iter(validator.iter_errors(value)), None)
    if err is None:
        return None
    where = "/".join(str(p) for p in err.absolute_path)
    return f"{err.message}" + (f" (at {where})" if where else "")


def check_structure(conv: Conversation) -> list[Finding]:
    """Role order, empty turns, tool calls and results, tool arguments."""
    out: list[Finding] = []
    msgs = conv.messages
    for i, m in enumerate(msgs):
        if m.role not in ROLES:
            out.append(Finding("unknown_role", f"{_turn(i, m)}: unknown role {m.role!r}", {"message_index": i}))
        elif m.role == "system" and i > 0:
            out.append(
                Finding("system_not_first", f"{_turn(i, m)}: a system turn after the first turn", {"message_index": i})
            )
    first = next(((i, m) for i, m in enumerate(msgs) if m.role != "system"), None)
    if first is None:
        out.append(Finding("first_turn_not_user", "the conversation has no turn besides the system prompt"))
    elif first[1].role != "user":
        has_user = any(m.role == "user" for m in msgs)
        what = "the conversation has no user turn" if not has_user else "the first turn after the system prompt"
        out.append(
            Finding(
                "first_turn_not_user",
                f"{what}: {_turn(*first)} comes first (roles: {_role_list(conv)})"
                if has_user
                else f"{what} (roles: {_role_list(conv)})",
                {"message_index": first[0]},
            )
        )
    for i in range(1, len(msgs)):
        a, b = msgs[i - 1], msgs[i]
        if a.role == b.role and a.role != "tool":
            out.append(
                Finding(
                    "consecutive_same_role",
                    f"turns {i} and {i + 1} are both from the {b.role}",
                    {"message_index": i},
                )
            )
    for i, m in enumerate(msgs):
        if m.text.strip() or (m.role == "assistant" and m.tool_calls):
            continue
        if isinstance(m.content, tuple) and any(p.type != "text" for p in m.content):
            continue  # an image or other non-text part is content
        out.append(Finding("empty_content", f"{_turn(i, m)} is empty", {"message_index": i}))
    if not msgs or msgs[-1].role != "assistant":
        last = f"the last turn is from the {msgs[-1].role}" if msgs else "there are no turns"
        out.append(Finding("no_final_assistant", f"the conversation does not end with an assistant turn ({last})"))
    out += _check_tools(conv)
    return out


def _check_tools(conv: Conversation) -> list[Finding]:
    out: list[Finding] = []
    schemas = _tool_schemas(conv)
    open_calls: list[tuple[int, int, str, str | None]] = []  # (turn, index in turn, name, id)
    run_calls: list[tuple[int, int, str, str | None]] = []  # calls of the assistant turn before this tool run
    for i, m in enumerate(conv.messages):
        if m.role == "assistant":
            run_calls = []
            for j, c in enumerate(m.tool_calls):
                call = (i, j, c.name, c.id)
                open_calls.append(call)
                run_calls.append(call)
                out += _check_arguments(i, c.name, c.arguments, schemas, bool(conv.tools))
        elif m.role == "tool":
            match = None
            if m.tool_call_id is not None:
                match = next((c for c in open_calls if c[3] == m.tool_call_id), None)
            else:
                # No id: the result answers the next unanswered call of the turn just before the run.
                match = next((c for c in run_calls if c in open_calls), None)
            if match is None:
                prev = conv.messages[i - 1] if i else None
                if m.tool_call_id is not None:
                    why = f"no tool call has id {m.tool_call_id!r}"
                elif prev is None or prev.role not in ("assistant", "tool") or not run_calls:
                    why = "it does not follow a tool call" + (f" (it follows {_turn(i - 1, prev)})" if prev else "")
                else:
                    why = "every call before it already has its result"
                out.append(Finding("tool_result_without_call", f"{_turn(i, m)}: {why}", {"message_index": i}))
            else:
                open_calls.remove(match)
        else:
            run_calls = []
    for turn, _j, name, cid in open_calls:
        ident = f" (id {cid})" if cid else ""
        out.append(
            Finding(
                "tool_call_without_result",
                f"turn {turn + 1} (assistant): the call to {name}{ident} has no tool result",
                {"message_index": turn, "tool": name},
            )
        )
    return out


def _check_arguments(turn: int, name: str, arguments: str, schemas: dict[str, Any], declared: bool) -> list[Finding]:
    where = f"turn {turn + 1} (assistant): call to {name}"
    try:
        value = json.loads(arguments)
    except (json.JSONDecodeError, TypeError) as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        return [
            Finding(
                "tool_arguments_invalid_json", f"{where}: arguments are not valid JSON ({msg})", {"message_index": turn}
            )
        ]
    if not isinstance(value, dict):
        return [
            Finding(
                "tool_arguments_invalid_json",
                f"{where}: arguments are JSON but not an object ({type(value).__name__})",
                {"message_index": turn},
            )
        ]
    if name not in schemas:
        known = f"declared: {', '.join(sorted(schemas))}" if schemas else "the conversation declares no tools"
        return [Finding("tool_not_declared", f"{where}: {name} is not declared ({known})", {"message_index": turn})]
    err = _schema_errors(schemas[name], value)
    if err:
        return [Finding("tool_arguments_schema", f"{where}: {err}", {"message_index": turn})]
    return []


# ---------------------------------------------------------------- template rendering


def to_template_messages(conv: Conversation) -> list[dict[str, Any]]:
    """Messages as chat templates expect them (what a trainer passes to `apply_chat_template`).

    Content is kept as is (a tool-call turn's missing content stays missing); tool calls take the
    OpenAI shape with arguments as an object when they parse (the Hugging Face convention),
    otherwise as the text written; reasoning goes under `reasoning_content` (and `thinking`, as
    transformers aliases it).
    """
    out: list[dict[str, Any]] = []
    for m in conv.messages:
        d: dict[str, Any] = {"role": m.role}
        if isinstance(m.content, tuple):
            d["content"] = [
                {"type": "text", "text": p.text} if p.type == "text" else {"type": p.type, **(p.data or {})}
                for p in m.content
            ]
        elif m.content is not None:
            d["content"] = m.content
        if m.tool_calls:
            calls = []
            for c in m.tool_calls:
                try:
                    args: Any = json.loads(c.arguments)
                except (json.JSONDecodeError, TypeError):
                    args = c.arguments
                call: dict[str, Any] = {"type": "function", "function": {"name": c.name, "arguments": args}}
                if c.id is not None:
                    call["id"] = c.id
                calls.append(call)
            d["tool_calls"] = calls
        if m.name is not None:
            d["name"] = m.name
        if m.tool_call_id is not None:
            d["tool_call_id"] = m.tool_call_id
        if m.reasoning is not None:
            d = {"thinking": m.reasoning, **d, "reasoning_content": m.reasoning}
        out.append(d)
    return out


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

    def __init__(self, tokenizer: Any, name: str | None = None) -> None:
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
            sha256_hex(canonical_json([tok_sha, tmpl_sha, self.kwargs, CHECKS_VERSION]))[:32],
        )
        self._compiled: dict[str, Any] = {}
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
class _Rendered:
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
    return Finding("template_error", f"the chat template refuses this conversation: {msg}{hint}")


def _render_one(renderer: ChatRenderer, conv: Conversation) -> _Rendered:
    r = _Rendered()
    messages = to_template_messages(conv)
    tools = _tools_arg(conv)
    template = renderer.template_for(tools)
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
                r.findings.append(
                    Finding(
                        "template_drops_content",
                        f"{_turn(i, m)}: its text does not appear in the rendered template",
                        {"message_index": i},
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
                        f"{_turn(i, m)}: the template does not render the call to {name}",
                        {"message_index": i, "tool": name},
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

    if use_generation:
        r.mask_source = "generation"
        r.char_spans = [(-1, a, b) for a, b in gspans if b > a]
    else:
        r.mask_source = "prefix"
        r.char_spans = _prefix_spans(renderer, template, conv, messages, tools, text, located)
    r.content_end = [loc[1] if loc else None for loc in located]
    for turn, _a, b in r.char_spans:
        if turn >= 0:
            r.content_end[turn] = max(b, r.content_end[turn] or 0)
    _check_mask_chars(conv, r, located, calls)
    return r


def _prefix_spans(
    renderer: ChatRenderer,
    template: str,
    conv: Conversation,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    text: str,
    located: list[tuple[int, int] | None],
) -> list[tuple[int, int, int]]:
    """Assistant spans from prefix renders: [end of messages[:i] + generation prompt, end of messages[:i+1])."""
    spans: list[tuple[int, int, int]] = []
    n = len(messages)
    prev_end = 0
    for i, m in enumerate(conv.messages):
        if m.role != "assistant":
            continue
        span = None
        head: str | None
        upto: str | None
        try:
            head = renderer.render(messages[:i], tools, add_generation_prompt=True, template=template)
            upto = text if i + 1 == n else renderer.render(messages[: i + 1], tools, template=template)
        except Exception:
            head = upto = None
        if (
            head is not None
            and upto is not None
            and prev_end <= len(head) <= len(upto)
            and text.startswith(head)
            and text.startswith(upto)
        ):
            span = (i, len(head), len(upto))
        elif located[i] is not None:
            # The template renders this turn differently once later turns follow (it strips
            # reasoning, say), or refuses a prefix: fall back to the turn's text itself.
            a, b = located[i]  # type: ignore[misc]
            span = (i, a, b)
        if span is not None and span[2] > span[1]:
            spans.append(span)
            prev_end = span[2]
    return spans


def _check_mask_chars(
    conv: Conversation, r: _Rendered, located: list[tuple[int, int] | None], calls: list[tuple[int, str, int]]
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
                    Finding("loss_mask_wrong", f"{_turn(i, m)}: its text carries no loss", {"message_index": i})
                )
        elif loc is not None and overlaps(*loc):
            r.findings.append(
                Finding(
                    "loss_mask_wrong", f"{_turn(i, m)}: the loss mask covers this {m.role} turn", {"message_index": i}
                )
            )
    for i, name, at in calls:
        if not inside(at, at + len(name)):
            r.findings.append(
                Finding(
                    "loss_mask_wrong",
                    f"{_turn(i, conv.messages[i])}: the call to {name} carries no loss",
                    {"message_index": i, "tool": name},
                )
            )


def measure(conversations: Sequence[Conversation], renderer: ChatRenderer) -> list[Measurement]:
    """Validate a batch under one tokenizer and template; results carry no severities."""
    rendered = [_render_one(renderer, c) for c in conversations]
    ok = [i for i, r in enumerate(rendered) if r.text is not None]
    encoded = renderer.encode([rendered[i].text for i in ok])  # type: ignore[misc]
    out: list[Measurement] = []
    enc_of = dict(zip(ok, encoded, strict=True))
    for i, (conv, r) in enumerate(zip(conversations, rendered, strict=True)):
        findings = check_structure(conv) + r.findings
        enc = enc_of.get(i)
        if enc is None:
            out.append(Measurement(tokens=None, findings=findings))
            continue
        spans: list[tuple[int, int]] = []
        for _t, a, b in r.char_spans:
            s, e = enc.token_range(a, b)
            if e > s:
                if spans and s < spans[-1][1]:
                    s = spans[-1][1]
                if e > s:
                    spans.append((s, e))
        loss = sum(e - s for s, e in spans)
        if loss == 0:
            findings.append(
                Finding(
                    "loss_mask_empty",
                    "no token carries loss: the trainer would learn nothing from this conversation"
                    + ("" if any(m.role == "assistant" for m in conv.messages) else " (it has no assistant turn)"),
                )
            )
        turn_tokens: list[int] = []
        prev = 0
        ends = r.content_end
        for k in range(len(conv.messages)):
            if k == len(conv.messages) - 1:
                t = enc.n
            elif ends[k] is None:
                turn_tokens.append(0)
                continue
            else:
                t = enc.tokens_starting_before(ends[k])  # type: ignore[arg-type]
            t = max(t, prev)
            turn_tokens.append(t - prev)
            prev = t
        out.append(
            Measurement(
                tokens=enc.n,
                loss_tokens=loss,
                spans=spans,
                turn_tokens=turn_tokens,
                findings=findings,
                mask_source=r.mask_source,
            )
        )
    return out


# ---------------------------------------------------------------- judging


def cutoff_outcome(m: Measurement, max_seq_len: int) -> dict[str, Any] | None:
    """What each cutoff policy does to one over-long conversation (None when it fits)."""
    if m.tokens is None or m.tokens <= max_seq_len:
        return None
    spans = m.spans
    last_end = spans[-1][1] if spans else 0
    last_start = spans[-1][0] if spans else 0
    kept_turns = [s for s in spans if s[1] <= max_seq_len]
    return {
        "drop_row": {"keeps_last_answer": False, "keeps_any_answer": False},
        "drop_trailing_turns": {
            "keeps_last_answer": bool(spans) and last_end <= max_seq_len,
            "keeps_any_answer": bool(kept_turns),
            "answers_kept": len(kept_turns),
            "answers": len(spans),
        },
        "truncate": {
            "keeps_last_answer": bool(spans) and last_end <= max_seq_len,
            "cuts_last_answer": bool(spans) and last_start < max_seq_len < last_end,
            "keeps_any_answer": any(s[0] < max_seq_len for s in spans),
        },
    }


def judge(m: Measurement, config: ValidateConfig) -> list[Flag]:
    """Flags of one measured conversation under a config (severity overrides, max_seq_len)."""
    flags = [Flag(f.reason, config.severity_of(f.reason), f.message, f.details) for f in m.findings]
    cut = cutoff_outcome(m, config.max_seq_len)
    if cut is not None:
        assert m.tokens is not None
        over = m.tokens - config.max_seq_len
        t = cut["truncate"]
        if t["keeps_last_answer"]:
            effect = "truncating keeps the last answer"
        elif t["cuts_last_answer"]:
            effect = "truncating cuts the last answer midway"
        else:
            effect = "truncating loses the last answer"
        d = cut["drop_trailing_turns"]
        effect += (
            f"; dropping trailing turns keeps {d['answers_kept']} of {d['answers']} answers" if d["answers"] else ""
        )
        flags.append(
            Flag(
                "over_max_seq_len",
                config.severity_of("over_max_seq_len"),
                f"{m.tokens} tokens, {over} over max_seq_len {config.max_seq_len} ({effect})",
                {"tokens": m.tokens, "max_seq_len": config.max_seq_len, "overflow": over, "cutoff": cut},
            )
        )
    return flags


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def token_stats(measurements: Iterable[Measurement]) -> dict[str, int]:
    values = sorted(m.tokens for m in measurements if m.tokens is not None)
    return {
        "total": sum(values),
        "p50": _percentile(values, 50),
        "p90": _percentile(values, 90),
        "p99": _percentile(values, 99),
        "max": values[-1] if values else 0,
    }


def cutoff_preview(measurements: Iterable[Measurement], max_seq_len: int) -> dict[str, dict[str, int]]:
    """Per cutoff policy: how many over-long rows it touches and how many lose their last answer."""
    out = {
        "drop_row": {"rows": 0, "lose_last_answer": 0, "left_without_answer": 0},
        "drop_trailing_turns": {"rows": 0, "lose_last_answer": 0, "left_without_answer": 0},
        "truncate": {"rows": 0, "lose_last_answer": 0, "cut_mid_answer": 0, "left_without_answer": 0},
    }
    for m in measurements:
        cut = cutoff_outcome(m, max_seq_len)
        if cut is None:
            continue
        for policy in CUTOFF_POLICIES:
            o, c = out[policy], cut[policy]
            o["rows"] += 1
            o["lose_last_answer"] += not c["keeps_last_answer"]
            o["left_without_answer"] += not c["keeps_any_answer"]
        out["truncate"]["cut_mid_answer"] += cut["truncate"]["cuts_last_answer"]
    return out


@dataclass(slots=True)
class ValidationReport:
    """Flags per conversation plus the summary the CLI prints."""

    flags: list[list[Flag]]
    summary: dict[str, Any]


def summarize(
    measurements: Sequence[Measurement], flags: Sequence[Sequence[Flag]], config: ValidateConfig
) -> dict[str, Any]:
    errors: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    passed = 0
    for fl in flags:
        err = {f.reason for f in fl if f.severity == ERROR}
        warn = {f.reason for f in fl if f.severity == WARNING}
        errors.update(err)
        warnings.update(warn)
        passed += not err
    return {
        "checked": len(measurements),
        "passed": passed,
        "flagged": dict(sorted(errors.items())),
        "warnings": dict(sorted(warnings.items())),
        "tokens": token_stats(measurements),
        "over_max_seq_len": sum(1 for m in measurements if m.tokens is not None and m.tokens > config.max_seq_len),
        "cutoff": cutoff_preview(measurements, config.max_seq_len),
    }


def validate(
    conversations: Sequence[Conversation],
    renderer: ChatRenderer,
    config: ValidateConfig | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Measurement], ValidationReport]:
    """Measure and judge a whole set in batches (no cache: the workbench adds one)."""
    config = config or ValidateConfig()
    ms: list[Measurement] = []
    for k in range(0, len(conversations), config.batch_size):
        ms += measure(conversations[k : k + config.batch_size], renderer)
        if progress:
            progress(len(ms), len(conversations))
    flags = [judge(m, config) for m in ms]
    return ms, ValidationReport(flags, summarize(ms, flags, config))


# ---------------------------------------------------------------- drill-down


def inspect(conv: Conversation, renderer: ChatRenderer, config: ValidateConfig | None = None) -> dict[str, Any]:
    """One conversation in detail: rendered text cut into loss / no-loss segments, every token
    with its loss bit, tokens per turn and the flags."""
    config = config or ValidateConfig()
    m = measure([conv], renderer)[0]
    flags = judge(m, config)
    out: dict[str, Any] = {
        "tokens": m.tokens,
        "loss_tokens": m.loss_tokens,
        "turn_tokens": m.turn_tokens,
        "mask_source": m.mask_source,
        "flags": [asdict(f) for f in flags],
        "text": None,
        "segments": [],
        "token_rows": [],
    }
    if m.tokens is None:
        return out
    r = _render_one(renderer, conv)
    text = r.text or ""
    toks = renderer.tokens(text)
    loss = [False] * len(toks)
    for s, e in m.spans:
        for k in range(s, min(e, len(toks))):
            loss[k] = True
    # Segments follow token boundaries, so highlighting shows exactly the tokens that carry loss.
    segments: list[dict[str, Any]] = []
    pos = 0
    for k, (_id, _tok, _s, e) in enumerate(toks):
        end = max(e, pos) if k + 1 < len(toks) else len(text)
        piece = text[pos:end]
        if segments and segments[-1]["loss"] == loss[k]:
            segments[-1]["text"] += piece
        else:
            segments.append({"text": piece, "loss": loss[k]})
        pos = end
    out["text"] = text
    out["segments"] = [s for s in segments if s["text"]]
    out["token_rows"] = [
        {"index": k, "id": i, "token": text[s:e], "loss": loss[k]} for k, (i, _t, s, e) in enumerate(toks)
    ]
    return out
