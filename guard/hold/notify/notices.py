"""Which notice goes to whom, with what words and which link.

A notice is returned as a `NewMessage` in state "queued": the lifecycle inserts it in the
same transaction as the change that caused it, so a notice exists if and only if the
change committed. Notices never pass the SMTP listener, so they are never inspected or
held; they also carry Auto-Submitted and X-Guard-Notice headers, and go out from the
null sender by default, so a notice that cannot be delivered does not bounce back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from guard.config import Settings
from guard.hold.model import Hold, parse_hold
from guard.hold.notify.language import Languages
from guard.hold.notify.texts import TEXTS, Lang, text
from guard.hold.tokens import TokenSigner
from guard.ids import GUARD_SENDER, new_queue_id
from guard.mail.addresses import address_key
from guard.mail.notice import NoticeError, build_notice, one_line
from guard.ownmail import format_time, notice_from_address, review_base_url, timezone_of
from guard.store.holds import MessageRow, RecipientRow
from guard.store.queue import NewMessage

log = logging.getLogger("guard.notify")

KINDS = ("held", "approval_request", "approved", "approval_partial", "rejected",
         "cancelled", "expired", "released", "dropped")
MIN_LINK_SECONDS = 60.0


@dataclass(frozen=True)
class Event:
    kind: str
    actor: str = ""  # who acted: an address (sender, approver, admin), or ""
    reason: str = ""
    count: int = 0
    escalated: bool = False
    approvers: tuple[str, ...] = ()  # who was asked (the rule's, or the admins)
    role: str = ""  # the actor's role: sender | approver | admin | timer


# When the event happened, as the notice labels it (the first notices have none:
# their time is the time the message was received).
ACTED_LABEL = {"approved": "label.approved_at", "approval_partial": "label.approved_at",
               "rejected": "label.rejected_at", "cancelled": "label.cancelled_at",
               "expired": "label.expired_at", "released": "label.released_at"}
MAX_LISTED_RECIPIENTS = 50
# notices that tell the sender their mail is being sent (they carry the misdelivery link)
SENDING = frozenset({"approved", "released"})


def reason_text(reason: str, lang: str) -> str:
    """A reason code from the page ("wrong_recipient") in words; free text as it is."""
    key = f"cancel.{reason}"
    return text(key, lang_of(lang)) if key in TEXTS else reason


def actor_text(event: Event, lang: str) -> str:
    """Who acted, as the notice's reader should read it: the person's address, an
    administrator (with their address when the command gave one), or the time limit.
    Never an operating-system account."""
    ja = lang == "ja"
    if event.role == "admin":
        who = "管理者" if ja else "an administrator"
        return f"{who} ({event.actor})" if "@" in event.actor else who
    if event.role == "timer":
        return "期限" if ja else "the time limit"
    return event.actor


def link_expiry(settings: Settings, now: float, hold_until: float | None) -> float:
    """A link never outlives its hold, nor review.token_lifetime_hours."""
    exp = now + settings.review.token_lifetime_hours * 3600
    if hold_until is not None:
        exp = min(exp, hold_until)
    return max(exp, now + MIN_LINK_SECONDS)


def reason_lines(hold: Hold, rcpts: list[RecipientRow]) -> dict[str, object]:
    """Reasons, recipients and attachments, each finding said once: a finding about a
    recipient goes with that recipient, one about an attachment with that file, the
    rest under "why". The recipients are the final list (removed ones apart)."""
    reasons = [{"ja": one_line(r.reason_ja, 300), "en": one_line(r.reason_en, 300)}
               for r in hold.general_reasons()]
    live = [r for r in rcpts if r.state != "dropped"]
    # the ones with a finding first, then the others, MAX_LISTED_RECIPIENTS in all
    listed = [r for r in live if hold.reasons_for(r.address)][:MAX_LISTED_RECIPIENTS]
    listed += [r for r in live if not hold.reasons_for(r.address)][
        : MAX_LISTED_RECIPIENTS - len(listed)]
    order = {r.idx: i for i, r in enumerate(live)}
    listed.sort(key=lambda r: order[r.idx])
    recipients = [{"address": one_line(r.address, 320), "reasons": [
        {"ja": one_line(x.reason_ja, 200), "en": one_line(x.reason_en, 200)}
        for x in hold.reasons_for(r.address)]} for r in listed]
    files = [{"name": one_line(name, 120), "reasons": [
        {"ja": one_line(x.reason_ja, 200), "en": one_line(x.reason_en, 200)} for x in rs]}
        for name, rs in hold.risky_attachments.items()]
    removed = [one_line(r.address, 320) for r in rcpts if r.state == "dropped"]
    return {"reasons": reasons, "recipients": recipients, "risky_files": files,
            "rcpt_count": len(live), "unlisted": len(live) - len(listed), "removed": removed}


class NoticeFactory:
    def __init__(self, settings: Settings, signer: TokenSigner, languages: Languages,
                 internal_domains: Callable[[], Sequence[str]] = tuple) -> None:
        self.settings = settings
        # the current policy's internal domains, in its order (the default From: address)
        self.internal_domains = internal_domains
        self.signer = signer
        self.languages = languages
        self.base_url = review_base_url(settings)
        self.tz = timezone_of(settings)
        self.env = Environment(
            loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
            autoescape=False,  # text/plain mail: nothing is interpreted as markup
            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
            keep_trailing_newline=True)

    @property
    def from_addr(self) -> str:
        try:
            domains = self.internal_domains()
        except Exception as e:  # never lose a notice over the policy
            log.error("policy's internal domains unavailable (%s); notices come from "
                      "noreply@%s", e, self.settings.smtp.hostname)
            domains = ()
        return notice_from_address(self.settings, domains)

    def link(self, msg: MessageRow, action: str, actor: str, now: float) -> str:
        token = self.signer.issue(msg.id, action, actor,
                                  link_expiry(self.settings, now, msg.hold_until))
        return f"{self.base_url}/review/{msg.id}/{token}"

    def dropped(self, record: NewMessage, dropped: Collection[str], now: float
                ) -> NewMessage | None:
        """The sender told whom a drop rule took out of a message stored in this
        transaction, and why (the other recipients get it); None without a sender."""
        if not record.mail_from:
            return None
        msg = MessageRow(
            id=record.id, state=str(record.state), mail_from=record.mail_from,
            sender=record.sender, subject=record.subject, header_from=record.header_from,
            message_id_header=record.message_id_header, verdict=record.verdict,
            received_at=now, hold_until=None, size=len(record.data), lease_owner=None,
            lease_until=None)
        gone = set(dropped)
        rcpts = [RecipientRow(i, a, "dropped" if a in gone else "pending")
                 for i, a in enumerate(record.rcpt_tos)]
        why = {address_key(str(d.get("address") or "")): d
               for d in record.verdict.get("dropped") or () if isinstance(d, dict)}
        removed_why = [{"address": one_line(a, 320), "reasons": [
            {"ja": one_line(str(w.get("reason_ja") or w.get("symbol") or ""), 200),
             "en": one_line(str(w.get("reason_en") or w.get("symbol") or ""), 200)}]
            if (w := why.get(address_key(a))) else []} for a in record.rcpt_tos if a in gone]
        hold = parse_hold(record.verdict, mail_from=record.mail_from, sender=record.sender)
        return self.make(Event("dropped"), msg, rcpts, hold, now, record.mail_from,
                         extra={"removed_why": removed_why,
                                "held": record.state == "held"})

    def make(self, event: Event, msg: MessageRow, rcpts: list[RecipientRow], hold: Hold,
             now: float, to: str, *, link_action: str | None = None,
             extra: dict[str, object] | None = None) -> NewMessage | None:
        """One notice to one person, or None (logged) if it cannot be built."""
        if not to:
            return None
        is_sender = hold.is_sender(to)
        lang = self.languages.for_person(
            address=to, name=msg.sender if is_sender else "", policy=hold.language)
        link = self.link(msg, link_action, to, now) if link_action else None
        held_subject = one_line(msg.subject, 120) or "(no subject)"
        ctx: dict[str, object] = {
            "kind": event.kind, "hold_kind": hold.kind, "subject": held_subject,
            "sender": one_line(msg.mail_from or msg.sender, 320),
            "received": format_time(msg.received_at, self.tz),
            "until": format_time(msg.hold_until, self.tz),
            # the real time of what happened (database clock), in the configured zone
            "acted_at": format_time(now, self.tz) if event.kind in ACTED_LABEL else "",
            "on_expiry": hold.on_expiry,
            "approvers": list(event.approvers or hold.approvers),
            "required": hold.approvals_required,
            "count": event.count,
            "escalated": event.escalated, "link": link,
            # mail that is going out: where its sender reports it sent to the wrong person
            "misdelivery_link": (f"{self.base_url}/misdelivery?id={msg.id}"
                                 if is_sender and event.kind in SENDING else ""),
            "removed_why": [], "held": msg.state == "held",
            "sent_now": [one_line(a, 320) for a in hold.sent_now[:MAX_LISTED_RECIPIENTS]],
            **reason_lines(hold, rcpts), **(extra or {})}
        # the rule's words ("held for 5 minutes") belong to the hold, not to what followed
        asks = event.kind in ("held", "approval_request")
        bodies = []
        for one in (("ja", "en") if lang == "both" else (lang,)):
            policy_message = hold.message_ja if one == "ja" else hold.message_en
            bodies.append(self.env.get_template(f"notice_{one}.txt").render(
                **ctx, actor=one_line(actor_text(event, one), 200), actor_role=event.role,
                actor_reason=one_line(reason_text(event.reason, one), 500),
                acted_label=text(ACTED_LABEL[event.kind], lang_of(one)) if ctx["acted_at"] else "",
                policy_message=one_line(policy_message, 1000) if asks else ""))
        body = ("\n" + "-" * 60 + "\n\n").join(bodies)
        key = f"subject.{event.kind}"
        if event.kind == "held":
            key = f"subject.held.{hold.kind}"
        elif event.kind == "approval_request" and event.escalated:
            key = "subject.approval_request.escalated"
        subject = f"[guard] {text(key, lang_of(lang))}: {held_subject}"
        to_name = parseaddr(msg.header_from)[0] if is_sender else ""
        from_addr = self.from_addr
        try:
            data = build_notice(
                kind=event.kind, held_id=msg.id, from_name="guard 誤送信防止",
                from_addr=from_addr, to_name=to_name, to_addr=to, subject=subject,
                body=body, hostname=self.settings.smtp.hostname,
                date=datetime.fromtimestamp(now, self.tz), in_reply_to=msg.message_id_header)
        except NoticeError as e:
            # the change that caused it still commits; the audit row names who was told
            log.error("notice %s for %s to %s not built: %s", event.kind, msg.id, to, e)
            return None
        return NewMessage(
            id=new_queue_id(), state="queued", mail_from=self.settings.review.notice_from,
            sender=GUARD_SENDER, rcpt_tos=[to], data=data, subject=one_line(subject, 200),
            header_from=from_addr, actor="hold:notice",
            audit_detail={"notice": event.kind, "for": msg.id})


def lang_of(value: str) -> Lang:
    return value if value in ("ja", "en") else "both"  # type: ignore[return-value]
