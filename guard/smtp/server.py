"""The SMTP listener: aiosmtpd with our limits, a block-based DATA reader and AUTH off-loop.

smtp/ knows nothing of policy or storage: it hands a complete, validated message to the
pipeline (`accept`), which returns a typed outcome (guard.smtp.outcome), and answers
with its reply line (guard.smtp.replies). Any error there is a 451 4.3.0, never a 500
and never a 250 without a commit.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from guard import metrics
from guard.smtp import replies
from guard.smtp.authlimit import BLOCKED_REPLY, AuthGate
from guard.smtp.identity import IdentityMode, identity_problem, owns
from guard.smtp.outcome import Acceptor, TryLater
from guard.smtp.received import ListenerKind, ReceivedMessage
from guard.users import User, UserDirectory

log = logging.getLogger("guard.smtp")

# RFC 5321 4.1.1.1 / 2.3.5: an EHLO argument is a domain or an address literal; we accept
# any printable ASCII without spaces (clients send odd names), never control characters,
# which would end up inside our Received: header (header injection, reliability F60).
_EHLO_OK = re.compile(r"[\x21-\x7e]{1,255}")

# RFC 5321 4.1.2 Path, read strictly: "<" dot-atom "@" domain ">" or the null path "<>".
# aiosmtpd parses paths with the RFC 5322 header parser, which silently drops source
# routes ("<@a:u@b>" -> "u@b"), comments, whitespace and even a CR inside the brackets
# ("<x@example.net\r>" -> "x@example.net") and dequotes local parts: the address we would
# act on is then not the one the client sent (reliability E56, F62). No quoting, no
# comments, no whitespace or control characters; parameters follow after one space.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_MAILBOX = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:[A-Za-z0-9.-]+|\[[\x21-\x5a\x5e-\x7e]+\])"
_PATH = re.compile(rf"<(?:{_MAILBOX})?>|{_MAILBOX}")
_PARAMS_OK = re.compile(r"(?: [\x20-\x7e]*)?")


@dataclass
class ListenerConfig:
    kind: ListenerKind
    hostname: str
    max_message_size: int
    max_recipients: int
    max_connections: int
    timeout: float
    auth_failures: int
    max_hops: int
    trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    data_total_timeout: float = 1800.0
    # whose addresses a message may carry (guard.smtp.identity)
    sender_identity: IdentityMode = "off"
    identity_header: str = ""
    # this guard's mark in its own Received: lines, and how many of them a message may
    # already carry (mail loops); b"" = not checked
    loop_marker: bytes = b""
    max_passes: int = 2


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


class _DataTooMuch(Exception):
    pass


class GuardSMTP(SMTP):
    """aiosmtpd's SMTP with the guard's limits. One instance per connection."""

    def __init__(self, handler: GuardHandler, cfg: ListenerConfig, users: UserDirectory | None,
                 tls_context: ssl.SSLContext | None) -> None:
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
        # (reliability G67); ours is per connection and fixed.
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
        refusal = self._admission(ip)
        if refusal:
            metrics.SMTP_REFUSED.labels(refusal[0]).inc()
            await self.push(refusal[1])
            if self.transport is not None:
                self.transport.close()
            return
        metrics.SMTP_SESSIONS.labels(self.cfg.kind).inc()
        self._counter[self.cfg.kind] += 1
        try:
            await super()._handle_client()
        finally:
            self._counter[self.cfg.kind] -= 1

    def _admission(self, ip: str) -> tuple[str, str] | None:
        if self.cfg.kind == "trusted":
            try:
                addr = ipaddress.ip_address(ip.split("%")[0])
            except ValueError:
                return ("untrusted_network", "554 5.7.1 Access denied")
            if hasattr(addr, "ipv4_mapped") and addr.ipv4_mapped:  # ::ffff:10.0.0.1
                addr = addr.ipv4_mapped
            if not any(addr in net for net in self.cfg.trusted_networks):
                log.warning("refused connection from %s: not in trusted networks", ip)
                return ("untrusted_network", "554 5.7.1 Access denied")
        if self._counter[self.cfg.kind] >= self.cfg.max_connections:
            return ("too_many_connections", "421 4.7.0 Too many connections, try again later")
        return None

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
            metrics.SMTP_REFUSED.labels("bad_helo").inc()
            await self.push("501 5.5.4 Invalid EHLO hostname")
            return
        await super().smtp_EHLO(hostname)
        self.command_size_limits["MAIL"] = SMTP.command_size_limit + 26

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        if hostname and not _EHLO_OK.fullmatch(hostname):
            metrics.SMTP_REFUSED.labels("bad_helo").inc()
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
            metrics.SMTP_REFUSED.labels("auth_rate_limited").inc()
            log.warning("AUTH refused: client=%s user=%s (too many failures)", ip,
                        _loggable(creds.login))
            return AuthResult(success=False, handled=False, message=BLOCKED_REPLY)
        user = await asyncio.to_thread(self._users.authenticate, creds.login, creds.password)
        if user is None:
            metrics.AUTH_FAILURES.inc()
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
        """Block-based DATA reader (aiosmtpd reads line by line in Python: ~20 MB/s).

        Same semantics as aiosmtpd ≥ 1.4.5: only <CRLF>.<CRLF> ends the data; dot
        unstuffing per RFC 5321 4.5.2; line and size limits answered after the final dot.
        Stricter: bare CR or LF and NUL are refused (SMTP smuggling, reliability C35-38).
        """
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
            data = await self._read_data()
        except _DataTooMuch:
            metrics.MESSAGES_REJECTED.labels("too_big").inc()
            await self.push("552 5.3.4 Message size exceeds fixed limit")
            self._set_post_data_state()
            return
        if data is None:  # connection closed mid-DATA
            return
        problem = self._data_problem(data)
        if problem:
            metrics.MESSAGES_REJECTED.labels(problem[0]).inc()
            await self.push(problem[1])
            self._set_post_data_state()
            return
        metrics.MESSAGES_RECEIVED.inc()
        self.envelope.content = data
        self.envelope.original_content = data
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status if isinstance(status, str) else "451 4.3.0 Error: no handler")

    async def _read_data(self) -> bytes | None:
        limit = self.data_size_limit or 0
        # a virtual CRLF in front: the end marker is then always b"\r\n.\r\n", even for
        # an empty message (".\r\n" right after the 354)
        buf = bytearray(b"\r\n")
        scanned = 0
        discarding = False
        tail = b""
        started = time.monotonic()
        reader = self._reader
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return None
            self._reset_timeout()
            if time.monotonic() - started > self.cfg.data_total_timeout:
                if self.transport is not None:
                    self.transport.close()
                return None
            if discarding:
                window = tail + chunk
                end = window.find(b"\r\n.\r\n")
                if end >= 0:
                    _unread(reader, window[end + 5:])
                    raise _DataTooMuch
                tail = window[-4:]
                continue
            buf += chunk
            end = buf.find(b"\r\n.\r\n", max(scanned - 4, 0))
            if end >= 0:
                _unread(reader, bytes(buf[end + 5:]))
                del buf[end + 2:]
                break
            scanned = len(buf)
            if limit and len(buf) - 2 > limit + 3:
                discarding = True
                tail = bytes(buf[-4:])
                buf = bytearray()
        if limit and len(buf) - 2 > limit:
            raise _DataTooMuch
        # RFC 5321 4.5.2: delete the first character of every line that starts with a dot
        return bytes(buf).replace(b"\r\n.", b"\r\n")[2:]

    def _data_problem(self, data: bytes) -> tuple[str, str] | None:
        crlf = data.count(b"\r\n")
        if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
            return ("bare_newline",
                    "550 5.6.11 Bare CR or LF is not allowed in DATA (RFC 5321 2.3.8)")
        if b"\x00" in data:
            return ("nul", "550 5.6.0 NUL characters are not allowed in the message")
        # every line ≤ 1000 octets incl. CRLF, +1 for a transparency dot (as aiosmtpd)
        if _too_long_line(data, self.line_length_limit):
            return ("line_too_long", "500 5.5.2 Line too long (see RFC5321 4.5.3.1.6)")
        if _hops(data) >= self.cfg.max_hops:
            return ("too_many_hops", "554 5.4.6 Too many hops (mail loop?)")
        if self.cfg.loop_marker:
            passes = _own_passes(data, self.cfg.loop_marker)
            if passes >= self.cfg.max_passes:
                log.warning("mail loop: the message already passed this guard %d times", passes)
                return ("mail_loop", f"554 5.4.6 Mail loop: the message already passed "
                        f"{self.cfg.hostname} {passes} times")
        return None


def _loggable(login: bytes) -> str:
    """An AUTH login name fit for one log line: printable, no spaces, bounded."""
    text = login.decode("utf-8", "replace")
    return "".join(c if c.isprintable() and not c.isspace() else "?" for c in text)[:64] or "-"


def _too_long_line(data: bytes, limit: int) -> bool:
    # a line of N octets incl. CRLF has N-1 octets before its LF (bare LF is refused);
    # split + max runs in C: 0.4 ms per MiB, where a [^\n]{N} regex took 90 ms
    return max(map(len, data.split(b"\n"))) > limit - 1


def _hops(data: bytes) -> int:
    end = data.find(b"\r\n\r\n")
    head = (b"\r\n" + (data if end < 0 else data[:end])).lower()
    return head.count(b"\r\nreceived:")


def _own_passes(data: bytes, marker: bytes) -> int:
    """This guard's own Received: fields in the top header section (its earlier passes)."""
    end = data.find(b"\r\n\r\n")
    head = b"\r\n" + (data if end < 0 else data[:end])
    if marker not in head:
        return 0
    n = 0
    for f in re.split(rb"\r\n(?![ \t])", head):
        if f[:9].lower() == b"received:" and marker in f:
            n += 1
    return n


def _unread(reader: asyncio.StreamReader, extra: bytes) -> None:
    """Put back bytes read past the end of DATA (a pipelining client's next command)."""
    if extra:
        buf = getattr(reader, "_buffer", None)
        if isinstance(buf, bytearray):
            buf[0:0] = extra


class GuardHandler:
    """aiosmtpd handler hooks (exact names: a misspelt handle_DATA means 250-and-drop)."""

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
                metrics.SMTP_REFUSED.labels("sender_mismatch").inc()
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
            metrics.SMTP_REFUSED.labels("bad_recipient").inc()
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
            metrics.MESSAGES_REJECTED.labels("sender_identity").inc()
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
            metrics.MESSAGES_REJECTED.labels("internal_error").inc()
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
