"""Which language a person reads: their own setting, else the policy's, else the default.

The users file (`language: ja|en` per user) is the person's preference; a user is
found by login name (the sender) or by one of their addresses (approvers). The file is
re-read when it changes. Unknown people get the verdict's language, then
`review.default_language` ("both": Japanese first, English alongside).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import yaml

from guard.mail.addresses import address_key
from guard.users import parse_users

log = logging.getLogger("guard.notify")

LANGS = ("ja", "en", "both")


class Languages:
    def __init__(self, users_file: str | os.PathLike[str] | None, default: str = "both") -> None:
        self.path = Path(users_file) if users_file else None
        self.default = default if default in LANGS else "both"
        self._mtime: float | None = None
        self._by_name: dict[str, str] = {}
        self._by_address: dict[str, str] = {}
        self._lock = threading.Lock()

    def _reload(self) -> None:
        if self.path is None:
            return
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime
            except OSError:
                self._by_name, self._by_address, self._mtime = {}, {}, None
                return
            if mtime == self._mtime:
                return
            try:
                users = parse_users(yaml.safe_load(self.path.read_text(encoding="utf-8")))
            except Exception:
                log.warning("users file %s unreadable; languages from the policy", self.path)
                return
            by_name = {u.name: u.language for u in users.values() if u.language in LANGS}
            by_addr = {address_key(a): u.language for u in users.values() if u.language in LANGS
                       for a in u.addresses}
            self._by_name, self._by_address, self._mtime = by_name, by_addr, mtime

    def for_person(self, *, address: str = "", name: str = "", policy: str = "") -> str:
        self._reload()
        lang = self._by_name.get(name) if name else None
        lang = lang or (self._by_address.get(address_key(address)) if address else None)
        return lang or (policy if policy in LANGS else "") or self.default
