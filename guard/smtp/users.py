"""The users file: who may submit mail, with which password and as which addresses.

users.yaml:
    users:
      alice:
        password: "scrypt$16384$8$1$<salt>$<hash>"   # written by `guard users add`
        addresses: [alice@example.co.jp, sales@example.co.jp]   # MAIL FROM allowed
        language: ja
Passwords are hashed with scrypt (hashlib, no extra dependency); verification is
constant-time and costs the same for unknown users, so AUTH does not reveal who exists.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from guard.addresses import address_key

_N, _R, _P = 2**14, 8, 1
_DUMMY_SALT = b"guard-dummy-salt"


@dataclass(frozen=True)
class User:
    name: str
    addresses: tuple[str, ...]
    language: str = ""
    password_hash: str = ""

    def may_send_as(self, address: str) -> bool:
        a = address_key(address)
        return any(a == address_key(x) for x in self.addresses)


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(dk).decode()}"


def verify_password(password: bytes, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, dk = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(dk)
        got = hashlib.scrypt(password, salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


class UserDirectory:
    """Reads users.yaml, re-reading it when it changes (checked at most once a second)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._users: dict[str, User] = {}
        self._mtime: float | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        # successful verifications, so a client that logs in on every connection does
        # not pay scrypt each time: key = HMAC of (user, password) under a process key
        self._ok_cache: dict[bytes, float] = {}
        self._cache_key = os.urandom(32)
        self.reload()

    def reload(self) -> None:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._users, self._mtime = {}, None
                return
            if st.st_mtime == self._mtime:
                return
            doc = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
            self._users = parse_users(doc)
            self._mtime = st.st_mtime
            self._ok_cache.clear()

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked > 1.0:
            self._checked = now
            self.reload()

    def get(self, name: str) -> User | None:
        self._maybe_reload()
        return self._users.get(name)

    def authenticate(self, login: bytes, password: bytes) -> User | None:
        """Blocking (scrypt): call it from a thread."""
        self._maybe_reload()
        try:
            name = login.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        user = self._users.get(name)
        key = hmac.new(self._cache_key, login + b"\x00" + password, "sha256").digest()
        if user is not None and self._ok_cache.get(key, 0) > time.monotonic():
            return user
        stored = user.password_hash if user else ""
        if not stored:
            # same work for an unknown user (no user enumeration by timing)
            hashlib.scrypt(password, salt=_DUMMY_SALT, n=_N, r=_R, p=_P, dklen=32)
            return None
        if not verify_password(password, stored):
            return None
        self._ok_cache[key] = time.monotonic() + 600
        return user


def parse_users(doc: Any) -> dict[str, User]:
    users = (doc or {}).get("users") or {}
    if not isinstance(users, dict):
        raise ValueError("users file: 'users' must be a mapping of name → settings")
    out: dict[str, User] = {}
    for name, entry in users.items():
        entry = entry or {}
        addrs = entry.get("addresses") or []
        if isinstance(addrs, str):
            addrs = [addrs]
        out[str(name)] = User(name=str(name), addresses=tuple(str(a) for a in addrs),
                              language=str(entry.get("language") or ""),
                              password_hash=str(entry.get("password") or ""))
    return out


def add_user(path: str | os.PathLike[str], name: str, password: str,
             addresses: list[str], language: str = "") -> None:
    """Create or update one user in the users file (written atomically, mode 0600)."""
    p = Path(path)
    doc: dict[str, Any] = {}
    if p.exists():
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    users = doc.setdefault("users", {})
    entry = users.get(name) or {}
    entry["password"] = hash_password(password)
    if addresses:
        entry["addresses"] = addresses
    entry.setdefault("addresses", [])
    if language:
        entry["language"] = language
    users[name] = entry
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, allow_unicode=True, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
