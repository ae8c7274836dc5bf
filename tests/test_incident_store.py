"""The incident in the store, on SQLite and PostgreSQL: opening one writes the incident
row and the `misdelivery_reported` audit row together (one transaction: both or
neither), the sender's other mail to the wrong recipients is found over recipients and
messages, and a message is found by its Message-ID with or without angle brackets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from guard.incident.desk import find, report_misdelivery
from guard.store import StoreError
from guard.store import incidents as I
from guard.store.incidents import IncidentError, incidents
from guard.store.schema import audit
from tests.hold.conftest import (
    ALICE,
    BOB,
    CAROL,
    Harness,
    close_harness,
    make_settings,
    message_bytes,
)


@pytest.fixture
async def hs(db_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    from tests.hold.conftest import open_harness

    h = await open_harness(make_settings(tmp_path, GUARD_DATABASE_URL=db_url))
    yield h
    await close_harness(h)


async def _count(h: Harness, stmt: Any) -> int:
    async with h.engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def test_an_incident_opens_with_its_audit_row_in_one_transaction(hs: Harness):
    h = hs
    data = message_bytes(subject="見積書")
    wrong = await h.put(state="queued", rcpts=[BOB, CAROL], data=data)
    again = await h.put(state="queued", rcpts=["Bob@Example.net"])  # same sender, same Bob
    other = await h.put(state="queued", rcpts=[CAROL])
    theirs = await h.put(state="queued", rcpts=[BOB], sender="dave",
                         mail_from="dave@example.co.jp")
    header = data.split(b"Message-ID: ", 1)[1].split(b"\n", 1)[0].strip().decode()

    async with h.engine.connect() as conn:
        assert await find(conn, header) == [(wrong, "alice")]
        assert await find(conn, header.strip("<>")) == [(wrong, "alice")]
        assert await find(conn, wrong) == [(wrong, "alice")]
        assert await find(conn, "<nobody@example.co.jp>") == []

    opened = await report_misdelivery(h.engine, h.writer, queue_id=wrong,
                                      wrong_recipients=["BOB@example.net"],
                                      reporter="web:alice@example.co.jp", note="取り違え")
    inc = opened.incident
    assert inc.id.startswith("I") and inc.wrong_recipients == (BOB,)
    assert [o.id for o in opened.others] == [again]  # not carol's, not dave's
    assert other != again and theirs != again

    async with h.engine.connect() as conn:
        row = (await conn.execute(select(incidents))).one()
        a = (await conn.execute(select(audit).where(
            audit.c.action == "misdelivery_reported"))).one()
    assert (row.id, row.message_id, row.kind, row.state, row.opened_by) == (
        inc.id, wrong, "misdelivery", "first_report", "web:alice@example.co.jp")
    assert json.loads(row.wrong_recipients) == [BOB] and row.reporter_note == "取り違え"
    assert a.message_id == wrong and a.at == row.opened_at
    assert json.loads(a.detail) == {"incident": inc.id, "wrong_recipients": [BOB],
                                    "reporter": "web:alice@example.co.jp"}

    # both or neither: the same incident id again fails at the incident row, and the
    # audit row of that transaction goes with it
    async def twice(conn: Any, now: float) -> Any:
        return await I.open_incident(conn, now, incident_id=inc.id, message_id=other,
                                     kind="misdelivery", opened_by="cli:x",
                                     wrong_recipients=[CAROL])

    with pytest.raises(StoreError):
        await h.writer.submit(twice)
    reported = select(func.count()).select_from(audit).where(
        audit.c.action == "misdelivery_reported")
    assert await _count(h, reported) == 1
    assert await _count(h, select(func.count()).select_from(incidents)) == 1

    # refusals, in one line each, writing nothing
    for kwargs, words in (
            ({"queue_id": "NOSUCH", "wrong_recipients": [BOB]}, "no message NOSUCH"),
            ({"queue_id": wrong, "wrong_recipients": ["eve@example.net"]},
             "is not a recipient"),
            ({"queue_id": wrong, "wrong_recipients": []}, "at least one")):
        with pytest.raises(IncidentError, match=words):
            await report_misdelivery(h.engine, h.writer, reporter="cli:x", **kwargs)
    held = await h.put()
    with pytest.raises(IncidentError, match="cancel it on its review page"):
        await report_misdelivery(h.engine, h.writer, queue_id=held, wrong_recipients=[BOB],
                                 reporter="cli:x")
    assert await _count(h, reported) == 1

    # the officer's findings, and the report made final
    fin = await h.writer.submit(lambda conn, now: I.update_incident(
        conn, now, inc.id, "cli:officer", {"harm": "なし（相手が削除を確認）"}, final=True))
    assert (fin.state, fin.harm) == ("final", "なし（相手が削除を確認）")
    with pytest.raises(IncidentError):
        await h.writer.submit(lambda conn, now: I.update_incident(
            conn, now, inc.id, "cli:officer", {"state": "x"}))


async def test_a_report_twice_is_one_incident_and_a_queue_id_is_read_by_its_key(hs: Harness):
    """A reload or a second click reports one misdelivery once (one incident, one audit
    row, so one alert); a queue id is read by its key, never taken for a Message-ID (a
    message can carry another's queue id as its Message-ID); only recipients the mail
    went to can be wrong; and the web page's lookup reads only the user's own mail, by
    the sender index."""
    from sqlalchemy import update

    from guard.store.schema import recipients

    h = hs
    wrong = await h.put(state="queued", rcpts=[BOB, CAROL])
    # a message whose Message-ID header is the first one's queue id
    decoy = await h.put(state="queued", rcpts=[CAROL],
                        data=message_bytes(subject="decoy").replace(
                            b"Message-ID: <", f"Message-ID: <{wrong}>\nX-Old-ID: <".encode(), 1))
    async with h.engine.connect() as conn:
        assert await find(conn, wrong) == [(wrong, "alice")]
        assert await find(conn, f"<{wrong}>") == [(decoy, "alice")]
        # the web page's lookup: the signed-in user's own mail only
        assert await find(conn, wrong, senders=["bob"]) == []
        assert await find(conn, f"<{wrong}>", senders=["alice"]) == [(decoy, "alice")]
        assert await find(conn, f"<{wrong}>", senders=["dave", "dave@example.co.jp"]) == []

    first = await report_misdelivery(h.engine, h.writer, queue_id=wrong,
                                     wrong_recipients=[BOB], reporter="web:alice")
    again = await report_misdelivery(h.engine, h.writer, queue_id=wrong,
                                     wrong_recipients=["bob@EXAMPLE.net"], reporter="web:alice")
    assert again.incident.id == first.incident.id and first.new and not again.new
    reported = select(func.count()).select_from(audit).where(
        audit.c.action == "misdelivery_reported")
    assert await _count(h, reported) == 1
    assert await _count(h, select(func.count()).select_from(incidents)) == 1
    # other wrong recipients are another report
    both = await report_misdelivery(h.engine, h.writer, queue_id=wrong,
                                    wrong_recipients=[BOB, CAROL], reporter="web:alice")
    assert both.incident.id != first.incident.id and await _count(h, reported) == 2

    # a recipient dropped from the message (or refused by its server) was never sent it
    async def drop(conn: Any, now: float) -> None:
        await conn.execute(update(recipients).where(recipients.c.message_id == decoy)
                           .values(state="dropped"))

    await h.writer.submit(drop)
    with pytest.raises(IncidentError, match="was not sent message"):
        await report_misdelivery(h.engine, h.writer, queue_id=decoy,
                                 wrong_recipients=[CAROL], reporter="web:alice")
    assert await _count(h, reported) == 2


async def test_the_web_lookup_uses_the_sender_index(tmp_path: Path):
    """No index on messages.message_id_header (one would cost every accept): the signed-in
    user's lookup names their senders, and SQLite's plan reads ix_messages_sender_received."""
    from sqlalchemy import event

    from tests.hold.conftest import open_harness

    h = await open_harness(make_settings(tmp_path))
    try:
        seen: list[tuple[str, Any]] = []

        def keep(conn: Any, cursor: Any, statement: str, params: Any, *a: Any) -> None:
            if "message_id_header IN" in statement:
                seen.append((statement, params))

        event.listen(h.engine.sync_engine, "before_cursor_execute", keep)
        async with h.engine.connect() as conn:
            await find(conn, "<x@example.co.jp>", senders=["alice", ALICE])
            statement, params = seen[-1]
            plan = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                               params)).all()
        assert "ix_messages_sender_received" in " ".join(str(r) for r in plan), plan
    finally:
        await close_harness(h)
