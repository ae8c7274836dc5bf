"""The aiosmtpd handler: what a session does with MAIL, RCPT and a complete message.

One handler serves every session of the listeners (aiosmtpd calls the hooks by their
exact names: a misspelt handle_DATA would mean 250-and-drop). It also holds what the
sessions share: the open sessions per listener and the failed-AUTH gate. After DATA it
checks the sender's identity, hands the message to the pipeline (`accept`) and answers
with the reply line of its outcome.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from aiosmtpd.smtp import Envelope, Session

from guard import metrics
from guard.smtp import replies
from guard.smtp.authlimit import AuthGate
from guard.smtp.identity import identity_problem, owns
from guard.smtp.outcome import Acceptor, TryLater
from guard.smtp.received import ReceivedMessage
from guard.smtp.server import GuardSMTP, protocol_names
from guard.users import User

log = logging.getLogger("guard.smtp")


class GuardHandler:
    """aiosmtpd handler hooks, and the state the sessions share."""

    def __init__(self, acceptor: Acceptor, max_recipients: int,
                 failure_gate: AuthGate | None = None) -> None:
        self.accept = acceptor
        self.max_recipients = max_recipients
        # failed AUTH per client address (guard.smtp.authlimit); not named auth_*:
        # aiosmtpd would take a handler attribute named so for an AUTH mechanism
        self.failure_gate = failure_gate
        self.connections: collections.Counter[str] = collections.Counter()

    def __dir__(self) -> list[str]:
        return protocol_names(self)

    async def handle_MAIL(self, server: GuardSMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        user = session.auth_data if isinstance(session.auth_data, User) else None
        if address == "<>":  # aiosmtpd hands the null reverse-path over as "<>"
            address = ""
        if server.cfg.kind != "trusted":
            if user is None:  # auth_required already answers 530; belt and braces
                return "530 5.7.0 Authentication required"
            if server.cfg.sender_identity != "off" and not owns(user, address):
                metrics.SMTP_REFUSED.labels(server.cfg.kind, "sender_mismatch").inc()
                log.warning("user %s may not send as <%s>", user.name, address)
                return f"553 5.7.1 <{address}>: Sender address not owned by user {user.name}"
        # Only what we understand and re-create ourselves; nothing is forwarded verbatim.
        allowed = {"BODY=7BIT", "BODY=8BITMIME"}
        for opt in mail_options:
            if opt.upper() not in allowed and not opt.upper().startswith("SIZE="):
                return "555 5.5.4 MAIL FROM parameters not recognized or not implemented"
        # aiosmtpd needs a non-empty mail_from to allow RCPT; "<>" becomes "" in DATA
        envelope.mail_from = address or "<>"
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: GuardSMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if rcpt_options:
            return "555 5.5.4 RCPT TO parameters not recognized or not implemented"
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        problem = recipient_problem(address)
        if problem:
            metrics.SMTP_REFUSED.labels(server.cfg.kind, "bad_recipient").inc()
            return problem
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: GuardSMTP, session: Session, envelope: Envelope) -> str:
        peer = session.peer
        user = session.auth_data if isinstance(session.auth_data, User) else None
        mail_from = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        data = envelope.original_content or b""
        cfg = server.cfg
        problem = identity_problem(cfg.sender_identity, cfg.kind, cfg.identity_header, user,
                                   mail_from, data, server.users)
        if problem:
            metrics.MESSAGES_REJECTED.labels(server.cfg.kind, "sender_identity").inc()
            log.warning("refused from %s (%s): %s", user.name if user else "trusted MTA",
                        peer[0] if isinstance(peer, tuple) else "?", problem)
            return problem
        msg = ReceivedMessage(
            mail_from=mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            data=data,
            client_ip=peer[0] if isinstance(peer, tuple) else "",
            helo=session.host_name or "",
            listener=server.cfg.kind,
            # aiosmtpd sets session.ssl only after STARTTLS; the smtps socket is TLS throughout
            tls=session.ssl is not None or server.cfg.kind == "smtps",
            user=user,
            mail_options=list(envelope.mail_options),
        )
        try:
            outcome = await self.accept(msg)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("accepting a message failed")
            metrics.MESSAGES_REJECTED.labels(server.cfg.kind, "internal_error").inc()
            outcome = replies.UNAVAILABLE
        return replies.reply(outcome)

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default is "500 Error: ..." – a permanent failure for a transient
        # problem. Never 5xx for our own errors.
        log.error("SMTP session error: %r", error)
        return replies.reply(TryLater("internal error"))


def recipient_problem(address: str) -> str | None:
    """Refuse routing tricks that could turn us into a relay for other hosts.

    Source routes, %-hacks, bang paths, quoted local parts holding an '@', and IP
    literals are refused; everything else is passed through exactly as given.
    """
    if not address or address.count("@") != 1:
        return f"553 5.1.3 <{address}>: Recipient address rejected: need user@domain"
    local, _, domain = address.rpartition("@")
    if address.startswith("@") or "%" in local or "!" in local or '"' in local:
        return f"553 5.7.1 <{address}>: Recipient address rejected: routing not allowed"
    if not domain or domain.startswith("[") or ".." in domain or domain.startswith("."):
        return f"553 5.1.2 <{address}>: Recipient address rejected: bad domain"
    if len(domain) > 255 or len(address) > 256:
        return f"553 5.1.3 <{address}>: Recipient address rejected: too long"
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in address):
        return f"553 5.1.3 <{address}>: Recipient address rejected: bad characters"
    return None
