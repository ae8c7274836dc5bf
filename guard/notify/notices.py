"""Which notice goes to whom, with what words and which link.

A notice is returned as a `NewMessage` in state "queued": the lifecycle inserts it in the
same transaction as the change that caused it, so a notice exists if and only if the
change committed. Notices never pass the SMTP listener, so they are never inspected or
held; they also carry Auto-Submitted and X-Guard-Notice headers, and go out from the
null sender by default, so a notice that cannot be delivered does not bounce back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from email.utils import parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from guard.config import Settings
from guard.hold.model import Hold
from guard.ids import new_queue_id
from guard.notify.language import Languages
from guard.notify.mail import NoticeError, build_notice, one_line
from guard.notify.texts import Lang, text
from guard.store.holds import MessageRow, RecipientRow
from guard.store.queue import NewMessage
from guard.tokens import TokenSigner

log = logging.getLogger("guard.notify")

KINDS = ("held", "approval_request", "approved", "approval_partial", "rejected",
         "cancelled", "expired", "released")
MIN_LINK_SECONDS = 60.0


@dataclass(frozen=True)
class Event:
    kind: str
    actor: str = ""  # who acted, as people should read it
    reason: str = ""
    count: int = 0
    escalated: bool = False
    approvers: tuple[str, ...] = ()  # who was asked (the rule's, or the admins)


def review_base_url(settings: Settings) -> str:
    base = settings.review.base_url or settings.web.base_url or f"http://{settings.web.listen}"
    return base.rstrip("/")


def timezone_of(settings: Settings) -> tzinfo:
    try:
        return ZoneInfo(settings.review.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown timezone %r; showing UTC", settings.review.timezone)
        return UTC


def format_time(t: float | None, tz: tzinfo) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M %Z")


def link_expiry(settings: Settings, now: float, hold_until: float | None) -> float:
    """A link never outlives its hold, nor review.token_lifetime_hours."""
    exp = now + settings.review.token_lifetime_hours * 3600
    if hold_until is not None:
        exp = min(exp, hold_until)
    return max(exp, now + MIN_LINK_SECONDS)


def reason_lines(hold: Hold, rcpts: list[RecipientRow]) -> dict[str, object]:
    """Reasons, recipients and attachments at risk, in the words of the verdict."""
    seen: set[tuple[str, str]] = set()
    reasons = []
    for r in hold.reasons:
        key = (r.reason_ja, r.reason_en)
        if key not in seen:
            seen.add(key)
            reasons.append({"ja": one_line(r.reason_ja, 300), "en": one_line(r.reason_en, 300)})
    live = [r for r in rcpts if r.state != "dropped"]
    named = [r for r in live if hold.reasons_for(r.address)]
    risky = named or [r for r in live if hold.needs_tick(r.address)]
    risky_rcpts = [{"address": one_line(r.address, 320), "reasons": [
        {"ja": one_line(x.reason_ja, 200), "en": one_line(x.reason_en, 200)}
        for x in hold.reasons_for(r.address)]} for r in risky]
    risky_files = [{"name": one_line(name, 120), "reasons": [
        {"ja": one_line(x.reason_ja, 200), "en": one_line(x.reason_en, 200)} for x in rs]}
        for name, rs in hold.risky_attachments.items()]
    return {"reasons": reasons, "risky_rcpts": risky_rcpts, "risky_files": risky_files,
            "rcpt_count": len(live)}


class NoticeFactory:
    def __init__(self, settings: Settings, signer: TokenSigner, languages: Languages) -> None:
        self.settings = settings
        self.signer = signer
        self.languages = languages
        self.base_url = review_base_url(settings)
        self.tz = timezone_of(settings)
        self.env = Environment(
            loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
            autoescape=False,  # text/plain mail: nothing is interpreted as markup
            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
            keep_trailing_newline=True)
        self.from_addr = (settings.review.notice_from_header
                          or f"guard-noreply@{settings.smtp.hostname}")

    def link(self, msg: MessageRow, action: str, actor: str, now: float) -> str:
        token = self.signer.issue(msg.id, action, actor,
                                  link_expiry(self.settings, now, msg.hold_until))
        return f"{self.base_url}/review/{msg.id}/{token}"

    def make(self, event: Event, msg: MessageRow, rcpts: list[RecipientRow], hold: Hold,
             now: float, to: str, *, link_action: str | None = None) -> NewMessage | None:
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
            "on_expiry": hold.on_expiry,
            "approvers": list(event.approvers or hold.approvers),
            "required": hold.approvals_required, "actor": one_line(event.actor, 200),
            "actor_reason": one_line(event.reason, 500), "count": event.count,
            "escalated": event.escalated, "link": link,
            **reason_lines(hold, rcpts)}
        bodies = []
        for one in (("ja", "en") if lang == "both" else (lang,)):
            policy_message = hold.message_ja if one == "ja" else hold.message_en
            bodies.append(self.env.get_template(f"notice_{one}.txt").render(
                **ctx, policy_message=one_line(policy_message, 1000)))
        body = ("\n" + "-" * 60 + "\n\n").join(bodies)
        key = f"subject.{event.kind}"
        if event.kind == "held":
            key = f"subject.held.{hold.kind}"
        elif event.kind == "approval_request" and event.escalated:
            key = "subject.approval_request.escalated"
        subject = f"[guard] {text(key, lang_of(lang))}: {held_subject}"
        to_name = parseaddr(msg.header_from)[0] if is_sender else ""
        try:
            data = build_notice(
                kind=event.kind, held_id=msg.id, from_name="guard 誤送信防止",
                from_addr=self.from_addr, to_name=to_name, to_addr=to, subject=subject,
                body=body, hostname=self.settings.smtp.hostname,
                date=datetime.fromtimestamp(now, self.tz), in_reply_to=msg.message_id_header)
        except NoticeError as e:
            # the change that caused it still commits; the audit row names who was told
            log.error("notice %s for %s to %s not built: %s", event.kind, msg.id, to, e)
            return None
        return NewMessage(
            id=new_queue_id(), state="queued", mail_from=self.settings.review.notice_from,
            sender="guard", rcpt_tos=[to], data=data, subject=one_line(subject, 200),
            header_from=self.from_addr, actor="hold:notice",
            audit_detail={"notice": event.kind, "for": msg.id})


def lang_of(value: str) -> Lang:
    return value if value in ("ja", "en") else "both"  # type: ignore[return-value]
