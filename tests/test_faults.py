"""Fault injection through the real SMTP interface: a broken store answers 451, never 250."""

from __future__ import annotations

import asyncio
import smtplib

import pytest

from guard.app import GuardApp
from guard.config import load_settings
from guard.store import db
from tests.conftest import PASS_ALL, Sink, free_port, simple_message


@pytest.fixture
async def app(tmp_path, sink: Sink):
    settings = load_settings(env={
        "GUARD_SMTP_LISTEN": f"127.0.0.1:{free_port()}", "GUARD_SMTP_MODE": "trusted",
        "GUARD_TRUSTED_NETWORKS": "127.0.0.0/8", "GUARD_UPSTREAM": sink.url,
        "GUARD_WEB_LISTEN": f"127.0.0.1:{free_port()}",
        "GUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'guard.db'}",
        "GUARD_POLICY": str(PASS_ALL), "GUARD_SECRET_FILE": str(tmp_path / "secret")})
    a = GuardApp(settings)
    await a.start()
    yield a
    await a.stop()


def _send(port: int, subject: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="mta.localhost") as s:
        s.ehlo()
        assert s.mail("alice@example.co.jp")[0] == 250
        assert s.rcpt("bob@example.net")[0] == 250
        return s.data(simple_message(subject))


async def test_store_failure_gives_451_and_recovers(app: GuardApp, sink: Sink, tmp_path):
    port = app.bound["trusted"][1]
    code, msg = await asyncio.to_thread(_send, port, "before")
    assert code == 250
    await asyncio.to_thread(sink.wait_count, 1)
    # fault injection: the writer's database becomes unusable (a path that cannot be
    # opened); SQLite writes go through the writer's own connection
    w = app.writer
    good_engine, good_conn = w._sync_engine, w._sqlite
    w._sync_engine = db.create_sqlite_writer_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    w._sqlite = None
    code, msg = await asyncio.to_thread(_send, port, "during")
    assert (code, msg[:5]) == (451, b"4.3.0")
    w._sync_engine.dispose()
    w._sync_engine, w._sqlite = good_engine, good_conn
    code, _ = await asyncio.to_thread(_send, port, "after")
    assert code == 250
    await asyncio.to_thread(sink.wait_count, 2)
    subjects = sorted(m.data.split(b"Subject: ")[1].split(b"\r\n")[0] for m in sink.messages)
    assert subjects == [b"after", b"before"]  # nothing from the failed attempt


async def test_handler_exception_is_never_a_500(app: GuardApp, sink: Sink):
    port = app.bound["trusted"][1]
    assert app.pipeline is not None

    async def explode(msg, queue_id):
        raise RuntimeError("inspection crashed")

    app.pipeline.decide = explode
    code, msg = await asyncio.to_thread(_send, port, "x")
    assert code == 451 and msg.startswith(b"4.3.0")


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


async def test_metrics_count_what_happened(app: GuardApp, sink: Sink):
    port, web = app.bound["trusted"][1], app.bound["web"][1]
    # counters are per process (other tests ran in this one): compare before and after
    before = await asyncio.to_thread(_metrics, web)
    for i in range(3):
        assert (await asyncio.to_thread(_send, port, f"m{i}"))[0] == 250
    await asyncio.to_thread(sink.wait_count, 3)
    delivered = ("guard_messages_delivered_total", ())
    for _ in range(50):
        after = await asyncio.to_thread(_metrics, web)
        if after[delivered] - before.get(delivered, 0) >= 3:
            break
        await asyncio.sleep(0.1)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("guard_messages_accepted_total", listener="trusted", disposition="queued") == 3
    assert delta("guard_messages_received_total", listener="trusted") == 3
    assert delta("guard_messages_delivered_total") == 3
    assert delta("guard_delivery_latency_seconds_count") == 3
    assert delta("guard_accept_commit_seconds_count") == 3
    # the queue gauges are mail waiting (tests/test_metrics.py); finished mail is counted
    assert ("guard_queue_messages", (("state", "queued"),)) in after
    assert ("guard_queue_messages", (("state", "delivered"),)) not in after
