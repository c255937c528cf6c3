"""Column and role mapping for files whose fields are not named the way a dialect names them.

Described the way LLaMA-Factory's `dataset_info.json` describes a dataset, so an entry of that
file imports as it is:

    {"formatting": "alpaca",   "columns": {"prompt": "question", "query": "context", "response": "answer",
                                           "system": "sys", "history": "past", "tools": "tools"}}
    {"formatting": "sharegpt", "columns": {"messages": "turns", "system": "sys", "tools": "tools"},
     "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
              "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}}
    "ranking": true with columns "chosen" / "rejected": the chosen answer is the assistant turn; the
    rejected one stays in the conversation's metadata.

A mapping turns each row into the dialect's own field names (Alpaca's instruction/input/output,
ShareGPT's conversations of from/value) and the dialect's mapper does the rest; columns the mapping
does not name stay as metadata. A missing column is a row error naming the user's column."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.formats import FileReadError, RowError


class MappingError(FileReadError):
    """A mapping that cannot be used (unknown key, bad JSON, no such dataset_info entry)."""


ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": None, "history": None}
SHAREGPT_COLUMNS = {"messages": "conversations", "system": None, "tools": None}
EXTRA_COLUMNS = ("tools", "images", "videos", "audios", "chosen", "rejected", "kto_tag")
SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
# LLaMA-Factory's tag → the role ShareGPT's mapper knows.
_TAG_ROLE = {
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}


@dataclass(frozen=True)
class ColumnMap:
    formatting: str = "alpaca"
    columns: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    ranking: bool = False

    def __post_init__(self) -> None:
        if self.formatting not in ("alpaca", "sharegpt"):
            raise MappingError(f"formatting must be alpaca or sharegpt, got {self.formatting!r}")
        known = set(ALPACA_COLUMNS if self.formatting == "alpaca" else SHAREGPT_COLUMNS) | set(EXTRA_COLUMNS)
        unknown = sorted(set(self.columns) - known)
        if unknown:
            raise MappingError(
                f"unknown {self.formatting} column(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        bad_tags = sorted(set(self.tags) - set(SHAREGPT_TAGS))
        if bad_tags:
            raise MappingError(f"unknown tag(s) {', '.join(bad_tags)} (known: {', '.join(SHAREGPT_TAGS)})")
        if self.tags and self.formatting != "sharegpt":
            raise MappingError("tags describe sharegpt turns; set formatting to sharegpt")
        for k, v in {**self.columns, **self.tags}.items():
            if not isinstance(v, str) or not v:
                raise MappingError(f"{k} must name a column (a non-empty string), got {v!r}")
        if self.ranking and not {"chosen", "rejected"} <= set(self.columns):
            raise MappingError("a ranking dataset needs the chosen and rejected columns")

    @property
    def dialect(self) -> str:
        return self.formatting

    @classmethod
    def from_entry(cls, entry: Any) -> ColumnMap:
        """From one entry of a LLaMA-Factory `dataset_info.json` (its other keys are ignored)."""
        if not isinstance(entry, dict):
            raise MappingError(f"a dataset_info entry must be an object, got {type(entry).__name__}")
        columns = entry.get("columns") or {}
        tags = entry.get("tags") or {}
        if not isinstance(columns, dict) or not isinstance(tags, dict):
            raise MappingError("columns and tags must be objects")
        return cls(
            str(entry.get("formatting") or "alpaca"),
            {k: v for k, v in columns.items() if v is not None},
            {k: v for k, v in tags.items() if v is not None},
            bool(entry.get("ranking", False)),
        )

    @classmethod
    def parse(cls, spec: str, *, file_name: str | None = None) -> ColumnMap:
        """`--map`: `key=column,...` (keys: formatting, ranking, the columns and tags above), or
        `DATASET_INFO.json:NAME`, or `DATASET_INFO.json` alone (the entry whose file_name is the
        imported file's name)."""
        spec = spec.strip()
        path_part, _, name = spec.partition(".json:") if ".json:" in spec else (spec, "", "")
        if ".json:" in spec:
            return cls.from_dataset_info(Path(path_part + ".json"), name=name)
        if spec.endswith(".json"):
            return cls.from_dataset_info(Path(spec), file_name=file_name)
        values: dict[str, str] = {}
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            key, eq, value = part.partition("=")
            if not eq:
                raise MappingError(f"--map: expected key=column, got {part!r}")
            values[key.strip()] = value.strip()
        formatting = values.pop("formatting", None) or ("sharegpt" if "messages" in values else "alpaca")
        ranking = values.pop("ranking", "false").lower() in ("1", "true", "yes")
        tags = {k: values.pop(k) for k in list(values) if k in SHAREGPT_TAGS}
        return cls(formatting, values, tags, ranking)

    @classmethod
    def from_dataset_info(cls, path: Path, *, name: str = "", file_name: str | None = None) -> ColumnMap:
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise MappingError(f"cannot read {path}: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise MappingError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
        if not isinstance(info, dict):
            raise MappingError(f"{path}: expected an object of datasets")
        if name:
            if name not in info:
                raise MappingError(f"{path}: no dataset {name!r}")
            return cls.from_entry(info[name])
        hits = [v for v in info.values() if isinstance(v, dict) and file_name and v.get("file_name") == file_name]
        if not hits:
            raise MappingError(f"{path}: no dataset whose file_name is {file_name!r}; name one as {path}:NAME")
        return cls.from_entry(hits[0])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"formatting": self.formatting, "columns": dict(self.columns)}
        if self.tags:
            out["tags"] = dict(self.tags)
        if self.ranking:
            out["ranking"] = True
        return out

    # ------------------------------------------------------------ rows

    def apply(self, row: Any) -> dict[str, Any]:
        """The row with the dialect's own field names; RowError names the user's column."""
        if not isinstance(row, dict):
            raise RowError("(row)", f"expected an object, got {type(row).__name__}")
        return self._alpaca(row) if self.formatting == "alpaca" else self._sharegpt(row)

    def _alpaca(self, row: dict[str, Any]) -> dict[str, Any]:
        cols = {**ALPACA_COLUMNS, **self.columns}
        if self.ranking:
            cols["response"] = self.columns["chosen"]
        used = {c for k, c in cols.items() if c and k in ("prompt", "query", "response", "system", "history", "tools")}
        out = {k: v for k, v in row.items() if k not in used}
        for k in ("instruction", "input", "output", "system", "history", "tools"):
            out.pop(k, None)
        prompt_col, response_col = cols["prompt"], cols["response"]
        if prompt_col not in row:
            raise RowError(str(prompt_col), "missing column (mapped as the prompt)")
        if response_col not in row:
            raise RowError(str(response_col), "missing column (mapped as the response)")
        out["instruction"] = row[prompt_col]
        out["output"] = _text(row[response_col], str(response_col))
        for key, target in (("query", "input"), ("system", "system"), ("history", "history"), ("tools", "tools")):
            col = cols.get(key)
            if col and row.get(col) is not None:
                out[target] = row[col]
        return out

    def _sharegpt(self, row: dict[str, Any]) -> dict[str, Any]:
        cols = {**SHAREGPT_COLUMNS, **self.columns}
        tags = {**SHAREGPT_TAGS, **self.tags}
        mcol = str(cols["messages"])
        if mcol not in row:
            raise RowError(mcol, "missing column (mapped as the messages)")
        turns = row[mcol]
        if not isinstance(turns, list):
            raise RowError(mcol, f"expected a list of turns, got {type(turns).__name__}")
        if self.ranking:
            chosen = row.get(self.columns["chosen"])
            if not isinstance(chosen, dict):
                raise RowError(self.columns["chosen"], "missing or not a turn object (mapped as the chosen answer)")
            turns = [*turns, chosen]
        role_of = {tags[t]: role for t, role in _TAG_ROLE.items()}
        conv = []
        for i, t in enumerate(turns):
            where = f"{mcol}[{i}]"
            if not isinstance(t, dict):
                raise RowError(where, f"expected an object, got {type(t).__name__}")
            if tags["role_tag"] not in t:
                raise RowError(f"{where}.{tags['role_tag']}", "missing field (the role tag)")
            role = role_of.get(t[tags["role_tag"]])
            if role is None:
                raise RowError(
                    f"{where}.{tags['role_tag']}",
                    f"role {t[tags['role_tag']]!r} is none of the mapped tags ({', '.join(map(repr, role_of))})",
                )
            if tags["content_tag"] not in t:
                raise RowError(f"{where}.{tags['content_tag']}", "missing field (the content tag)")
            conv.append({"from": role, "value": t[tags["content_tag"]]})
        used = {mcol, *(str(cols[k]) for k in ("system", "tools") if cols.get(k))}
        out = {
            k: v for k, v in row.items() if k not in used and k not in ("conversations", "messages", "system", "tools")
        }
        out["conversations"] = conv
        for key in ("system", "tools"):
            col = cols.get(key)
            if col and row.get(col) is not None:
                out[key] = row[col]
        return out


def _text(v: Any, where: str) -> Any:
    # A ranking's chosen answer may be a turn object ({"from": "gpt", "value": ...}).
    if isinstance(v, dict):
        for k in ("value", "content", "text"):
            if isinstance(v.get(k), str):
                return v[k]
        raise RowError(where, "expected text or a turn with its text")
    return v
