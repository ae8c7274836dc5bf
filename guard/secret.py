"""The process secret behind every HMAC (link tokens, CSRF values, list digests).

`settings.secret` wins when set. Otherwise the secret lives in `settings.secret_file`:
created once with 32 random bytes (hex, mode 0600) and read on every later start, so
links mailed before a restart keep working. Several processes starting together agree
on one file: it is written under a temporary name and hard-linked into place, which
fails for everyone but the first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

from guard.config import ConfigError, Settings

log = logging.getLogger("guard.secret")

MIN_SECRET_BYTES = 16


def load_or_create_secret(settings: Settings) -> bytes:
    if settings.secret:
        value = settings.secret.encode("utf-8")
        if len(value) < MIN_SECRET_BYTES:
            raise ConfigError(f"secret: at least {MIN_SECRET_BYTES} characters")
        return value
    path = Path(settings.secret_file)
    if not path.exists():
        _create(path)
    return _read(path)


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic, and refuses to replace a secret someone wrote
            log.info("created a new secret in %s", path)
        except FileExistsError:
            pass  # another process won the race: use its secret
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    with contextlib.suppress(OSError):  # make the new name durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _read(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the secret: {e}") from e
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # anyone who can read it can mint approval links
        log.warning("%s is readable by other users; chmod 600 it", path)
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = text.encode("utf-8")  # an admin-written passphrase
    if len(value) < MIN_SECRET_BYTES:
        raise ConfigError(f"{path}: the secret is shorter than {MIN_SECRET_BYTES} bytes")
    return value
