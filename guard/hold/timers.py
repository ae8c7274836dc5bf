"""The hold timers: first notices nobody sent, expiries, escalations.

Every instance runs them. They read what is due by the DATABASE clock, then call the
lifecycle functions one message at a time; each of those re-checks under the row lock
and is a compare-and-set, so when two instances pick the same hold one acts and the
other finds it already done (no second release, no second notice).

Between passes the loop sleeps until the next due time (read from the database, at
most `review.tick_seconds`), so a 5-minute delay ends on time rather than up to one
tick late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from guard.hold.lifecycle import Lifecycle
from guard.store import AsyncEngine
from guard.store import holds as H
from guard.store.db import db_now
from guard.store.faults import log_failure

log = logging.getLogger("guard.hold")

MIN_SLEEP = 0.05


@dataclass
class TickReport:
    notified: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)  # expired or released on expiry
    escalated: list[str] = field(default_factory=list)
    next_due_in: float | None = None


class HoldTimers:
    def __init__(self, engine: AsyncEngine, lifecycle: Lifecycle, tick_seconds: float,
                 batch: int = 100) -> None:
        self.engine = engine
        self.lifecycle = lifecycle
        self.tick_seconds = tick_seconds
        self.batch = batch
        self._wake = asyncio.Event()
        self._passes = 0

    def wake(self) -> None:
        """A new hold was committed: look now (first notice) instead of at the next tick."""
        self._wake.set()

    async def tick(self) -> TickReport:
        report = TickReport()
        async with self.engine.connect() as conn:
            unnotified = await H.unnotified(conn, self.batch)
        for mid in unnotified:
            if (await self.lifecycle.notify(mid)).ok:
                report.notified.append(mid)
        async with self.engine.connect() as conn:
            now = await db_now(conn)
            due = await H.due_expiries(conn, now, self.batch)
            escalations = await H.due_escalations(conn, now, self.batch)
        for mid in due:
            if (await self.lifecycle.expire(mid)).ok:
                report.expired.append(mid)
        for mid in escalations:
            if (await self.lifecycle.escalate(mid)).ok:
                report.escalated.append(mid)
        self._passes += 1
        if self._passes % 100 == 1:  # used nonces are only needed until their expiry
            await self.lifecycle.writer.submit(
                lambda conn, now: H.purge_used_tokens(conn, now))
        async with self.engine.connect() as conn:
            now = await db_now(conn)
            nxt = await H.next_due(conn)
        report.next_due_in = None if nxt is None else nxt - now
        return report

    async def run(self) -> None:
        while True:
            sleep = self.tick_seconds
            try:
                report = await self.tick()
                progress = report.notified or report.expired or report.escalated
                if report.next_due_in is not None and (report.next_due_in > 0 or progress):
                    # (something overdue that did not move is retried at the next tick,
                    # not in a busy loop)
                    sleep = min(sleep, max(report.next_due_in, MIN_SLEEP))
                if len(report.notified) >= self.batch or len(report.expired) >= self.batch:
                    sleep = MIN_SLEEP  # more waiting
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log_failure(log, "hold timers failed; trying again at the next tick", e)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), sleep)
