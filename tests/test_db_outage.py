"""A database outage while deliveries wait for the upstream: the
upstream's 250 is kept and written when the database is back; nothing is sent twice.

The test runs its own PostgreSQL cluster (initdb + pg_ctl, on a free port, in a temporary
directory) so that it can stop and start it without touching the shared server.
"""

from __future__ import annotations

import collections
import contextlib
import email
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from guard.store.schema import messages
from tests.conftest import Sink, TlsFiles, free_port, query_rows, simple_message, submit, wait_for


@dataclass
class Cluster:
    bindir: Path
    datadir: Path
    port: int
    user: str | None  # run the server as this user (initdb refuses root)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *args: str, timeout: float = 120) -> None:
        kw: dict[str, Any] = {"user": self.user, "group": self.user} if self.user else {}
        done = subprocess.run([str(self.bindir / args[0]), *args[1:]], capture_output=True,
                              text=True, timeout=timeout, **kw)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr}")

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.datadir), "-l", str(self.datadir / "server.log"),
                 "-w", "-o", f"-p {self.port} -k {self.datadir} "
                 "-c listen_addresses=127.0.0.1", "start")

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture
def own_postgres() -> Iterator[Cluster]:
    bindir = _bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("initdb/pg_ctl (the postgresql package) are required in CI")
        pytest.skip("no PostgreSQL server binaries (initdb)")
    user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="guard-outage-pg-"))
    if user:
        shutil.chown(root, user, user)
    cluster = Cluster(bindir, root / "data", free_port(), user)
    try:
        cluster.run("initdb", "-D", str(cluster.datadir), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--no-sync")
        cluster.start()
        yield cluster
    finally:
        # even when the test failed half way: no server and no directory left behind
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            cluster.stop("immediate")  # fails when already stopped or never started
        shutil.rmtree(root, ignore_errors=True)


def _at_sink(sink: Sink) -> collections.Counter[str]:
    with sink.lock:
        return collections.Counter(
            str(email.message_from_bytes(m.data)["subject"]) for m in sink.messages)


def test_an_outage_while_deliveries_wait_delivers_each_message_exactly_once(
        guard_factory, tls: TlsFiles, own_postgres: Cluster):
    url = own_postgres.url
    sink = Sink().start()
    try:
        # leases far shorter than the outage: if the outcome were lost, the messages
        # would be claimed and sent again as soon as the database is back
        g = guard_factory(sink.url, url, delivery__lease_seconds="4")
        sink.behaviour.data_delay = 10  # the upstream answers while the database is down
        subjects = [f"outage-{i}" for i in range(8)]
        for s in subjects:
            submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
                   simple_message(s))

        def leased() -> bool:
            rows = query_rows(url, select(messages.c.lease_owner))
            return len(rows) == 8 and all(r.lease_owner for r in rows)

        wait_for(leased, what="eight deliveries under way")
        own_postgres.stop("fast")
        down = time.monotonic()
        sink.wait_count(8, timeout=30)  # the upstream said 250 to all of them
        time.sleep(max(0.0, 15 - (time.monotonic() - down)))
        sink.behaviour.data_delay = 0
        own_postgres.start()

        def delivered() -> int:
            try:
                return sum(1 for r in query_rows(url, select(messages.c.state))
                           if r.state == "delivered")
            except OSError:
                return 0

        wait_for(lambda: delivered() == 8, timeout=40, what="eight recorded as delivered")
        time.sleep(3 * 4)  # three leases: time for a lost outcome to be sent again
        assert _at_sink(sink) == collections.Counter(subjects)
        assert "may be delivered again" not in g.logs()

        # and the guard goes on as before
        submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
               simple_message("after"))
        sink.wait_count(9)
        assert _at_sink(sink) == collections.Counter([*subjects, "after"])
    finally:
        sink.stop()
