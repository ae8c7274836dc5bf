"""Mail loops: an upstream that is the guard itself is refused at
start, and a message that already passed this guard `smtp.max_passes` times is refused,
so two guards relaying to each other stop after a few passes instead of 50 hops."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from guard.smtp.listenerconfig import ListenerConfig
from guard.store.schema import messages
from tests.conftest import (
    GuardProcess,
    TlsFiles,
    free_port,
    query_rows,
    simple_message,
    submit,
    wait_for,
)


def _rows(g: GuardProcess) -> list[dict[str, Any]]:
    """The guard's messages, read from its store (polled often: no CLI process each time)."""
    return [dict(r._mapping) for r in query_rows(g.env["GUARD_DATABASE_URL"], select(
        messages.c.id, messages.c.state, messages.c.subject))]


def _settled(g: GuardProcess) -> bool:
    return not [r for r in _rows(g) if r["state"] in ("queued", "deferred")]


def test_two_guards_relaying_to_each_other_stop(guard_factory: Any, tmp_path: Path,
                                               tls: TlsFiles) -> None:
    """A → B → A → B → A: A refuses the third pass (554 5.4.6); B bounces it, and the
    bounce stops the same way. Two deployments: their own secrets and hostnames."""
    a_trusted, b_port = free_port(), free_port()
    a = guard_factory(f"smtp://127.0.0.1:{b_port}", start=False,
                      trusted_listen=f"127.0.0.1:{a_trusted}", hostname="guard-a.localhost",
                      database_url=f"sqlite:///{tmp_path / 'a.db'}",
                      secret_file=str(tmp_path / "a.secret"))
    b = guard_factory(f"smtp://127.0.0.1:{a_trusted}", start=False,
                      smtp_listen=f"127.0.0.1:{b_port}", smtp_mode="trusted",
                      hostname="guard-b.localhost", database_url=f"sqlite:///{tmp_path / 'b.db'}",
                      secret_file=str(tmp_path / "b.secret"))
    b.start()
    a.start()
    submit(a.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
           simple_message("loop-test"))

    def both_settled() -> bool:
        return bool(_rows(b)) and _settled(a) and _settled(b) and any(
            r["state"] == "bounced" for r in _rows(a) + _rows(b))

    wait_for(both_settled, 60, 0.5, "both queues settled")
    time.sleep(3)  # nothing keeps circulating
    assert _settled(a) and _settled(b)
    copies_a = [r for r in _rows(a) if r["subject"] == "loop-test"]
    copies_b = [r for r in _rows(b) if r["subject"] == "loop-test"]
    # A accepted passes 1 and 3, B passes 2 and 4; A refused pass 5
    assert len(copies_a) == 2 and len(copies_b) == 2, (len(copies_a), len(copies_b))
    bounced = [r for r in copies_b if r["state"] == "bounced"]
    assert len(bounced) == 1
    shown = b.cli("queue", "show", bounced[0]["id"]).stdout
    assert "554 5.4.6 Mail loop: the message already passed guard-a.localhost 2 times" in shown
    # the bounce of the last pass is looped the same way and stops the same way; a
    # bounce that fails is never bounced again
    total = len(_rows(a)) + len(_rows(b))
    assert total <= 10, total  # about 50 of each without the check (max_hops)


@pytest.mark.parametrize("where", ["main", "trusted"])
def test_upstream_that_is_our_own_listener_is_refused_at_start(
        guard_factory: Any, where: str) -> None:
    port = free_port()
    if where == "main":
        g = guard_factory(f"smtp+starttls://localhost:{port}", start=False,
                          smtp_listen=f"127.0.0.1:{port}")
        expected = f"submission listener 127.0.0.1:{port}"
    else:
        g = guard_factory(f"smtp://127.0.0.1:{port}", start=False,
                          trusted_listen=f"127.0.0.1:{port}")
        expected = f"trusted listener 127.0.0.1:{port}"
    with pytest.raises(RuntimeError):
        g.start()
    assert g.proc is not None and g.proc.returncode == 2
    lines = g.logs().strip().splitlines()
    assert lines[-1].startswith("guard: upstream.url (GUARD_UPSTREAM) ")
    assert f"is this guard's own {expected}: mail would loop" in lines[-1]
    assert "Traceback" not in g.logs()


def _plan(host: str, port: int) -> list[tuple[ListenerConfig, str, int]]:
    cfg = ListenerConfig(kind="submission", hostname="h", max_message_size=1, max_recipients=1,
                         max_connections=1, timeout=1, auth_failures=1, max_hops=1)
    return [(cfg, host, port)]


async def test_wildcard_binds_and_loopback_names_count_as_ourselves() -> None:
    """(No socket is bound here: the check runs before the listeners exist.)"""
    from guard.smtp.listeners import upstream_loop

    assert await upstream_loop(_plan("0.0.0.0", 587), "127.0.0.1", 587)
    assert await upstream_loop(_plan("0.0.0.0", 587), "localhost", 587)
    assert await upstream_loop(_plan("::", 587), "127.0.0.1", 587)
    assert await upstream_loop(_plan("127.0.0.1", 587), "localhost", 587)
    # another port, another machine, another loopback address than the one bound
    assert await upstream_loop(_plan("0.0.0.0", 587), "127.0.0.1", 25) is None
    assert await upstream_loop(_plan("0.0.0.0", 587), "192.0.2.1", 587) is None
    assert await upstream_loop(_plan("127.0.0.1", 587), "127.0.0.2", 587) is None
    # a name that does not resolve now is not judged (delivery will say)
    assert await upstream_loop(_plan("0.0.0.0", 587), "no-such-host.invalid", 587) is None
