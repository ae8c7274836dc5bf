"""The SMTP session: aiosmtpd's protocol with the guard's limits, one per connection.

What it changes in aiosmtpd: who may connect (guard.smtp.admission), a strict path
parser for MAIL and RCPT, EHLO/HELO names, STARTTLS inside TLS, AUTH verified in a
thread, and DATA read in blocks and checked (guard.smtp.data). What to do with MAIL,
RCPT and the received message is the handler's (guard.smtp.handler).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from guard import metrics
from guard.smtp import admission
from guard.smtp.authlimit import BLOCKED_REPLY, AuthGate
from guard.smtp.data import DataTooLarge, DataTooSlow, data_problem, read_data
from guard.smtp.listenerconfig import ListenerConfig
from guard.users import UserDirectory

log = logging.getLogger("guard.smtp")

# RFC 5321 4.1.1.1 / 2.3.5: an EHLO argument is a domain or an address literal; we accept
# any printable ASCII without spaces (clients send odd names), never control characters,
# which would end up inside our Received: header (header injection).
_EHLO_OK = re.compile(r"[\x21-\x7e]{1,255}")

# RFC 5321 4.1.2 Path, read strictly: "<" dot-atom "@" domain ">" or the null path "<>".
# aiosmtpd parses paths with the RFC 5322 header parser, which silently drops source
# routes ("<@a:u@b>" -> "u@b"), comments, whitespace and even a CR inside the brackets
# ("<x@example.net\r>" -> "x@example.net") and dequotes local parts: the address we would
# act on is then not the one the client sent. No quoting, no comments, no whitespace or
# control characters; parameters follow after one space.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_MAILBOX = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:[A-Za-z0-9.-]+|\[[\x21-\x5a\x5e-\x7e]+\])"
_PATH = re.compile(rf"<(?:{_MAILBOX})?>|{_MAILBOX}")
_PARAMS_OK = re.compile(r"(?: [\x20-\x7e]*)?")

_PROTOCOL_NAMES: dict[type, list[str]] = {}


def protocol_names(obj: object) -> list[str]:
    """The attribute names aiosmtpd looks for on a session and its handler.

    aiosmtpd's SMTP.__init__ finds AUTH mechanisms, commands and handler hooks by name,
    with inspect.getmembers() and dir() over the session and the handler, at every
    connection: 7 % of the guard's CPU at 4 KiB (py-spy, tests/bench). `__dir__` of
    GuardSMTP and GuardHandler returns only these names, listed once per class, so that
    set-up reads a dozen attributes instead of every member (a session costs about half).
    """
    cls = type(obj)
    names = _PROTOCOL_NAMES.get(cls)
    if names is None:
        names = _PROTOCOL_NAMES[cls] = [n for n in object.__dir__(obj)
                                        if n.startswith(("auth_", "smtp_", "handle_"))]
    return names


class SessionHandler(Protocol):
    """What sessions share through their handler, besides aiosmtpd's hooks
    (guard.smtp.handler.GuardHandler)."""

    failure_gate: AuthGate | None  # failed AUTH per client address
    connections: collections.Counter[str]  # open sessions per listener kind


class GuardSMTP(SMTP):
    """aiosmtpd's SMTP with the guard's limits. One instance per connection."""

    def __init__(self, handler: SessionHandler, cfg: ListenerConfig,
                 users: UserDirectory | None, tls_context: ssl.SSLContext | None) -> None:
        self.cfg = cfg
        self._users = users
        self._auth_pending: LoginPassword | None = None
        self._failure_gate = handler.failure_gate
        self._counter = handler.connections
        kind = cfg.kind
        super().__init__(
            handler,
            data_size_limit=cfg.max_message_size,
            enable_SMTPUTF8=False,
            decode_data=False,
            hostname=cfg.hostname,  # never getfqdn() per connection
            ident="guard ESMTP",
            tls_context=tls_context if kind == "submission" else None,
            require_starttls=kind == "submission",
            timeout=cfg.timeout,
            auth_required=kind in ("submission", "smtps"),
            # On the implicit-TLS listener every connection is TLS (the socket is wrapped),
            # so aiosmtpd's STARTTLS-only check would refuse AUTH (aiosmtpd #274/#281).
            auth_require_tls=kind != "smtps",
            auth_exclude_mechanism=["LOGIN"] if kind == "trusted" else None,
            authenticator=self._authenticate_placeholder if kind != "trusted" else None,
            command_call_limit={"AUTH": cfg.auth_failures, "*": 1_000_000},
        )
        # aiosmtpd keeps this dict on the class and grows the MAIL limit on every EHLO
        # (one dict for all sessions, cleared by each new one); ours is per connection.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self.local_part_limit = 64
        if kind == "trusted":
            self._auth_methods = {}

    def __dir__(self) -> list[str]:
        return protocol_names(self)

    @property
    def users(self) -> UserDirectory | None:
        """The users file (AUTH, and the identity checks of a trusted listener)."""
        return self._users

    # --- connection admission ---------------------------------------------------
    async def _handle_client(self) -> None:
        peer = self.session.peer if self.session else None
        ip = peer[0] if isinstance(peer, tuple) else ""
        refused = admission.refusal(self.cfg, self._counter[self.cfg.kind], ip)
        if refused:
            metrics.SMTP_REFUSED.labels(self.cfg.kind, refused[0]).inc()
            await self.push(refused[1])
            if self.transport is not None:
                self.transport.close()
            return
        metrics.SMTP_SESSIONS.labels(self.cfg.kind).inc()
        self._counter[self.cfg.kind] += 1
        try:
            await super()._handle_client()
        finally:
            self._counter[self.cfg.kind] -= 1

    # --- addresses ----------------------------------------------------------------
    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """Strict replacement for aiosmtpd's parser (see _PATH). None, None → 553."""
        if not arg:
            return "", ""
        m = _PATH.match(arg)
        if m is None or not _PARAMS_OK.fullmatch(arg, m.end()):
            return None, None
        path = m.group()
        address = path[1:-1] if path.startswith("<") and path != "<>" else path
        local, _, domain = address.rpartition("@")
        if len(local) > self.local_part_limit or len(domain) > 255:
            return None, None
        return address, arg[m.end():]

    # --- EHLO/HELO --------------------------------------------------------------
    # (the @syntax decorators keep HELP listing the commands we override)
    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        if hostname and not _EHLO_OK.fullmatch(hostname):
            metrics.SMTP_REFUSED.labels(self.cfg.kind, "bad_helo").inc()
            await self.push("501 5.5.4 Invalid EHLO hostname")
            return
        await super().smtp_EHLO(hostname)
        self.command_size_limits["MAIL"] = SMTP.command_size_limit + 26

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        if hostname and not _EHLO_OK.fullmatch(hostname):
            metrics.SMTP_REFUSED.labels(self.cfg.kind, "bad_helo").inc()
            await self.push("501 5.5.4 Invalid HELO hostname")
            return
        await super().smtp_HELO(hostname)

    # --- STARTTLS ---------------------------------------------------------------
    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        # aiosmtpd answers a second STARTTLS inside TLS with "220 Ready" and starts TLS
        # in TLS, which kills the session (RFC 3207 4: not allowed once TLS is active).
        # Answer as Postfix does; the implicit-TLS listener is "already active" too.
        if self._tls_protocol is not None or self.cfg.kind == "smtps":
            await self.push("554 5.5.1 Error: TLS already active")
            return
        await super().smtp_STARTTLS(arg)

    # --- AUTH: aiosmtpd calls the authenticator synchronously; scrypt must not run on
    # the event loop, so the placeholder records the credentials and we verify them in
    # a thread before answering.
    def _authenticate_placeholder(self, server: Any, session: Session, envelope: Envelope,
                                  mechanism: str, auth_data: Any) -> AuthResult:
        self._auth_pending = auth_data if isinstance(auth_data, LoginPassword) else None
        return AuthResult(success=False, handled=False)

    async def _verify_pending(self, result: Any) -> Any:
        creds, self._auth_pending = self._auth_pending, None
        if creds is None or self._users is None or self.cfg.kind == "trusted":
            return result
        peer = self.session.peer if self.session else None
        ip = str(peer[0]) if isinstance(peer, tuple) else "?"
        gate = self._failure_gate
        if gate is not None and await self._gate(gate.blocked_for, ip):
            # blocked: not even the password is checked (no scrypt for a guesser)
            metrics.SMTP_REFUSED.labels(self.cfg.kind, "auth_rate_limited").inc()
            log.warning("AUTH refused: client=%s user=%s (too many failures)", ip,
                        _loggable(creds.login))
            return AuthResult(success=False, handled=False, message=BLOCKED_REPLY)
        user = await asyncio.to_thread(self._users.authenticate, creds.login, creds.password)
        if user is None:
            metrics.AUTH_FAILURES.labels(self.cfg.kind).inc()
            # one line per failure for fail2ban (deploy/fail2ban/)
            log.warning("AUTH failed: client=%s user=%s", ip, _loggable(creds.login))
            if gate is not None:
                await self._gate(gate.failed, ip)
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=user)

    @staticmethod
    async def _gate(call: Callable[[str], Awaitable[float]], ip: str) -> bool:
        """True when the address is blocked; a limiter that cannot answer blocks."""
        try:
            return await call(ip) > 0
        except (ConnectionError, OSError, ValueError):
            log.error("AUTH limiter unreachable: refusing AUTH from %s for now", ip)
            return True

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verify_pending(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verify_pending(await super().auth_LOGIN(_, args))

    # --- DATA, read in blocks -------------------------------------------------------
    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """DATA read in blocks, checked, then handed to the handler (guard.smtp.data)."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            body = await read_data(self._reader, self.data_size_limit or 0,
                                   self.cfg.data_total_timeout, self._reset_timeout,
                                   self.line_length_limit)
        except DataTooLarge:
            metrics.MESSAGES_REJECTED.labels(self.cfg.kind, "too_big").inc()
            await self.push("552 5.3.4 Message size exceeds fixed limit")
            self._set_post_data_state()
            return
        except DataTooSlow:
            if self.transport is not None:
                self.transport.close()
            return
        if body is None:  # connection closed mid-DATA
            return
        problem = data_problem(body, self.cfg)
        if problem:
            metrics.MESSAGES_REJECTED.labels(self.cfg.kind, problem[0]).inc()
            await self.push(problem[1])
            self._set_post_data_state()
            return
        metrics.MESSAGES_RECEIVED.labels(self.cfg.kind).inc()
        self.envelope.content = body.data
        self.envelope.original_content = body.data
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status if isinstance(status, str) else "451 4.3.0 Error: no handler")



def _loggable(login: bytes) -> str:
    """An AUTH login name fit for one log line: printable, no spaces, bounded."""
    text = login.decode("utf-8", "replace")
    return "".join(c if c.isprintable() and not c.isspace() else "?" for c in text)[:64] or "-"


