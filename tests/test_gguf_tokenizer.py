"""The embedded tokenizer built from the GGUF header alone: the same tokenizer, no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tokenizers import Tokenizer

from curation.gguf_tokenizer import read_metadata, write_tokenizer_folder
from curation.models import embedded_gguf

ROOT = Path(__file__).resolve().parent.parent


def test_tokenizer_folder_from_gguf_header(tmp_path: Path) -> None:
    gguf = embedded_gguf()
    meta = read_metadata(gguf)
    assert meta["tokenizer.ggml.model"] == "gpt2" and len(meta["tokenizer.ggml.tokens"]) == 49152
    out = write_tokenizer_folder(gguf, tmp_path / "tok", overrides={"eos_token": "<|im_end|>"})
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    text = "<|im_start|>user\nHi there, café 日本語 😀\n\tdef f(x):  return x<|im_end|>\n"
    enc = tok.encode(text)
    assert enc.ids[0] == 1 and 2 in enc.ids  # <|im_start|> and <|im_end|> are single special tokens
    assert tok.decode(enc.ids, skip_special_tokens=False) == text
    assert tok.encode(" hello").ids != tok.encode("hello").ids  # byte-level: the space is a byte
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|im_end|>" and config["bos_token"] == "<|im_start|>"
    assert "<|im_start|>" in (out / "chat_template.jinja").read_text()


def test_first_tokenizer_load_imports_no_torch(tmp_path: Path) -> None:
    """What the app's first Validate does: load the embedded tokenizer into a fresh cache."""
    code = (
        "import sys\n"
        "from curation.models import load_tokenizer\n"
        "from curation.validate import ChatRenderer\n"
        "r = ChatRenderer(load_tokenizer())\n"
        "text = r.render([{'role': 'user', 'content': 'hi'}], None)\n"
        "print(len(r.encode([text])[0].pieces) > 0, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "SIFT_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"], out.stderr[-2000:]
    assert (tmp_path / "cache" / "tokenizers" / "smollm2-135m-instruct" / "tokenizer.json").exists()
    assert not (tmp_path / "cache" / "models").exists()  # the model was not converted
