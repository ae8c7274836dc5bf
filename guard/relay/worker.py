"""The delivery worker: claim due messages, send them, record each attempt.

Postfix's queue discipline: per-recipient results, exponential backoff between
min_backoff and max_backoff, a DSN to the sender when a recipient fails for good or the
message outlives max_lifetime, never a DSN for a DSN. Claims are leases in the database
(SKIP LOCKED on PostgreSQL), so any number of instances can share one queue.

Leases are short (`delivery.lease_seconds`) and kept alive by a heartbeat while a
message is being worked on, so a dead instance's mail is taken over in seconds; at
start, the leases of this host's dead processes are given back at once. When the
upstream has answered, that outcome is written before anything else (the history is
learned after it) and, if the database cannot take it, kept and written again until it
can, the lease still held: what an upstream accepted is never sent again because a
bookkeeping write failed.

Why one module of some 430 lines: the claimer, the senders, the heartbeat and the
recording of outcomes share one piece of state — which leases this process holds and
which outcomes are not yet written — and every rule above is about that state; split
into modules it would have to be passed around and kept in step.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import aiosmtplib

from guard import metrics
from guard.config import DeliverySettings
from guard.ids import instance_id, new_queue_id
from guard.inspect.domains import history_entry
from guard.logs import queue_id_var
from guard.relay.client import Outcome, Upstream, UpstreamUnavailable, attempt_result
from guard.relay.dsn import FailedRecipient, build_dsn
from guard.relay.owner import LeaseOwner
from guard.store import AsyncConnection, delivery, knowledge
from guard.store import queue as q
from guard.store.faults import is_unavailable, log_failure
from guard.store.writer import BatchWriter, WriterClosed

log = logging.getLogger("guard.relay")


def backoff(attempts: int, settings: DeliverySettings) -> float:
    """Seconds until the next try after `attempts` failed tries (Postfix-like doubling)."""
    return min(settings.max_backoff, settings.min_backoff * (2 ** max(attempts - 1, 0)))


# how long a stop waits for outcomes that are still being written
RECORD_GRACE_SECONDS = 10.0
# the longest pause between two tries to write an outcome while the database is away
RECORD_RETRY_MAX = 2.0


class DeliveryWorker:
    def __init__(self, writer: BatchWriter, upstream: Upstream,
                 settings: DeliverySettings, hostname: str, name: str | None = None) -> None:
        self.writer = writer
        self.upstream = upstream
        self.settings = settings
        self.hostname = hostname
        self.name = name or instance_id()  # in the audit trail: relay:<name>
        self.lease_owner = LeaseOwner.this_process()
        self.owner = str(self.lease_owner)  # in lease_owner: host:pid:pidns:nonce
        self._work: asyncio.Queue[delivery.Claimed] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self._in_flight = 0
        # the messages whose leases this worker holds and works on: the heartbeat renews
        # exactly these, and a claim never hands one of them to a second sender
        self._held: set[str] = set()
        # outcomes being written (id → task); `_unwritten` counts those waiting for the
        # database to come back: while there are any, nothing new is claimed
        self._recording: dict[str, asyncio.Task[None]] = {}
        self._unwritten = 0
        self._renewal_failing = False
        self._learning: set[asyncio.Task[None]] = set()
        # told what was delivered (the inspector's in-memory history)
        self.on_learned: Callable[[str, list[tuple[str, str]]], None] | None = None
        # filters out what the history already has (no write needed)
        self.only_new: Callable[[str, list[tuple[str, str]]], list[tuple[str, str]]] | None = (
            None)
        # per-destination backoff: after the upstream refused a connection, nobody tries
        # it again before this (monotonic) time, so a down server is not hammered by every
        # sender at once
        self._upstream_down_until = 0.0

    def wake(self) -> None:
        """Called after a commit so new mail is tried at once, not at the next poll."""
        self._wake.set()

    @property
    def actor(self) -> str:
        return f"relay:{self.name}"

    async def reclaim_dead_leases(self) -> int:
        """At start: give back the leases of this host's processes that are gone (killed,
        crashed), so their mail goes out now, not when the leases run out."""
        me = self.lease_owner

        async def op(conn: AsyncConnection, now: float) -> int:
            dead = [o for o in await delivery.lease_owners(conn)
                    if (owner := LeaseOwner.parse(o)) is not None and me.is_dead_local(owner)]
            return await delivery.release_leases_of(conn, now, dead, self.actor)

        count = await self.writer.submit(op)
        if count:
            log.info("took back %d leases of this host's stopped processes", count)
        return count

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._claimer(), name="guard-claimer"))
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="guard-lease-heartbeat"))
        for i in range(self.settings.concurrency):
            self._tasks.append(asyncio.create_task(self._sender(i), name=f"guard-sender-{i}"))

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        heartbeat = [t for t in self._tasks if t.get_name() == "guard-lease-heartbeat"]
        others = [t for t in self._tasks if t not in heartbeat]
        for t in others:
            t.cancel()
        for t in others:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        # outcomes still being written (the database was away) get a little longer, the
        # heartbeat keeping their leases; what is left could be sent again
        if self._recording:
            _, late = await asyncio.wait(list(self._recording.values()),
                                         timeout=RECORD_GRACE_SECONDS)
            if late:
                log.error("stopping with %d delivery outcomes not written (the database is "
                          "not answering); these messages may be delivered again: %s",
                          len(late), ", ".join(sorted(self._recording)))
                for t in late:
                    t.cancel()
        if self._learning:  # history only: what is not written in time is dropped
            _, late = await asyncio.wait(list(self._learning), timeout=5)
            for t in late:
                t.cancel()
        for t in heartbeat:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        # leases we still hold for messages never tried are given back
        while not self._work.empty():
            c = self._work.get_nowait()
            self._held.discard(c.id)
            with contextlib.suppress(Exception):
                await self.writer.submit(
                    functools.partial(delivery.release_lease, message_id=c.id, owner=self.owner))

    async def _heartbeat(self) -> None:
        """Renew the leases of the messages this worker holds, every third of a lease;
        after a failed renewal (the database is away) every second until it works."""
        every = max(self.settings.lease_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(min(every, 1.0) if self._renewal_failing else every)
            ids = sorted(self._held)
            if not ids:
                self._renewal_failing = False
                continue
            try:
                kept = await self.writer.submit(functools.partial(
                    delivery.renew_leases, owner=self.owner, ids=ids,
                    lease_seconds=self.settings.lease_seconds))
            except Exception as e:
                if not self._renewal_failing:
                    log.warning("renewing %d leases failed, trying again every second: %s",
                                len(ids), e)
                self._renewal_failing = True
                continue
            if self._renewal_failing:
                log.info("leases renewed again (%d)", kept)
            self._renewal_failing = False

    async def _claimer(self) -> None:
        while not self._stopping:
            try:
                free = self.settings.concurrency * 2 - self._work.qsize() - self._in_flight
                claimed: list[delivery.Claimed] = []
                limit = min(free, self.settings.batch)
                # while the senders still have work queued, claim in batches, not one
                # message per finished send (a claim is three statements)
                if self._work.qsize() and limit < self.settings.concurrency // 2:
                    limit = 0
                # the leases we hold and the outcomes not written yet go first: no new
                # claims while either cannot be written
                if limit > 0 and time.monotonic() >= self._upstream_down_until and \
                        not self._unwritten and not self._renewal_failing:
                    claimed = await self.writer.submit(
                        functools.partial(delivery.claim_due, owner=self.owner,
                                          lease_seconds=self.settings.lease_seconds,
                                          limit=limit))
                for c in claimed:
                    # our own lease ran out (the database was away) and the claim took it
                    # again: the message is still being sent or recorded, not sent twice
                    if c.id in self._held:
                        continue
                    self._held.add(c.id)
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
                            functools.partial(delivery.release_lease, message_id=c.id,
                                              owner=self.owner))
                finally:
                    queue_id_var.reset(token)
                    self._in_flight -= 1
                    if c.id not in self._recording:  # else the recorder lets it go
                        self._held.discard(c.id)
                    if self._work.qsize() < self.settings.concurrency:
                        self._wake.set()
        finally:
            if smtp is not None:
                smtp.close()

    async def _deliver(self, c: delivery.Claimed, smtp: aiosmtplib.SMTP | None
                       ) -> aiosmtplib.SMTP | None:
        # through the writer: on SQLite its reads are inline statements (microseconds),
        # where a pooled aiosqlite connection costs a dozen thread hand-offs
        env = c.envelope or await self.writer.submit(
            lambda conn, now: delivery.load_for_delivery(conn, c.id))
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

    async def _try_send(self, smtp: aiosmtplib.SMTP | None, env: delivery.Envelope, rcpts: list[str]
                        ) -> tuple[list[Outcome], aiosmtplib.SMTP | None]:
        data = env.trace_header + env.data
        for attempt in (1, 2):
            try:
                if smtp is None or not smtp.is_connected:
                    smtp = await self.upstream.connect()
                outcomes = await self.upstream.send(smtp, env.mail_from, rcpts, data)
                metrics.UPSTREAM_ATTEMPTS.labels(*attempt_result(outcomes)).inc()
                return outcomes, smtp
            except UpstreamUnavailable as e:
                if smtp is not None:
                    smtp.close()
                smtp = None
                if attempt == 1 and "before MAIL" in str(e):
                    continue  # a pooled connection went stale: one fresh try
                metrics.UPSTREAM_ATTEMPTS.labels("error", "none").inc()
                log.warning("upstream unavailable: %s", e)
                self._upstream_down_until = time.monotonic() + min(
                    self.settings.min_backoff, 60.0)
                return [Outcome(421, f"4.4.1 {e}", "deferred")] * len(rcpts), None
        raise AssertionError("unreachable")

    async def _record(self, c: delivery.Claimed, env: delivery.Envelope,
                      outcomes: list[Outcome]) -> None:
        """Write the outcome of an attempt, first and alone: in a task of its own that
        survives the sender (a stop waits for it), retried until the database takes it."""
        soft = self.settings.soft_bounce
        results = []
        for (idx, addr), o in zip(env.rcpts, outcomes, strict=True):
            outcome = o.outcome
            if soft and outcome == "failed":
                outcome = "deferred"
            results.append(delivery.RecipientResult(idx, addr, o.code, o.reply, outcome))
            metrics.DELIVERY_RESULTS.labels(outcome).inc()
        task = asyncio.create_task(self._write_outcome(c, env, results),
                                   name=f"guard-record-{c.id}")
        self._recording[c.id] = task
        await asyncio.shield(task)

    async def _write_outcome(self, c: delivery.Claimed, env: delivery.Envelope,
                             results: list[delivery.RecipientResult]) -> None:
        try:
            state = await self._write_attempt(c, env, results)
        finally:
            self._recording.pop(c.id, None)
            self._held.discard(c.id)
        if state is not None and env.mail_from:
            learned = self._to_learn(env, results)
            if learned:
                # not awaited: the sender moves on; a stop may drop it (see _learn)
                learn = asyncio.create_task(self._learn(env, learned),
                                            name=f"guard-learn-{c.id}")
                self._learning.add(learn)
                learn.add_done_callback(self._learning.discard)

    async def _write_attempt(self, c: delivery.Claimed, env: delivery.Envelope,
                             results: list[delivery.RecipientResult]) -> str | None:
        attempts = c.attempts + 1
        delay = backoff(attempts, self.settings)
        settings, soft = self.settings, self.settings.soft_bounce

        async def op(conn: AsyncConnection, now: float) -> str | q.Later[str | None] | None:
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
                    actor=self.actor, audit_detail={"dsn_for": env.id})
            elif failed:
                log.warning("permanent failure of a bounce (null sender): not bounced")
            return await delivery.record_attempt(
                conn, now, env.id, self.owner, results, next_attempt_at=now + delay,
                give_up=give_up, actor=self.actor,
                detail={"upstream": self.upstream.describe(), "attempt": attempts,
                        "results": [[r.address, r.code, r.reply[:200]] for r in results],
                        **({"dsn": bounce.id} if bounce else {})},
                bounce=bounce, envelope=env)

        pause, tries, waiting_for_db = 0.25, 0, False
        try:
            while True:
                tries += 1
                try:
                    state = await self.writer.submit(op)
                    break
                except WriterClosed:
                    log.error("the database writer stopped before attempt %d was written; "
                              "the message may be delivered again", attempts)
                    return None
                except Exception as e:
                    unavailable = is_unavailable(e)
                    if unavailable != waiting_for_db:  # claims pause while the db is away
                        self._unwritten += 1 if unavailable else -1
                        waiting_for_db = unavailable
                    if tries == 1 and unavailable:
                        log.warning("writing the outcome of attempt %d failed (%s); it is kept "
                                    "and written when the database answers again, and the "
                                    "message is not sent again meanwhile", attempts, e)
                    elif tries == 1:
                        log.error("the outcome of attempt %d cannot be written (%s); it is "
                                  "tried again every minute and the message is not sent "
                                  "again", attempts, e)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, RECORD_RETRY_MAX if unavailable else 60.0)
        finally:
            if waiting_for_db:
                self._unwritten -= 1
        if tries > 1:
            log.info("outcome of attempt %d written after %d tries", attempts, tries)
        if state is None:
            # after a retry this is also what a first write that did commit looks like
            log.warning("lease lost before the result was recorded (another instance took "
                        "over, or an earlier try was written after all); the message may be "
                        "delivered more than once")
            return None
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
        return state

    def _to_learn(self, env: delivery.Envelope, results: list[delivery.RecipientResult]
                  ) -> list[tuple[str, str]]:
        """What the history does not have yet of this delivery's recipients (most
        deliveries teach nothing new: then no task and no write)."""
        try:
            learned = [history_entry(r.address)
                       for r in results if r.outcome == "delivered"]
            if learned and self.only_new is not None:
                learned = self.only_new(env.sender, learned)
        except Exception as e:
            log.warning("delivered, but the history was not updated: %s", e)
            return []
        return learned

    async def _learn(self, env: delivery.Envelope, learned: list[tuple[str, str]]) -> None:
        """History for the new-domain and look-alike detectors, after the outcome is
        written: learned on DELIVERY (a held or bounced message teaches nothing); DSNs and
        notices (null sender) neither. A failure here costs a first-time-domain hold later,
        never a second delivery."""
        try:
            await self.writer.submit(
                lambda conn, now: knowledge.learn_delivered(conn, now, env.sender, learned))
        except Exception as e:
            log.warning("delivered, but the history was not updated: %s", e)
            return
        if self.on_learned is not None:
            self.on_learned(env.sender, learned)


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    try:
        await asyncio.wait_for(smtp.quit(), 5)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        smtp.close()
