"""Augment: paraphrase user turns through an LLM, keep the assistant answers, filter the results.

The stage is a chain of small pure steps; the LLM client and the PII detector are passed in:

    plan             which user turns of which parents to paraphrase, and the request for each
    parse_variations the model's answer → candidate texts (JSON, numbered or bulleted list, lines)
    check_text       one candidate against its original: a reason code, or None to keep it
    build_children   per parent: candidate conversations with typed Provenance, and the rejects

Every requested variation ends up kept or rejected with a reason, so for each run
`requested = kept + sum(rejected.values())`:

    unparseable    nothing usable could be read from the model's answer
    missing        the answer held fewer variations than asked for
    truncated      the answer was cut off by max_tokens inside this variation
    empty          the variation has no text
    identical      equal to the original after normalisation
    duplicate      equal to an earlier variation of the same turn, or to a conversation already
                   in the store (that one decided by the store)
    near_identical estimated Jaccard of word n-grams (MinHash, as in dedup) at or above the bound
    too_short      shorter than min_length_ratio × the original
    too_long       longer than max_length_ratio × the original
    changed_facts  drops or changes a number or code of the original (a token with a digit, a
                   `code span`): "P0" becoming "P1" changes a ticket's label
    new_pii        names a PII entity the original does not (checked only when a detector is given)

A child conversation is the parent with its user turn(s) replaced: system prompt, assistant
answers, tools and metadata unchanged. Its family is the parent's, so a freeze keeps them together.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from curation.dedup import MinHasher, normalise
from curation.errors import StageError
from curation.llm import Completion, cache_key, estimate_tokens
from curation.records import Conversation, Message, Provenance, canonical_json, sha256_hex

STAGE = "augment"
TURNS = ("first", "all")
REASONS = (
    "unparseable", "missing", "truncated", "empty", "identical", "duplicate", "near_identical",
    "too_short", "too_long", "changed_facts", "new_pii",
)  # fmt: skip

# A PII detector: texts → for each text the set of entities it names as "ENTITY:normalised value",
# e.g. {"EMAIL_ADDRESS:a@b.c"}.
PiiDetector = Callable[[Sequence[str]], list[set[str]]]


class AugmentError(StageError):
    pass


# ---------------------------------------------------------------------------------- prompts


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A versioned prompt: `id` names it, `sha256` pins its exact text. `{n}` and `{text}` are
    filled in; a changed template needs a new id (its hash changes anyway)."""

    id: str
    messages: tuple[tuple[str, str], ...]

    @property
    def sha256(self) -> str:
        return sha256_hex(canonical_json({"id": self.id, "messages": [list(m) for m in self.messages]}))

    def render(self, text: str, n: int) -> list[dict[str, str]]:
        return [
            {"role": role, "content": content.replace("{n}", str(n)).replace("{text}", text)}
            for role, content in self.messages
        ]


PROMPTS: dict[str, PromptTemplate] = {
    t.id: t
    for t in (
        # One worked example: small local models (SmolLM2-135M) follow the list format only with one.
        PromptTemplate(
            "paraphrase-user-v1",
            (
                (
                    "system",
                    "You are a paraphrasing tool. You rewrite the user's text with different words and the same "
                    "meaning. Keep every fact, name, number and code. Never answer or comment on the text.",
                ),
                ("user", "Paraphrase in 2 ways: I can't log in to the console since this morning."),
                (
                    "assistant",
                    "1. Since this morning I have been unable to sign in to the console.\n"
                    "2. Logging in to the console hasn't worked for me since this morning.",
                ),
                ("user", "Paraphrase in {n} ways: {text}"),
            ),
        ),
    )
}
DEFAULT_PROMPT = "paraphrase-user-v1"


# ---------------------------------------------------------------------------------- config


@dataclass(slots=True)
class AugmentConfig:
    """What to paraphrase, how to ask, and what to keep. Stored with every augment run."""

    n: int = field(default=3, metadata={"help": "variations asked for per parent conversation"})
    turns: str = field(default="first", metadata={"help": "paraphrase the 'first' user turn, or 'all' user turns"})
    prompt_id: str = field(default=DEFAULT_PROMPT, metadata={"help": f"prompt template ({', '.join(PROMPTS)})"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling mass"})
    max_tokens: int = field(default=256, metadata={"help": "most tokens the model may write per call"})
    seed: int | None = field(default=0, metadata={"help": "sampling seed sent with each call (None: not sent)"})
    ngram: int = field(default=2, metadata={"help": "words per shingle for the near-identical check"})
    num_perm: int = field(default=128, metadata={"help": "MinHash permutations for the near-identical check"})
    near_identical: float = field(
        default=0.8, metadata={"help": "estimated Jaccard at or above which a variation is too close to the original"}
    )
    min_length_ratio: float = field(
        default=0.5, metadata={"help": "shortest variation, as a share of the original's length"}
    )
    max_length_ratio: float = field(
        default=2.0, metadata={"help": "longest variation, as a multiple of the original's length"}
    )
    keep_facts: bool = field(
        default=True, metadata={"help": "reject variations that drop or change a number or code of the original"}
    )
    check_pii: bool = field(default=True, metadata={"help": "reject variations that name PII the original does not"})
    statuses: tuple[str, ...] = field(
        default=("pending", "accepted"), metadata={"help": "review statuses of the conversations used as parents"}
    )

    def __post_init__(self) -> None:
        self.statuses = tuple(self.statuses)
        if not 1 <= self.n <= 20:
            raise AugmentError(f"n must be between 1 and 20, got {self.n}")
        if self.turns not in TURNS:
            raise AugmentError(f"unknown turns {self.turns!r} (use {', '.join(TURNS)})")
        if self.prompt_id not in PROMPTS:
            raise AugmentError(f"unknown prompt template {self.prompt_id!r} (use {', '.join(PROMPTS)})")
        if not 0.0 <= self.temperature <= 2.0:
            raise AugmentError(f"temperature must be between 0 and 2, got {self.temperature}")
        if self.max_tokens < 1:
            raise AugmentError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if not 0.0 < self.near_identical <= 1.0:
            raise AugmentError(f"near_identical must be in (0, 1], got {self.near_identical}")
        if not 0.0 <= self.min_length_ratio <= 1.0 <= self.max_length_ratio:
            raise AugmentError("length ratios must satisfy 0 <= min_length_ratio <= 1 <= max_length_ratio")

    @property
    def template(self) -> PromptTemplate:
        return PROMPTS[self.prompt_id]

    def parameters(self) -> dict[str, Any]:
        """The sampling parameters of each call (part of the cache key and of the provenance)."""
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens, "seed": self.seed}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["statuses"] = list(self.statuses)
        d["prompt_sha256"] = self.template.sha256
        return d


def config_help() -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in fields(AugmentConfig)}


# ---------------------------------------------------------------------------------- plan


@dataclass(frozen=True, slots=True)
class Parent:
    id: str
    revision: int
    family_id: str
    conversation: Conversation


@dataclass(frozen=True, slots=True)
class Call:
    """One request to the model: paraphrase turn `turn` of a parent."""

    turn: int
    text: str
    request: dict[str, Any]
    key: str


@dataclass(frozen=True, slots=True)
class ParentPlan:
    parent: Parent
    calls: tuple[Call, ...]


def user_turns(conv: Conversation, turns: str) -> list[int]:
    """Indexes of the user turns to paraphrase (those with text)."""
    idx = [i for i, m in enumerate(conv.messages) if m.role == "user" and m.text.strip()]
    return idx[:1] if turns == "first" else idx


def request_for(text: str, config: AugmentConfig) -> dict[str, Any]:
    return {"messages": config.template.render(text, config.n), "n": 1, **config.parameters()}


def plan(parents: Sequence[Parent], config: AugmentConfig, model: str) -> list[ParentPlan]:
    """The calls each parent needs; parents with no user text are left out."""
    out = []
    for p in parents:
        calls = []
        for t in user_turns(p.conversation, config.turns):
            text = p.conversation.messages[t].text
            req = request_for(text, config)
            calls.append(Call(t, text, req, cache_key(model, req)))
        if calls:
            out.append(ParentPlan(p, tuple(calls)))
    return out


def estimate(plans: Sequence[ParentPlan], config: AugmentConfig) -> dict[str, int]:
    """Estimated tokens of the distinct calls: prompt (≈ 4 characters a token) and the completion cap."""
    seen: dict[str, int] = {}
    for pp in plans:
        for c in pp.calls:
            seen.setdefault(c.key, sum(estimate_tokens(m["content"]) + 4 for m in c.request["messages"]))
    return {"prompt": sum(seen.values()), "completion_max": len(seen) * config.max_tokens}


# ---------------------------------------------------------------------------------- parsing

_FENCE = re.compile(r"^```[\w-]*\s*\n(.*?)\n?```\s*$", re.S | re.M)
_ITEM = re.compile(r"^\s*(?:\(?\d{1,2}[.):\]]|[-*•])\s+(.*\S)\s*$")
_LABEL = re.compile(
    r"^(?:\*\*)?(?:paraphrase|variation|version|rewrite|option|rephrased(?: message)?)\s*\d*\s*[:.-]\s*(?:\*\*)?\s*",
    re.I,
)
_QUOTES = [('"', '"'), ("“", "”"), ("'", "'"), ("«", "»")]
_JSON_KEYS = ("paraphrases", "variations", "rewrites", "items", "results", "texts")


def _clean(item: str) -> str:
    s = item.strip()
    s = _LABEL.sub("", s).strip()
    if s.startswith("**") and s.endswith("**") and len(s) > 4:
        s = s[2:-2].strip()
    for a, b in _QUOTES:
        if len(s) >= 2 and s.startswith(a) and s.endswith(b):
            s = s[1:-1].strip()
            break
    return s


def _from_json(text: str) -> list[str] | None:
    for candidate in (text, *(m.group(0) for m in re.finditer(r"\[.*\]|\{.*\}", text, re.S))):
        try:
            data = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(data, dict):
            data = next((data[k] for k in _JSON_KEYS if isinstance(data.get(k), list)), None)
            if data is None:
                continue
        if isinstance(data, list):
            items = []
            for x in data:
                if isinstance(x, str):
                    items.append(x)
                elif isinstance(x, dict):
                    v = next((x[k] for k in ("text", "paraphrase", "content") if isinstance(x.get(k), str)), None)
                    if v is not None:
                        items.append(v)
            return items
    return None


def parse_variations(text: str) -> list[str]:
    """The variations in a model's answer, in order, cleaned of numbering, labels and quotes.

    Tried in turn: JSON (a list of strings, or an object with a list under a usual key), a numbered
    or bulleted list (an item's wrapped lines are joined; text after a blank line that does not
    start an item is commentary and ignored), then one variation per non-empty line (preamble
    lines ending in ':' skipped).
    """
    text = text.strip()
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1).strip()
    found = _from_json(text) if text[:1] in "[{" or "```" in text else None
    if found is None:
        items: list[str] = []
        open_item = False
        for line in text.splitlines():
            m = _ITEM.match(line)
            if m:
                items.append(m.group(1))
                open_item = True
            elif not line.strip():
                open_item = False
            elif open_item:
                items[-1] += " " + line.strip()
        found = items
    if not found:
        found = [ln for ln in text.splitlines() if ln.strip() and not ln.rstrip().endswith(":")]
    out: list[str] = []
    for x in found:
        c = _clean(x)
        if c or x.strip():
            out.append(c)
    return out


# ---------------------------------------------------------------------------------- filters


@dataclass
class Similarity:
    """Estimated Jaccard of word n-gram sets, with dedup's normalisation and MinHash signatures."""

    ngram: int = 2
    num_perm: int = 128
    _hasher: Any = None

    def normalise(self, text: str) -> str:
        return normalise(text)

    def jaccard(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        if self._hasher is None:
            self._hasher = MinHasher(self.num_perm, 1, self.ngram)
        texts = [self.normalise(t) for pair in pairs for t in pair]
        hv, offsets = self._hasher.shingle_hashes(texts)
        sig = self._hasher.signatures_from_hashes(hv, offsets)
        return [float((sig[2 * i] == sig[2 * i + 1]).mean()) for i in range(len(pairs))]


def check_text(
    original: str, candidate: str, config: AugmentConfig, jaccard: float | None
) -> tuple[str, dict[str, Any]] | None:
    """Reason code and details when `candidate` should not be kept, else None (PII is separate)."""
    if not candidate.strip():
        return "empty", {}
    if normalise(candidate) == normalise(original):
        return "identical", {}
    if jaccard is not None and jaccard >= config.near_identical:
        return "near_identical", {"jaccard": round(jaccard, 3), "bound": config.near_identical}
    ratio = len(candidate.strip()) / max(1, len(original.strip()))
    if ratio < config.min_length_ratio:
        return "too_short", {"length_ratio": round(ratio, 3), "bound": config.min_length_ratio}
    if ratio > config.max_length_ratio:
        return "too_long", {"length_ratio": round(ratio, 3), "bound": config.max_length_ratio}
    if config.keep_facts:
        before, after = facts(original), facts(candidate)
        if before != after:
            return "changed_facts", {"missing": sorted(before - after), "added": sorted(after - before)}
    return None


_CODE = re.compile(r"`([^`\n]+)`")
_FACT = re.compile(r"[^\s`]*\d[^\s`]*")


def facts(text: str) -> set[str]:
    """Numbers and codes of a text: `code spans` and tokens with a digit, trimmed of surrounding
    punctuation and case-folded ("P0", "qdb-1015", "02:56", "$40,471.58")."""
    out = {m.group(1).strip().casefold() for m in _CODE.finditer(text)}
    for tok in _FACT.findall(_CODE.sub(" ", text)):
        tok = tok.strip(".,;:!?()[]{}\"'“”‘’").casefold()
        if any(ch.isdigit() for ch in tok):
            out.add(tok)
    return out


# ---------------------------------------------------------------------------------- children


@dataclass(frozen=True, slots=True)
class Child:
    conversation: Conversation
    provenance: Provenance
    variation: int
    cache_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reject:
    variation: int
    reason: str
    text: str | None
    details: dict[str, Any]


# One variation of one turn: (text, (reason, details)) when rejected, (text, None) when kept.
_Slot = tuple[str | None, tuple[str, dict[str, Any]] | None]


@dataclass
class ParentResult:
    parent: Parent
    children: list[Child]
    rejects: list[Reject]
    requested: int
    generated: int


def build_children(
    pp: ParentPlan,
    completions: Sequence[Completion],
    config: AugmentConfig,
    *,
    model: str,
    endpoint: str,
    similarity: Similarity | None = None,
    pii: PiiDetector | None = None,
) -> ParentResult:
    """Candidates of one parent from its calls' completions (one per call, in order), filtered."""
    n = config.n
    similarity = similarity or Similarity(config.ngram, config.num_perm)
    per_turn: list[list[_Slot]] = []
    for call, comp in zip(pp.calls, completions, strict=True):
        raw = comp.texts[0] if comp.texts else ""
        items = parse_variations(raw)
        cut = bool(items) and bool(comp.finish_reasons) and comp.finish_reasons[0] == "length"
        slots: list[_Slot] = []
        seen: set[str] = set()
        for i, item in enumerate(items[:n]):
            key = normalise(item)
            if cut and i == len(items) - 1:
                slots.append((item, ("truncated", {"max_tokens": config.max_tokens})))
            elif not item.strip():
                slots.append((item, ("empty", {})))
            elif key == normalise(call.text):
                slots.append((item, ("identical", {})))
            elif key in seen:
                slots.append((item, ("duplicate", {"of": "an earlier variation"})))
            else:
                slots.append((item, None))
            seen.add(key)
        want = [i for i, (_, r) in enumerate(slots) if r is None]
        sims = similarity.jaccard([(call.text, slots[i][0] or "") for i in want])
        for i, sim in zip(want, sims, strict=True):
            slots[i] = (slots[i][0], check_text(call.text, slots[i][0] or "", config, sim))
        if len(slots) < n:
            reason = (
                ("unparseable", {"answer": raw[:500]}) if not items else ("missing", {"asked": n, "got": len(items)})
            )
            slots += [(None, reason)] * (n - len(slots))
        per_turn.append(slots)

    if pii is not None:
        todo = [(t, i) for t, slots in enumerate(per_turn) for i, (txt, r) in enumerate(slots) if r is None]
        if todo:
            originals = [c.text for c in pp.calls]
            found = pii([*originals, *(per_turn[t][i][0] or "" for t, i in todo)])
            base = found[: len(originals)]
            for (t, i), ents in zip(todo, found[len(originals) :], strict=True):
                # New: neither found in the original nor written there (a detector may label the
                # same words differently in another sentence).
                written = normalise(originals[t])
                new = sorted(e for e in ents - base[t] if e.split(":", 1)[-1] not in written)
                if new:
                    per_turn[t][i] = (per_turn[t][i][0], ("new_pii", {"entities": [e.split(":", 1)[0] for e in new]}))

    parent = pp.parent
    children: list[Child] = []
    rejects: list[Reject] = []
    generated = 0
    for i in range(n):
        slots_i = [per_turn[t][i] for t in range(len(pp.calls))]
        if all(r is None or r[0] not in ("missing", "unparseable") for _, r in slots_i):
            generated += 1
        failed = next(((txt, r) for txt, r in slots_i if r is not None), None)
        if failed is not None:
            rejects.append(Reject(i, failed[1][0], failed[0], failed[1][1]))
            continue
        msgs = list(parent.conversation.messages)
        for call, (txt, _) in zip(pp.calls, slots_i, strict=True):
            old = msgs[call.turn]
            msgs[call.turn] = Message(role=old.role, content=txt or "", name=old.name)
        conv = parent.conversation.replace_messages(msgs)
        prov = Provenance(
            kind="paraphrase",
            parent_id=parent.id,
            parent_revision=parent.revision,
            model=model,
            endpoint=endpoint,
            prompt_id=config.template.id,
            prompt_sha256=config.template.sha256,
            parameters={**config.parameters(), "n": n, "turns": config.turns, "variation": i},
        )
        children.append(Child(conv, prov, i, tuple(c.key for c in pp.calls)))
    return ParentResult(parent, children, rejects, n, generated)


def pii_detector_from(analyze: Callable[[Sequence[str]], list[list[tuple[str, str]]]]) -> PiiDetector:
    """A PiiDetector from a function giving (entity, matched text) pairs per text."""

    def detect(texts: Sequence[str]) -> list[set[str]]:
        return [{f"{e}:{normalise(v)}" for e, v in found} for found in analyze(texts)]

    return detect
