"""Files uploaded through the app: a size limit, safe names inside one private folder, and
nothing left behind once they are imported. No Streamlit here, so the rules can be tested alone."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from workbench.store import StoreError

MAX_NAME_BYTES = 200  # well under the 255 bytes most file systems allow


class UploadRefused(StoreError):
    pass


def max_upload_mb() -> float:
    """The limit per uploaded file, `$SIFT_MAX_UPLOAD_MB` (default 200; Streamlit's own
    server.maxUploadSize, also 200 by default, applies before it)."""
    return float(os.environ.get("SIFT_MAX_UPLOAD_MB", "200"))


@dataclass(frozen=True)
class Upload:
    name: str
    size: int
    read: Callable[[], bytes]


def safe_name(name: str) -> str:
    """An uploaded file's name reduced to a plain base name: letters, digits, '.', '_' and '-',
    no leading dot, at most MAX_NAME_BYTES, its extension kept. It can never leave the folder."""
    base = Path(name.replace("\\", "/")).name
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip(".")
    ext = re.sub(r"[^A-Za-z0-9]", "", ext)[:16]
    stem = stem[: MAX_NAME_BYTES - len(ext) - 12] or "upload"  # room for ".ext" and a "-n" suffix
    return f"{stem}.{ext}" if ext else stem


def _distinct(names: Sequence[str]) -> list[str]:
    """`names` made distinct, case-insensitively: a second `x.json` becomes `x-2.json`."""
    out: list[str] = []
    seen: set[str] = set()
    for cand in names:
        stem, dot, ext = cand.rpartition(".")
        if not dot:
            stem, ext = cand, ""
        name, n = cand, 1
        while name.lower() in seen:
            n += 1
            name = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
        seen.add(name.lower())
        out.append(name)
    return out


def unique_names(names: Sequence[str]) -> list[str]:
    """Safe names, made distinct: two uploads called `x.json` (from different folders) must not
    overwrite each other."""
    return _distinct([safe_name(n) for n in names])


def recorded_names(names: Sequence[str]) -> list[str]:
    """The names the store records for uploads: what the user called each file (its base name,
    spaces and accents kept; control and format characters dropped), made distinct the same way
    as the files on disk. Only ever shown as text; never used as a path."""
    bases = [Path(n.replace("\\", "/")).name for n in names]
    return _distinct(["".join(ch for ch in b if ch.isprintable()).strip()[:MAX_NAME_BYTES] or "upload" for b in bases])


def refuse_oversized(uploads: Sequence[Upload]) -> None:
    limit = max_upload_mb()
    too_big = [u.name for u in uploads if u.size > limit * 1024 * 1024]
    if too_big:
        names = ", ".join(repr(n) for n in too_big)
        raise UploadRefused(f"Refused: {names} larger than {limit:g} MB (SIFT_MAX_UPLOAD_MB); nothing was imported")


@contextlib.contextmanager
def saved(uploads: Sequence[Upload]) -> Iterator[list[Path]]:
    """The uploads written into a new private folder (mode 0700) under safe, distinct names; the
    folder and its files are removed afterwards, so no copy of the data stays behind.
    Refuses (UploadRefused) before writing anything if one is over the limit."""
    refuse_oversized(uploads)
    folder = Path(tempfile.mkdtemp(prefix="sift-upload-"))
    try:
        paths = []
        for u, name in zip(uploads, unique_names([u.name for u in uploads]), strict=True):
            target = folder / name
            if target.resolve().parent != folder.resolve():  # cannot happen; belt and braces
                raise UploadRefused(f"Refused: upload name {u.name!r}")
            target.write_bytes(u.read())
            paths.append(target)
        yield paths
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- files already on the server


def import_roots() -> list[Path]:
    """The folders the app may import from by path: `$SIFT_IMPORT_ROOTS` (os.pathsep-separated),
    resolved. Empty (the default) means importing by server path is off."""
    raw = os.environ.get("SIFT_IMPORT_ROOTS", "")
    return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]


def server_paths(lines: Sequence[str], roots: Sequence[Path]) -> list[Path]:
    """Typed server paths, each resolved (symlinks and `..` too) and required to be a file inside
    one of `roots`. The message is the same whether a refused path exists or not, so the page
    cannot be used to probe the server's files."""
    if not roots:
        raise UploadRefused("Importing by server path is off (an administrator sets SIFT_IMPORT_ROOTS)")
    out: list[Path] = []
    for line in lines:
        if not line.strip():
            continue
        p = Path(line.strip()).expanduser()
        try:
            real = p.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            real = None
        if real is None or not any(real.is_relative_to(r) for r in roots) or not real.is_file():
            raise UploadRefused(
                f"Refused: {line.strip()!r} is not a file inside an allowed import folder; nothing imported"
            )
        out.append(real)
    return out
