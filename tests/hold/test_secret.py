"""load_or_create_secret: created once (0600), read back, shared by racing processes."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from guard.config import ConfigError, load_settings
from guard.secret import load_or_create_secret


def test_created_once_with_mode_0600(tmp_path: Path):
    s = load_settings(None, {"GUARD_SECRET_FILE": str(tmp_path / "sub" / "guard.secret")})
    first = load_or_create_secret(s)
    path = tmp_path / "sub" / "guard.secret"
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(s) == first
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_configured_secret_wins(tmp_path: Path):
    s = load_settings(None, {"GUARD_SECRET": "a configured secret value",
                             "GUARD_SECRET_FILE": str(tmp_path / "guard.secret")})
    assert load_or_create_secret(s) == b"a configured secret value"
    assert not (tmp_path / "guard.secret").exists()
    with pytest.raises(ConfigError):
        load_or_create_secret(load_settings(None, {"GUARD_SECRET": "short"}))


def test_racing_processes_agree(tmp_path: Path):
    s = load_settings(None, {"GUARD_SECRET_FILE": str(tmp_path / "guard.secret")})
    got: list[bytes] = []
    threads = [threading.Thread(target=lambda: got.append(load_or_create_secret(s)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and len(set(got)) == 1


def test_short_or_unreadable_secret_file_is_refused(tmp_path: Path):
    p = tmp_path / "guard.secret"
    p.write_text("abcd\n")
    with pytest.raises(ConfigError):
        load_or_create_secret(load_settings(None, {"GUARD_SECRET_FILE": str(p)}))


def test_one_home_beside_the_sqlite_database(tmp_path: Path, monkeypatch):
    from guard.secret import NoSecretHome, load_secret, secret_home

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    s = load_settings(None, {"GUARD_DATABASE_URL": "sqlite:///data/guard.db"})
    assert secret_home(s).path == tmp_path / "data" / "guard.secret"  # absolute
    assert load_secret(s) is None and not (tmp_path / "data" / "guard.secret").exists()
    created = load_or_create_secret(s)
    monkeypatch.chdir(tmp_path / "data")  # elsewhere, the same URL: the same secret
    s2 = load_settings(None, {"GUARD_DATABASE_URL": f"sqlite:///{tmp_path}/data/guard.db"})
    assert load_secret(s2) == created
    explicit = load_settings(None, {"GUARD_SECRET_FILE": "k/s"})
    assert secret_home(explicit).path == tmp_path / "data" / "k" / "s"
    pg = load_settings(None, {"GUARD_DATABASE_URL": "postgresql://u@127.0.0.1/g"})
    with pytest.raises(NoSecretHome) as e:
        secret_home(pg)
    assert isinstance(e.value, ConfigError)
    assert "GUARD_SECRET or GUARD_SECRET_FILE" in str(e.value)
