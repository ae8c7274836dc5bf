"""The delivery worker: claim due messages, send them, record each attempt.

Postfix's queue discipline: per-recipient results, exponential backoff between
min_backoff and max_backoff, a DSN to the sender when a recipient fails for good or the
message outlives max_lifetime, never a DSN for a DSN. Claims are leases in the database
(SKIP LOCKED on PostgreSQL), so any number of instances can share one queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import aiosmtplib
from sqlalchemy.ext.asyncio import AsyncConnection

from guard import metrics
from guard.config import DeliverySettings
from guard.ids import new_queue_id
from guard.inspect.domains import canonical_address, domain_of, registrable_domain
from guard.logs import queue_id_var
from guard.relay.client import Outcome, Upstream, UpstreamUnavailable
from guard.relay.dsn import FailedRecipient, build_dsn
from guard.store import knowledge
from guard.store import queue as q
from guard.store.faults import log_failure
from guard.store.writer import BatchWriter

log = logging.getLogger("guard.relay")


def backoff(attempts: int, settings: DeliverySettings) -> float:
    """Seconds until the next try after `attempts` failed tries (Postfix-like doubling)."""
    return min(settings.max_backoff, settings.min_backoff * (2 ** max(attempts - 1, 0)))


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class DeliveryWorker:
    def __init__(self, writer: BatchWriter, upstream: Upstream,
                 settings: DeliverySettings, hostname: str, owner: str | None = None) -> None:
        self.writer = writer
        self.upstream = upstream
        self.settings = settings
        self.hostname = hostname
        self.owner = owner or instance_id()
        self._work: asyncio.Queue[q.Claimed] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self._in_flight = 0
        # told what was delivered (the inspector's in-memory history)
        self.on_learned: Callable[[str, list[tuple[str, str]]], None] | None = None
        # filters out what the history already has (no write needed)
        self.only_new: Callable[[str, list[tuple[str, str]]], list[tuple[str, str]]] | None = (
            None)
        # per-destination backoff: after the upstream refused a connection, nobody tries
        # it again before this (monotonic) time (reliability B34)
        self._upstream_down_until = 0.0

    def wake(self) -> None:
        """Called after a commit so new mail is tried at once, not at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._claimer(), name="guard-claimer"))
        for i in range(self.settings.concurrency):
            self._tasks.append(asyncio.create_task(self._sender(i), name=f"guard-sender-{i}"))

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        # leases we still hold for messages never tried are given back
        while not self._work.empty():
            c = self._work.get_nowait()
            with contextlib.suppress(Exception):
                await self.writer.submit(
                    lambda conn, now, c=c: q.release_lease(conn, now, c.id, self.owner))

    async def _claimer(self) -> None:
        while not self._stopping:
            try:
                free = self.settings.concurrency * 2 - self._work.qsize() - self._in_flight
                claimed: list[q.Claimed] = []
                limit = min(free, self.settings.batch)
                # while the senders still have work queued, claim in batches, not one
                # message per finished send (a claim is three statements)
                if self._work.qsize() and limit < self.settings.concurrency // 2:
                    limit = 0
                if limit > 0 and time.monotonic() >= self._upstream_down_until:
                    claimed = await self.writer.submit(
                        lambda conn, now, n=limit: q.claim_due(
                            conn, now, self.owner, self.settings.lease_seconds, n))
                for c in claimed:
                    self._work.put_nowait(c)
                if claimed and len(claimed) == limit:
                    continue
            except Exception as e:
                # every poll_interval while the database is down: tracebacks once a minute
                log_failure(log, "claiming due messages failed", e, line=False)
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)

    async def _sender(self, n: int) -> None:
        smtp: aiosmtplib.SMTP | None = None
        last_used = 0.0
        try:
            while True:
                try:
                    c = await asyncio.wait_for(self._work.get(), 10.0)
                except TimeoutError:
                    # idle connections are closed rather than kept (aiosmtplib #243)
                    if smtp is not None:
                        await _quit(smtp)
                        smtp = None
                    continue
                self._in_flight += 1
                token = queue_id_var.set(c.id)
                try:
                    if smtp is not None and time.monotonic() - last_used > 5.0:
                        await _quit(smtp)
                        smtp = None
                    smtp = await self._deliver(c, smtp)
                    last_used = time.monotonic()
                except Exception:
                    log.exception("delivery attempt crashed; the message will be retried")
                    if smtp is not None:
                        smtp.close()
                    smtp = None
                    # give the lease back so a transient fault (the database, say) does
                    # not park the message for lease_seconds; if even that fails, the
                    # lease runs out and another attempt takes it
                    with contextlib.suppress(Exception):
                        await self.writer.submit(
                            lambda conn, now, c=c: q.release_lease(conn, now, c.id, self.owner))
                finally:
                    queue_id_var.reset(token)
                    self._in_flight -= 1
                    if self._work.qsize() < self.settings.concurrency:
                        self._wake.set()
        finally:
            if smtp is not None:
                smtp.close()

    async def _deliver(self, c: q.Claimed, smtp: aiosmtplib.SMTP | None
                       ) -> aiosmtplib.SMTP | None:
        # through the writer: on SQLite its reads are inline statements (microseconds),
        # where a pooled aiosqlite connection costs a dozen thread hand-offs
        env = c.envelope or await self.writer.submit(
            lambda conn, now: q.load_for_delivery(conn, c.id))
        if env is None or not env.rcpts:
            log.error("claimed message has no content or no pending recipient")
            return smtp
        rcpts = [a for _, a in env.rcpts]
        outcomes: list[Outcome]
        if time.monotonic() < self._upstream_down_until:
            outcomes = [Outcome(421, "4.4.1 upstream unavailable (waiting for retry)",
                                "deferred")] * len(rcpts)
        else:
            outcomes, smtp = await self._try_send(smtp, env, rcpts)
        await self._record(c, env, outcomes)
        return smtp

    async def _try_send(self, smtp: aiosmtplib.SMTP | None, env: q.Envelope, rcpts: list[str]
                        ) -> tuple[list[Outcome], aiosmtplib.SMTP | None]:
        data = env.trace_header + env.data
        for attempt in (1, 2):
            try:
                if smtp is None or not smtp.is_connected:
                    smtp = await self.upstream.connect()
                return await self.upstream.send(smtp, env.mail_from, rcpts, data), smtp
            except UpstreamUnavailable as e:
                if smtp is not None:
                    smtp.close()
                smtp = None
                if attempt == 1 and "before MAIL" in str(e):
                    continue  # a pooled connection went stale: one fresh try
                log.warning("upstream unavailable: %s", e)
                self._upstream_down_until = time.monotonic() + min(
                    self.settings.min_backoff, 60.0)
                return [Outcome(421, f"4.4.1 {e}", "deferred")] * len(rcpts), None
        raise AssertionError("unreachable")

    async def _record(self, c: q.Claimed, env: q.Envelope, outcomes: list[Outcome]) -> None:
        soft = self.settings.soft_bounce
        results = []
        for (idx, addr), o in zip(env.rcpts, outcomes, strict=True):
            outcome = o.outcome
            if soft and outcome == "failed":
                outcome = "deferred"
            results.append(q.RecipientResult(idx, addr, o.code, o.reply, outcome))
            metrics.DELIVERY_RESULTS.labels(outcome).inc()
        attempts = c.attempts + 1
        delay = backoff(attempts, self.settings)
        settings = self.settings
        # history for the new-domain and look-alike detectors: learned on DELIVERY (a held
        # or bounced message teaches nothing); DSNs and notices (null sender) neither
        learned = [(canonical_address(r.address), registrable_domain(domain_of(r.address)))
                   for r in results if r.outcome == "delivered"] if env.mail_from else []
        if learned and self.only_new is not None:
            learned = self.only_new(env.sender, learned)

        async def op(conn: AsyncConnection, now: float) -> str | None:
            give_up = (not soft) and now - c.queued_at >= settings.max_lifetime
            failed = [FailedRecipient(r.address, r.code, r.reply) for r in results
                      if r.outcome == "failed" or (give_up and r.outcome == "deferred")]
            bounce = None
            if failed and env.mail_from:  # never a bounce of a bounce
                reason = "message expired in the queue" if give_up else ""
                bid = new_queue_id()
                bounce = q.NewMessage(
                    id=bid, state="queued", mail_from="", sender="MAILER-DAEMON",
                    rcpt_tos=[env.mail_from],
                    data=build_dsn(hostname=self.hostname, queue_id=env.id,
                                   original_from=env.mail_from, failed=failed,
                                   original=env.data, arrival=c.received_at, reason=reason),
                    actor=f"relay:{self.owner}", audit_detail={"dsn_for": env.id})
            elif failed:
                log.warning("permanent failure of a bounce (null sender): not bounced")
            if learned:
                await knowledge.learn_delivered(conn, now, env.sender, learned)
            return await q.record_attempt(
                conn, now, env.id, self.owner, results, next_attempt_at=now + delay,
                give_up=give_up, actor=f"relay:{self.owner}",
                detail={"upstream": self.upstream.describe(), "attempt": attempts,
                        "results": [[r.address, r.code, r.reply[:200]] for r in results],
                        **({"dsn": bounce.id} if bounce else {})},
                bounce=bounce, envelope=env)

        state = await self.writer.submit(op)
        if learned and state is not None and self.on_learned is not None:
            self.on_learned(env.sender, learned)
        if state is None:
            log.warning("lease lost before the result was recorded (another instance took "
                        "over); the message may be delivered more than once")
            return
        log.info("attempt %d: %s (%s)", attempts, state,
                 ", ".join(f"{r.address}={r.code}" for r in results))
        if state == "delivered":
            metrics.MESSAGES_DELIVERED.inc()
            metrics.DELIVERY_LATENCY.observe(max(time.time() - c.received_at, 0.0))
        elif state == "deferred":
            metrics.MESSAGES_DEFERRED.inc()
        elif state == "bounced":
            metrics.MESSAGES_BOUNCED.inc()
        if any(r.outcome == "failed" for r in results) and env.mail_from:
            self.wake()  # the DSN we just queued


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    try:
        await asyncio.wait_for(smtp.quit(), 5)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        smtp.close()
