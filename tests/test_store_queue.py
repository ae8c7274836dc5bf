"""Queue operations against a real database: leases, compare-and-set, database clock."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from guard.store import db, delivery, migrate, reads
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
    a = await writer.submit(lambda c, now: delivery.claim_due(c, now, "A", 0.5, 10))
    assert [m.id for m in a] == ["M1"]
    # B finds nothing while A's lease runs
    assert await writer.submit(lambda c, now: delivery.claim_due(c, now, "B", 0.5, 10)) == []
    import asyncio

    await asyncio.sleep(0.7)
    b = await writer.submit(lambda c, now: delivery.claim_due(c, now, "B", 30, 10))
    assert [m.id for m in b] == ["M1"]  # A looked dead; B took over
    res = [delivery.RecipientResult(0, "x@example.net", 250, "ok", "delivered"),
           delivery.RecipientResult(1, "y@example.net", 250, "ok", "delivered")]
    # A wakes up: its compare-and-set on the lease fails, nothing of its attempt is written
    # (both ways of recording: with the envelope it read, and without)
    env = await writer.submit(lambda c, now: delivery.load_for_delivery(c, "M1"))
    assert env.rcpts == [(0, "x@example.net"), (1, "y@example.net")] and env.settled == {}
    state_a = await writer.submit(lambda c, now: delivery.record_attempt(
        c, now, "M1", "A", res, next_attempt_at=now, give_up=False, actor="relay:A", detail={},
        envelope=env))
    assert state_a is None
    state_a = await writer.submit(lambda c, now: delivery.record_attempt(
        c, now, "M1", "A", res, next_attempt_at=now, give_up=False, actor="relay:A", detail={}))
    assert state_a is None
    state_b = await writer.submit(lambda c, now: delivery.record_attempt(
        c, now, "M1", "B", res, next_attempt_at=now, give_up=False, actor="relay:B", detail={}))
    assert state_b == "delivered"
    async with engine.connect() as conn:
        shown = await reads.show_message(conn, "M1")
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
        shown = await reads.show_message(conn, "M2")
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
        assert await reads.count_messages(conn) == 2


async def test_database_clock_is_used(store):
    engine, writer = store
    import asyncio
    import time

    async with engine.connect() as conn:
        before = await db.db_now(conn)
    assert abs(before - time.time()) < 5  # same machine; other hosts may differ, the DB rules

    async def now_of(conn, now):
        return now

    # the writer's `now` (on PostgreSQL read once and advanced by the monotonic clock):
    # the database clock's, in order, never ahead of it
    nows = []
    for _ in range(3):
        nows.append(await writer.submit(now_of))
        await asyncio.sleep(0.05)
    async with engine.connect() as conn:
        after = await db.db_now(conn)
    assert before <= nows[0] < nows[1] < nows[2] <= after
    assert nows[2] - nows[0] >= 0.09


async def test_outcomes_written_together_each_compare_and_set_alone(store):
    """Attempts recorded in one transaction (on PostgreSQL their compare-and-sets are one
    statement): a lost lease writes nothing of its attempt, the others one audit row each."""
    import asyncio

    engine, writer = store
    for i in ("O1", "O2", "O3"):
        await writer.submit(lambda c, now, i=i: q.insert_message(c, now, _msg(i)))
    claimed = await writer.submit(lambda c, now: delivery.claim_due(c, now, "A", 30, 10))
    envs = {c.id: c.envelope for c in claimed}
    assert set(envs) == {"O1", "O2", "O3"}
    # O2's lease went to B meanwhile: A's outcome for it must not be written
    await writer.submit(lambda c, now: c.execute(text(
        "UPDATE messages SET lease_owner = 'B' WHERE id = 'O2'")))
    ok = [delivery.RecipientResult(0, "x@example.net", 250, "ok", "delivered"),
          delivery.RecipientResult(1, "y@example.net", 250, "ok", "delivered")]
    later = [delivery.RecipientResult(0, "x@example.net", 250, "ok", "delivered"),
             delivery.RecipientResult(1, "y@example.net", 451, "later", "deferred")]

    def record(mid, res):
        return writer.submit(lambda c, now: delivery.record_attempt(
            c, now, mid, "A", res, next_attempt_at=now + 60, give_up=False, actor="relay:A",
            detail={}, envelope=envs[mid]))

    states = await asyncio.gather(record("O1", ok), record("O2", ok), record("O3", later))
    assert states == ["delivered", None, "deferred"]
    async with engine.connect() as conn:
        shown = {i: await reads.show_message(conn, i) for i in ("O1", "O2", "O3")}
    assert [a["action"] for a in shown["O1"]["audit"]] == ["accepted", "delivered"]
    assert [a["action"] for a in shown["O2"]["audit"]] == ["accepted"]
    assert [a["action"] for a in shown["O3"]["audit"]] == ["accepted", "deferred"]
    assert (shown["O2"]["state"], shown["O2"]["attempts"]) == ("queued", 0)
    assert (shown["O3"]["state"], shown["O3"]["attempts"]) == ("deferred", 1)
    assert shown["O3"]["lease_owner"] is None
    assert [r["state"] for r in shown["O2"]["recipients"]] == ["pending", "pending"]
    assert [r["state"] for r in shown["O3"]["recipients"]] == ["delivered", "pending"]


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


async def test_a_batch_of_accepts_is_grouped_and_a_duplicate_fails_alone(store):
    """The SQLite writer sends a batch's INSERTs as one executemany per table; a bad row
    (a duplicate queue id, found only when the group is sent) fails its operation alone."""
    import asyncio

    from sqlalchemy import event

    engine, writer = store
    await writer.submit(lambda c, now: q.insert_message(c, now, _msg("D0")))
    gate = asyncio.Event()

    async def wait_for_gate(conn, now):  # holds the writer while the others queue up
        await gate.wait()

    statements: list[str] = []
    sync = writer._sync_engine if engine.dialect.name == "sqlite" else engine.sync_engine

    def seen(conn, cursor, statement, params, context, executemany):
        words = statement.split()
        statements.append(words[2] if words[0] == "INSERT" else words[0])

    event.listen(sync, "before_cursor_execute", seen)
    try:
        first = asyncio.ensure_future(writer.submit(wait_for_gate))
        await asyncio.sleep(0.05)
        ids = [f"D{i}" for i in range(1, 11)]
        batch = asyncio.gather(
            *(writer.submit(lambda c, now, i=i: q.insert_message(c, now, _msg(i)))
              for i in [*ids[:5], "D0", *ids[5:]]),
            return_exceptions=True)
        await asyncio.sleep(0.05)
        gate.set()
        await first
        results = await batch
    finally:
        event.remove(sync, "before_cursor_execute", seen)
    assert [r for r in results if isinstance(r, str)] == ids
    assert sum(isinstance(r, Exception) for r in results) == 1  # the duplicate D0
    async with engine.connect() as conn:
        assert await reads.count_messages(conn) == 11
        for i in ["D1", "D10"]:
            shown = await reads.show_message(conn, i)
            assert [r["address"] for r in shown["recipients"]] == ["x@example.net",
                                                                    "y@example.net"]
            assert [a["action"] for a in shown["audit"]] == ["accepted"]
    if engine.dialect.name == "sqlite":
        # the 11 queued behind the gate went as one transaction with ONE grouped INSERT
        # into messages (it failed on D0), then one by one: 1 + 11, where statement by
        # statement the failed batch alone would have sent 6
        assert statements.count("messages") == 12, statements


async def test_a_claim_brings_small_messages_with_it(store):
    _, writer = store
    small = _msg("S1")
    big = q.NewMessage(id="B1", state="queued", mail_from="a@example.co.jp", sender="alice",
                       rcpt_tos=["x@example.net"], actor="test",
                       data=b"Subject: big\r\n\r\n" + b"x" * (delivery.PREFETCH_BYTES + 1))
    for m in (small, big):
        await writer.submit(lambda c, now, m=m: q.insert_message(c, now, m))
    claimed = {c.id: c for c in await writer.submit(
        lambda c, now: delivery.claim_due(c, now, "A", 30, 10))}
    assert set(claimed) == {"S1", "B1"}
    env = claimed["S1"].envelope
    assert env is not None and env.data == small.data and env.state == "queued"
    assert env.rcpts == [(0, "x@example.net"), (1, "y@example.net")] and env.settled == {}
    assert env == await writer.submit(lambda c, now: delivery.load_for_delivery(c, "S1"))
    assert claimed["B1"].envelope is None  # read when it is sent
