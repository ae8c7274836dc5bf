"""The hold lifecycle: one function per change, each one transaction.

    held ──release / confirm / send now / approve (last) / expire(send)──▶ queued
    held ──cancel / reject / (last recipient dropped)───────────────────▶ cancelled
    held ──expire(cancel)───────────────────────────────────────────────▶ expired
    held ──notify / approve (not the last) / escalate / drop-recipient──▶ held
    queued|deferred (not being delivered) ──hold───────────────────────▶ held

Every function: lock the message row, compare-and-set the state through
`queue.transition()` (one audit row: who, when, from where, why), consume the link
token's nonce if one was used, and insert the notices it causes — all in one
transaction run by the BatchWriter, whose `now` is the database clock. A function
that loses a race (the state is no longer "held") changes nothing and says so. The
web pages, the CLI and the timers all call these functions.

Releasing resets `queued_at` and `next_attempt_at` to now: time spent held does not
count toward the delivery lifetime.

Why one module of some 500 lines: it is one job, the transitions of a held message.
Each public method is one transition; the private helpers above them (open under the
row lock, notify, consume a link, drop recipients, rewrite the stored bytes) are the
steps those transitions share inside their transaction. Split by transition, every
module would import the same helpers and a reader would lose the one place where
all the ways out of "held" stand side by side. Who acts and what came of it are in
acts.py, who may approve in approvers.py, the notices in notify/.

To add a transition: a public method whose `op` opens the message under its row lock
(`_open`), changes the state through `_transition` (the audit row; what the metrics
count goes into the `Tally`, observed by `_run` after the commit), consumes the link if
one was used and queues its notices (`_notify`);
its (from, to, action) must be a move the store's table allows. Then the web form
(web/review_form.py), the CLI (cli/queue.py) or the timers call it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from guard.config import Settings
from guard.hold.acts import Actor, Link, Result
from guard.hold.approvers import allowed_approvers, backup_approvers, first_approvers
from guard.hold.model import Hold, parse_hold
from guard.hold.notify.notices import Event, NoticeFactory
from guard.hold.tally import Tally, hold_kind
from guard.mail.addresses import address_key
from guard.mail.rewrite import move_to_bcc, remove_recipients
from guard.store import AsyncConnection, links
from guard.store import holds as H
from guard.store import queue as q
from guard.store.writer import BatchWriter

log = logging.getLogger("guard.hold")


def release_values(now: float) -> dict[str, Any]:
    return {"queued_at": now, "next_attempt_at": now, "lease_owner": None, "lease_until": None}


LINKED_AFTER_SECONDS = links.LINKED_AFTER_SECONDS


Op = Callable[[AsyncConnection, float, Tally], Awaitable[Result]]


class Lifecycle:
    def __init__(self, writer: BatchWriter, settings: Settings, notices: NoticeFactory,
                 on_queued: Callable[[], None] | None = None, instance: str = "guard") -> None:
        self.writer = writer
        self.settings = settings
        self.notices = notices
        self.on_queued = on_queued
        # the guard itself (first notices, expiry, escalation): audited with its instance
        self.system = Actor("system", instance, "timer")

    async def _run(self, op: Op) -> Result:
        async def attempt(conn: AsyncConnection, now: float) -> tuple[Result, Tally]:
            tally = Tally()  # an op the writer runs again (its batch failed) counts once
            return await op(conn, now, tally), tally

        res, tally = await self.writer.submit(attempt)
        tally.observe()  # committed
        if res.queued and self.on_queued is not None:
            self.on_queued()  # wake the delivery worker: released mail and notices
        return res

    # --- helpers inside a transaction -------------------------------------------------

    async def _open(self, conn: AsyncConnection, message_id: str, link: Link | None
                    ) -> tuple[H.MessageRow, Hold] | Result:
        msg = await H.lock_message(conn, message_id)
        if msg is None:
            return Result("not_found")
        if link is not None and await H.nonce_used(conn, link.nonce):
            return Result("used", msg.state)
        if msg.state != "held":
            return Result("not_held", msg.state)
        return msg, parse_hold(msg.verdict, mail_from=msg.mail_from, sender=msg.sender)

    async def _notify(self, conn: AsyncConnection, now: float, t: Tally, msg: H.MessageRow,
                      hold: Hold, event: Event, to: Iterable[str],
                      link_action: str | None = None) -> int:
        rcpts = await H.get_recipients(conn, msg.id)
        n = 0
        sent: set[str] = set()
        for addr in to:
            if not addr or address_key(addr) in sent:
                continue
            sent.add(address_key(addr))
            notice = self.notices.make(event, msg, rcpts, hold, now, addr,
                                       link_action=link_action)
            if notice is None:
                t.notices_failed.append(event.kind)
                continue
            await q.insert_message(conn, now, notice)
            t.notices.append(event.kind)
            n += 1
        return n

    async def _consume(self, conn: AsyncConnection, now: float, msg_id: str,
                       link: Link | None) -> None:
        if link is not None:
            await H.use_nonce(conn, now, link.nonce, msg_id, link.expires_at)

    def _asked(self, hold: Hold, hold_row: H.HoldRow | None) -> list[str]:
        """Everyone who was asked to approve (told again when someone acts)."""
        if hold.kind != "approve":
            return []
        return sorted(allowed_approvers(hold, hold_row, self.settings))

    async def _transition(self, conn: AsyncConnection, now: float, t: Tally,
                          msg: H.MessageRow, *,
                          to_state: str, actor: Actor, action: str,
                          detail: dict[str, Any], values: dict[str, Any] | None = None
                          ) -> bool:
        ok = await q.transition(conn, now, msg.id, from_states=("held",), to_state=to_state,
                                actor=actor.audit_name, action=action,
                                detail={**actor.detail(), **detail}, values=values)
        if ok:
            t.moved(hold_kind(msg.verdict.get("action")), action, to_state, actor.role,
                    now - msg.received_at)
        return ok

    async def _cancel_in(self, conn: AsyncConnection, now: float, t: Tally,
                         msg: H.MessageRow, hold: Hold, actor: Actor, *, action: str,
                         reason: str, note: str, extra: dict[str, Any] | None = None) -> Result:
        """held → cancelled, recorded as a near miss, the people concerned told."""
        detail = {"reason": reason, "note": note[:1000], "near_miss": True,
                  "hold_kind": hold.kind,
                  "symbols": sorted({r.symbol for r in hold.reasons if r.symbol}),
                  **(extra or {})}
        if not await self._transition(conn, now, t, msg, to_state="cancelled", actor=actor,
                                      action=action, detail=detail):
            return Result("not_held")
        t.near_misses.append((actor.role, hold.kind))
        hold_row = await H.get_hold(conn, msg.id)
        told = [a for a in self._asked(hold, hold_row) if a != address_key(actor.who)]
        if actor.role != "sender":
            told.insert(0, msg.mail_from)
        kind = "rejected" if action == "reject" else "cancelled"
        shown = note or reason
        n = await self._notify(conn, now, t, msg, hold, actor.event(kind, reason=shown),
                               told)
        n += await self._follow(conn, now, t, msg, actor, "cancel")
        return Result("rejected" if action == "reject" else "cancelled", "cancelled", n)

    async def _follow(self, conn: AsyncConnection, now: float, t: Tally,
                      leader: H.MessageRow, actor: Actor, outcome: str) -> int:
        """The held password mails linked to `leader` (PPAP) go with it, in its
        transaction, each with its own audit row naming the link: released a moment
        after it ("release") to the recipients it goes to (the others dropped, and out of
        To/Cc; none left: cancelled), or cancelled with it ("cancel"). How many were
        queued."""
        queued = 0
        for mid in await links.followers(conn, leader.id):
            msg = await H.lock_message(conn, mid)
            if msg is None or msg.state != "held":
                continue
            detail: dict[str, Any] = {"linked_to": leader.id, "with": outcome,
                                      "hold_kind": hold_kind(msg.verdict.get("action"))}
            if outcome == "release":
                dropped, left = await links.confine(conn, now, mid, leader.id, address_key)
                if left:
                    values = release_values(now + LINKED_AFTER_SECONDS)
                    if dropped:
                        detail.update(dropped=dropped, dropped_why=links.NOT_A_RECIPIENT)
                        hold = parse_hold(msg.verdict, mail_from=msg.mail_from,
                                          sender=msg.sender)
                        await self._rewrite(conn, mid, hold, dropped, False, values)
                    if await self._transition(conn, now, t, msg, to_state="queued",
                                              actor=actor, action="release", detail=detail,
                                              values=values):
                        queued += 1
                    continue
                # the attachment mail goes to none of its recipients: nor does it
                detail.update({"with": "cancel", "reason": "linked_recipients_removed",
                               "dropped": dropped})
                await self._transition(conn, now, t, msg, to_state="cancelled", actor=actor,
                                       action="cancel", detail=detail)
                continue
            detail.update(reason="linked_cancelled", near_miss=True)
            if await self._transition(conn, now, t, msg, to_state="cancelled", actor=actor,
                                      action="cancel", detail=detail):
                t.near_misses.append((actor.role, str(detail["hold_kind"])))
        return queued

    async def _waits_for(self, conn: AsyncConnection, message_id: str) -> str | None:
        """The held attachment mail a password mail waits for (None: it waits for
        nothing, or that mail is no longer held)."""
        leader = await links.linked_to(conn, message_id)
        if leader is None:
            return None
        row = await H.get_message(conn, leader)
        return leader if row is not None and row.state == "held" else None

    # --- the transitions --------------------------------------------------------------

    async def notify(self, message_id: str) -> Result:
        """First notices of a new hold (sender; approvers). Idempotent: the holds row is
        the marker, written in the same transaction as the notices."""

        async def op(conn: AsyncConnection, now: float, t: Tally) -> Result:
            opened = await self._open(conn, message_id, None)
            if isinstance(opened, Result):
                return opened
            msg, hold = opened
            if await H.get_hold(conn, message_id) is not None:
                return Result("already", msg.state)
            values: dict[str, Any] = {}
            if msg.hold_until is None:
                # the pipeline sets hold_until from hold_seconds; a verdict that says
                # more than the row (delay/expiry minutes) is honoured here
                minutes = hold.delay_minutes if hold.kind == "delay" else hold.expiry_minutes
                if minutes is not None:
                    values["hold_until"] = msg.received_at + minutes * 60
                    msg.hold_until = values["hold_until"]
            asked = first_approvers(hold, self.settings) if hold.kind == "approve" else []
            escalate_at = None
            if hold.kind == "approve" and backup_approvers(hold, self.settings):
                minutes = hold.escalate_after_minutes
                if minutes is None:
                    minutes = self.settings.review.default_escalate_after_minutes
                escalate_at = now + minutes * 60
            await H.create_hold(conn, now, message_id, hold.kind, escalate_at,
                                hold.approvals_required)
            if hold.kind == "approve" and not asked:
                log.error("held for approval but no approver other than the sender: "
                          "set approvers in the policy or review.admin_addresses")
            told = [msg.mail_from] if msg.mail_from else []
            await self._transition(conn, now, t, msg, to_state="held", actor=self.system,
                                   action="notified",
                                   detail={"to": told + asked, "hold_kind": hold.kind},
                                   values=values)
            n = await self._notify(conn, now, t, msg, hold, Event("held", approvers=tuple(asked)),
                                   told, "review")
            n += await self._notify(conn, now, t, msg, hold, Event("approval_request"), asked,
                                    "approve")
            return Result("notified", "held", n, {"to": told + asked})

        return await self._run(op)

    async def release(self, message_id: str, actor: Actor, *, link: Link | None = None,
                      drop: Iterable[str] = (), bcc: bool = False, reason: str = "") -> Result:
        """held → queued: the sender confirms or sends now (optionally removing recipients
        and moving To/Cc to Bcc, in the same transaction), or an admin releases."""
        drop = list(drop)

        async def op(conn: AsyncConnection, now: float, t: Tally) -> Result:
            opened = await self._open(conn, message_id, link)
            if isinstance(opened, Result):
                return opened
            msg, hold = opened
            if actor.role == "sender" and hold.kind == "approve":
                return Result("forbidden", msg.state)  # nobody approves their own mail
            if actor.role == "sender" and await self._waits_for(conn, message_id):
                # a password mail goes with its attachment mail, not before it
                return Result("forbidden", msg.state, detail={"waits_for": True})
            dropped = await self._drop(conn, now, message_id, drop)
            if dropped and not await self._pending(conn, message_id):
                res = await self._cancel_in(conn, now, t, msg, hold, actor, action="cancel",
                                            reason="all_recipients_removed", note=reason,
                                            extra={"dropped": dropped})
                await self._consume(conn, now, message_id, link)
                return res
            values = release_values(now)
            await self._rewrite(conn, message_id, hold, dropped, bcc, values)
            detail = {"hold_kind": hold.kind, "dropped": dropped, "bcc": bcc}
            if reason:
                detail["reason"] = reason[:1000]
            if not await self._transition(conn, now, t, msg, to_state="queued", actor=actor,
                                          action="release", detail=detail, values=values):
                return Result("not_held")
            await self._consume(conn, now, message_id, link)
            n = 1 + await self._follow(conn, now, t, msg, actor, "release")
            if actor.role != "sender":
                hold_row = await H.get_hold(conn, message_id)
                n += await self._notify(conn, now, t, msg, hold,
                                        actor.event("released"),
                                        [msg.mail_from, *self._asked(hold, hold_row)])
            elif dropped:  # the sender keeps a record of whom it finally went to
                n += await self._notify(conn, now, t, msg, hold,
                                        actor.event("released"), [msg.mail_from])
            return Result("released", "queued", n, {"dropped": dropped, "bcc": bcc})

        return await self._run(op)

    async def _drop(self, conn: AsyncConnection, now: float, message_id: str,
                    drop: Iterable[str]) -> list[str]:
        """pending → dropped for the recipients named in `drop`; their addresses."""
        keys = {address_key(a) for a in drop if a}
        dropped = []
        for r in await H.get_recipients(conn, message_id):
            if r.state == "pending" and address_key(r.address) in keys:
                if await H.drop_recipient(conn, now, message_id, r.idx):
                    dropped.append(r.address)
        return dropped

    async def _pending(self, conn: AsyncConnection, message_id: str) -> list[H.RecipientRow]:
        return [r for r in await H.get_recipients(conn, message_id) if r.state == "pending"]

    async def _rewrite(self, conn: AsyncConnection, message_id: str, hold: Hold,
                       dropped: list[str], bcc: bool, values: dict[str, Any]) -> None:
        """The stored bytes follow the envelope: removed recipients out of To/Cc (and,
        when asked, outside addresses to Bcc). Every other byte stays as received; the
        new size goes into `values`, written by the caller's transition."""
        if not dropped and not bcc:
            return
        data = await H.get_content(conn, message_id)
        if data is None:
            return
        new = remove_recipients(data, dropped) if dropped else data
        if bcc:
            new = move_to_bcc(new, hold.internal_domains)
        if new != data:
            await H.replace_content(conn, message_id, new)
            values["size"] = len(new)

    async def cancel(self, message_id: str, actor: Actor, *, reason: str, note: str = "",
                     link: Link | None = None) -> Result:
        """held → cancelled by the sender or an admin: a near miss, with who and why."""

        async def op(conn: AsyncConnection, now: float, t: Tally) -> Result:
            opened = await self._open(conn, message_id, link)
            if isinstance(opened, Result):
                return opened
            msg, hold = opened
            res = await self._cancel_in(conn, now, t, msg, hold, actor, action="cancel",
                                        reason=reason, note=note)
            if res.ok:
                await self._consume(conn, now, message_id, link)
            return res

        return await self._run(op)

    async def _open_for_decision(self, conn: AsyncConnection, message_id: str,
                                 link: Link | None, who: str, actor: Actor) -> Any:
        """Approve and reject: the held message, its hold and hold row — or a Result.
        Only an approve hold, never by the sender, and an approver link only for someone
        currently asked (backups only after escalation)."""
        opened = await self._open(conn, message_id, link)
        if isinstance(opened, Result):
            return opened
        msg, hold = opened
        hold_row = await H.get_hold(conn, message_id)
        if hold.kind != "approve" or hold.is_sender(who) or (
                actor.role == "approver"
                and who not in allowed_approvers(hold, hold_row, self.settings)):
            return Result("forbidden", msg.state)
        return msg, hold, hold_row

    async def approve(self, message_id: str, actor: Actor, *, link: Link | None = None,
                      drop: Iterable[str] = ()) -> Result:
        """One approval; the last one needed releases the message (held → queued). The
        approver may take recipients out at the same time (envelope and To/Cc)."""
        who = address_key(actor.who)
        drop = list(drop)

        async def op(conn: AsyncConnection, now: float, t: Tally) -> Result:
            opened = await self._open_for_decision(conn, message_id, link, who, actor)
            if isinstance(opened, Result):
                return opened
            msg, hold, hold_row = opened
            approvals = await H.get_approvals(conn, message_id)
            if who in approvals:
                return Result("already", msg.state)
            keys = {address_key(a) for a in drop}
            if all(address_key(r.address) in keys
                   for r in await self._pending(conn, message_id)):
                return Result("forbidden", msg.state)  # no one left: a rejection, not this
            dropped = await self._drop(conn, now, message_id, drop)
            await H.add_approval(conn, now, message_id, who)
            count = len(approvals) + 1
            required = hold_row.approvals_required if hold_row else hold.approvals_required
            final = count >= required
            detail: dict[str, Any] = {"approver": who, "count": count, "required": required,
                                      "hold_kind": hold.kind}
            if dropped:
                detail["dropped"] = dropped
            values = release_values(now) if final else {}
            await self._rewrite(conn, message_id, hold, dropped, False, values)
            if not await self._transition(
                    conn, now, t, msg, to_state="queued" if final else "held", actor=actor,
                    action="approve", detail=detail, values=values or None):
                return Result("not_held")
            await self._consume(conn, now, message_id, link)
            followed = await self._follow(conn, now, t, msg, actor, "release") if final else 0
            told = [msg.mail_from, *(a for a in self._asked(hold, hold_row) if a != who)]
            kind = "approved" if final else "approval_partial"
            n = await self._notify(conn, now, t, msg, hold,
                                   actor.event(kind, count=count), told)
            return Result(kind, "queued" if final else "held",
                          n + (1 if final else 0) + followed,
                          {"count": count, "required": required, "dropped": dropped})

        return await self._run(op)

    async def reject(self, message_id: str, actor: Actor, *, reason: str,
                     link: Link | None = None) -> Result:
        """An approver says no: held → cancelled (a near miss); sender and others told."""
        who = address_key(actor.who)

        async def op(conn: AsyncConnection, now: float, t: Tally) -> Result:
            opened = await self._open_for_decision(conn, message_id, link, who, actor)
            if isinstance(opened, Result):
                return opened
            msg, hold, _ = opened
            res = await self._cancel_in(conn, now, t, msg, hold, actor, action="reject",
                                        reason="rejected", note=reason,
                                        extra={"approver": who})
            if res.ok:
                await self._consume(conn, now, message_id, link)
            return res

        return await self._run(op)

    async def expire(self, message_id: str) -> Result:
        """The hold's time is up (database clock): the rule's default applies — send for
        delay, cancel with a notice for confirm and approve (never a silent drop)."""

        async def op(conn: AsyncConnection, now: float, t: Tally) -> Result:
            opened = await self._open(conn, message_id, None)
            if isinstance(opened, Result):
                return opened
            msg, hold = opened
            if msg.hold_until is None or msg.hold_until > now:
                return Result("not_due", msg.state)  # someone extended it, or a stale list
            leader = await self._waits_for(conn, message_id)
            if leader is not None:
                # a password mail is decided with its attachment mail, not before it:
                # its hold ends when that one's does (notify() may have set it sooner)
                lead = await H.get_message(conn, leader)
                await links.ends_with(conn, message_id, lead.hold_until if lead else None)
                return Result("not_due", msg.state)
            # a linked password mail is never sent by its own expiry
            on_expiry = ("cancel" if await links.linked_to(conn, message_id) is not None
                         else hold.on_expiry)
            hold_row = await H.get_hold(conn, message_id)
            detail = {"on_expiry": on_expiry, "hold_kind": hold.kind,
                      "hold_until": msg.hold_until}
            if on_expiry == "send":
                if not await self._transition(conn, now, t, msg, to_state="queued",
                                              actor=self.system, action="expire",
                                              detail=detail, values=release_values(now)):
                    return Result("not_held")
                n = 1 + await self._follow(conn, now, t, msg, self.system, "release")
                if hold.kind != "delay":  # a delay was announced; anything else is news
                    n += await self._notify(conn, now, t, msg, hold,
                                            self.system.event("released"),
                                            [msg.mail_from, *self._asked(hold, hold_row)])
                return Result("released", "queued", n)
            if not await self._transition(conn, now, t, msg, to_state="expired", actor=self.system,
                                          action="expire", detail=detail):
                return Result("not_held")
            n = await self._notify(conn, now, t, msg, hold, Event("expired"),
                                   [msg.mail_from, *self._asked(hold, hold_row)])
            n += await self._follow(conn, now, t, msg, self.system, "cancel")
            return Result("expired", "expired", n)

        return await self._run(op)

    async def escalate(self, message_id: str) -> Result:
        """Nobody acted in time: ask the backup approvers too (once)."""

        async def op(conn: AsyncConnection, now: float, t: Tally) -> Result:
            opened = await self._open(conn, message_id, None)
            if isinstance(opened, Result):
                return opened
            msg, hold = opened
            hold_row = await H.get_hold(conn, message_id)
            if hold_row is None or hold_row.escalated_at is not None:
                return Result("already", msg.state)
            if hold_row.escalate_at is None or hold_row.escalate_at > now:
                return Result("not_due", msg.state)
            targets = backup_approvers(hold, self.settings)
            if not await H.mark_escalated(conn, now, message_id):
                return Result("already", msg.state)
            await self._transition(conn, now, t, msg, to_state="held", actor=self.system,
                                   action="escalate", detail={"to": targets})
            n = await self._notify(conn, now, t, msg, hold,
                                   Event("approval_request", escalated=True), targets, "approve")
            return Result("escalated", "held", n, {"to": targets})

        return await self._run(op)

    async def drop_recipient(self, message_id: str, address: str, actor: Actor, *,
                             link: Link | None = None) -> Result:
        """Remove one recipient of a held message (envelope and To/Cc); removing the last
        one cancels it."""

        async def op(conn: AsyncConnection, now: float, t: Tally) -> Result:
            opened = await self._open(conn, message_id, link)
            if isinstance(opened, Result):
                return opened
            msg, hold = opened
            dropped = await self._drop(conn, now, message_id, [address])
            if not dropped:
                return Result("not_found", msg.state)
            if not await self._pending(conn, message_id):
                res = await self._cancel_in(conn, now, t, msg, hold, actor, action="cancel",
                                            reason="all_recipients_removed", note="",
                                            extra={"dropped": dropped})
                await self._consume(conn, now, message_id, link)
                return res
            values: dict[str, Any] = {}
            await self._rewrite(conn, message_id, hold, dropped, False, values)
            await self._transition(conn, now, t, msg, to_state="held", actor=actor,
                                   action="drop_recipient",
                                   detail={"address": dropped[0]}, values=values or None)
            await self._consume(conn, now, message_id, link)
            return Result("dropped", "held", 0, {"address": dropped[0]})

        return await self._run(op)

    async def hold(self, message_id: str, actor: Actor, *, reason: str, kind: str = "confirm",
                   hold_seconds: float | None = None) -> Result:
        """queued|deferred → held (an admin stops a message that is not being delivered).
        The first notice follows from notify(), like any other hold."""
        if kind not in ("delay", "confirm", "approve"):
            raise ValueError(f"unknown hold kind {kind!r}")

        async def op(conn: AsyncConnection, now: float, t: Tally) -> Result:
            msg = await H.lock_message(conn, message_id)
            if msg is None:
                return Result("not_found")
            if msg.state not in ("queued", "deferred"):
                return Result("not_held", msg.state)
            if msg.lease_until is not None and msg.lease_until >= now:
                return Result("forbidden", msg.state)  # a delivery attempt is under way
            verdict = dict(msg.verdict)
            verdict["action"] = kind
            verdict["reasons"] = [*(verdict.get("reasons") or []), {
                "rule": "admin", "symbol": "admin_hold", "where": "", "evidence": {},
                "recipients": [], "reason_ja": f"管理者が保留しました: {reason}",
                "reason_en": f"held by an administrator: {reason}"}]
            values = {"verdict": json.dumps(verdict, ensure_ascii=False),
                      "hold_until": now + hold_seconds if hold_seconds is not None else None,
                      "lease_owner": None, "lease_until": None}
            ok = await q.transition(conn, now, message_id, from_states=("queued", "deferred"),
                                    to_state="held", actor=actor.audit_name, action="hold",
                                    detail={**actor.detail(), "reason": reason, "kind": kind},
                                    values=values)
            if not ok:
                return Result("not_held", msg.state)
            t.created.append((kind, "admin"))
            return Result("held", "held")

        return await self._run(op)
