"""The SQLite writer sends plain INSERTs and UPDATEs straight to the DBAPI's executemany
(guard/store/writer.py, _WritePlan): the rows written, their SQLite storage classes and
the errors raised are those of SQLAlchemy's own execution."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, exc, text

from guard.store import delivery, writer
from guard.store import queue as q
from guard.store.faults import is_unavailable
from guard.store.schema import metadata

TABLES = ("messages", "recipients", "contents", "audit")


def _messages(seed: int, n: int) -> list[q.NewMessage]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        data = rnd.randbytes(rnd.randrange(0, 300)) + "本文".encode()
        out.append(q.NewMessage(
            id=f"m{seed}-{i}", state=rnd.choice(["queued", "held", "rejected"]),
            mail_from=rnd.choice(["", "a@example.co.jp", "ü@example.com"]),
            sender=rnd.choice(["a@example.co.jp", "alice"]),
            rcpt_tos=[f"r{j}@example.co.jp" for j in range(rnd.randrange(1, 5))],
            data=data, trace_header=b"Received: x\r\n" if rnd.random() < 0.8 else b"",
            original=rnd.choice([None, b"", data[::-1]]),
            client_ip=rnd.choice(["", "127.0.0.1"]), helo=rnd.choice(["", "h.example"]),
            listener=rnd.choice(["trusted", "submission"]), subject=rnd.choice(["", "件名"]),
            verdict=rnd.choice([{}, {"action": "pass", "reasons": [], "n": 1.5}]),
            hold_seconds=rnd.choice([None, 0, 300, 1.25]), actor="smtp:a",
            audit_detail=rnd.choice([{}, {"size": len(data), "x": "日本"}])))
    return out


def _store(path: Path, msgs: list[q.NewMessage], plans: bool) -> dict[str, list[Any]]:
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    with engine.connect() as conn:
        async def run() -> None:
            for at in range(0, len(msgs), 7):  # batches of 7, as the writer takes them
                ic = writer._InlineConnection(conn)
                for m in msgs[at:at + 7]:
                    await q.insert_message(ic, 1000.0 + at / 3, m)  # type: ignore[arg-type]
                ic.flush()
            rnd = random.Random(len(msgs))
            for at in range(0, len(msgs), 5):  # then delivery outcomes, as the worker's
                ic = writer._InlineConnection(conn)
                for m in msgs[at:at + 5]:
                    results = [delivery.RecipientResult(
                        i, a, rnd.choice([250, 450, 550]), rnd.choice(["ok", "", "日本 x" * 300]),
                        rnd.choice(["delivered", "deferred", "failed"]))
                        for i, a in enumerate(m.rcpt_tos)]
                    await delivery._set_recipients(
                        ic, 2000.5 + at, m.id, results,  # type: ignore[arg-type]
                        [r.outcome for r in results])
                ic.flush()
        sent: list[str] = []
        with conn.begin():
            saved, direct = writer._write_plan, writer._InlineConnection._executemany
            if not plans:
                writer._write_plan = lambda *a: None  # type: ignore[assignment]

            def spy(self: Any, plan: Any, rows: Any) -> None:
                sent.append(plan.sql)
                direct(self, plan, rows)
            writer._InlineConnection._executemany = spy  # type: ignore[method-assign]
            try:
                asyncio.run(run())
            finally:
                writer._write_plan = saved
                writer._InlineConnection._executemany = direct  # type: ignore[method-assign]
        # all four tables' INSERTs and the recipients' UPDATE went the direct way, or none
        assert {" ".join(s.split()[:3]) for s in sent} == ({
            "INSERT INTO messages", "INSERT INTO recipients", "INSERT INTO contents",
            "INSERT INTO audit", "UPDATE recipients SET"} if plans else set())
        dump = {}
        for t in TABLES:
            cols = [c.name for c in metadata.tables[t].c]
            sql = ("SELECT " + ", ".join(f"{c}, typeof({c})" for c in cols)
                   + f" FROM {t} ORDER BY 1, 2")
            dump[t] = [tuple(r) for r in conn.execute(text(sql))]
    engine.dispose()
    return dump


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rows_stored_are_the_same_as_sqlalchemys(tmp_path: Path, seed: int) -> None:
    msgs = _messages(seed, 60)
    plain = _store(tmp_path / "sa.db", msgs, plans=False)
    planned = _store(tmp_path / "plan.db", msgs, plans=True)
    assert all(plain[t] for t in TABLES)
    assert planned == plain


def test_a_constraint_error_is_raised_as_sqlalchemy_raises_it(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    metadata.create_all(engine)
    m = _messages(9, 1)[0]

    async def twice(conn: Any) -> None:
        ic = writer._InlineConnection(conn)
        await q.insert_message(ic, 1.0, m)
        await q.insert_message(ic, 1.0, m)
        ic.flush()

    with engine.connect() as conn, conn.begin():
        with pytest.raises(exc.IntegrityError) as caught:
            asyncio.run(twice(conn))
    assert not is_unavailable(caught.value)
    engine.dispose()


def test_only_marked_plain_inserts_and_updates_get_a_plan() -> None:
    from sqlalchemy import insert, update

    from guard.store.schema import messages, recipients

    dialect = create_engine("sqlite://").dialect
    direct = {q.DIRECT: True}
    row = {"message_id": "m", "idx": 0, "address": "a@b", "state": "pending",
           "updated_at": 1.0}
    plan = writer._write_plan(insert(recipients).execution_options(**direct), [row], dialect)
    assert plan is not None and "last_reply" in plan.sql
    assert plan.parameters([row]) == [("m", 0, "a@b", "pending", "", 1.0)]
    assert writer._write_plan(insert(recipients), [row], dialect) is None  # not marked
    assert writer._write_plan(insert(recipients).execution_options(**direct),
                              [row, {**row, "last_code": 1}], dialect) is None  # other keys
    assert writer._write_plan(update(messages).values(state="x").execution_options(**direct),
                              [{}], dialect) is None  # a value in the statement
    assert writer._write_plan(insert(messages).returning(messages.c.id)
                              .execution_options(**direct), [{"id": "x"}], dialect) is None


def test_compare_and_set_counts_as_sqlalchemy_counts(tmp_path: Path) -> None:
    """queue.transition's UPDATE goes the direct way; its row count decides as before."""
    msgs = _messages(4, 30)
    outcomes = {}
    for plans in (False, True):
        engine = create_engine(f"sqlite:///{tmp_path / f'{plans}.db'}")
        metadata.create_all(engine)

        async def run(conn: Any) -> list[bool]:
            ic = writer._InlineConnection(conn)
            for m in msgs:
                await q.insert_message(ic, 1.0, m)  # type: ignore[arg-type]
            got = []
            rnd = random.Random(4)
            for m in msgs * 2:  # the second time most moves find another state
                got.append(await q.transition(
                    ic, 2.0, m.id, from_states=(q.State.QUEUED,),  # type: ignore[arg-type]
                    to_state=q.State.DEFERRED, actor="t", action="deferred",
                    known_state=rnd.choice([None, "queued"]),
                    values={"next_attempt_at": 9.5, "attempts": 3}))
            ic.flush()
            return got

        saved = writer._write_plan
        if not plans:
            writer._write_plan = lambda *a: None  # type: ignore[assignment]
        try:
            with engine.connect() as conn, conn.begin():
                outcomes[plans] = asyncio.run(run(conn))
        finally:
            writer._write_plan = saved
        with engine.connect() as conn:
            outcomes[(plans, "rows")] = [tuple(r) for r in conn.execute(text(
                "SELECT id, state, attempts, next_attempt_at, typeof(next_attempt_at), "
                "updated_at FROM messages ORDER BY id"))]
            outcomes[(plans, "audit")] = [tuple(r) for r in conn.execute(text(
                "SELECT message_id, action, from_state, to_state FROM audit ORDER BY id"))]
        engine.dispose()
    assert True in outcomes[True] and False in outcomes[True]
    assert outcomes[True] == outcomes[False]
    assert outcomes[(True, "rows")] == outcomes[(False, "rows")]
    assert outcomes[(True, "audit")] == outcomes[(False, "audit")]


def test_statement_events_see_every_insert(tmp_path: Path) -> None:
    """With a listener for statement events (instrumentation), INSERTs go through
    SQLAlchemy's execution, which fires them."""
    from sqlalchemy import event

    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    metadata.create_all(engine)
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cur, stmt, *a: seen.append(stmt.split()[2]))

    async def one(conn: Any) -> None:
        ic = writer._InlineConnection(conn)
        await q.insert_message(ic, 1.0, _messages(5, 1)[0])
        ic.flush()

    with engine.connect() as conn, conn.begin():
        asyncio.run(one(conn))
    assert sorted(seen) == ["audit", "contents", "messages", "recipients"]
    engine.dispose()


def test_a_none_goes_through_the_types_bind_processor(tmp_path: Path) -> None:
    """A type whose processor turns None into a value (JSON: 'null') stores the same as
    through SQLAlchemy: the plan calls processors for None too."""
    from sqlalchemy import JSON, Column, Integer, MetaData, Table, insert

    t = Table("j", MetaData(), Column("id", Integer, primary_key=True), Column("doc", JSON))
    engine = create_engine(f"sqlite:///{tmp_path / 'j.db'}")
    t.metadata.create_all(engine)
    rows = [{"id": 1, "doc": None}, {"id": 2, "doc": {"a": "日本"}}]
    plan = writer._write_plan(insert(t).execution_options(**{q.DIRECT: True}), rows,
                              engine.dialect)
    assert plan is not None
    with engine.begin() as conn:
        conn.execute(insert(t), [{**r, "id": r["id"] + 10} for r in rows])
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.executemany(plan.sql, plan.parameters(rows))
        stored = conn.execute(text("SELECT id, doc FROM j ORDER BY id")).all()
    assert [r[1] for r in stored[:2]] == [r[1] for r in stored[2:]]
    assert stored[0][1] == "null"  # not SQL NULL
