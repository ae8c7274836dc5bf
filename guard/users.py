"""The users file: who may submit mail, with which password and as which addresses.

users.yaml:
    users:
      alice:
        password: "scrypt$16384$8$1$<salt>$<hash>"   # written by `guard users add`
        addresses: [alice@example.co.jp]   # her own (notices, approvals find her by these)
        aliases: [sales@example.co.jp]     # shared mailboxes she may also send as
        language: ja
A user may send as (MAIL FROM, From:, Sender:) any of their addresses and aliases
(guard.smtp.identity). `guard users add|list|remove|passwd` manage the file.
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

from guard.ids import GUARD_SENDER

_N, _R, _P = 2**14, 8, 1
_DUMMY_SALT = b"guard-dummy-salt"


@dataclass(frozen=True)
class User:
    name: str
    addresses: tuple[str, ...]
    language: str = ""
    password_hash: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def identities(self) -> tuple[str, ...]:
        """Every address this user may send as."""
        return self.addresses + self.aliases


class UsersFileError(Exception):
    """The users file cannot be read or written (one line)."""


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


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    return tuple(str(a) for a in value or [])


def reserved_name(name: str) -> str:
    """Why `name` cannot be a user: it is the sender name of the guard's own mail, which
    alerts and reports leave out, so that user's mail would be left out too."""
    return (f"user name {name!r} is reserved for the guard's own mail / "
            f"ユーザー名 {name!r} は guard 自身のメール用に予約されています "
            "(rename it / 別の名前にしてください)")


def parse_users(doc: Any) -> dict[str, User]:
    if not isinstance(doc or {}, dict):
        raise ValueError("users file: expected a mapping with a 'users' key")
    users = (doc or {}).get("users") or {}
    if not isinstance(users, dict):
        raise ValueError("users file: 'users' must be a mapping of name → settings")
    out: dict[str, User] = {}
    for name, entry in users.items():
        entry = entry or {}
        if not isinstance(entry, dict):
            raise ValueError(f"users file: user {name}: expected a mapping")
        if str(name) == GUARD_SENDER:
            raise ValueError(reserved_name(str(name)))
        out[str(name)] = User(name=str(name), addresses=_strings(entry.get("addresses")),
                              language=str(entry.get("language") or ""),
                              password_hash=str(entry.get("password") or ""),
                              aliases=_strings(entry.get("aliases")))
    return out


def _read_doc(p: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        parse_users(doc)  # refuse to rewrite a file we do not understand
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as e:
        raise UsersFileError(f"{p}: {' '.join(str(e).split())}") from e
    return dict(doc)


def read_users(path: str | os.PathLike[str]) -> dict[str, User]:
    """The users in the file (UsersFileError when it is missing or broken)."""
    p = Path(path)
    if not p.exists():
        raise UsersFileError(f"no users file at {p.resolve()} (`guard users add` creates it)")
    return parse_users(_read_doc(p))


def add_user(path: str | os.PathLike[str], name: str, password: str,
             addresses: list[str], language: str = "", aliases: list[str] | None = None
             ) -> None:
    """Create or update one user in the users file (written atomically, mode 0600)."""
    p = Path(path)
    doc = _read_doc(p)
    users = doc.setdefault("users", {})
    entry = users.get(name) or {}
    entry["password"] = hash_password(password)
    if addresses:
        entry["addresses"] = addresses
    entry.setdefault("addresses", [])
    if aliases:
        entry["aliases"] = aliases
    if language:
        entry["language"] = language
    users[name] = entry
    _write(p, doc)


def set_password(path: str | os.PathLike[str], name: str, password: str) -> None:
    p = Path(path)
    doc = _read_doc(p)
    entry = (doc.get("users") or {}).get(name)
    if entry is None:
        raise UsersFileError(f"no user {name} in {p}")
    entry["password"] = hash_password(password)
    _write(p, doc)


def remove_user(path: str | os.PathLike[str], name: str) -> None:
    p = Path(path)
    doc = _read_doc(p)
    users = doc.get("users") or {}
    if name not in users:
        raise UsersFileError(f"no user {name} in {p}")
    del users[name]
    _write(p, doc)


def _write(p: Path, doc: dict[str, Any]) -> None:
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, allow_unicode=True, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
