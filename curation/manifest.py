"""A version's manifest and its exported files, built without a store (pure).

Manifest (`manifest.json`), keys sorted, written with `manifest_text`:

    {
      "format": "sift.version/1",
      "name": ..., "created_at": ..., "actor": ..., "parent": ...,   # not hashed
      "version": {                                                   # the hashed part
        "config": {eval_fraction, seed, include, stratify_by, exclude_unresolved_pii},
        "counts": {"train", "eval", "families": {"train", "eval"}, "excluded": {reason: n}},
        "splits": {"train": [{"id", "revision", "sha256", "family"}, ...], "eval": [...]},
        "token_stats": {"train": {...}, "eval": {...}} or null,
        "tokenizer": {...} or null,
        "stages": [{"stage", "run_id", "config"}, ...],
        "provenance": {"origin": {...}, "revised": {...}, "sources": [...]},
        "leakage_check": {"method", "pairs"},
        "sift_version": ...
      },
      "manifest_sha256": sha256 of canonical_json(manifest["version"]),
      "files": {"train.jsonl": sha256, "eval.jsonl": sha256, ...},    # the files beside it
      "export": {"format", "skipped"}                                 # only in an export folder
    }

`sha256` of a row is the sha256 of the revision's canonical content JSON, so the hash can be
recomputed from the store. Rows are sorted by id within a split, and the exported files hold them in
that order. The store's copy of the manifest names the OpenAI JSONL files (`train.jsonl`,
`eval.jsonl`) that `sift export --format openai` writes.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from curation.formats import WriteError, to_alpaca, to_openai, to_sharegpt
from curation.records import Conversation, canonical_json, sha256_hex

MANIFEST_FORMAT = "sift.version/1"
EXPORT_FORMATS = ("openai", "sharegpt", "alpaca", "parquet")
UNHASHED = ("format", "name", "created_at", "actor", "parent", "manifest_sha256", "files", "export")
_CARD_SKIPPED = 20
_DIALECT_WRITERS = {"openai": to_openai, "sharegpt": to_sharegpt, "alpaca": to_alpaca, "parquet": to_openai}


def manifest_hash(version: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_json(version))


def build_manifest(
    *,
    name: str,
    created_at: str,
    actor: str,
    parent: str | None,
    version: dict[str, Any],
    files: dict[str, str],
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "created_at": created_at,
        "actor": actor,
        "parent": parent,
        "version": version,
        "manifest_sha256": manifest_hash(version),
        "files": files,
    }


def manifest_text(manifest: Mapping[str, Any]) -> str:
    """The bytes of manifest.json: equal manifests give equal text."""
    return json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_file_names(fmt: str) -> dict[str, str]:
    ext = "parquet" if fmt == "parquet" else "jsonl"
    return {"train": f"train.{ext}", "eval": f"eval.{ext}"}


# ---------------------------------------------------------------- split files


@functools.cache
def _parquet_schema() -> Any:
    """OpenAI messages as nested columns; absent keys read back as nulls, which the importer skips."""
    import pyarrow as pa

    call = pa.struct(
        [
            ("id", pa.string()),
            ("type", pa.string()),
            ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())])),
        ]
    )
    message = pa.struct(
        [
            ("role", pa.string()),
            ("content", pa.string()),
            ("name", pa.string()),
            ("tool_calls", pa.list_(call)),
            ("tool_call_id", pa.string()),
            ("reasoning_content", pa.string()),
        ]
    )
    return pa.schema([("messages", pa.list_(message)), ("tools", pa.string())])


def _parquet_row(conv: Conversation) -> dict[str, Any]:
    row = to_openai(conv)
    for m in row["messages"]:
        if isinstance(m.get("content"), list):
            raise WriteError("the Parquet export holds text content only (this conversation has content parts)")
    # Tool schemas differ from row to row, so they travel as JSON text (the importer parses it back).
    return {"messages": row["messages"], "tools": canonical_json(row["tools"]) if "tools" in row else None}


def render_split(rows: Sequence[tuple[str, Conversation]], fmt: str) -> tuple[bytes, list[dict[str, str]]]:
    """The bytes of one split's file in `fmt`, and the rows the dialect cannot hold (with why)."""
    if fmt not in EXPORT_FORMATS:
        raise WriteError(f"unknown export format {fmt!r} (use {', '.join(EXPORT_FORMATS)})")
    skipped: list[dict[str, str]] = []
    out: list[dict[str, Any]] = []
    for cid, conv in rows:
        try:
            out.append(_parquet_row(conv) if fmt == "parquet" else _DIALECT_WRITERS[fmt](conv))
        except WriteError as e:
            skipped.append({"id": cid, "reason": str(e)})
    if fmt != "parquet":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out).encode("utf-8"), skipped
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(out, schema=_parquet_schema()), buf)
    return buf.getvalue(), skipped


# ---------------------------------------------------------------- dataset card


def _cell(v: Any) -> str:
    return str(v if v is not None else "—").replace("|", "\\|").replace("\n", " ")


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return lines


def dataset_card(manifest: Mapping[str, Any], fmt: str, skipped: Mapping[str, Sequence[Mapping[str, str]]]) -> str:
    """README.md for an export folder: counts, token stats, provenance, sources and licences."""
    v = manifest["version"]
    counts = v["counts"]
    cfg = v["config"]
    files = split_file_names(fmt)
    dialect = (
        "OpenAI messages"
        if fmt == "parquet"
        else {"openai": "OpenAI messages", "sharegpt": "ShareGPT", "alpaca": "Alpaca"}[fmt]
    )
    out = [
        f"# Dataset version `{manifest['name']}`",
        "",
        f"Frozen by {manifest['actor']} at {manifest['created_at']} with Sift {v['sift_version']}"
        + (f", from version `{manifest['parent']}`." if manifest.get("parent") else "."),
        f"Manifest sha256: `{manifest['manifest_sha256']}` (check with `sift verify {manifest['name']} --export DIR`).",
        "",
        f"Files: `{files['train']}` and `{files['eval']}` ({dialect}, "
        f"{'Parquet' if fmt == 'parquet' else 'JSON Lines'}), rows in the manifest's order; `manifest.json`.",
        "",
        "## Counts",
        "",
        *_table(
            ["split", "conversations", "families", "in this export"],
            [[s, counts[s], counts["families"][s], counts[s] - len(skipped.get(s, ()))] for s in ("train", "eval")],
        ),
        "",
    ]
    excluded = counts.get("excluded") or {}
    if excluded:
        out += [
            "Left out at freeze time: " + ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in excluded.items()) + ".",
            "",
        ]
    out += ["## Split", ""]
    out.append(
        f"Eval fraction {cfg['eval_fraction']}, seed {cfg['seed']}, statuses: {cfg['include']}"
        + (f", stratified by tag `{cfg['stratify_by']}`" if cfg.get("stratify_by") else "")
        + ". Whole families (near-duplicate clusters, paraphrases and their source) stay on one side. "
        f"Leakage check ({v['leakage_check']['method']}): {v['leakage_check']['pairs']} eval/train pairs."
    )
    out += ["", "## Token statistics", ""]
    ts = v.get("token_stats")
    if ts:
        keys = ["total", "mean", "p50", "p90", "p99", "max"]
        out += _table(["split", *keys], [[s, *(ts[s].get(k) for k in keys)] for s in ("train", "eval") if s in ts])
        if v.get("tokenizer"):
            out += ["", "Tokenizer: " + ", ".join(f"{k} `{val}`" for k, val in sorted(v["tokenizer"].items()))]
    else:
        out.append("Not available: validation had not stored token counts for these revisions (run `sift validate`).")
    prov = v["provenance"]
    out += ["", "## Provenance", ""]
    out.append("Origin: " + (", ".join(f"{n} {k}" for k, n in prov["origin"].items()) or "none") + ".")
    revised = prov.get("revised") or {}
    out.append(
        "Revised after import: " + (", ".join(f"{n} by {k}" for k, n in revised.items()) if revised else "none") + "."
    )
    out += ["", "## Sources and licences", ""]
    if prov["sources"]:
        out += _table(
            ["source", "format", "licence", "conversations", "sha256"],
            [[s["name"], s["format"], s["licence"], s["conversations"], s["sha256"][:16]] for s in prov["sources"]],
        )
    else:
        out.append("No imported source files (every conversation was made inside Sift).")
    if v.get("stages"):
        out += ["", "## Stage runs", ""]
        out += _table(["stage", "run id"], [[s["stage"], s["run_id"]] for s in v["stages"]])
    n_skipped = sum(len(x) for x in skipped.values())
    if n_skipped:
        out += ["", "## Not in this export", ""]
        out.append(
            f"{n_skipped} conversation(s) cannot be written as {dialect}; they are in the version (export as openai to get them):"
        )
        listed = [[s, x["id"], x["reason"]] for s in ("train", "eval") for x in skipped.get(s, ())]
        out += ["", *_table(["split", "id", "why"], listed[:_CARD_SKIPPED])]
        if len(listed) > _CARD_SKIPPED:
            out += ["", f"…and {len(listed) - _CARD_SKIPPED} more, listed in manifest.json under `export.skipped`."]
    return "\n".join(out) + "\n"


def export_files(
    manifest: Mapping[str, Any], rows: Mapping[str, Sequence[tuple[str, Conversation]]], fmt: str
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every file of an export folder (name → bytes), manifest.json last, and the export manifest."""
    names = split_file_names(fmt)
    files: dict[str, bytes] = {}
    skipped: dict[str, list[dict[str, str]]] = {}
    for split in ("train", "eval"):
        data, sk = render_split(rows.get(split, ()), fmt)
        files[names[split]] = data
        if sk:
            skipped[split] = sk
    files["README.md"] = dataset_card(manifest, fmt, skipped).encode("utf-8")
    m = dict(manifest)
    m["files"] = {name: bytes_sha256(data) for name, data in files.items()}
    m["export"] = {"format": fmt, "skipped": skipped}
    files["manifest.json"] = manifest_text(m).encode("utf-8")
    return files, m
