"""/healthz: the database (a read, and the writer's state), the upstream (a connection
probe cached for a few seconds, and the last delivery attempt), the policy. 200 when
all is well, 503 with the problems named otherwise; it answers within a deadline
whatever the database does. /readyz is its intake part (the database only): what an
orchestrator's readiness probe asks, so an upstream outage never takes every guard out
of service while mail could still queue."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from guard.relay.client import Upstream
from guard.store import AsyncEngine, reads
from guard.store.faults import describe
from guard.store.writer import BatchWriter

# /healthz answers within this many seconds whatever the database does (a probe still
# running from an earlier request is waited on, not started again)
HEALTH_DEADLINE = 3.0
# a write that has waited longer than this means the write path is stuck (a held lock,
# a server that does not answer): the writer also commits a timer's claim every second
WRITE_STALL_SECONDS = 5.0
# delivery is broken when the last attempt got no usable session for one of these
# reasons; "refused" (nothing listening) is judged by the live connection probe instead
_BROKEN_SESSION = ("tls", "auth", "timeout", "error")


@dataclass
class PolicyStatus:
    """What the policy watcher last did, for /healthz."""

    state: str = "none"  # loaded | none (no policy: everything passes) | off (inspection off)
    source: str = ""
    rules: int = 0
    loaded_at: float | None = None
    last_error: str = ""  # the last reload that failed (the previous policy stays)
    last_error_at: float | None = None

    def loaded(self, source: str, rules: int) -> None:
        self.state, self.source, self.rules, self.loaded_at = "loaded", source, rules, time.time()

    def failed(self, error: str) -> None:
        self.last_error, self.last_error_at = error[:500], time.time()


def _when(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t).astimezone().isoformat(
        timespec="seconds")


class HealthCheck:
    """The database (a read, and the writer's state), the upstream (a connection probe
    cached for a few seconds, and the last delivery attempt), the policy."""

    def __init__(self, engine: AsyncEngine, upstream_addr: tuple[str, int], *,
                 writer: BatchWriter | None = None, upstream: Upstream | None = None,
                 policy: PolicyStatus | None = None) -> None:
        self.engine = engine
        self.upstream_addr = upstream_addr
        self.writer = writer
        self.upstream_client = upstream
        self.policy = policy
        self._upstream: tuple[float, str] = (0.0, "unknown")
        self._read_probe: asyncio.Task[float | None] | None = None

    async def _read(self) -> float | None:
        async with self.engine.connect() as conn:
            return await reads.oldest_deferred_age(conn)

    async def database(self) -> tuple[str, float | None]:
        """("ok" or "error: …", age of the oldest deferred message), within the deadline."""
        if self._read_probe is None or self._read_probe.done():
            self._read_probe = asyncio.create_task(self._read(), name="guard-health-db")
            # a probe that outlives its request ends unobserved: fetch its exception
            self._read_probe.add_done_callback(lambda t: t.cancelled() or t.exception())
        probe = self._read_probe
        done, _ = await asyncio.wait({probe}, timeout=HEALTH_DEADLINE)
        if not done:
            return f"error: no answer within {HEALTH_DEADLINE:g} s", None
        try:
            return "ok", probe.result()
        except Exception as e:
            return f"error: {describe(e)}", None

    def write_path(self) -> tuple[str, dict[str, Any]]:
        if self.writer is None:
            return "unknown", {}
        h = self.writer.health
        info: dict[str, Any] = {
            "last_write_error": None if h.last_error is None else {
                "error": h.last_error.error, "at": _when(h.last_error.at)},
            "write_failing_since": _when(h.failing_since),
            "write_waiting_seconds": round(self.writer.waiting_seconds(), 1)}
        if h.failing and h.last_error is not None:
            return f"error: {h.last_error.error}", info
        waited = self.writer.waiting_seconds()
        if waited > WRITE_STALL_SECONDS:
            return f"error: a write has waited {waited:.0f} s", info
        return "ok", info

    async def upstream(self) -> str:
        checked, status = self._upstream
        if time.monotonic() - checked < 10:
            return status
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(*self.upstream_addr), 3)
            w.close()
            status = "ok"
        except Exception as e:
            status = f"error: {type(e).__name__}"
        self._upstream = (time.monotonic(), status)
        return status

    def delivery(self) -> tuple[str, dict[str, Any] | None]:
        last = self.upstream_client.last_attempt if self.upstream_client else None
        if last is None:
            return "ok", None
        report = {"result": last.result, "detail": last.detail, "at": _when(last.at),
                  "failed_sessions_in_a_row": last.session_failures}
        if last.result in _BROKEN_SESSION:
            return f"error: the last delivery attempt failed ({last.result}): {last.detail}", \
                report
        return "ok", report

    async def intake(self) -> tuple[int, dict[str, Any]]:
        """/readyz: can this guard take mail now? Its database (read and write paths), the
        only thing a 250 waits for; an upstream outage does not count (mail queues)."""
        read, _ = await self.database()
        write, _ = self.write_path()
        problems = [f"{name}: {v}" for name, v in (
            ("database read", read), ("database write", write)) if v not in ("ok", "unknown")]
        return (503 if problems else 200), {"status": "degraded" if problems else "ok",
                                            "problems": problems}

    async def report(self) -> tuple[int, dict[str, Any]]:
        (read, oldest), up = await asyncio.gather(self.database(), self.upstream())
        write, write_info = self.write_path()
        delivery, last_attempt = self.delivery()
        problems = [f"{name}: {v}" for name, v in (
            ("database read", read), ("database write", write), ("upstream", up),
            ("delivery", delivery)) if v not in ("ok", "unknown")]
        doc: dict[str, Any] = {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "database": {"read": read, "write": write, **write_info},
            "upstream": up,
            "delivery": {"last_attempt": last_attempt,
                         "oldest_deferred_seconds": None if oldest is None
                         else round(oldest, 1)},
        }
        if self.policy is not None:
            p = self.policy
            doc["policy"] = {"state": p.state, "source": p.source, "rules": p.rules,
                             "loaded_at": _when(p.loaded_at),
                             "last_reload_error": p.last_error or None,
                             "last_reload_error_at": _when(p.last_error_at)}
        return (503 if problems else 200), doc
