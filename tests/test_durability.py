"""250 means committed; nothing lost across restarts, crashes and upstream outages.

Every test here runs on SQLite and on PostgreSQL (reliability.md §2: "Run every
durability test on both").
"""

from __future__ import annotations

import asyncio
import email
import smtplib
import threading

import pytest
from sqlalchemy import func, select

from guard.store import db
from guard.store.schema import audit, messages
from tests.conftest import Sink, TlsFiles, simple_message, submit, wait_for


def _count(url: str, *where) -> int:
    async def go() -> int:
        engine = db.create_engine(url)
        try:
            async with engine.connect() as conn:
                q = select(func.count()).select_from(messages)
                for w in where:
                    q = q.where(w)
                return int((await conn.execute(q)).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _states(url: str) -> dict[str, int]:
    async def go() -> dict[str, int]:
        engine = db.create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(messages.c.state, func.count()).group_by(messages.c.state))
                return {r[0]: r[1] for r in rows}
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_every_250_adds_exactly_one_stored_message(guard_factory, sink: Sink, tls: TlsFiles,
                                                   db_url: str):
    g = guard_factory(sink.url, db_url)
    n_threads, per_thread = 4, 10
    replies: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def client(t: int) -> None:
        with smtplib.SMTP("127.0.0.1", g.smtp_port, local_hostname="c.localhost") as s:
            s.starttls(context=tls.client_context())
            s.login("alice", "correct horse battery staple")
            for i in range(per_thread):
                s.mail("alice@example.co.jp")
                s.rcpt(f"r{t}-{i}@example.net")
                code, msg = s.data(simple_message(f"m{t}-{i}"))
                with lock:
                    replies.append((code, msg))

    threads = [threading.Thread(target=client, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ok = [m for c, m in replies if c == 250]
    assert len(ok) == n_threads * per_thread
    ids = {m.split()[-1] for m in ok}
    assert len(ids) == len(ok)  # one queue id per 250
    assert _count(db_url) == len(ok)
    sink.wait_count(len(ok))
    assert sorted(len(m.rcpt_tos) for m in sink.messages) == [1] * len(ok)


def test_accepted_mail_survives_restart_while_upstream_is_down(guard_factory, tls: TlsFiles,
                                                               db_url: str):
    sink = Sink()  # not started: the upstream is down
    g = guard_factory(sink.url, db_url)
    submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
           simple_message("survives restart"))
    wait_for(lambda: _states(db_url).get("deferred") == 1, what="deferred")
    assert g.stop() == 0  # clean shutdown with mail in the queue
    sink.start()
    try:
        g.start()
        (m,) = sink.wait_count(1, timeout=20)
        assert b"Subject: survives restart" in m.data
        wait_for(lambda: _states(db_url).get("delivered") == 1, what="delivered")
    finally:
        sink.stop()


def test_kill_9_after_250_then_delivered_after_restart(guard_factory, tls: TlsFiles,
                                                       db_url: str):
    sink = Sink()
    g = guard_factory(sink.url, db_url)
    subjects = [f"kill-{i}" for i in range(5)]
    for s in subjects:
        submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"], simple_message(s))
    g.kill()  # SIGKILL right after the 250s: no shutdown code runs
    sink.start()
    try:
        g.start()
        got = sink.wait_count(5, timeout=30)
        seen = {email.message_from_bytes(m.data)["subject"] for m in got}
        assert seen == set(subjects)
    finally:
        sink.stop()


def test_upstream_outage_defers_then_delivers(guard_factory, tls: TlsFiles, db_url: str):
    sink = Sink()
    g = guard_factory(sink.url, db_url)
    submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
           simple_message("outage"))
    wait_for(lambda: _states(db_url).get("deferred") == 1, what="deferred")
    status, body = g.http("/healthz")
    assert status == 503 and '"upstream":"error' in body.replace(" ", "")
    sink.start()
    try:
        sink.wait_count(1, timeout=20)
        wait_for(lambda: _states(db_url).get("delivered") == 1, what="delivered")
    finally:
        sink.stop()


def test_permanent_failure_bounces_to_sender_with_a_dsn(guard_factory, sink: Sink,
                                                        tls: TlsFiles, db_url: str):
    sink.behaviour.rcpt_replies = {"nosuch": "550 5.1.1 <nosuch@example.net>: no such user"}
    g = guard_factory(sink.url, db_url)
    original = simple_message("will bounce")
    submit(g.smtp_port, tls, "alice@example.co.jp", ["nosuch@example.net"], original)
    (dsn,) = sink.wait_count(1)
    assert dsn.mail_from == ""  # null reverse-path
    assert dsn.rcpt_tos == ["alice@example.co.jp"]
    msg = email.message_from_bytes(dsn.data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.walk())
    status = next(p for p in parts if p.get_content_type() == "message/delivery-status")
    text = status.as_string()
    assert "Final-Recipient: rfc822; nosuch@example.net" in text
    assert "Status: 5.1.1" in text and "Action: failed" in text
    headers = next(p for p in parts if p.get_content_type() == "text/rfc822-headers")
    assert b"Subject: will bounce" in headers.get_payload(decode=True)
    wait_for(lambda: _states(db_url).get("bounced") == 1, what="bounced")


def test_partial_failure_delivers_the_rest_and_bounces_one(guard_factory, sink: Sink,
                                                           tls: TlsFiles, db_url: str):
    sink.behaviour.rcpt_replies = {"gone": "550 5.1.1 gone", "later": "451 4.2.0 try later"}
    g = guard_factory(sink.url, db_url)
    submit(g.smtp_port, tls, "alice@example.co.jp",
           ["ok@example.net", "gone@example.net", "later@example.net"],
           simple_message("partial"))
    msgs = sink.wait_count(2)  # the message for ok@, and the DSN for gone@
    delivered = [m for m in msgs if m.mail_from == "alice@example.co.jp"]
    dsns = [m for m in msgs if m.mail_from == ""]
    assert delivered[0].rcpt_tos == ["ok@example.net"]
    assert b"gone@example.net" in dsns[0].data and b"later@example.net" not in dsns[0].data
    # later@ is retried alone; let the upstream accept it now
    sink.behaviour.rcpt_replies = {}
    msgs = sink.wait_count(3, timeout=20)
    assert msgs[2].rcpt_tos == ["later@example.net"]
    # the original (two recipients delivered, one failed) and the DSN
    wait_for(lambda: _states(db_url).get("delivered") == 2, what="delivered")
    assert len([m for m in sink.messages if m.rcpt_tos == ["ok@example.net"]]) == 1


def test_no_bounce_for_a_bounce(guard_factory, sink: Sink, tls: TlsFiles, db_url: str):
    # a trusted listener (behind the office MTA) may relay null-sender mail
    sink.behaviour.rcpt_replies = {"nosuch": "550 5.1.1 no such user"}
    g = guard_factory(sink.url, db_url, smtp_mode="trusted",
                      trusted_networks="127.0.0.0/8")
    with smtplib.SMTP("127.0.0.1", g.smtp_port, local_hostname="mta.localhost") as s:
        s.sendmail("", ["nosuch@example.net"], simple_message("a bounce"))
    wait_for(lambda: _states(db_url).get("bounced") == 1, what="bounced")
    assert _count(db_url) == 1  # no DSN was queued
    assert sink.messages == []


def test_expired_message_bounces_after_max_lifetime(guard_factory, tls: TlsFiles, db_url: str):
    sink = Sink()  # down for good
    g = guard_factory(sink.url, db_url, delivery__max_lifetime="2")
    submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
           simple_message("expires"))
    wait_for(lambda: _states(db_url).get("bounced") == 1, timeout=20, what="bounced")
    # the DSN for alice is queued (and deferred, the upstream being down)
    assert _count(db_url, messages.c.mail_from == "") == 1


def test_hold_state_and_audit_rows_are_written_in_one_transaction(guard_factory, sink: Sink,
                                                                  tls: TlsFiles, db_url: str):
    g = guard_factory(sink.url, db_url)
    submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
           simple_message("audit"))
    sink.wait_count(1)
    wait_for(lambda: _states(db_url).get("delivered") == 1, what="delivered")

    async def go() -> list[tuple[str, str, str]]:
        engine = db.create_engine(db_url)
        async with engine.connect() as conn:
            rows = await conn.execute(select(audit.c.action, audit.c.from_state,
                                             audit.c.to_state).order_by(audit.c.id))
            out = [tuple(r) for r in rows]
        await engine.dispose()
        return out

    assert asyncio.run(go()) == [("accepted", "", "queued"), ("delivered", "queued", "delivered")]


@pytest.mark.parametrize("n_instances", [2])
def test_two_instances_share_one_queue_and_deliver_each_message_once(
        guard_factory, tls: TlsFiles, n_instances: int):
    from tests.conftest import PG_URL, require_postgres, reset_postgres

    require_postgres()  # CI fails without PostgreSQL; elsewhere the test skips
    reset_postgres()
    sink = Sink()  # down while the queue fills up, so both instances compete for it
    a = guard_factory(sink.url, PG_URL, instance_id="A")
    b = guard_factory(sink.url, PG_URL, instance_id="B", delivery__concurrency="10")
    n = 60
    for i in range(n):
        submit((a, b)[i % 2].smtp_port, tls, "alice@example.co.jp", [f"r{i}@example.net"],
               simple_message(f"multi-{i}"))
    sink.start()
    try:
        sink.wait_count(n, timeout=60)
        wait_for(lambda: _states(PG_URL).get("delivered") == n, timeout=30, what="delivered")
        subjects = [email.message_from_bytes(m.data)["subject"] for m in sink.messages]
        assert len(subjects) == n and len(set(subjects)) == n  # each exactly once
        owners = {e for e in _actors(PG_URL) if e.startswith("relay:")}
        assert owners == {"relay:A", "relay:B"}  # both instances delivered some
    finally:
        sink.stop()


def _actors(url: str) -> set[str]:
    async def go() -> set[str]:
        engine = db.create_engine(url)
        async with engine.connect() as conn:
            out = {r[0] for r in await conn.execute(select(audit.c.actor).distinct())}
        await engine.dispose()
        return out

    return asyncio.run(go())
