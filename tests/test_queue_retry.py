"""`guard queue retry ID|--all`: deferred mail is sent now, not at its
next backoff time. The CLI as a user types it, against a running guard."""

from __future__ import annotations

import collections
import email
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

from guard.store.schema import audit, messages
from tests.conftest import Sink, TlsFiles, query_rows, simple_message, submit, wait_for


def _by_subject(url: str) -> dict[str, Any]:
    return {r.subject: r for r in query_rows(url, select(messages.c.id, messages.c.subject,
                                                     messages.c.state))}


def _at_sink(sink: Sink) -> collections.Counter[str]:
    with sink.lock:
        return collections.Counter(
            str(email.message_from_bytes(m.data)["subject"]) for m in sink.messages)


def test_retry_sends_deferred_mail_now(guard_factory, sink: Sink, tls: TlsFiles, db_url: str):
    sink.behaviour.data_reply = "451 4.3.0 try later"
    # the next attempts would be an hour away
    g = guard_factory(sink.url, db_url, delivery__min_backoff="3600",
                      delivery__max_backoff="7200")
    for s in ("one", "two", "three"):
        submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"], simple_message(s))
    wait_for(lambda: {r.state for r in _by_subject(db_url).values()} == {"deferred"}
             and len(_by_subject(db_url)) == 3, what="three deferred")
    sink.behaviour.data_reply = ""  # the upstream is fixed
    ids = {s: r.id for s, r in _by_subject(db_url).items()}

    done = g.cli("queue", "retry", ids["one"])
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"{ids['one']}: due now (deferred)")
    sink.wait_count(1, timeout=10)
    wait_for(lambda: _by_subject(db_url)["one"].state == "delivered", what="one delivered")
    assert _at_sink(sink) == collections.Counter(["one"])
    assert {_by_subject(db_url)[s].state for s in ("two", "three")} == {"deferred"}

    done = g.cli("queue", "retry", "--all")
    assert done.returncode == 0 and done.stdout.startswith("2 messages due now")
    sink.wait_count(3, timeout=10)
    assert _at_sink(sink) == collections.Counter(["one", "two", "three"])
    wait_for(lambda: {r.state for r in _by_subject(db_url).values()} == {"delivered"},
             what="all delivered")

    # one audit row per retried message, naming the admin
    retries = query_rows(db_url, select(audit.c.message_id, audit.c.actor, audit.c.from_state,
                                   audit.c.to_state).where(audit.c.action == "retry"))
    assert sorted(r.message_id for r in retries) == sorted(ids.values())
    assert all(r.actor.startswith("cli:admin:") and r.from_state == r.to_state == "deferred"
               for r in retries)

    # nothing left to do; a message that does not wait; an unknown id: one line each
    done = g.cli("queue", "retry", "--all")
    assert (done.returncode, done.stdout) == (0, "nothing waits for a retry\n")
    done = g.cli("queue", "retry", ids["one"])
    assert (done.returncode, done.stdout) == (3, "")
    assert done.stderr == f"{ids['one']}: not waiting for a retry (state: delivered)\n"
    done = g.cli("queue", "retry", "NOSUCHID")
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "NOSUCHID: no such message\n")


def test_retry_without_a_database_says_so_and_creates_none(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env["GUARD_DATABASE_URL"] = "sqlite:///guard.db"
    done = subprocess.run([sys.executable, "-m", "guard.cli", "queue", "retry", "--all"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no database at guard.db" in done.stderr
    assert not (tmp_path / "guard.db").exists()
    done = subprocess.run([sys.executable, "-m", "guard.cli", "queue", "retry"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "one of the arguments id --all is required" in done.stderr
