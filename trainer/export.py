"""Hand a trained adapter over for serving: the adapter as is, or merged into the base model.

A merged model (`merge_and_unload` over the base loaded in full precision, never 4-bit) is a plain
transformers folder that vLLM, TGI or `transformers serve` load without peft.

    python -m trainer.export RUN_DIR/adapter --out DIR [--merge]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from curation.errors import StageError


class ExportError(StageError):
    pass


def export_adapter(adapter: Path, out: Path, *, merge: bool = False, base_model: str | None = None) -> dict[str, Any]:
    full = not (adapter / "adapter_config.json").exists() and (adapter / "config.json").exists()
    if not (adapter / "adapter_config.json").exists() and not full:
        raise ExportError(f"{adapter} holds no adapter (adapter_config.json is missing)")
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out} exists and is not empty")
    if full:  # a full fine-tune saved the whole model: it is already "merged"
        shutil.copytree(adapter, out, dirs_exist_ok=True)
        return {"out_dir": str(out), "merged": True, "full_model": True, "files": sorted(p.name for p in out.iterdir())}
    if not merge:
        shutil.copytree(adapter, out, dirs_exist_ok=True)
        return {"out_dir": str(out), "merged": False, "files": sorted(p.name for p in out.iterdir())}

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curation.models import resolve_model

    cfg = json.loads((adapter / "adapter_config.json").read_text())
    base = resolve_model(base_model or cfg.get("base_model_name_or_path"))
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok_src = adapter if (adapter / "tokenizer_config.json").exists() else Path(base)
    AutoTokenizer.from_pretrained(tok_src).save_pretrained(out)
    return {"out_dir": str(out), "merged": True, "base_model": base, "files": sorted(p.name for p in out.iterdir())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.export", description=__doc__.splitlines()[0])
    p.add_argument("adapter", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--merge", action="store_true")
    p.add_argument("--base-model")
    a = p.parse_args(argv)
    print(json.dumps(export_adapter(a.adapter, a.out, merge=a.merge, base_model=a.base_model)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
