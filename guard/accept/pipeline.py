"""What happens to a received message before the 250: decide, then commit.

    ReceivedMessage ─▶ decide (inspection + policy) ─▶ Rejected (5xx, audited)
                                                    └▶ commit ─▶ Accepted | Held (250)

The outcome is a type (guard.smtp.outcome); guard.smtp.replies words the reply. The
250 is sent only after the commit returned (RFC 5321 6.1, Postfix's queue discipline).
When the database is unavailable (or does not commit within `database.commit_timeout`)
the outcome is TryLater: the client gets 451 4.3.0 and sends again; a commit that
finishes after that answer is withdrawn, so the retry is not a duplicate.
Inspection and policy plug in through `Decider`; until a policy is configured
everything is queued as is.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any

from guard import metrics
from guard.ids import new_queue_id
from guard.logs import queue_id_var
from guard.mail import headerscan
from guard.mail.addresses import address_key
from guard.mail.encodedwords import decode_encoded_words
from guard.mail.textdecode import decode_header_bytes
from guard.smtp.outcome import Accepted, Held, Outcome, Rejected, TryLater
from guard.smtp.received import ReceivedMessage
from guard.store import links
from guard.store import queue as q
from guard.store.faults import is_unavailable, log_failure
from guard.store.writer import BatchWriter

log = logging.getLogger("guard.accept.pipeline")


# A reject decision that names no refusal of its own.
POLICY_REFUSAL = Rejected(550, "5.7.1", "Message refused by policy")


@dataclass
class NowPart:
    """The part of a split message that goes now: its own id, envelope and verdict."""

    id: str
    rcpt_tos: list[str]  # in envelope order; the dropped recipients among them
    verdict: dict[str, Any]


@dataclass
class Decision:
    action: str = "queue"  # queue | hold | reject
    rejection: Rejected | None = None  # for reject: code, status and reason (else POLICY_REFUSAL)
    verdict: dict[str, Any] = field(default_factory=dict)  # stored: action + reasons
    hold_seconds: float | None = None
    data: bytes | None = None  # rewritten bytes (e.g. To/Cc moved to Bcc), else None
    recipients: list[str] | None = None  # this message's envelope, when not all of it
    # recipients the policy took out (address → why): stored as dropped, never sent to;
    # on the part that goes now when the message is split
    dropped: dict[str, str] = field(default_factory=dict)
    now: NowPart | None = None  # a split: the part for the recipients no rule holds
    # a held PPAP password mail: the held attachment mail it is released or cancelled with
    link_to: str | None = None


# The notice that tells the sender whom the policy took out (built by hold/notify, inserted
# in the same transaction as the message), or None when it cannot be built.
DropNotice = Callable[[q.NewMessage, Collection[str], float], q.NewMessage | None]


Decider = Callable[[ReceivedMessage, str], Awaitable[Decision]]


async def queue_everything(msg: ReceivedMessage, queue_id: str) -> Decision:
    return Decision(verdict={"action": "pass", "reasons": []})


@dataclass
class HeaderSummary:
    subject: str = ""
    header_from: str = ""
    message_id: str = ""


# The listing shows 500 characters of a field; mail clients write 500 Japanese
# characters as 2-3 KiB of encoded words. What follows 4 KiB is not decoded (10-15 µs
# a word; a subject of one-character words would cost a second).
_SUMMARY_FIELD_BYTES = 4096
_SUMMARY_HEADER_BYTES = 256 * 1024


def summarize_headers(data: bytes) -> HeaderSummary:
    """Subject, From and Message-ID for the queue listing; never raises.

    The header fields are read from the bytes directly (no email parser: it cost 5 % of
    a small message's CPU, and it is quadratic on hostile fields), runs on the event
    loop for every message, so it does the same small work whatever the header block
    holds: one C scan per field, the first 4 KiB of each value decoded, like inspection
    decodes them (raw 8-bit bytes by the Japanese-first cascade, RFC 2047 words with the
    same charset map)."""
    wanted = {b"subject": "", b"from": "", b"message-id": ""}
    try:
        block, _ = headerscan.header_block(data, _SUMMARY_HEADER_BYTES)
        found = headerscan.field_values(block, wanted, first_only=True,
                                        max_value_bytes=_SUMMARY_FIELD_BYTES)
        for name, (value, *_) in found.items():
            if len(value) > _SUMMARY_FIELD_BYTES - 8:  # (maybe) cut: at a word, then
                value = value[:max(value.rfind(b" "), value.rfind(b"\t"), 0)]
            raw = value.replace(b"\r\n", b"").strip()
            text = (raw.decode("ascii") if raw.isascii() else decode_header_bytes(raw))
            wanted[name] = _one_line(decode_encoded_words(text))
    except Exception:
        return HeaderSummary()
    return HeaderSummary(wanted[b"subject"], wanted[b"from"], wanted[b"message-id"])


def _one_line(value: str) -> str:
    # shown in listings and copied into notices: never a line break
    return " ".join(value.split())[:500]


def trace_header(msg: ReceivedMessage, queue_id: str, hostname: str, loop_id: str = "") -> bytes:
    """Our Received: line (RFC 5321 4.4). Every part is validated ASCII without CR/LF.
    "(guard <loop_id>)" marks this guard's own passes (the mail loop check counts them)."""
    mark = f"guard {loop_id}" if loop_id else "guard"
    proto = "ESMTP" if msg.listener == "trusted" else "ESMTPSA"
    if msg.listener == "trusted" and msg.tls:
        proto = "ESMTPS"
    helo = msg.helo if msg.helo.isascii() and msg.helo.isprintable() else "unknown"
    ip = msg.client_ip if all(c in "0123456789abcdefABCDEF.:" for c in msg.client_ip) else ""
    line = (f"Received: from {helo} ([{ip}])\r\n\tby {hostname} ({mark}) with {proto}"
            f" id {queue_id};\r\n\t{email.utils.formatdate(time.time())}\r\n")
    return line.encode("ascii", "replace")


class Pipeline:
    def __init__(self, writer: BatchWriter, hostname: str, decide: Decider = queue_everything,
                 loop_id: str = "", commit_timeout: float | None = None,
                 drop_notice: DropNotice | None = None) -> None:
        self.drop_notice = drop_notice
        self.writer = writer
        self.hostname = hostname
        self.decide = decide
        self.loop_id = loop_id
        self.commit_timeout = commit_timeout

    async def accept(self, msg: ReceivedMessage) -> Outcome:
        queue_id = new_queue_id()
        token = queue_id_var.set(queue_id)
        try:
            return await self._accept(msg, queue_id)
        except Exception as e:
            if not is_unavailable(e):
                raise
            # one line per refused message (a traceback at most once a minute)
            metrics.MESSAGES_REJECTED.labels(msg.listener, "database").inc()
            log_failure(log, f"451 from=<{msg.mail_from}> rcpts={len(msg.rcpt_tos)} "
                        f"client={msg.client_ip}: queue database unavailable", e)
            return TryLater("queue database unavailable")
        finally:
            queue_id_var.reset(token)

    async def _accept(self, msg: ReceivedMessage, queue_id: str) -> Outcome:
        started = time.perf_counter()
        decision = await self.decide(msg, queue_id)
        summary = summarize_headers(msg.data)
        data = decision.data if decision.data is not None else msg.data
        state = {"queue": "queued", "hold": "held", "reject": "rejected"}[decision.action]
        actor = f"smtp:{msg.sender}"
        record = q.NewMessage(
            id=queue_id, state=state, mail_from=msg.mail_from, sender=msg.sender,
            rcpt_tos=decision.recipients if decision.recipients is not None else msg.rcpt_tos,
            data=data, trace_header=trace_header(
                msg, queue_id, self.hostname, self.loop_id),
            # what the sender sent, when the verdict's edits changed it (policy replay)
            original=msg.data if decision.data is not None else None,
            client_ip=msg.client_ip, helo=msg.helo, listener=msg.listener,
            subject=summary.subject, header_from=summary.header_from,
            message_id_header=summary.message_id, verdict=decision.verdict,
            hold_seconds=decision.hold_seconds, actor=actor,
            audit_detail={"size": len(msg.data), "rcpts": len(msg.rcpt_tos),
                          "client_ip": msg.client_ip,
                          "action": decision.verdict.get("action", "pass")})

        records = [record]
        part = decision.now
        if part is not None:  # a split: the same bytes, its own id, envelope and audit
            records.append(replace(
                record, id=part.id, state="queued", rcpt_tos=part.rcpt_tos,
                verdict=part.verdict, hold_seconds=None,
                trace_header=trace_header(msg, part.id, self.hostname, self.loop_id),
                audit_detail={**record.audit_detail, "rcpts": len(part.rcpt_tos),
                              "action": part.verdict.get("action", "pass"),
                              "split_from": queue_id}))
            record.audit_detail = {**record.audit_detail, "rcpts": len(record.rcpt_tos),
                                   "split_into": part.id}
        carrier = records[-1]  # the message that goes now carries the dropped recipients
        if decision.dropped:
            carrier.audit_detail = {**carrier.audit_detail, "dropped": decision.dropped}

        linked = bool(decision.link_to) and state == "held"
        if linked:
            # decided with the attachment mail it goes with, never by its own expiry
            record.verdict = {**record.verdict, "on_expiry": "cancel"}
        notices: list[str] = []  # the drop notice this commit stored (the undo takes it back)

        async def commit(conn: Any, now: float) -> str:
            notices.clear()  # the writer may run this again (its batch failed)
            for r in records:
                await q.insert_message(conn, now, r)
            final = state
            if linked and decision.link_to:
                final = await links.add_link(conn, now, queue_id, decision.link_to,
                                             actor=actor, key=address_key)
            if decision.dropped and state != "rejected":
                await q.mark_dropped(conn, now, carrier.id, carrier.rcpt_tos, decision.dropped)
                notice = (self.drop_notice(carrier, list(decision.dropped), now)
                          if self.drop_notice else None)
                if notice is not None:
                    await q.insert_message(conn, now, notice)
                    notices.append(notice.id)
            return final

        async def withdraw(conn: Any, now: float) -> bool:
            gone = [await q.withdraw_unanswered(conn, now, r.id, actor) for r in records]
            if any(gone):  # the sender is not told about mail that was not accepted
                for nid in notices:
                    await q.withdraw_unanswered(conn, now, nid, actor)
            return any(gone)

        final = await self.writer.submit(commit, give_up_after=self.commit_timeout,
                                         undo=withdraw)
        metrics.ACCEPT_LATENCY.observe(time.perf_counter() - started)
        if decision.action == "reject":
            metrics.MESSAGES_REJECTED.labels(msg.listener, "policy").inc()
            log.info("rejected from=<%s> rcpts=%d by policy", msg.mail_from,
                     len(msg.rcpt_tos))
            return decision.rejection or POLICY_REFUSAL
        metrics.MESSAGES_ACCEPTED.labels(msg.listener, state).inc()
        log.info("%s from=<%s> sender=%s rcpts=%d size=%d", state, msg.mail_from,
                 msg.sender, len(msg.rcpt_tos), len(data))
        if decision.action == "hold" and final != "held" and part is None:
            # a password mail whose attachment mail was decided while it was inspected:
            # it went the same way (links.add_link); nothing is held
            log.info("linked to %s, decided meanwhile: %s", decision.link_to, final)
            return Accepted(final, queue_id)
        if decision.action == "hold":
            kind = str(decision.verdict.get("action") or "confirm")
            metrics.HOLDS_CREATED.labels(kind, decision.verdict.get("rule") or "none").inc()
            return Held(str(decision.verdict.get("action") or "hold"), queue_id,
                        part.id if part is not None else "")
        return Accepted(state, queue_id)
