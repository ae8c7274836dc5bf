"""The process secret behind every HMAC (link tokens, CSRF values, list digests).

`settings.secret` wins when set. Otherwise the secret lives in one file, whichever
directory a command runs in (list digests made by one command must match those of
another, or a withdrawn member silently passes):

- `settings.secret_file` when set (a relative path was made absolute against the
  config file's directory by `load_settings`, else it is taken from the current
  directory);
- else `guard.secret` beside the SQLite database file. PostgreSQL has no "beside":
  GUARD_SECRET or GUARD_SECRET_FILE must be set.

The file is created once with 32 random bytes (hex, mode 0600) by the commands that own
the store (`guard serve`/`dev`, `guard db upgrade`, `guard lists import`) and read by
every other one, which never creates it. Several processes starting together agree on
one file: it is written under a temporary name and hard-linked into place, which fails
for everyone but the first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from guard.config import ConfigError, Settings, describe_database, sqlite_path

log = logging.getLogger("guard.secret")

MIN_SECRET_BYTES = 16
SECRET_FILE_NAME = "guard.secret"


class NoSecretHome(ConfigError):
    """Neither a secret nor a secret file is set and the database gives no directory."""


@dataclass(frozen=True)
class SecretHome:
    path: Path | None  # None: the configured value (settings.secret) is the secret

    def describe(self) -> str:
        return str(self.path) if self.path is not None else "the configured secret (GUARD_SECRET)"


def secret_home(settings: Settings) -> SecretHome:
    """Where this configuration keeps its secret (the file need not exist yet)."""
    if settings.secret:
        return SecretHome(None)
    if settings.secret_file:
        return SecretHome(Path(settings.secret_file).absolute())
    db_file = sqlite_path(settings.database.url)
    if db_file is None:
        raise NoSecretHome(
            f"the database {describe_database(settings.database.url)} has no directory to keep the "
            "secret in: set GUARD_SECRET or GUARD_SECRET_FILE (secret / secret_file)")
    return SecretHome(db_file.resolve().parent / SECRET_FILE_NAME)


def load_or_create_secret(settings: Settings) -> bytes:
    """The secret, created in its home if there is none yet (commands that own the store)."""
    if settings.secret:
        return _configured(settings.secret)
    path = secret_home(settings).path
    assert path is not None
    if not path.exists():
        try:
            _create(path)
        except OSError as e:  # a read-only volume, a secret file that was not mounted
            raise ConfigError(f"{path}: no secret there and cannot create one: "
                              f"{e.strerror or e}") from e
    return _read(path)


def load_secret(settings: Settings) -> bytes | None:
    """The secret if it exists (read commands: they never create one)."""
    if settings.secret:
        return _configured(settings.secret)
    path = secret_home(settings).path
    assert path is not None
    if not path.exists():
        return None
    return _read(path)


def _configured(secret: str) -> bytes:
    value = secret.encode("utf-8")
    if len(value) < MIN_SECRET_BYTES:
        raise ConfigError(f"secret: at least {MIN_SECRET_BYTES} characters")
    return value


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
