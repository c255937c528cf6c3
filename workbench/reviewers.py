"""The optional reviewer list: who may review, with salted, slow password hashes.

The list is a TOML file (default `sift-reviewers.toml` beside the store, or `$SIFT_REVIEWERS`):

    [reviewers.ana]
    password = "scrypt$16384$8$1$<salt, base64>$<hash, base64>"
    admin = true            # may edit the review guide and tag lists

When the file exists, the app asks for a name and password before anyone changes anything;
without it, a reviewer types a name. Hashes are written by `sift reviewer add NAME`.
Passwords are never stored or logged; hashes use hashlib.scrypt (or PBKDF2-SHA256 when read).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from workbench.store import StoreError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@ -]{0,63}$")


class ReviewerConfigError(StoreError):
    """The reviewer file is unreadable or a reviewer entry is invalid."""


@dataclass(frozen=True, slots=True)
class Reviewer:
    name: str
    password_hash: str
    admin: bool = False


def reviewers_path(store_path: str | Path) -> Path:
    env = os.environ.get("SIFT_REVIEWERS")
    return Path(env) if env else Path(store_path).resolve().parent / "sift-reviewers.toml"


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash` with a fresh 16-byte salt."""
    if not password:
        raise ReviewerConfigError("a password cannot be empty")
    salt = salt if salt is not None else secrets.token_bytes(16)
    h = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(h)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of `password` against a stored scrypt or pbkdf2_sha256 hash."""
    try:
        kind, *rest = stored.split("$")
        if kind == "scrypt":
            n, r, p, salt, want = rest
            got = hashlib.scrypt(
                password.encode("utf-8"),
                salt=base64.b64decode(salt),
                n=int(n),
                r=int(r),
                p=int(p),
                dklen=len(base64.b64decode(want)),
                maxmem=256 * 1024 * 1024,
            )
        elif kind == "pbkdf2_sha256":
            iterations, salt, want = rest
            got = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), base64.b64decode(salt), int(iterations))
        else:
            return False
        return hmac.compare_digest(got, base64.b64decode(want))
    except (ValueError, TypeError):
        return False


def load_reviewers(path: Path) -> dict[str, Reviewer]:
    """The reviewers in `path`; {} when the file does not exist (then anyone may type a name)."""
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ReviewerConfigError(f"cannot read the reviewer list {path}: {e}") from None
    out: dict[str, Reviewer] = {}
    for name, entry in (data.get("reviewers") or {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("password"), str):
            raise ReviewerConfigError(f"{path}: reviewer {name!r} needs a password hash (use `sift reviewer add`)")
        if entry["password"].split("$", 1)[0] not in ("scrypt", "pbkdf2_sha256"):
            raise ReviewerConfigError(
                f"{path}: reviewer {name!r}: the password must be a scrypt or pbkdf2_sha256 hash, never plain text"
            )
        out[name] = Reviewer(name, entry["password"], bool(entry.get("admin", False)))
    return out


def authenticate(path: Path, name: str, password: str) -> Reviewer | None:
    r = load_reviewers(path).get(name)
    if r is None:
        # Same cost whether or not the name exists, so timing does not reveal reviewer names.
        verify_password(password, hash_password("x", salt=b"\0" * 16))
        return None
    return r if verify_password(password, r.password_hash) else None


def add_reviewer(path: Path, name: str, password: str, *, admin: bool = False) -> Reviewer:
    """Add or replace one reviewer, keeping the others; the file is rewritten atomically."""
    if not NAME_RE.match(name):
        raise ReviewerConfigError(
            f"invalid reviewer name {name!r}: letters, digits, '.', '_', '@', '-' and spaces, at most 64"
        )
    reviewers = load_reviewers(path)
    reviewers[name] = Reviewer(name, hash_password(password), admin)
    lines = ["# Sift reviewers: salted scrypt hashes (write them with `sift reviewer add NAME`).", ""]
    for r in sorted(reviewers.values(), key=lambda r: r.name):
        # JSON strings are valid TOML basic strings for these characters.
        lines += [f"[reviewers.{json.dumps(r.name)}]", f"password = {json.dumps(r.password_hash)}"]
        lines += [f"admin = {'true' if r.admin else 'false'}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return reviewers[name]


class SignInThrottle:
    """Failed sign-ins counted per reviewer name and per client address for the whole server
    process, not per browser session (a new session must not start again at the shortest wait).

    The first FREE failures of a key cost nothing (typos); after them each failure locks that key
    for twice as long as the last, up to `cap_s`. While any key of an attempt is locked the
    password is not even checked. A key is forgotten `forget_s` after its last failure, and a
    successful sign-in clears the name's count (not the address's: one known password must not
    reset the guessing of others from that address).
    """

    FREE = 3

    def __init__(self, *, cap_s: float = 300.0, forget_s: float = 3600.0, max_keys: int = 100_000) -> None:
        import threading
        import time

        self.cap_s, self.forget_s, self.max_keys = cap_s, forget_s, max_keys
        self.clock = time.monotonic
        self._lock = threading.Lock()
        self._state: dict[str, tuple[int, float, float]] = {}  # key -> (failures, last failure, locked until)

    @staticmethod
    def keys(name: str, address: str | None) -> list[str]:
        return [f"name:{name.strip().lower()}", f"address:{address or 'unknown'}"]

    def wait_s(self, keys: list[str]) -> float:
        """Seconds until an attempt with these keys is allowed again (0: now)."""
        now = self.clock()
        with self._lock:
            return max((self._state[k][2] - now for k in keys if k in self._state), default=0.0) if keys else 0.0

    def failed(self, keys: list[str]) -> None:
        now = self.clock()
        with self._lock:
            if len(self._state) > self.max_keys:
                self._state = {k: v for k, v in self._state.items() if now - v[1] < self.forget_s}
            for k in keys:
                n, last, _ = self._state.get(k, (0, now, now))
                n = 1 if now - last >= self.forget_s else n + 1
                lock = 0.0 if n <= self.FREE else min(2.0 ** (n - self.FREE - 1), self.cap_s)
                self._state[k] = (n, now, now + lock)

    def succeeded(self, name_key: str) -> None:
        with self._lock:
            self._state.pop(name_key, None)

    def reset(self) -> None:
        with self._lock:
            self._state.clear()


THROTTLE = SignInThrottle()
