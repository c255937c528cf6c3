"""The one record type everything in Sift works on.

A `Conversation` is an immutable list of `Message`s plus the tools offered to the model and free
metadata. Its id is derived from content (messages + tools), so the same conversation imported
twice, from the same or another file, is stored once; every source row that produced it is kept
as `Provenance`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from curation.errors import SiftError

ROLES = ("system", "user", "assistant", "tool")
Role = Literal["system", "user", "assistant", "tool"]

PROVENANCE_KINDS = ("import", "edit", "redaction", "paraphrase", "generated")


def canonical_json(obj: Any) -> str:
    """Key-sorted, compact, UTF-8 JSON: equal data gives equal bytes, so it can be hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical_fast(obj: Any) -> str:
    """canonical_json for data made of strings, bools, None, small ints, lists and str-keyed
    dicts only (no floats: orjson writes 1e-07 as 1e-7): the same bytes, several times faster.
    Anything orjson refuses (a lone surrogate, a huge int, a non-str key) takes the slow path.
    """
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError):
        return canonical_json(obj)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class ToolCall:
    """An assistant's request to call a tool. `arguments` is the JSON text as the model wrote it."""

    name: str
    arguments: str = "{}"
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "arguments": self.arguments}
        if self.id is not None:
            d["id"] = self.id
        return d

    def to_openai(self, *, template: bool = False) -> dict[str, Any]:
        """The call in OpenAI's shape; see `Message.to_openai` for `template`."""
        if not template:
            head = {"id": self.id} if self.id is not None else {}
            return {**head, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}
        try:
            args: Any = json.loads(self.arguments)
        except (json.JSONDecodeError, TypeError):
            args = self.arguments
        call: dict[str, Any] = {"type": "function", "function": {"name": self.name, "arguments": args}}
        if self.id is not None:
            call["id"] = self.id
        return call

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ToolCall:
        return cls(name=d["name"], arguments=d.get("arguments", "{}"), id=d.get("id"))


@dataclass(frozen=True, slots=True)
class ContentPart:
    """A non-text piece of a message (an image reference, say); text parts are folded into text."""

    type: str
    text: str | None = None
    data: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        if self.text is not None:
            d["text"] = self.text
        if self.data:
            d["data"] = self.data
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContentPart:
        return cls(type=d["type"], text=d.get("text"), data=d.get("data"))


@dataclass(frozen=True, slots=True)
class Message:
    """One turn. `content` is text, or a tuple of parts when the turn carries more than text."""

    role: str
    content: str | tuple[ContentPart, ...] | None = ""
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    reasoning: str | None = None

    @property
    def text(self) -> str:
        """The text of the turn, whatever shape its content has."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if p.text)

    def to_dict(self) -> dict[str, Any]:
        content: Any = self.content
        if isinstance(content, tuple):
            content = [p.to_dict() for p in content]
        d: dict[str, Any] = {"role": self.role, "content": content}
        if self.name is not None:
            d["name"] = self.name
        if self.tool_calls:
            d["tool_calls"] = [t.to_dict() for t in self.tool_calls]
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        if self.reasoning is not None:
            d["reasoning"] = self.reasoning
        return d

    def to_openai(self, *, template: bool = False) -> dict[str, Any]:
        """This turn as an OpenAI chat message (what `formats.to_openai` writes into files).

        `template=True`: as chat templates take it (`render.to_template_messages`): missing content
        stays missing; tool-call arguments are an object when they parse (the Hugging Face
        convention), else the text written, with a call's id after its function; reasoning also
        goes under `thinking` (transformers' alias), ahead of the other keys.
        """
        d: dict[str, Any] = {"role": self.role}
        if isinstance(self.content, tuple):
            d["content"] = [
                {"type": "text", "text": p.text} if p.type == "text" else {"type": p.type, **(p.data or {})}
                for p in self.content
            ]
        elif self.content is not None or not template:
            d["content"] = self.content
        if self.tool_calls:
            d["tool_calls"] = [c.to_openai(template=template) for c in self.tool_calls]
        if self.name is not None:
            d["name"] = self.name
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        if self.reasoning is not None:
            if template:
                return {"thinking": self.reasoning, **d, "reasoning_content": self.reasoning}
            d["reasoning_content"] = self.reasoning
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Message:
        content = d.get("content")
        if isinstance(content, list):
            content = tuple(ContentPart.from_dict(p) for p in content)
        return cls(
            role=d["role"],
            content=content,
            name=d.get("name"),
            tool_calls=tuple(ToolCall.from_dict(t) for t in d.get("tool_calls") or ()),
            tool_call_id=d.get("tool_call_id"),
            reasoning=d.get("reasoning"),
        )


@dataclass(frozen=True, slots=True)
class Conversation:
    """Messages, the tools offered (OpenAI function-schema dicts) and free metadata.

    Metadata is not part of the id: two rows with the same turns are the same conversation.
    """

    messages: tuple[Message, ...]
    tools: tuple[dict[str, Any], ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def content_dict(self) -> dict[str, Any]:
        return {
            "messages": [m.to_dict() for m in self.messages],
            "tools": list(self.tools),
        }

    def content_json(self) -> str:
        d = self.content_dict()
        if self.tools or any(isinstance(m.content, tuple) for m in self.messages):
            # Tool schemas and content parts may hold floats: keep json.dumps' spelling of them.
            return canonical_json(d)
        return _canonical_fast(d)

    @property
    def id(self) -> str:
        return content_id(self.content_json())

    def to_dict(self) -> dict[str, Any]:
        d = self.content_dict()
        d["metadata"] = self.metadata
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Conversation:
        return cls(
            messages=tuple(Message.from_dict(m) for m in d["messages"]),
            tools=tuple(d.get("tools") or ()),
            metadata=dict(d.get("metadata") or {}),
        )

    @classmethod
    def from_json(cls, text: str) -> Conversation:
        return cls.from_dict(json.loads(text))

    def replace_messages(self, messages: list[Message] | tuple[Message, ...]) -> Conversation:
        return Conversation(messages=tuple(messages), tools=self.tools, metadata=self.metadata)


def content_id(content_json: str) -> str:
    """16 hex digits of sha256 over canonical content: stable, short enough to type."""
    return sha256_hex(content_json)[:16]


class ProvenanceError(SiftError, ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a conversation (or one revision of it) came from.

    The fields a kind needs are checked on construction: an import names its source file and
    line; a paraphrase names its parent, the model and the prompt; an edit or redaction names
    who made it.
    """

    kind: str
    source: str | None = None
    line: int | None = None
    format: str | None = None
    parent_id: str | None = None
    parent_revision: int | None = None
    model: str | None = None
    endpoint: str | None = None
    prompt_id: str | None = None
    prompt_sha256: str | None = None
    parameters: dict[str, Any] | None = None
    actor: str | None = None
    mapping: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in PROVENANCE_KINDS:
            raise ProvenanceError(f"unknown provenance kind {self.kind!r}")
        required: dict[str, tuple[str, ...]] = {
            "import": ("source", "line", "format"),
            "paraphrase": ("parent_id", "parent_revision", "model", "prompt_id", "prompt_sha256"),
            "generated": ("model", "prompt_id"),
            "edit": ("actor",),
            "redaction": ("actor",),
        }
        missing = [f for f in required[self.kind] if getattr(self, f) is None]
        if missing:
            raise ProvenanceError(f"{self.kind} provenance needs {', '.join(missing)}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in self.__dataclass_fields__:
            v = getattr(self, f)
            if v is None or v == ():
                continue
            d[f] = list(v) if isinstance(v, tuple) else v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Provenance:
        d = dict(d)
        d["mapping"] = tuple(d.get("mapping") or ())
        return cls(**d)
