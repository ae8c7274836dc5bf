"""The alert dispatcher: reads the audit trail after its cursor and mails the officers.

Every instance runs it on a timer (`alerts.tick_seconds`, and at once when a message is
held or refused). One pass is ONE write transaction (guard/store/alerts.py keeps the
state in a locked `store_meta` row):

1. read the audit rows after the cursor, oldest first, in one read, and move the cursor
   past them; an id missing among them (another instance's write that had its id but
   had not committed yet: PostgreSQL hands ids out at the insert) is looked for again
   on every pass until `alerts.gap_wait_seconds` (at most MAX_GAPS at once: beyond, the
   cursor waits rather than pass an id unrecorded); the severe events among them join
   the gathered ones of each of their recipients (the policy's officers, plus the
   sender's department's `by_group` addresses);
2. for each recipient address: once their first event is `alerts.gather_seconds` old
   and their last alert mail `alerts.min_interval_seconds` ago, one mail: a first
   report for one message, a burst (counted, each message once) for several;
3. once a local day at `alerts.digest_hour`: the digest of the less severe events to
   `digest_to` (read before the transaction, so the writer never waits on a day's
   events; queued only if the state still says it is due from the same time). It
   reads by audit time up to `alerts.gap_wait_seconds` ago, so a row whose transaction
   commits late (its time is its transaction's) still falls in a period not yet read;
4. the alert mail is queued as new messages from the guard (never inspected nor held,
   delivered by the normal worker), their `accepted` audit row naming the events, and
   the state written back.

The mail and the state commit together, so an alert is never lost (a crash before the
commit leaves the cursor where it was) nor sent twice (the next pass, here or in
another instance, starts from the state this one left).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from guard import metrics
from guard.alert.compose import Words, burst, digest, first_report
from guard.alert.events import ACTIONS, Event, Facts, classify
from guard.config import Settings
from guard.ids import GUARD_SENDER, new_queue_id
from guard.mail.notice import NoticeError, build_notice, one_line
from guard.ownmail import notice_from_address, review_base_url, timezone_of
from guard.policy import Policy
from guard.store import AsyncConnection, AsyncEngine
from guard.store import alerts as A
from guard.store.db import db_now
from guard.store.faults import log_failure
from guard.store.queue import NewMessage, insert_message
from guard.store.records import AuditRow
from guard.store.writer import BatchWriter
from guard.viewlink import ViewLinks

log = logging.getLogger("guard.alert")

ACTOR = "guard:alert"
MIN_SLEEP = 0.05
MAX_GAPS = 10_000  # missing ids looked for at once (a flood of rollbacks stays bounded)


@dataclass
class Queued:
    kind: str  # first | burst | digest
    message: NewMessage


@dataclass(frozen=True)
class Digest:
    day: str  # the local day it is for
    after: float  # the state's digest_until it was read after (compare-and-set)
    until: float
    to: tuple[str, ...]
    subject: str
    body: str
    detail: dict[str, object]


@dataclass
class PassReport:
    queued: list[Queued] = field(default_factory=list)
    read: int = 0  # audit rows of interest read past the cursor
    backlog: bool = False  # more audit rows are waiting
    gathered: int = 0  # severe events waiting after the pass
    next_due_in: float | None = None  # seconds until gathered events are due
    skipped: bool = False  # another instance's pass held the state


class AlertDispatcher:
    def __init__(self, engine: AsyncEngine, writer: BatchWriter, settings: Settings,
                 policy: Callable[[], Policy | None], *,
                 on_queued: Callable[[], None] | None = None,
                 links: ViewLinks | None = None) -> None:
        self.engine = engine
        self.writer = writer
        self.settings = settings
        self.policy = policy
        self.on_queued = on_queued
        self.tz = timezone_of(settings)
        self.base_url = review_base_url(settings)
        self.links = links
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A message was held or refused: look now rather than at the next tick."""
        self._wake.set()

    async def tick(self) -> PassReport:
        # a day's events are read before the write, so the writer (every other write
        # waits on it) never waits on that read; the pass queues the digest only if the
        # state still says it is due from the same time (else another instance sent it)
        digest = await self._digest_due()

        async def one_pass(conn: AsyncConnection, now: float) -> PassReport:
            return await self._pass(conn, now, digest)

        report: PassReport = await self.writer.submit(one_pass)
        for q in report.queued:  # counted once committed
            metrics.ALERTS_SENT.labels(q.kind).inc()
        if report.queued:
            log.info("alerts queued: %s", ", ".join(
                f"{q.kind} {q.message.id} for {len(q.message.rcpt_tos)}" for q in report.queued))
            if self.on_queued is not None:
                self.on_queued()
        return report

    async def run(self) -> None:
        a = self.settings.alerts
        self._warn_links()
        while True:
            sleep = a.tick_seconds
            # cleared BEFORE the pass: a wake during the pass runs another one at once
            self._wake.clear()
            try:
                report = await self.tick()
                if report.next_due_in is not None:
                    sleep = min(sleep, max(report.next_due_in, MIN_SLEEP))
                if report.backlog:
                    sleep = MIN_SLEEP  # read on
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log_failure(log, "alerts failed; trying again at the next tick", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), sleep)

    def _warn_links(self) -> None:
        """Alert links point at review.base_url; unset, they fall back to web.base_url or
        http://<web.listen>, which an officer's phone rarely reaches: say so at start."""
        policy = self.policy()
        if policy is None or self.settings.review.base_url or self.settings.web.base_url:
            return
        alerts = policy.doc.alerts
        if alerts.officers or alerts.by_group or alerts.digest_to:
            log.warning("alerts are configured but review.base_url is unset: alert links "
                        "point at %s / review.base_url が未設定のため、通知のリンク先は %s です",
                        self.base_url, self.base_url)

    # --- one pass, in one transaction -----------------------------------------------

    def _facts(self, policy: Policy | None) -> Facts:
        if policy is None:
            return Facts(is_internal=lambda a: False)
        return Facts(is_internal=policy.is_internal, min_records=policy.doc.alerts.min_records)

    def _recipients(self, policy: Policy | None, sender: str) -> tuple[str, ...]:
        if policy is None:
            return ()
        alerts = policy.doc.alerts
        out = list(alerts.officers)
        for group in policy.groups_of(sender):
            out += alerts.by_group.get(group, [])
        return tuple(sorted(set(out)))

    def _words(self, policy: Policy | None, now: float) -> Words:
        links, until = self.links, now + self.settings.alerts.link_days * 86400

        def view_link(message_id: str) -> str:
            return "" if links is None else links.sign(message_id, until)

        if policy is None:
            return Words(self.tz, self.base_url, view_link=view_link)

        def department(sender: str) -> str | None:
            return policy.department_of(sender, with_name=False)  # short: a phone's mail

        return Words(self.tz, self.base_url, policy.doc.alerts.show_addresses, department,
                     policy.tables.customer, view_link)

    async def _pass(self, conn: AsyncConnection, now: float, digest: Digest | None
                    ) -> PassReport:
        a = self.settings.alerts
        report = PassReport()
        state = await A.lock_state(conn, now, self._first_state(now))
        if state is None:  # another instance's pass holds the state: it does this work
            report.skipped = True
            return report
        before = state.to_json()
        policy = self.policy()
        facts = self._facts(policy)
        # 1. the ids skipped earlier that have committed since, then past the cursor
        found: list[AuditRow] = []
        if state.gaps:
            found = await A.read_ids(conn, sorted(state.gaps))
            for r in found:
                del state.gaps[r.id]
            expired = [i for i, t in state.gaps.items() if t <= now - a.gap_wait_seconds]
            for i in expired:  # rolled back (or a commit far slower than gap_wait_seconds)
                del state.gaps[i]
            if expired:
                metrics.ALERT_GAPS.labels("forgotten").inc(len(expired))
        read_from = state.after
        read = await A.read_after(conn, state.after, ACTIONS,
                                  max_missing=MAX_GAPS - len(state.gaps))
        if read.reset_from is not None:
            log.warning("alerts: the cursor (audit id %d) was past the newest audit id (%d): "
                        "restored or the sequence reset; reading on from %d",
                        read.reset_from, read.after, read.after)
            metrics.ALERT_GAPS.labels("reset").inc()
            state.gaps = {}
        if read.held_back:
            log.warning("alerts: %d audit ids missing at once; the cursor waits at %d until "
                        "they commit or are forgotten (alerts.gap_wait_seconds)",
                        MAX_GAPS, read.after)
            metrics.ALERT_GAPS.labels("held_back").inc()
        state.after = read.after
        for i in read.missing:
            state.gaps[i] = now
        wanted = sorted([*read.rows, *(r for r in found if r.action in ACTIONS)],
                        key=lambda r: r.id)
        report.read = len(read.rows)
        report.backlog = not read.held_back and read.after - read_from >= A.READ_LIMIT
        msgs = await A.message_facts(conn, {r.message_id for r in wanted})
        gathered = state.pending_count()
        for r in wanted:
            e = classify(r, msgs.get(r.message_id), facts)
            if e is not None and e.severe:
                for to in self._recipients(policy, e.sender):
                    state.pending.setdefault(to, []).append(r.id)
        # 2. what is due of the gathered events (read again only when something is new
        # or due: a burst waiting for min_interval_seconds is not re-read every tick)
        if state.pending and (state.pending_count() > gathered or now >= state.next_due):
            report.queued += await self._due(conn, now, state, policy, facts, report)
        elif state.pending:
            report.next_due_in = state.next_due - now
        state.sent = {k: t for k, t in state.sent.items() if t > now - a.min_interval_seconds}
        # 3. the digest
        if digest is not None and state.digest_day != digest.day and \
                state.digest_until == digest.after:
            # (nobody to send it to: the day is marked all the same, so a digest_to added
            # later starts with the next day's events, not with months of them)
            report.queued += self._mail("digest", digest.to, digest.subject, digest.body, now,
                                        policy, digest.detail, "")
            state.digest_day, state.digest_until = digest.day, digest.until
        if state.to_json() != before:  # (an idle pass writes nothing)
            await A.save_state(conn, now, state)
        for q in report.queued:
            await insert_message(conn, now, q.message)
        report.gathered = len(state.pending_ids())
        return report

    async def _due(self, conn: AsyncConnection, now: float, state: A.AlertState,
                   policy: Policy | None, facts: Facts, report: PassReport) -> list[Queued]:
        """Per recipient ADDRESS (an officer who is also a department's by_group address
        is one person): once their first event is gather_seconds old and their last alert
        mail min_interval_seconds ago, one mail with all their events. Addresses due with
        the same events share the words of one mail."""
        a = self.settings.alerts
        rows = await A.read_ids(conn, state.pending_ids())
        msgs = await A.message_facts(conn, {r.message_id for r in rows})
        events: dict[int, Event] = {}
        for r in rows:  # still severe (an outside recipient may have been dropped since)
            e = classify(r, msgs.get(r.message_id), facts)
            if e is not None and e.severe:
                events[r.id] = e
        per_address: dict[str, dict[int, Event]] = {}
        for to, ids in state.pending.items():
            for i in ids:
                e = events.get(i)
                if e is None:
                    continue
                # ("": gathered by an older guard: to whom the policy names now)
                for address in (self._recipients(policy, e.sender) if to == "" else (to,)):
                    per_address.setdefault(address, {})[i] = e
        keep: dict[str, list[int]] = {}
        waits: list[float] = []
        due_now: dict[tuple[int, ...], list[str]] = {}
        for to, by_id in per_address.items():
            due = max(min(e.at for e in by_id.values()) + a.gather_seconds,
                      state.sent.get(to, float("-inf")) + a.min_interval_seconds)
            if due > now:
                keep[to] = sorted(by_id)
                waits.append(due - now)
            else:
                due_now.setdefault(tuple(sorted(by_id)), []).append(to)
        queued: list[Queued] = []
        words = self._words(policy, now)
        for due_ids, tos in due_now.items():
            per_message: dict[str, list[Event]] = {}
            for i in due_ids:  # one message's several events count once
                per_message.setdefault(events[i].message_id, []).append(events[i])
            groups = list(per_message.values())
            if len(groups) == 1:
                kind, (subject, body) = "first", first_report(groups[0], words)
            else:
                kind, (subject, body) = "burst", burst(groups, words)
            detail = {"alert": kind, "events": list(due_ids), "messages": list(per_message),
                      "count": len(groups)}
            queued += self._mail(kind, tuple(sorted(tos)), subject, body, now, policy, detail,
                                 next(iter(per_message)))
            for to in tos:
                state.sent[to] = now
        state.pending = keep
        report.next_due_in = min(waits) if waits else None
        state.next_due = now + min(waits) if waits else 0.0
        return queued

    def _digest_day(self, now: float) -> str | None:
        """The local day whose digest is due at `now` (its hour has come), else None."""
        local = datetime.fromtimestamp(now, self.tz)
        if local.hour < self.settings.alerts.digest_hour:
            return None
        return local.date().isoformat()

    def _first_state(self, now: float) -> A.AlertState:
        """A new guard's state: its first digest at the next digest hour, covering the
        time from now (a guard started at 10:00 sends none until tomorrow's)."""
        return A.AlertState(digest_day=self._digest_day(now) or "", digest_until=now)

    async def _digest_due(self) -> Digest | None:
        """The digest, if one is due: its recipients, its words, and the period it covers
        (from the end of the last one)."""
        policy = self.policy()
        to = tuple(sorted(set(policy.doc.alerts.digest_to))) if policy is not None else ()
        async with self.engine.connect() as conn:
            now = await db_now(conn)
            day = self._digest_day(now)
            state = await A.read_state(conn)
            if state is None or day is None or state.digest_day == day:
                return None  # (no state yet: the first pass starts it)
            since = state.digest_until or now - 86400.0
            # up to gap_wait_seconds ago: a late commit is counted in this digest or the
            # next, not missed
            until = max(since, now - self.settings.alerts.gap_wait_seconds)
            if not to:
                return Digest(day, state.digest_until, until, (), "", "", {})
            rows = await A.read_between(conn, since, until, ACTIONS)
            msgs = await A.message_facts(conn, {r.message_id for r in rows})
        facts = self._facts(policy)
        minor: list[Event] = []
        severe: set[str] = set()
        for r in rows:
            e = classify(r, msgs.get(r.message_id), facts)
            if e is None:
                continue
            if e.severe:
                severe.add(e.message_id)
            else:
                minor.append(e)
        subject, body = digest(day, since, until, minor, len(severe),
                               self._words(policy, now))
        return Digest(day, state.digest_until, until, to, subject, body,
                      {"alert": "digest", "day": day, "since": since, "until": until,
                       "events": len(minor), "severe": len(severe)})

    def _mail(self, kind: str, rcpts: tuple[str, ...], subject: str, body: str, now: float,
              policy: Policy | None, detail: dict[str, object], about: str) -> list[Queued]:
        """One alert mail per recipient (each sees only their own address), queued as
        the guard's own mail: never inspected, never held."""
        domains = policy.doc.defaults.internal_domains if policy is not None else ()
        from_addr = notice_from_address(self.settings, domains)
        out = []
        for to in rcpts:
            mid = new_queue_id()
            try:
                data = build_notice(
                    kind=f"alert-{kind}", held_id=about or mid, from_name="guard 誤送信防止",
                    from_addr=from_addr, to_name="", to_addr=to, subject=subject, body=body,
                    hostname=self.settings.smtp.hostname,
                    date=datetime.fromtimestamp(now, self.tz))
            except NoticeError as e:
                log.error("alert %s to %s not built: %s", kind, to, e)
                metrics.ALERTS_FAILED.labels(kind).inc()
                continue
            out.append(Queued(kind, NewMessage(
                id=mid, state="queued", mail_from=self.settings.review.notice_from,
                sender=GUARD_SENDER, rcpt_tos=[to], data=data, subject=one_line(subject, 200),
                header_from=from_addr, actor=ACTOR, audit_detail=detail)))
        return out
