"""Queue operations against a real database: leases, compare-and-set, database clock."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from guard.store import db, migrate
from guard.store import queue as q
from guard.store.writer import BatchWriter


@pytest.fixture
async def store(db_url: str):
    engine = db.create_engine(db_url)
    await migrate.upgrade(engine)
    writer = BatchWriter(engine)
    writer.start()
    yield engine, writer
    await writer.close()
    await engine.dispose()


def _msg(i: str) -> q.NewMessage:
    return q.NewMessage(id=i, state="queued", mail_from="a@example.co.jp", sender="alice",
                        rcpt_tos=["x@example.net", "y@example.net"],
                        data=b"Subject: t\r\n\r\nb\r\n",
                        actor="test")


async def test_a_lease_is_exclusive_until_it_expires(store):
    engine, writer = store
    await writer.submit(lambda c, now: q.insert_message(c, now, _msg("M1")))
    a = await writer.submit(lambda c, now: q.claim_due(c, now, "A", 0.5, 10))
    assert [m.id for m in a] == ["M1"]
    # B finds nothing while A's lease runs
    assert await writer.submit(lambda c, now: q.claim_due(c, now, "B", 0.5, 10)) == []
    import asyncio

    await asyncio.sleep(0.7)
    b = await writer.submit(lambda c, now: q.claim_due(c, now, "B", 30, 10))
    assert [m.id for m in b] == ["M1"]  # A looked dead; B took over
    res = [q.RecipientResult(0, "x@example.net", 250, "ok", "delivered"),
           q.RecipientResult(1, "y@example.net", 250, "ok", "delivered")]
    # A wakes up: its compare-and-set on the lease fails, nothing of its attempt is written
    # (both ways of recording: with the envelope it read, and without)
    env = await writer.submit(lambda c, now: q.load_for_delivery(c, "M1"))
    assert env.rcpts == [(0, "x@example.net"), (1, "y@example.net")] and env.settled == {}
    state_a = await writer.submit(lambda c, now: q.record_attempt(
        c, now, "M1", "A", res, next_attempt_at=now, give_up=False, actor="relay:A", detail={},
        envelope=env))
    assert state_a is None
    state_a = await writer.submit(lambda c, now: q.record_attempt(
        c, now, "M1", "A", res, next_attempt_at=now, give_up=False, actor="relay:A", detail={}))
    assert state_a is None
    state_b = await writer.submit(lambda c, now: q.record_attempt(
        c, now, "M1", "B", res, next_attempt_at=now, give_up=False, actor="relay:B", detail={}))
    assert state_b == "delivered"
    async with engine.connect() as conn:
        shown = await q.show_message(conn, "M1")
    assert [a["actor"] for a in shown["audit"]] == ["test", "relay:B"]


async def test_transition_is_compare_and_set_with_one_audit_row(store):
    engine, writer = store
    await writer.submit(lambda c, now: q.insert_message(c, now, _msg("M2")))
    ok = await writer.submit(lambda c, now: q.transition(
        c, now, "M2", from_states=["queued"], to_state="held", actor="cli:root",
        action="hold", detail={"why": "test"}))
    again = await writer.submit(lambda c, now: q.transition(
        c, now, "M2", from_states=["queued"], to_state="held", actor="cli:root",
        action="hold"))
    assert (ok, again) == (True, False)
    async with engine.connect() as conn:
        shown = await q.show_message(conn, "M2")
    assert shown["state"] == "held"
    assert [(a["action"], a["from_state"], a["to_state"]) for a in shown["audit"]] == [
        ("accepted", "", "queued"), ("hold", "queued", "held")]


async def test_failed_operation_does_not_take_its_batch_down(store):
    engine, writer = store
    import asyncio

    async def boom(conn, now):
        raise RuntimeError("bad op")

    results = await asyncio.gather(
        writer.submit(lambda c, now: q.insert_message(c, now, _msg("M3"))),
        writer.submit(boom),
        writer.submit(lambda c, now: q.insert_message(c, now, _msg("M4"))),
        return_exceptions=True)
    assert results[0] == "M3" and results[2] == "M4"
    assert isinstance(results[1], RuntimeError)
    async with engine.connect() as conn:
        assert await q.count_messages(conn) == 2


async def test_database_clock_is_used(store):
    engine, _ = store
    import time

    async with engine.connect() as conn:
        now = await db.db_now(conn)
    assert abs(now - time.time()) < 5  # same machine; other hosts may differ, the DB rules


async def test_weak_sqlite_durability_is_refused(tmp_path):
    from sqlalchemy.ext.asyncio import create_async_engine

    weak = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'weak.db'}")
    async with weak.begin() as conn:
        await conn.execute(text("PRAGMA journal_mode=DELETE"))
    with pytest.raises(db.DurabilityError):
        await db.check_durability(weak)
    await weak.dispose()
    good = db.create_engine(f"sqlite:///{tmp_path / 'good.db'}")
    await db.check_durability(good)  # WAL + FULL from our connect hook
    await good.dispose()
