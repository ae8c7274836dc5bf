"""Talking to the upstream server with aiosmtplib: one attempt, results per recipient.

The message goes out in its DATA wire form made by relay/wire.py (C scans, no regex).

Security (reliability 1.5): STARTTLS is required with certificate checks unless the
admin explicitly configured smtp:// (plain) or smtps:// (implicit TLS); never the
opportunistic default. Client MAIL parameters are never forwarded: we derive BODY and
SIZE ourselves. The final-dot timeout is RFC 5321's 10 minutes.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass

import aiosmtplib

from guard.config import UpstreamSettings, parse_upstream_url
from guard.relay.pipelining import SERVICE_CLOSING, Group, command
from guard.relay.wire import send_data, wire_form

log = logging.getLogger("guard.relay")

_COMPLETED = 250
_START_INPUT = 354


@dataclass
class Outcome:
    code: int
    reply: str
    outcome: str  # delivered | deferred | failed
    replied: bool = True  # False: the guard's own code (connection lost, unusable address)

    def __post_init__(self) -> None:
        self.reply = storable(self.reply)


def storable(reply: str) -> str:
    """An upstream's reply as text any database takes: aiosmtplib keeps bytes that are
    not UTF-8 as lone surrogates, and PostgreSQL refuses NUL. A reply that cannot be
    stored would fail the record of a delivery that happened, and so send it again."""
    return (reply.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            .replace("\x00", "\ufffd"))


class UpstreamUnavailable(Exception):
    """Could not get a usable session (connect, TLS, EHLO or AUTH failed)."""

    def __init__(self, reason: str, permanent: bool = False, category: str = "error") -> None:
        super().__init__(reason)
        self.permanent = permanent
        self.category = category  # see session_failure_category


def session_failure_category(error: BaseException) -> str:
    """Why a session could not be had, in the words /healthz uses: "auth" (the upstream
    refused our credentials), "tls" (certificate not verified, handshake failed, no
    STARTTLS offered), "timeout", "refused" (connection refused or unreachable: nothing
    listens), else "error" (a 4xx/5xx greeting or EHLO, anything else)."""
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        return "auth"
    seen: list[BaseException] = []
    e: BaseException | None = error
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    text = " ".join(str(x) for x in seen).lower()
    if any(isinstance(x, ssl.SSLError) for x in seen) or "starttls" in text \
            or "certificate" in text or "[ssl" in text:
        return "tls"
    if isinstance(error, aiosmtplib.SMTPResponseException):  # it answered, with a refusal
        return "error"
    if any(isinstance(x, TimeoutError) for x in seen):  # aiosmtplib's timeouts too
        return "timeout"
    if any(isinstance(x, aiosmtplib.SMTPConnectError | OSError) for x in seen):
        return "refused"
    return "error"


@dataclass
class AttemptReport:
    """The last delivery attempt as /healthz shows it."""

    result: str  # ok | rejected (the upstream answered the message 4xx/5xx) | a
    # session_failure_category (auth, tls, timeout, refused, error)
    detail: str
    at: float  # time.time()
    session_failures: int  # attempts in a row that got no usable session


def _classify(code: int) -> str:
    if 200 <= code < 300:
        return "delivered"
    return _refusal(code)


def _unusable_sender(e: ValueError) -> Outcome:
    return Outcome(553, f"5.1.7 unusable sender address: {e}", "failed", replied=False)


def _unusable_recipient(e: ValueError) -> Outcome:
    return Outcome(553, f"5.1.3 unusable recipient address: {e}", "failed", replied=False)


def _lost_during_rcpt(e: object) -> Outcome:
    return Outcome(421, f"4.4.2 connection lost during RCPT: {e}", "deferred", replied=False)


def _refusal(code: int) -> str:
    """A reply that refused a step (MAIL not 250, DATA not 354, RCPT not 250/251, the
    final dot not 250): failed if 5xx, else deferred — never delivered, even when an odd
    server said 2xx there, since the message was not taken."""
    return "failed" if 500 <= code < 600 else "deferred"


class Upstream:
    def __init__(self, settings: UpstreamSettings, local_hostname: str) -> None:
        self.settings = settings
        self.security, self.host, self.port, user, password = parse_upstream_url(settings.url)
        self.username = settings.username or user
        self.password = settings.password or password
        self.local_hostname = settings.local_hostname or local_hostname
        self.last_attempt: AttemptReport | None = None
        self._tls: ssl.SSLContext | None = None
        if self.security != "plain":
            ctx = ssl.create_default_context(cafile=settings.ca_file or None)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self._tls = ctx

    def describe(self) -> str:
        return f"{self.security}://{self.host}:{self.port}"

    def _report(self, result: str, detail: str) -> None:
        failures = 0
        if result not in ("ok", "rejected"):
            failures = (self.last_attempt.session_failures if self.last_attempt else 0) + 1
        self.last_attempt = AttemptReport(result, detail[:300], time.time(), failures)

    async def connect(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, local_hostname=self.local_hostname,
            use_tls=self.security == "tls", start_tls=self.security == "starttls",
            validate_certs=True, tls_context=self._tls,
            timeout=self.settings.command_timeout)
        try:
            await smtp.connect(timeout=self.settings.connect_timeout)
            if not smtp.esmtp_extensions:
                await smtp.ehlo()  # so 8BITMIME and SIZE support are known before MAIL
            if self.username:
                await smtp.login(self.username, self.password)
        except aiosmtplib.SMTPAuthenticationError as e:
            smtp.close()
            self._report("auth", f"{e.code} {e.message}")
            raise UpstreamUnavailable(f"upstream AUTH failed: {e.code} {e.message}",
                                      category="auth") from e
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as e:
            smtp.close()
            category = session_failure_category(e)
            self._report(category, str(e))
            raise UpstreamUnavailable(f"{self.describe()}: {e}", category=category) from e
        return smtp

    async def send(self, smtp: aiosmtplib.SMTP, mail_from: str, rcpts: list[str],
                   data: bytes) -> list[Outcome]:
        """One transaction. Raises UpstreamUnavailable only before anything was accepted
        (so the caller may retry on a fresh connection); returns an Outcome per rcpt."""
        outcomes = await self._send(smtp, mail_from, rcpts, data)
        self._report_outcomes(outcomes)
        return outcomes

    async def _send(self, smtp: aiosmtplib.SMTP, mail_from: str, rcpts: list[str],
                    data: bytes) -> list[Outcome]:
        options: list[str] = []
        eight_bit = not data.isascii()
        if eight_bit:
            if not smtp.supports_extension("8bitmime"):
                return [Outcome(554, "5.6.3 upstream does not accept 8-bit mail (no 8BITMIME)",
                                "failed", replied=False)] * len(rcpts)
            options.append("BODY=8BITMIME")
        if smtp.supports_extension("size"):
            options.append(f"SIZE={len(data)}")
        if smtp.supports_extension("pipelining"):
            return await self._send_pipelined(smtp, mail_from, rcpts, data, options)
        try:
            await smtp.mail(mail_from, options=options)
        except aiosmtplib.SMTPResponseException as e:  # SMTPSenderRefused among them
            await _rset(smtp)
            return [Outcome(e.code, e.message, _refusal(e.code))] * len(rcpts)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, OSError) as e:
            raise UpstreamUnavailable(f"disconnected before MAIL: {e}") from e
        except ValueError as e:  # CR/LF/NUL/<> in an address (aiosmtplib ≥ 5.1.1)
            return [_unusable_sender(e)] * len(rcpts)
        results: list[Outcome | None] = []
        for rcpt in rcpts:
            try:
                resp = await smtp.rcpt(rcpt)
                results.append(Outcome(resp.code, resp.message, _classify(resp.code)))
            except aiosmtplib.SMTPResponseException as e:  # SMTPRecipientRefused among them
                results.append(Outcome(e.code, e.message, _classify(e.code)))
            except ValueError as e:
                results.append(_unusable_recipient(e))
            except (aiosmtplib.SMTPException, OSError) as e:
                return [_lost_during_rcpt(e)] * len(rcpts)
        accepted = [i for i, r in enumerate(results) if r and r.outcome == "delivered"]
        if not accepted:
            await _rset(smtp)
            return [r for r in results if r is not None]
        try:
            # as is, not re-encoded by SMTP.data (see relay/wire.py)
            resp = await send_data(smtp, wire_form(data), self.settings.data_timeout)
            final = Outcome(resp.code, resp.message, _classify(resp.code))
        except aiosmtplib.SMTPResponseException as e:  # SMTPDataError among them
            final = Outcome(e.code, e.message, _classify(e.code))
        except (aiosmtplib.SMTPException, OSError) as e:
            final = _no_final_reply(e)
        out: list[Outcome] = []
        for i, r in enumerate(results):
            assert r is not None
            out.append(final if i in accepted else r)
        return out

    async def _send_pipelined(self, smtp: aiosmtplib.SMTP, mail_from: str, rcpts: list[str],
                              data: bytes, options: list[str]) -> list[Outcome]:
        """`_send` with MAIL, the RCPTs and DATA as one group (relay/pipelining.py): the
        same outcomes for the same replies, and the same RSETs."""
        n = len(rcpts)
        try:
            commands = [command(b"MAIL", mail_from, options)]
        except ValueError as e:  # CR/LF/NUL/<> in an address: nothing is sent
            return [_unusable_sender(e)] * n
        results: list[Outcome | None] = [None] * n
        sent: list[int] = []  # the recipients whose RCPT is in the group
        for i, rcpt in enumerate(rcpts):
            try:
                commands.append(command(b"RCPT", rcpt))
                sent.append(i)
            except ValueError as e:
                results[i] = _unusable_recipient(e)
        if sent:
            commands.append(b"DATA\r\n")
        try:
            group = Group(smtp)
        except aiosmtplib.SMTPServerDisconnected as e:
            raise UpstreamUnavailable(f"disconnected before MAIL: {e}") from e
        rset = False
        try:
            out, rset = await self._exchange(smtp, group, commands, sent, results, data)
        finally:
            group.close()
        if rset:
            await _rset(smtp)
        return out

    async def _exchange(self, smtp: aiosmtplib.SMTP, group: Group, commands: list[bytes],
                        sent: list[int], results: list[Outcome | None], data: bytes
                        ) -> tuple[list[Outcome], bool]:
        """The group's replies → (an outcome per recipient, whether to send RSET)."""
        n, timeout = len(results), self.settings.command_timeout
        # RFC 2920 3.2: a server may hold its replies until it has read the whole group
        # (Postfix's smtpd flushes when its input is empty), so even the reply to MAIL
        # may come after every command's work: each reply of the group is given until
        # sent + (commands in the group) × command_timeout
        loop = asyncio.get_running_loop()
        group_deadline = loop.time() + len(commands) * timeout

        def due() -> float:
            return max(0.0, group_deadline - loop.time())

        try:
            group.send(b"".join(commands))
            mail = await group.reply(due())
        except aiosmtplib.SMTPResponseException as e:  # not an SMTP reply (session closed)
            return [Outcome(e.code, e.message, _classify(e.code))] * n, False
        except (aiosmtplib.SMTPException, OSError) as e:
            smtp.close()
            raise UpstreamUnavailable(f"disconnected before MAIL: {e}") from e
        if mail.code != _COMPLETED:  # aiosmtplib: SMTPSenderRefused; then RSET
            refused = Outcome(mail.code, mail.message, _refusal(mail.code))
            if mail.code == SERVICE_CLOSING:
                smtp.close()
                return [refused] * n, False
            return [refused] * n, await _skip(group, len(commands) - 1, timeout)
        for i in sent:
            try:
                r = await group.reply(due())
            except aiosmtplib.SMTPResponseException as e:
                r = aiosmtplib.SMTPResponse(e.code, e.message)
            except (aiosmtplib.SMTPException, OSError) as e:
                return [_lost_during_rcpt(e)] * n, False
            results[i] = Outcome(r.code, r.message, _classify(r.code))
            if r.code == SERVICE_CLOSING:  # aiosmtplib closes the session on a 421
                smtp.close()
                if i != n - 1:  # and the next RCPT finds it closed
                    return [_lost_during_rcpt("Server not connected")] * n, False
        accepted = {i for i, r in enumerate(results) if r and r.outcome == "delivered"}
        final: Outcome | None = None
        if sent and smtp.is_connected:
            try:
                start = await group.reply(self.settings.data_timeout)
                if not accepted:  # DATA refused (no recipient), or 354 from an odd server
                    if start.code == _START_INPUT:
                        group.send(b".\r\n")
                        await group.reply(self.settings.data_timeout)
                    return [r for r in results if r is not None], True
                if start.code != _START_INPUT:
                    final = Outcome(start.code, start.message, _refusal(start.code))
                else:
                    group.send(wire_form(data))  # as is, not re-encoded (relay/wire.py)
                    end = await group.reply(self.settings.data_timeout)
                    final = Outcome(end.code, end.message, _classify(end.code))
            except aiosmtplib.SMTPResponseException as e:
                final = Outcome(e.code, e.message, _classify(e.code))
            except (aiosmtplib.SMTPException, OSError) as e:
                if not accepted:
                    return [r for r in results if r is not None], False
                final = _no_final_reply(e)
        elif accepted:  # the session closed at a 421 to the last RCPT
            final = _no_final_reply(aiosmtplib.SMTPServerDisconnected("Connection lost"))
        if not accepted:
            return [r for r in results if r is not None], smtp.is_connected
        assert final is not None
        return [final if i in accepted else r for i, r in enumerate(results)
                if r is not None], False

    def _report_outcomes(self, outcomes: list[Outcome]) -> None:
        if any(o.outcome == "delivered" for o in outcomes):
            self._report("ok", f"{outcomes[0].code} accepted")
        else:
            worst = outcomes[0] if outcomes else Outcome(0, "", "deferred")
            self._report("rejected", f"{worst.code} {worst.reply}")


def attempt_result(outcomes: list[Outcome]) -> tuple[str, str]:
    """One attempt as guard_upstream_attempts_total counts it: (result, reply class).
    delivered: the upstream took it for a recipient (2xx); deferred / bounced: it
    answered 4xx / 5xx for every recipient; error: no usable answer (connection lost, no
    reply to the final dot, an address the guard could not send), reply class none."""
    if any(o.outcome == "delivered" for o in outcomes):
        return "delivered", "2xx"
    decisive = next((o for o in outcomes if o.outcome == "deferred"),
                    outcomes[0] if outcomes else None)
    if decisive is None or not decisive.replied:
        return "error", "none"
    return ("deferred" if decisive.outcome == "deferred" else "bounced",
            f"{decisive.code // 100}xx")


def _no_final_reply(e: BaseException) -> Outcome:
    # No reply to the final dot: the upstream may or may not have taken it.
    log.warning("no reply after DATA (%s); will retry: the message may be delivered "
                "more than once", e)
    return Outcome(451, f"4.4.2 no reply after end of data: {e}", "deferred", replied=False)


async def _skip(group: Group, count: int, reply_timeout: float | None) -> bool:
    """Read the replies to the rest of a group whose MAIL was refused (a DATA answered
    354 all the same gets an empty message's end); False when the session closed."""
    try:
        for _ in range(count):
            if (await group.reply(reply_timeout)).code == _START_INPUT:
                group.send(b".\r\n")
                await group.reply(reply_timeout)
    except (aiosmtplib.SMTPException, OSError):
        return False
    return True


async def _rset(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.rset()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()
