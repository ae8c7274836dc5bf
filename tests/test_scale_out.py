"""Several `guard serve` processes on one PostgreSQL (docs/scale-out.md).

Three real guard processes share the test database and one upstream (an aiosmtpd sink
that keeps every message; mail is counted there by Message-ID). Mail is spread over all
three. What the tests show:

- each message is delivered exactly once in a fault-free run, and the instances that
  deliver to the same new domains at the same moment agree on the history;
- hold timers and escalations fire once: holds whose delay or escalation time passes
  while the three run give one expiry or escalation each (one audit row, one notice);
- suppression lists: three instances that start together sync the policy's file list
  once; a `guard lists import` while they serve is applied by every instance within
  seconds; two imports at the same moment leave one of them whole, never a mix;
- SIGKILL of one instance under load: the others deliver its mail once its leases run
  out (seconds), each message at least once, duplicates bounded by its senders.

Covered elsewhere (not repeated here): two instances and 60 messages delivered once
(tests/test_durability.py), a survivor taking over a killed instance's leases while a
live instance's slow deliveries are never taken (tests/test_leases.py), two instances'
timers and approvals acting once through the lifecycle (tests/hold/test_instances.py),
a database outage while deliveries wait (tests/test_db_outage.py).
"""

from __future__ import annotations

import collections
import email
import os
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from guard.store.holds_schema import holds
from guard.store.schema import audit, known_addresses, known_domains, list_entries, messages
from tests.conftest import (
    PG_URL,
    ROOT,
    GuardProcess,
    Sink,
    free_port,
    query_rows,
    require_postgres,
    reset_postgres,
    wait_for,
)

# one worker (pytest-xdist) runs this module: one cluster of three guards for its tests
pytestmark = pytest.mark.xdist_group("scale_out")

POLICY = ROOT / "tests" / "data" / "scale-out"
ALICE = "alice@example.co.jp"
LEASE = 3.0  # seconds: a killed instance's mail waits about this long
CONCURRENCY = 4  # senders per instance: the bound on duplicates after a SIGKILL


def _execute(url: str, sql: str, **params: Any) -> None:
    """One write by hand (what passing time would do: move a deadline into the past)."""
    import asyncio

    from guard.store import db

    async def go() -> None:
        engine = db.create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(sql), params)
        finally:
            await engine.dispose()

    asyncio.run(go())


class Cluster:
    def __init__(self, guards: list[GuardProcess], sink: Sink, workdir: Path) -> None:
        self.guards = guards
        self.sink = sink
        self.workdir = workdir

    def message_ids(self) -> collections.Counter[str]:
        with self.sink.lock:
            return collections.Counter(
                str(email.message_from_bytes(m.data)["Message-ID"]) for m in self.sink.messages
                if m.mail_from)  # notices and DSNs come from <>

    def notices(self) -> list[tuple[str, str, str]]:
        """(held message's queue id, notice kind, recipient) of every notice delivered."""
        out = []
        with self.sink.lock:
            for m in self.sink.messages:
                parsed = email.message_from_bytes(m.data)
                if parsed["X-Guard-Notice"]:
                    out.append((str(parsed["X-Guard-Queue-Id"]), str(parsed["X-Guard-Notice"]),
                                ",".join(m.rcpt_tos)))
        return out

    def logs(self) -> str:
        return "\n".join(g.logs() for g in self.guards)


def _send(port: int, mail_from: str, rcpts: list[str], subject: str, mid: str) -> None:
    data = (f"From: {mail_from}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
            f"Message-ID: {mid}\r\n\r\nhello\r\n").encode()
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.localhost", timeout=30) as s:
        s.sendmail(mail_from, rcpts, data)


def _refused(port: int, rcpt: str) -> bool:
    try:
        _send(port, ALICE, [rcpt], "probe", f"<probe-{time.time_ns()}@example.co.jp>")
    except smtplib.SMTPDataError as e:
        return e.smtp_code == 550 or 500 <= e.smtp_code < 600
    return False


def _healthy(g: GuardProcess) -> bool:
    assert g.proc is not None
    if g.proc.poll() is not None:
        raise AssertionError(f"guard exited with {g.proc.returncode}:\n{g.logs()[-3000:]}")
    try:
        return g.http("/healthz")[0] == 200
    except OSError:  # not listening yet
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_postgres()  # CI fails without PostgreSQL; elsewhere the test skips
    reset_postgres()
    workdir = tmp_path_factory.mktemp("scale-out")
    sink = Sink().start()
    guards = []
    ports: set[int] = set()
    while len(ports) < 6:  # six different ones (a port just closed can come back)
        ports.add(free_port())
    for name, smtp, web in zip(("G1", "G2", "G3"), sorted(ports)[:3], sorted(ports)[3:],
                               strict=True):
        env = {
            "GUARD_SMTP_LISTEN": f"127.0.0.1:{smtp}",
            "GUARD_SMTP_MODE": "trusted",
            "GUARD_TRUSTED_NETWORKS": "127.0.0.0/8",
            "GUARD_WEB_LISTEN": f"127.0.0.1:{web}",
            "GUARD_BASE_URL": f"http://127.0.0.1:{web}",
            "GUARD_UPSTREAM": sink.url,
            "GUARD_DATABASE_URL": PG_URL,
            "GUARD_USERS_FILE": str(workdir / "users.yaml"),
            "GUARD_HOSTNAME": "guard.localhost",
            "GUARD_SECRET_FILE": str(workdir / "guard.secret"),  # one secret for all
            "GUARD_INSTANCE_ID": name,
            "GUARD_POLICY": str(POLICY),
            "GUARD_LOG_LEVEL": "INFO",
            "GUARD_INSPECT__WORKERS": "1",
            "GUARD_SMTP__FRONT_PROCESSES": "0",
            "GUARD_DELIVERY__LEASE_SECONDS": str(LEASE),
            "GUARD_DELIVERY__CONCURRENCY": str(CONCURRENCY),
            "GUARD_DELIVERY__POLL_INTERVAL": "0.2",
            "GUARD_DELIVERY__MIN_BACKOFF": "1",
            "GUARD_DELIVERY__MAX_BACKOFF": "2",
            "GUARD_REVIEW__TICK_SECONDS": "0.2",
        }
        guard_dir = workdir / name
        guard_dir.mkdir()
        guards.append(GuardProcess(guard_dir, env))
    # one secret for all, made before three processes could each make their own (in
    # production it comes from a file or a Secret: docs/scale-out.md)
    secret = workdir / "guard.secret"
    secret.write_text(os.urandom(32).hex() + "\n")
    secret.chmod(0o600)
    try:
        # all three at once: migrations and the sync of the policy's file list race
        for g in guards:
            g.start(wait=False)
        for g in guards:
            try:
                wait_for(lambda g=g: _healthy(g), timeout=60, interval=0.2,
                         what=f"{g.env['GUARD_INSTANCE_ID']} healthy")
            except AssertionError:
                if "Address already in use" not in g.logs():
                    raise
                # another test on this machine took a port between free_port() and the
                # bind: once more on new ports
                g.stop()
                g.env["GUARD_SMTP_LISTEN"] = f"127.0.0.1:{free_port()}"
                web = free_port()
                g.env["GUARD_WEB_LISTEN"] = f"127.0.0.1:{web}"
                g.env["GUARD_BASE_URL"] = f"http://127.0.0.1:{web}"
                g.smtp_port = int(g.env["GUARD_SMTP_LISTEN"].rsplit(":", 1)[1])
                g.web_port = web
                g.start(wait=False)
                wait_for(lambda g=g: _healthy(g), timeout=60, interval=0.2,
                         what=f"{g.env['GUARD_INSTANCE_ID']} healthy")
        yield Cluster(guards, sink, workdir)
    finally:
        for g in guards:
            g.stop()
        sink.stop()


def test_three_instances_deliver_each_message_once_and_agree_on_the_history(cluster: Cluster):
    per_guard = 30
    start = threading.Barrier(len(cluster.guards))
    sent: list[str] = []
    errors: list[BaseException] = []

    def client(i: int, g: GuardProcess) -> None:
        try:
            start.wait(10)  # the first messages of all three reach new domains together
            for k in range(per_guard):
                mid = f"<once-{i}-{k}@example.co.jp>"
                _send(g.smtp_port, ALICE, [f"user{k % 2}@d{k % 3}.example.org"],
                      f"once {i}/{k}", mid)
                sent.append(mid)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i, g))
               for i, g in enumerate(cluster.guards)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    total = per_guard * len(cluster.guards)
    assert len(sent) == total
    wait_for(lambda: sum(cluster.message_ids().values()) >= total, timeout=60,
             what=f"{total} messages at the sink")
    time.sleep(2 * LEASE / 3 + 1)  # a second copy would come by now
    assert cluster.message_ids() == collections.Counter(sent)  # each exactly once
    delivered = query_rows(PG_URL, select(audit.c.message_id, audit.c.actor).where(
        audit.c.action == "delivered"))
    assert len(delivered) == total and len({r.message_id for r in delivered}) == total
    assert {r.actor for r in delivered} == {"relay:G1", "relay:G2", "relay:G3"}

    # the history: the new domain (example.org, registrable part of d0-d2.example.org)
    # once per scope, every address once, and no instance failed to write it
    sender = {r.sender for r in query_rows(PG_URL, select(messages.c.sender).where(
        messages.c.mail_from == ALICE))}
    assert len(sender) == 1
    domains = collections.Counter(
        (r.domain, r.scope) for r in query_rows(PG_URL, select(known_domains))
        if r.domain == "example.org")
    assert domains == collections.Counter({("example.org", s): 1 for s in ("", *sender)})
    addresses = [r.address for r in query_rows(PG_URL, select(known_addresses))
                 if r.scope == ""]
    assert sorted(a for a in addresses if a.endswith(".example.org")) == sorted(
        f"user{u}@d{d}.example.org" for u in range(2) for d in range(3))
    logs = cluster.logs()
    assert "history was not updated" not in logs
    assert "deadlock" not in logs.lower()
    assert "Traceback" not in logs


def test_hold_timers_and_escalations_fire_once_with_three_instances(cluster: Cluster):
    before = len(cluster.sink.messages)
    delayed = [f"<delay-{i}@example.co.jp>" for i in range(6)]
    approval = [f"<approve-{i}@example.co.jp>" for i in range(6)]
    for i, mid in enumerate(delayed):
        _send(cluster.guards[i % 3].smtp_port, ALICE, [f"r{i}@delay.example.org"], "d", mid)
    for i, mid in enumerate(approval):
        _send(cluster.guards[i % 3].smtp_port, ALICE, [f"r{i}@approve.example.org"], "a", mid)
    ids = {r.message_id_header: r.id for r in query_rows(PG_URL, select(
        messages.c.id, messages.c.message_id_header).where(
        messages.c.message_id_header.in_(delayed + approval)))}
    assert len(ids) == 12

    def actions(action: str) -> collections.Counter[str]:
        return collections.Counter(r.message_id for r in query_rows(PG_URL, select(
            audit.c.message_id).where(audit.c.action == action,
                                      audit.c.message_id.in_(list(ids.values())))))

    # the first notices, sent by whichever instance's timer got there first
    wait_for(lambda: len(actions("notified")) == 12, timeout=20, what="twelve holds notified")
    # the delays and escalation times pass while all three run
    delay_ids = [ids[m] for m in delayed]
    approve_ids = [ids[m] for m in approval]
    _execute(PG_URL, "UPDATE messages SET hold_until = "
             "EXTRACT(EPOCH FROM clock_timestamp()) - 1 WHERE id = ANY(:ids)", ids=delay_ids)
    _execute(PG_URL, "UPDATE holds SET escalate_at = "
             "EXTRACT(EPOCH FROM clock_timestamp()) - 1 WHERE message_id = ANY(:ids)",
             ids=approve_ids)
    wait_for(lambda: len(actions("expire")) == 6 and len(actions("escalate")) == 6,
             timeout=20, what="six expiries and six escalations")
    wait_for(lambda: all(cluster.message_ids()[m] for m in delayed), timeout=20,
             what="the delayed mail delivered")
    time.sleep(2.0)  # three timer ticks of 0.2 s and more: a second act would show now

    for action in ("notified", "expire", "escalate"):
        counts = actions(action)
        assert set(counts.values()) == {1}, (action, counts)
    assert set(actions("expire")) == set(delay_ids)
    assert set(actions("escalate")) == set(approve_ids)
    assert all(cluster.message_ids()[m] == 1 for m in delayed)
    assert not any(cluster.message_ids()[m] for m in approval)  # still waiting for a yes
    held = query_rows(PG_URL, select(holds.c.message_id, holds.c.escalated_at).where(
        holds.c.message_id.in_(approve_ids)))
    assert len(held) == 6 and all(r.escalated_at is not None for r in held)

    # one notice per event: never two of one kind to one person for one hold
    wait_for(lambda: sum(1 for n in cluster.notices() if n[0] in approve_ids
                         and n[2] == "deputy@example.co.jp") >= 6, timeout=20,
             what="the backups asked")
    time.sleep(1.0)
    notices = collections.Counter(n for n in cluster.notices() if n[0] in ids.values())
    assert notices and set(notices.values()) == {1}, notices
    to_deputy = collections.Counter(n[0] for n in notices if n[2] == "deputy@example.co.jp")
    assert to_deputy == collections.Counter(approve_ids)
    assert len(cluster.sink.messages) > before


def _lists_import(g: GuardProcess, name: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.Popen(  # type: ignore[return-value]
        [sys.executable, "-m", "guard.cli", "lists", "import", name, str(path)],
        cwd=g.workdir, env={**{k: v for k, v in os.environ.items()
                               if not k.startswith("GUARD_")}, **g.env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_suppression_lists_stay_one_list_while_instances_serve_and_import(cluster: Cluster):
    # started together, the three synced the policy's file list once, and all apply it
    rows = query_rows(PG_URL, select(list_entries.c.list_name))
    assert collections.Counter(r.list_name for r in rows)["opt_out"] == 1
    syncs = query_rows(PG_URL, select(audit.c.detail).where(audit.c.action == "list_sync"))
    assert len([r for r in syncs if '"opt_out"' in r.detail]) == 1
    for g in cluster.guards:
        assert _refused(g.smtp_port, "stopped@example.org")

    # an import while mail flows through all three: each applies it within seconds
    gone = cluster.workdir / "withdrawn-1.csv"
    gone.write_text("email\ngone@example.org\n", encoding="utf-8")
    for g in cluster.guards:
        assert not _refused(g.smtp_port, "gone@example.org")
    p = _lists_import(cluster.guards[0], "withdrawn", gone)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out
    imported = time.monotonic()
    # (each instance asks the store every second whether a list changed; without that
    # they would go on for up to 30 s, the refresh time of the rest of the history)
    for g in cluster.guards:
        wait_for(lambda g=g: _refused(g.smtp_port, "gone@example.org"),
                 timeout=max(0.5, imported + 5 - time.monotonic()), interval=0.3,
                 what=f"{g.env['GUARD_INSTANCE_ID']} applies the import within 5 s")
    took = time.monotonic() - imported
    print(f"every instance applied the import within {took:.1f} s")

    # two imports of one list at the same moment: one wins whole, the other follows whole
    a = cluster.workdir / "withdrawn-a.csv"
    b = cluster.workdir / "withdrawn-b.csv"
    a.write_text("email\n" + "".join(f"a{i}@example.org\n" for i in range(300)) +
                 "both@example.org\n", encoding="utf-8")
    b.write_text("email\n" + "".join(f"b{i}@example.org\n" for i in range(200)) +
                 "both@example.org\n", encoding="utf-8")
    pa, pb = (_lists_import(cluster.guards[1], "withdrawn", a),
              _lists_import(cluster.guards[2], "withdrawn", b))
    outs = [p.communicate(timeout=60)[0] for p in (pa, pb)]
    assert (pa.returncode, pb.returncode) == (0, 0), outs
    assert not any("Traceback" in o for o in outs), outs
    entries = len(query_rows(PG_URL, select(list_entries.c.digest).where(
        list_entries.c.list_name == "withdrawn")))
    assert entries in (301, 201)  # exactly file a or exactly file b


def test_sigkill_of_one_instance_under_load_its_mail_goes_out_from_the_others(
        cluster: Cluster):
    """Runs last: it kills G3 (the fixture's other instances stay up)."""
    victim = cluster.guards[2]
    assert victim.proc is not None
    owner_pid = f":{victim.proc.pid}:"
    before = cluster.message_ids()
    cluster.sink.behaviour.data_delay = 1.0  # every delivery is under way for a while
    sent = [f"<kill-{k}@example.co.jp>" for k in range(24)]
    for k, mid in enumerate(sent):  # all to G3, which claims them for itself
        _send(victim.smtp_port, ALICE, [f"k{k}@example.net"], f"kill {k}", mid)

    def victim_leases() -> int:
        rows = query_rows(PG_URL, select(messages.c.lease_owner).where(
            messages.c.message_id_header.in_(sent)))
        return sum(1 for r in rows if r.lease_owner and owner_pid in r.lease_owner)

    wait_for(lambda: victim_leases() >= CONCURRENCY, timeout=20,
             what="G3 delivering its own mail")
    victim.kill()
    killed = time.monotonic()
    cluster.sink.behaviour.data_delay = 0.0

    def all_arrived() -> bool:
        got = cluster.message_ids()
        return all(got[m] for m in sent)

    wait_for(all_arrived, timeout=LEASE + 20, interval=0.1, what="all of G3's mail delivered")
    took = time.monotonic() - killed
    rows = query_rows(PG_URL, select(messages.c.state).where(
        messages.c.message_id_header.in_(sent)))
    wait_for(lambda: [r.state for r in query_rows(PG_URL, select(messages.c.state).where(
        messages.c.message_id_header.in_(sent)))].count("delivered") == len(sent),
        timeout=10, what="all recorded as delivered")
    print(f"survivors finished G3's mail {took:.1f} s after the kill (lease {LEASE} s)")
    assert took < LEASE + 10
    got = cluster.message_ids() - before
    # at least once; a copy twice only where G3 was killed between the upstream's 250 and
    # its commit of that: at most one per sender of G3
    assert set(got) == set(sent), rows
    duplicates = sum(n - 1 for n in got.values())
    assert duplicates <= CONCURRENCY, got
    actors = {r.actor for r in query_rows(PG_URL, select(audit.c.actor).where(
        audit.c.action == "delivered", audit.c.message_id.in_(
            select(messages.c.id).where(messages.c.message_id_header.in_(sent)))))}
    assert actors & {"relay:G1", "relay:G2"}  # the survivors took over
