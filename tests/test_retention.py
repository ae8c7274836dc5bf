"""What the guard keeps and for how long (guard/store/retention.py), through `guard purge`,
`guard audit export` and `guard lookup` as an admin types them, on SQLite and PostgreSQL:
the rows are checked in the database itself."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from guard.store import db
from guard.store import queue as q
from guard.store.schema import audit, contents, messages
from guard.store.writer import BatchWriter
from tests.conftest import query_rows

DAY = 86400.0
ADDR = "tanaka@example.net"


def guard(cwd: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env["GUARD_DATABASE_URL"] = db_url
    return subprocess.run([sys.executable, "-m", "guard.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def _message(id: str, state: str, subject: str = "") -> q.NewMessage:
    return q.NewMessage(id=id, state="held" if state == "held" else "queued",
                        mail_from="alice@example.co.jp", sender="alice",
                        rcpt_tos=[ADDR], data=f"Subject: {id}\r\n\r\nbody of {id}\r\n".encode(),
                        listener="submission", subject=subject,
                        header_from="経理 <finance@example.co.jp>" if id == "NEW" else "",
                        verdict={"action": state, "rule": f"rule-{id}"},
                        hold_seconds=3600 if state == "held" else None, actor="smtp:alice")


# id, state, age in days (of the message row, its body and its audit rows)
ROWS = [("NEW", "delivered", 0), ("WEEKS", "rejected", 40), ("ANCIENT", "cancelled", 400),
        ("HELD", "held", 400)]


def seed(db_url: str, tmp_path: Path) -> None:
    assert guard(tmp_path, db_url, "db", "upgrade").returncode == 0

    async def go() -> None:
        engine = db.create_engine(db_url)
        writer = BatchWriter(engine)
        writer.start()
        try:
            for id, state, _age in ROWS:
                m = _message(id, state, subject="見積書" if id == "NEW" else "")
                await writer.submit(lambda c, now, m=m: q.insert_message(c, now, m))
            # finish and age them as if it happened long ago (as delivery and the
            # hold timers would have, without waiting for them)
            async with engine.begin() as conn:
                for id, state, age in ROWS:
                    then = (await db.db_now(conn)) - age * DAY
                    await conn.execute(update(messages).where(messages.c.id == id)
                                       .values(updated_at=then, received_at=then, state=state))
                    await conn.execute(update(audit).where(audit.c.message_id == id)
                                       .values(at=then))
        finally:
            await writer.close()
            await engine.dispose()

    asyncio.run(go())


def state_of(db_url: str) -> dict[str, Any]:
    return {
        "messages": sorted(r.id for r in query_rows(db_url, select(messages.c.id))),
        "bodies": sorted(r.message_id for r in query_rows(db_url,
                                                          select(contents.c.message_id))),
        "audit": sorted((r.message_id, r.action) for r in query_rows(
            db_url, select(audit.c.message_id, audit.c.action))),
    }


def test_purge_dry_run_then_purge(db_url: str, tmp_path: Path) -> None:
    seed(db_url, tmp_path)
    before = state_of(db_url)
    assert before["bodies"] == ["ANCIENT", "HELD", "NEW", "WEEKS"]

    r = guard(tmp_path, db_url, "purge", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["bodies"] == 2 and plan["messages"] == 1 and plan["audit_rows"] == 1
    assert plan["by_age"]["bodies"] == {"30-90d": 1, "365d+": 1}
    assert state_of(db_url) == before  # changed nothing
    text = guard(tmp_path, db_url, "purge", "--dry-run").stdout
    assert "would delete 2 message bodies (30-90d: 1, 365d+: 1)" in text

    r = guard(tmp_path, db_url, "purge")
    assert r.returncode == 0, r.stderr
    assert "deleted 2 message bodies" in r.stdout
    after = state_of(db_url)
    # the finished messages' bytes are gone; held mail keeps its bytes until decided
    assert after["bodies"] == ["HELD", "NEW"]
    # the rows stay for a year: only the 400-day-old finished message went
    assert after["messages"] == ["HELD", "NEW", "WEEKS"]
    # the audit rows too: ANCIENT's went, the purge wrote its own ("-": no message)
    assert {a[0] for a in after["audit"]} == {"-", "HELD", "NEW", "WEEKS"}
    rows = query_rows(db_url, select(audit.c.actor, audit.c.detail)
                      .where(audit.c.action == "purge"))
    assert len(rows) == 1 and rows[0].actor.startswith("cli:admin:")
    assert json.loads(rows[0].detail)["bodies"] == 2

    # nothing more to do; the purge's own row is kept
    again = json.loads(guard(tmp_path, db_url, "purge", "--dry-run", "--json").stdout)
    assert (again["bodies"], again["messages"], again["audit_rows"]) == (0, 0, 0)


def test_audit_purged_after_audit_days(db_url: str, tmp_path: Path) -> None:
    seed(db_url, tmp_path)
    env_days = {"GUARD_RETENTION__AUDIT_DAYS": "30"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env.update(env_days, GUARD_DATABASE_URL=db_url)
    r = subprocess.run([sys.executable, "-m", "guard.cli", "purge", "--json"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["audit_rows"] == 2  # WEEKS' and ANCIENT's
    after = state_of(db_url)
    assert after["messages"] == ["HELD", "NEW"]  # held: not finished, kept with its trail
    assert {a[0] for a in after["audit"]} == {"-", "HELD", "NEW"}


def test_audit_export_and_lookup(db_url: str, tmp_path: Path) -> None:
    seed(db_url, tmp_path)
    out = tmp_path / "audit.csv"
    r = guard(tmp_path, db_url, "audit", "export", "--since", "100d", "--format", "csv",
              "--output", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [row["message_id"] for row in rows] == ["WEEKS", "NEW"]  # oldest first
    assert rows[1]["time"].endswith("Z") and rows[1]["actor"] == "smtp:alice"
    assert isinstance(json.loads(rows[1]["detail"]), dict)

    r = guard(tmp_path, db_url, "audit", "export", "--since", "2020-01-01", "--until",
              "2099-01-01", "--format", "jsonl")
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [line["message_id"] for line in lines] == ["ANCIENT", "HELD", "WEEKS", "NEW"]

    r = guard(tmp_path, db_url, "lookup", ADDR.upper(), "--format", "json",
              "--actor", "dpo@example.co.jp")
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    assert [f["id"] for f in found][:2] == ["NEW", "WEEKS"]  # newest first
    assert {f["id"] for f in found[2:]} == {"ANCIENT", "HELD"}
    assert found[0] == {"id": "NEW", "time": found[0]["time"], "direction": "to",
                        "state": "delivered", "subject": "見積書", "rule": "rule-NEW"}
    assert "subject" not in found[1]  # none stored; never the body
    assert "body of" not in r.stdout
    rows = query_rows(db_url, select(audit.c.actor, audit.c.detail)
                      .where(audit.c.action == "lookup"))
    assert len(rows) == 1 and rows[0].actor == "cli:dpo@example.co.jp"
    detail = json.loads(rows[0].detail)
    assert detail["found"] == 4 and detail["address_masked"] == "T***@EXAMPLE.NET"
    assert ADDR not in rows[0].detail.lower()

    r = guard(tmp_path, db_url, "lookup", ADDR)  # text: one tab-separated line each
    lines = [line.split("\t") for line in r.stdout.splitlines()]
    assert lines[0][0] == "NEW" and lines[0][2:] == ["to", "delivered", "rule-NEW", "見積書"]
    assert len(lines) == 4 and "4 messages" in r.stderr
    assert len(query_rows(db_url, select(audit.c.id).where(audit.c.action == "lookup"))) == 2

    sent = json.loads(guard(tmp_path, db_url, "lookup", "alice@example.co.jp",
                            "--format", "json").stdout)
    assert {f["direction"] for f in sent} == {"from"}

    # the From: header counts as "from" (a shared mailbox sent as someone else), by the
    # whole address: a tail of it matches nothing
    by_header = json.loads(guard(tmp_path, db_url, "lookup", "Finance@example.co.jp",
                                 "--format", "json").stdout)
    assert [(f["id"], f["direction"]) for f in by_header] == [("NEW", "from")]
    assert json.loads(guard(tmp_path, db_url, "lookup", "ance@example.co.jp",
                            "--format", "json").stdout) == []


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01"])
def test_export_refuses_a_bad_time(tmp_path: Path, bad: str) -> None:
    r = guard(tmp_path, f"sqlite:///{tmp_path / 'g.db'}", "audit", "export", "--since", bad)
    assert r.returncode == 2 and "not 30d" in r.stderr


def test_the_sweep_goes_in_bounded_steps(db_url: str, tmp_path: Path) -> None:
    """The sweep of `guard serve` (limit per run), as guard/app.py calls it."""
    from guard.store import retention

    seed(db_url, tmp_path)
    ages = retention.Ages(7 * DAY, 365 * DAY)

    async def sweep() -> retention.Counts:
        engine = db.create_engine(db_url)
        writer = BatchWriter(engine)
        writer.start()
        try:
            return await writer.submit(lambda c, now: retention.purge(c, now, ages, limit=1))
        finally:
            await writer.close()
            await engine.dispose()

    first = asyncio.run(sweep())
    assert (first.bodies, first.messages, first.audit_rows) == (1, 1, 1)  # one of each
    # (which body went first is the database's choice; ANCIENT's row took its body along)
    second = asyncio.run(sweep())
    assert (second.messages, second.audit_rows) == (0, 0)
    assert state_of(db_url)["bodies"] == ["HELD", "NEW"]
    assert not [a for a in state_of(db_url)["audit"] if a[1] == "purge"]  # the sweep is silent
