"""How the commands open the store (guard/store/access.py), as a user types them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_postgres, reset_postgres


def guard(cwd: Path, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "guard.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", [["queue", "list"], ["queue", "show", "X"],
                                     ["lists", "show"], ["queue", "release", "X"]])
def test_read_commands_never_create_a_database(tmp_path: Path, command: list[str]) -> None:
    r = guard(tmp_path, *command)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no database at" in lines[0] and "guard db upgrade" in lines[0]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "guard.db").exists()
    assert list(tmp_path.iterdir()) == []  # nor a secret, nor anything else


def test_upgrade_then_read(tmp_path: Path) -> None:
    r = guard(tmp_path, "db", "upgrade")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "guard.db").exists()
    r = guard(tmp_path, "queue", "list")
    assert r.returncode == 0 and r.stdout.startswith("ID")


@pytest.mark.postgres
def test_fresh_postgres_schema_says_upgrade(tmp_path: Path) -> None:
    db_url = require_postgres()
    reset_postgres(db_url)
    r = guard(tmp_path, "lists", "show", env={"GUARD_DATABASE_URL": db_url})
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"guard: database {db_url} has no guard tables: run `guard db upgrade` first")


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    r = guard(tmp_path, "queue", "list",
              env={"GUARD_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"})
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "127.0.0.1" in r.stderr
