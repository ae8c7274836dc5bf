"""`guard queue release` and `guard queue cancel` (guard.cli.queue)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from guard.cli.queue import add_queue_commands
from tests.hold.conftest import ALICE, close_harness, make_settings, open_harness, verdict


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="guard")
    p.add_argument("--config")
    sub = p.add_subparsers(dest="command", required=True)
    queue = sub.add_parser("queue").add_subparsers(dest="queue_cmd", required=True)
    add_queue_commands(queue)
    return p


def run(*argv: str) -> int:
    args = parser().parse_args(list(argv))
    return int(args.func(args))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    settings = make_settings(tmp_path)
    monkeypatch.setenv("GUARD_DATABASE_URL", settings.database.url)
    monkeypatch.setenv("GUARD_SECRET_FILE", settings.secret_file)
    monkeypatch.setenv("GUARD_USERS_FILE", settings.smtp.users_file)
    monkeypatch.setenv("GUARD_HOSTNAME", "guard.localhost")
    monkeypatch.setenv("LOGNAME", "admin-jane")
    monkeypatch.setenv("USER", "admin-jane")
    monkeypatch.delenv("SUDO_USER", raising=False)
    return tmp_path


def put(tmp_path: Path, v: dict) -> str:
    async def go() -> str:
        h = await open_harness(make_settings(tmp_path))
        try:
            return await h.put(v)
        finally:
            await close_harness(h)

    return asyncio.run(go())


def inspect(tmp_path: Path, mid: str) -> tuple[str, list[dict], list]:
    async def go() -> tuple[str, list[dict], list]:
        h = await open_harness(make_settings(tmp_path))
        try:
            return await h.state(mid), await h.audit(mid), await h.notices(mid)
        finally:
            await close_harness(h)

    return asyncio.run(go())


def test_release(env: Path, capsys: pytest.CaptureFixture[str]):
    mid = put(env, verdict("approve"))
    assert run("queue", "release", mid, "--reason", "confirmed by phone") == 0
    state, audit, notices = inspect(env, mid)
    assert state == "queued"
    (a,) = [a for a in audit if a["action"] == "release"]
    assert a["actor"] == "cli:admin:admin-jane"
    assert a["detail"]["reason"] == "confirmed by phone"
    assert any(n.kind == "released" and n.to == ALICE for n in notices)
    # a second release finds nothing held
    assert run("queue", "release", mid) == 3
    assert "not held" in capsys.readouterr().err


def test_cancel_needs_a_reason_and_tells_the_sender(env: Path):
    mid = put(env, verdict("confirm"))
    with pytest.raises(SystemExit):
        run("queue", "cancel", mid)
    assert run("queue", "cancel", mid, "--reason", "宛先が誤っています") == 0
    state, audit, notices = inspect(env, mid)
    assert state == "cancelled"
    (a,) = [a for a in audit if a["action"] == "cancel"]
    assert a["detail"]["near_miss"] is True and a["detail"]["note"] == "宛先が誤っています"
    (n,) = [n for n in notices if n.kind == "cancelled"]
    assert n.to == ALICE and "宛先が誤っています" in n.body
    assert run("queue", "cancel", "NOSUCHID0000000000", "--reason", "x") == 1
