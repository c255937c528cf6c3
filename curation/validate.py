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

Rendering, tokenizing and the loss mask live in `curation.render` (the trainer uses the same
module); this module adds the structure checks, the judging and the summaries.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from curation.models import DEFAULT_MODEL
from curation.progress import Progress
from curation.records import ROLES, Conversation, canonical_json
from curation.render import (
    CHECKS_VERSION,
    SYSTEM_POLICIES,
    ChatRenderer,
    Finding,
    Identity,
    ValidateError,
    _tool_schemas,
    _turn,
    load_renderer,
    render_conversation,
    to_template_messages,
)
from curation.stage import Revision, StageFlag, StageResult

__all__ = [
    "CHECKS_VERSION",
    "SYSTEM_POLICIES",
    "ChatRenderer",
    "Finding",
    "Identity",
    "ValidateError",
    "load_renderer",
    "to_template_messages",
]

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
    "template_escapes_content": "the template shows a turn's text escaped as a JSON string (Llama 3.1's tool results): "
    "the content is there, as the model will see it",
    "template_adds_system_prompt": "the template adds a default system prompt the conversation does not have",
    "loss_mask_empty": "no token carries loss",
    "loss_mask_wrong": "the loss mask misses assistant text or covers another turn",
    "loss_mask_no_stop": "a trained assistant turn's loss does not include its end-of-turn (stop) token, or the "
    "template's end-of-turn marker is unknown: the model would not learn to stop there",
    "over_max_seq_len": "the conversation has more tokens than max_seq_len",
}
# Every check blocks freezing unless a config downgrades it; the one check the issue did not
# ask for (tools missing from the prompt) only warns.
DEFAULT_SEVERITY: dict[str, str] = {
    **dict.fromkeys(REASONS, ERROR),
    "template_drops_tools": WARNING,
    "template_escapes_content": WARNING,
    "template_adds_system_prompt": WARNING,
}

CUTOFF_POLICIES = ("drop_row", "drop_trailing_turns", "truncate")


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
    system_prompt: str = field(
        default="keep",
        metadata={
            "help": "what happens to a leading system prompt before rendering: 'keep' it (default), 'fold' it "
            "into the first user turn (for templates that refuse a system turn, e.g. Gemma), or 'drop' it; "
            "the trainer renders the same way"
        },
    )

    def __post_init__(self) -> None:
        if not isinstance(self.max_seq_len, int) or self.max_seq_len < 1:
            raise ValidateError(f"max_seq_len must be a positive number of tokens, got {self.max_seq_len!r}")
        if self.system_prompt not in SYSTEM_POLICIES:
            raise ValidateError(
                f"system_prompt must be one of {', '.join(SYSTEM_POLICIES)}, got {self.system_prompt!r}"
            )
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


def measure(conversations: Sequence[Conversation], renderer: ChatRenderer) -> list[Measurement]:
    """Validate a batch under one tokenizer and template; results carry no severities."""
    rendered = [render_conversation(renderer, c) for c in conversations]
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


def percentile(sorted_values: list[int], q: float) -> int:
    """The value at fraction `q` (0..1) of sorted values, nearest rank; 0 when there are none."""
    if not sorted_values:
        return 0
    k = max(0, min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def token_stats(measurements: Iterable[Measurement]) -> dict[str, int]:
    values = sorted(m.tokens for m in measurements if m.tokens is not None)
    return {
        "total": sum(values),
        "p50": percentile(values, 0.5),
        "p90": percentile(values, 0.9),
        "p99": percentile(values, 0.99),
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
    progress: Progress | None = None,
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


STAGE = "validate"


def run(conversations: Sequence[Revision], config: ValidateConfig, renderer: ChatRenderer) -> StageResult:
    """The validate stage (`curation.stage`): measure each revision with the renderer, then judge."""
    ms = measure([r.conversation for r in conversations], renderer)
    return judge_all([(r.id, r.revision, m) for r, m in zip(conversations, ms, strict=True)], config)


def judge_all(measured: Sequence[tuple[str, int, Measurement]], config: ValidateConfig) -> StageResult:
    """Judge measured revisions (id, revision, measurement): a measurement depends only on the
    revision and the (tokenizer, template), so the workbench keeps them and measures only what
    changed; flags and the summary are computed again from all of them on every run."""
    measurements = [m for _c, _r, m in measured]
    flags = [judge(m, config) for m in measurements]
    return StageResult(
        STAGE,
        config.to_dict(),
        [
            StageFlag(cid, rev, f.reason, f.severity, f.message, f.details)
            for (cid, rev, _m), fl in zip(measured, flags, strict=True)
            for f in fl
        ],
        summarize(measurements, flags, config),
    )


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
    r = render_conversation(renderer, conv)
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
