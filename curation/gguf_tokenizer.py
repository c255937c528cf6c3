"""A tokenizer folder from a GGUF file's metadata, with `tokenizers` alone (no torch, no model).

transformers can read a tokenizer out of a GGUF file, but it loads the whole checkpoint with
torch to do so (over a minute on a small machine for the embedded 135M model). A GGUF file keeps
the tokenizer in its key/value header, before any tensor: this module reads that header and
builds the same byte-level BPE tokenizer that transformers' converter builds, then writes a
`tokenizer.json` + `tokenizer_config.json` + `chat_template.jinja` folder that loads in a second.

Only byte-level BPE vocabularies (`tokenizer.ggml.model == "gpt2"`, e.g. SmolLM2, Qwen, Llama-3)
are built here; any other kind raises `GGUFTokenizerError` and the caller falls back to the full
conversion.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any, BinaryIO


class GGUFTokenizerError(Exception):
    """The file is not a GGUF file, or its tokenizer is of a kind this module does not build."""


_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise GGUFTokenizerError("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _string(f: BinaryIO) -> str:
    n = _read(f, "<Q")
    return f.read(n).decode("utf-8", errors="replace")


def _value(f: BinaryIO, vtype: int) -> Any:
    if vtype == _STRING:
        return _string(f)
    if vtype == _ARRAY:
        etype, count = _read(f, "<I"), _read(f, "<Q")
        if etype == _STRING:
            return [_string(f) for _ in range(count)]
        fmt = _SCALARS.get(etype)
        if fmt is None:
            raise GGUFTokenizerError(f"unknown GGUF array type {etype}")
        size = struct.calcsize(fmt)
        data = f.read(size * count)
        return list(struct.unpack(f"<{count}{fmt[1]}", data))
    fmt = _SCALARS.get(vtype)
    if fmt is None:
        raise GGUFTokenizerError(f"unknown GGUF value type {vtype}")
    return _read(f, fmt)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The key/value header of a GGUF file (tensors are not read)."""
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise GGUFTokenizerError(f"{path} is not a GGUF file")
        version = _read(f, "<I")
        if version < 2:
            raise GGUFTokenizerError(f"{path}: GGUF version {version} is not supported")
        _read(f, "<Q")  # tensor count
        n_kv = _read(f, "<Q")
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = _string(f)
            meta[key] = _value(f, _read(f, "<I"))
    return meta


def build_tokenizer(meta: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(a `tokenizers.Tokenizer`, the special tokens by role) from GGUF metadata."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise GGUFTokenizerError(f"tokenizer kind {kind!r} is not built here (only byte-level BPE, 'gpt2')")
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    types: list[int] = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])
    # Control (3) and user-defined (4) tokens are added tokens; control ones are special.
    tok.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types, strict=False) if ty == 4]
    )
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types, strict=False) if ty == 3]
    )

    def name(key: str) -> str | None:
        i = meta.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None

    special = {"bos_token": name("bos"), "eos_token": name("eos"), "unk_token": name("unknown")}
    pad = name("padding")
    special["pad_token"] = pad
    return tok, special


def write_tokenizer_folder(gguf: str | Path, target: Path, *, overrides: dict[str, str] | None = None) -> Path:
    """Write `target` (tokenizer.json, tokenizer_config.json, chat_template.jinja) atomically."""
    meta = read_metadata(gguf)
    tok, special = build_tokenizer(meta)
    special.update(overrides or {})
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **{k: v for k, v in special.items() if v is not None}}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=target.parent))
    try:
        tok.save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        template = meta.get("tokenizer.chat_template")
        if isinstance(template, str):
            (tmp / "chat_template.jinja").write_text(template, encoding="utf-8")
        if not target.exists():  # another process may have finished first
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
