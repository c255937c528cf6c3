"""A frozen version's export, as the trainer sees it: `manifest.json` plus the split files.

The export folder (written by `sift freeze`/`export`, or by hand) holds

    manifest.json   {"name": ..., "version": {...hashed part...}, "manifest_sha256": ...,
                     "files": {"train.jsonl": sha256, "eval.jsonl": sha256, ...}, ...}
    train.jsonl     OpenAI messages JSONL (`{"messages": [...], "tools": [...]}` per line)
    eval.jsonl      the same

Every listed file's sha256 is checked before a single token is trained on: a run always names the
exact bytes it learnt from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.errors import StageError
from curation.formats import map_openai
from curation.records import Conversation, canonical_json, file_sha256, sha256_hex


class ManifestError(StageError):
    """The export is missing, incomplete or does not match its manifest."""


@dataclass(frozen=True)
class Export:
    path: Path
    manifest: dict[str, Any]
    train: list[Conversation]
    eval: list[Conversation]

    @property
    def version(self) -> str:
        """The version's name (`name` in Sift's manifests; a plain string `version` also works)."""
        v = self.manifest.get("version")
        return str(self.manifest.get("name") or (v if isinstance(v, str) else ""))

    @property
    def manifest_sha256(self) -> str:
        return str(self.manifest.get("manifest_sha256", ""))


def read_conversations(path: Path) -> list[Conversation]:
    out: list[Conversation] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                conv, _ = map_openai(row)
            except Exception as e:
                raise ManifestError(f"{path.name} line {n}: {e}") from None
            out.append(conv)
    return out


def load_export(manifest_path: str | Path, *, require_train: bool = True) -> Export:
    """Read `manifest.json` (or the folder holding it), verify every file's sha256, parse the splits.

    `require_train=False` accepts an empty train split (a version used only for evaluation)."""
    p = Path(manifest_path)
    if p.is_dir():
        p = p / "manifest.json"
    try:
        manifest = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {p}") from None
    except json.JSONDecodeError as e:
        raise ManifestError(f"manifest {p} is not valid JSON: {e}") from None
    files = manifest.get("files")
    if not isinstance(files, dict) or "train.jsonl" not in files:
        raise ManifestError(f"manifest {p} lists no train.jsonl under 'files'")
    for key in ("version", "manifest_sha256"):
        if key not in manifest:
            raise ManifestError(f"manifest {p} has no {key!r}")
    body = manifest["version"]
    if isinstance(body, dict) and sha256_hex(canonical_json(body)) != manifest["manifest_sha256"]:
        raise ManifestError(f"manifest {p} was modified: its content no longer hashes to its manifest_sha256")
    root = p.parent
    for name, want in files.items():
        f = root / name
        if not f.exists():
            raise ManifestError(f"{name} is listed in the manifest but missing from {root}")
        got = file_sha256(f)
        if got != want:
            raise ManifestError(
                f"{name} does not match the manifest (sha256 {got[:12]}…, manifest says {str(want)[:12]}…)"
            )
    train = read_conversations(root / "train.jsonl")
    evals = read_conversations(root / "eval.jsonl") if "eval.jsonl" in files else []
    if not train and require_train:
        raise ManifestError(f"the train split of version {Export(root, manifest, [], []).version!r} is empty")
    return Export(root, manifest, train, evals)


def write_export(
    out_dir: str | Path,
    train: list[Conversation],
    eval: list[Conversation],
    *,
    version: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write an export folder in the versions' format (used by tests, benchmarks and scripts)."""
    from curation.formats import to_openai

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for name, convs in (("train.jsonl", train), ("eval.jsonl", eval)):
        text = "".join(json.dumps(to_openai(c), ensure_ascii=False) + "\n" for c in convs)
        (out / name).write_text(text, encoding="utf-8")
        files[name] = file_sha256(out / name)
    body = {"counts": {"train": len(train), "eval": len(eval)}, **(extra or {})}
    manifest = {
        "format": "sift.version/1",
        "name": version,
        "version": body,
        "manifest_sha256": sha256_hex(canonical_json(body)),
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return out / "manifest.json"
