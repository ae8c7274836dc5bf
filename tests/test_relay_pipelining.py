"""Delivery pipelines MAIL, RCPT and DATA when the upstream offers PIPELINING (RFC 2920,
guard/relay/pipelining.py), with the outcomes of one command at a time: the same
upstream answering the same way gives the same outcome per recipient with and without
PIPELINING, and the session stays usable for the next message. smtp-sink and a real
Postfix relay (both offer PIPELINING) are in tests/test_relay_wire.py."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from guard.config import UpstreamSettings
from guard.relay.client import Outcome, Upstream
from guard.relay.pipelining import _Replies, command
from tests.conftest import TlsFiles, free_port

pytestmark = pytest.mark.xdist_group("relay_pipelining")

FROM = "sender@example.co.jp"
BODY = (b"From: <sender@example.co.jp>\r\nTo: <a@example.co.jp>\r\nSubject: x\r\n\r\n"
        b".a dot\r\nbody\r\n")


@dataclass
class Script:
    """How the upstream answers: by the local part's prefix, and per phase."""

    pipelining: bool = True
    mail: str = ""  # MAIL's reply when not "" (e.g. "451 4.3.0 later")
    rcpt: dict[str, str] = field(default_factory=dict)  # local part prefix → reply
    data: str = ""  # the reply after the data when not ""
    got: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    reads: list[bytes] = field(default_factory=list)  # commands as they arrived
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler:
    def __init__(self, script: Script) -> None:
        self.s = script

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.s.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if self.s.mail:
            return self.s.mail
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        for prefix, reply in self.s.rcpt.items():
            if address.startswith(prefix):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.s.data:
            return self.s.data
        with self.s.lock:
            self.s.got.append((str(envelope.mail_from), list(envelope.rcpt_tos),
                               envelope.original_content or b""))
        return "250 2.0.0 stored"


class _Recording(SMTP):
    """aiosmtpd's session, noting each chunk of commands it reads."""

    def __init__(self, handler: _Handler, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self._script = handler.s

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        inner = self._reader.feed_data
        script = self._script

        def feed(data: bytes) -> None:
            if data[:4].upper() in (b"MAIL", b"RCPT", b"DATA", b"RSET"):
                script.reads.append(data)
            inner(data)

        self._reader.feed_data = feed  # type: ignore[method-assign]


class _Controller(Controller):
    def __init__(self, *a: Any, tls: ssl.SSLContext | None = None, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.tls = tls

    def factory(self) -> SMTP:
        tls = {"tls_context": self.tls, "require_starttls": True} if self.tls else {}
        return _Recording(self.handler, decode_data=False, hostname="up.localhost", **tls)


@pytest.fixture
def upstream() -> Iterator[tuple[Script, int]]:
    script = Script()
    port = free_port()
    ctl = _Controller(_Handler(script), hostname="127.0.0.1", port=port)
    ctl.start()
    yield script, port
    ctl.stop()


def _send(port: int, rcpts: list[str], messages: int = 1, data: bytes = BODY,
          mail_from: str = FROM) -> list[list[Outcome]]:
    async def run() -> list[list[Outcome]]:
        up = Upstream(UpstreamSettings(url=f"smtp://127.0.0.1:{port}"), "guard.localhost")
        smtp = await up.connect()
        try:
            return [await up.send(smtp, mail_from, rcpts, data) for _ in range(messages)]
        finally:
            smtp.close()
    return asyncio.run(run())


def test_commands_go_as_one_group_and_the_message_arrives(
        upstream: tuple[Script, int]) -> None:
    script, port = upstream
    out = _send(port, ["a@example.co.jp", "b@example.co.jp"], messages=2)
    assert [[o.outcome for o in m] for m in out] == [["delivered"] * 2] * 2
    assert out[0][0].code == 250 and out[0][0].reply == "2.0.0 stored"
    assert [g[:2] for g in script.got] == [(FROM, ["a@example.co.jp", "b@example.co.jp"])] * 2
    assert script.got[0][2] == BODY
    groups = [r for r in script.reads if r.startswith(b"MAIL")]
    assert groups[0] == (f"MAIL FROM:<{FROM}> SIZE={len(BODY)}\r\n"
                         "RCPT TO:<a@example.co.jp>\r\nRCPT TO:<b@example.co.jp>\r\n"
                         "DATA\r\n").encode()


SCENARIOS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "all accepted": ({}, ["a@example.co.jp"]),
    "a refused RCPT in the middle": (
        {"rcpt": {"bad": "550 5.1.1 no such user"}},
        ["a@example.co.jp", "bad@example.co.jp", "c@example.co.jp"]),
    "a 4xx RCPT": ({"rcpt": {"later": "450 4.2.0 mailbox busy"}},
                   ["later@example.co.jp", "a@example.co.jp"]),
    "every RCPT refused": ({"rcpt": {"": "550 5.1.1 no such user"}},
                           ["a@example.co.jp", "b@example.co.jp"]),
    "4xx on MAIL": ({"mail": "451 4.3.0 try again later"}, ["a@example.co.jp"]),
    "5xx on MAIL": ({"mail": "553 5.7.1 sender refused"},
                    ["a@example.co.jp", "b@example.co.jp"]),
    "refused after the data": ({"data": "554 5.7.1 content refused"},
                               ["a@example.co.jp", "bad@example.co.jp"]),
    "an unusable recipient address": ({}, ["a@example.co.jp", "x\r\n@example.co.jp",
                                           "b@example.co.jp"]),
    "only unusable recipient addresses": ({}, ["a b@example.co.jp"]),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_outcomes_with_and_without_pipelining(
        upstream: tuple[Script, int], name: str) -> None:
    script, port = upstream
    setup, rcpts = SCENARIOS[name]
    results = {}
    for pipelining in (False, True):
        script.pipelining = pipelining
        script.mail, script.rcpt, script.data = "", {}, ""
        for k, v in setup.items():
            setattr(script, k, v)
        first = _send(port, rcpts)[0]
        # the session is in step afterwards: the next message on it goes through
        script.mail, script.rcpt, script.data = "", {}, ""
        script.got.clear()
        after = _send_two(port, rcpts[0] if "\r" not in rcpts[0] and " " not in rcpts[0]
                          else "a@example.co.jp", setup)
        assert after == ["delivered"], (pipelining, after)
        results[pipelining] = first
    assert results[True] == results[False]
    assert len(results[True]) == len(rcpts)


def _send_two(port: int, rcpt: str, setup: dict[str, Any]) -> list[str]:
    """One message as the scenario answers it, then one accepted, on one session."""
    async def run() -> list[str]:
        up = Upstream(UpstreamSettings(url=f"smtp://127.0.0.1:{port}"), "guard.localhost")
        smtp = await up.connect()
        try:
            await up.send(smtp, FROM, [rcpt, "bad@example.co.jp"], BODY)
            out = await up.send(smtp, FROM, ["ok@example.co.jp"], BODY)
            return [o.outcome for o in out]
        finally:
            smtp.close()
    return asyncio.run(run())


def test_without_pipelining_one_command_at_a_time(upstream: tuple[Script, int]) -> None:
    script, port = upstream
    script.pipelining = False
    out = _send(port, ["a@example.co.jp", "b@example.co.jp"])
    assert [o.outcome for o in out[0]] == ["delivered", "delivered"]
    assert [r.split(b" ")[0].strip() for r in script.reads] == [b"MAIL", b"RCPT", b"RCPT",
                                                                b"DATA"]


def test_upstream_gone_before_the_replies_is_unavailable() -> None:
    """A server that closes at once: "disconnected before MAIL" (the worker tries a fresh
    connection once), as without pipelining."""
    from guard.relay.client import UpstreamUnavailable

    async def run() -> None:
        async def session(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(b"220 up ESMTP\r\n")
            await r.readline()
            w.write(b"250-up\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            await r.readline()  # MAIL: no answer, the connection goes
            w.close()

        server = await asyncio.start_server(session, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        up = Upstream(UpstreamSettings(url=f"smtp://127.0.0.1:{port}"), "guard.localhost")
        smtp = await up.connect()
        assert smtp.supports_extension("pipelining")
        with pytest.raises(UpstreamUnavailable, match="disconnected before MAIL"):
            await up.send(smtp, FROM, ["a@example.co.jp"], BODY)
        assert not smtp.is_connected
        server.close()
        await server.wait_closed()
    asyncio.run(run())


def test_replies_parsed_as_aiosmtplib_parses_them() -> None:
    """Several replies in one read, a reply cut across reads, multi-line replies."""
    class Inner(asyncio.Protocol):
        pass

    async def run() -> None:
        r = _Replies(Inner())
        r.data_received(b"250 2.1.0 Ok\r\n250-first\r\n250-second \r\n250 2.1.5 Ok\r\n35")
        r.data_received(b"4 End data with <CR><LF>.<CR><LF>\r\n")
        got = [await r.next(1.0) for _ in range(3)]
        assert got == [aiosmtplib.SMTPResponse(250, "2.1.0 Ok"),
                       aiosmtplib.SMTPResponse(250, "first\nsecond\n2.1.5 Ok"),
                       aiosmtplib.SMTPResponse(354, "End data with <CR><LF>.<CR><LF>")]
        with pytest.raises(aiosmtplib.SMTPReadTimeoutError):
            await r.next(0.01)
        r.data_received(b"xyz not smtp\r\n")
        with pytest.raises(aiosmtplib.SMTPResponseException, match="Malformed"):
            await r.next(1.0)
    asyncio.run(run())


def test_commands_are_the_bytes_aiosmtplib_sends() -> None:
    assert command(b"MAIL", "a@b.example", ["BODY=8BITMIME", "SIZE=10"]) == (
        b"MAIL FROM:<a@b.example> BODY=8BITMIME SIZE=10\r\n")
    assert command(b"MAIL", "", []) == b"MAIL FROM:<>\r\n"
    assert command(b"RCPT", "Name <a@b.example>") == b"RCPT TO:<a@b.example>\r\n"
    # email.utils.parseaddr, as aiosmtplib reads an address, unfolds a CRLF
    assert command(b"RCPT", "a\r\n@b.example") == b"RCPT TO:<a@b.example>\r\n"
    for bad in ("a b@b.example", "あ@b.example", "a\x00@b.example"):
        with pytest.raises(ValueError):
            command(b"RCPT", bad)


def test_pipelining_over_starttls(tls: TlsFiles) -> None:
    """The group's reader takes the TLS transport's replies and hands it back."""
    script = Script()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    port = free_port()
    ctl = _Controller(_Handler(script), hostname="127.0.0.1", port=port, tls=server)
    ctl.start()
    try:
        async def run() -> list[list[str]]:
            up = Upstream(UpstreamSettings(url=f"smtp+starttls://localhost:{port}",
                                           ca_file=str(tls.ca_file)), "guard.localhost")
            smtp = await up.connect()
            try:
                assert smtp.supports_extension("pipelining")
                script.rcpt = {"bad": "550 5.1.1 no such user"}
                return [[o.outcome for o in await up.send(
                    smtp, FROM, ["a@example.co.jp", "bad@example.co.jp"], BODY)]
                    for _ in range(3)]
            finally:
                smtp.close()
        assert asyncio.run(run()) == [["delivered", "failed"]] * 3
    finally:
        ctl.stop()
    assert len(script.got) == 3 and script.got[0][2] == BODY


# -- timeouts and errors of the pipelined group (review of the first version) --

async def _held_replies_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                               rcpt_seconds: float, trickle: float) -> None:
    """A server that holds its replies while commands wait in its input (RFC 2920 3.2;
    Postfix's smtpd flushes when its input is empty) and takes `rcpt_seconds` per RCPT;
    with `trickle`, the reply to MAIL comes a byte every `trickle` seconds."""
    writer.write(b"220 test\r\n")
    held: list[bytes] = []

    async def reply(line: bytes) -> None:
        held.append(line)
        if not reader._buffer:  # type: ignore[attr-defined]  # input empty: flush
            out = b"".join(held)
            held.clear()
            if trickle:
                for i in range(len(out)):
                    writer.write(out[i:i + 1])
                    await writer.drain()
                    await asyncio.sleep(trickle)
            else:
                writer.write(out)
    while line := await reader.readline():
        verb = line[:4].upper()
        if verb == b"EHLO":
            writer.write(b"250-test\r\n250-PIPELINING\r\n250 SIZE 100000\r\n")
        elif verb in (b"MAIL", b"RSET"):
            await reply(b"250 2.0.0 ok\r\n")
        elif verb == b"RCPT":
            await asyncio.sleep(rcpt_seconds)
            await reply(b"250 2.1.5 ok\r\n")
        elif verb == b"DATA":
            await reply(b"354 go\r\n")
            while (data := await reader.readline()) != b".\r\n":
                if not data:
                    return
            writer.write(b"250 2.0.0 queued\r\n")
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            break
    writer.close()


def _send_held(rcpt_seconds: float, trickle: float, rcpts: int) -> list[Outcome] | str:
    async def run() -> list[Outcome] | str:
        server = await asyncio.start_server(
            lambda r, w: _held_replies_server(r, w, rcpt_seconds, trickle), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        up = Upstream(UpstreamSettings(url=f"smtp://127.0.0.1:{port}", command_timeout=0.5,
                                       data_timeout=5.0), "guard.localhost")
        smtp = await up.connect()
        try:
            return await up.send(smtp, FROM, [f"r{i}@example.co.jp" for i in range(rcpts)],
                                 BODY)
        except Exception as e:  # the test reads what happened
            return f"{type(e).__name__}: {e}"
        finally:
            smtp.close()
            server.close()
    return asyncio.run(run())


def test_replies_held_until_the_group_is_read_are_waited_for() -> None:
    """Four recipients at 0.3 s each: the reply to MAIL comes after 1.2 s of RCPT work,
    more than one command's timeout (0.5 s) but within the group's (6 × 0.5 s)."""
    out = _send_held(rcpt_seconds=0.3, trickle=0.0, rcpts=4)
    assert isinstance(out, list), out
    assert [o.outcome for o in out] == ["delivered"] * 4


def test_a_reply_that_trickles_in_is_timed_as_a_whole() -> None:
    """The MAIL reply a byte every 0.3 s (14 bytes: 4.2 s) against the group's 1.5 s
    (three commands × 0.5 s): given up on, not waited for byte by byte."""
    out = _send_held(rcpt_seconds=0.0, trickle=0.3, rcpts=1)
    assert isinstance(out, str) and "UpstreamUnavailable" in out, out


def test_an_unusable_address_raises_a_new_error_each_time() -> None:
    """The quoting is cached, the error is not: a cached exception raised again would
    keep each raise's frames (and the message they hold) in its traceback."""
    errors = []
    for _ in range(3):
        with pytest.raises(ValueError) as e:
            command(b"RCPT", "ü@example.co.jp")
        errors.append(e.value)
    assert errors[0] is not errors[1] is not errors[2]
    assert str(errors[0]) == str(errors[2]) != ""


def test_a_2xx_to_mail_that_is_not_250_takes_nothing(upstream: tuple[Script, int]) -> None:
    """An odd server's 251 to MAIL is a refusal to aiosmtplib (no RCPT, no data follow):
    the recipients are deferred, not counted delivered, with and without pipelining."""
    script, port = upstream
    for pipelining in (False, True):
        script.pipelining, script.rcpt, script.data = pipelining, {}, ""
        script.mail = "251 2.1.0 odd"
        script.got.clear()
        out = _send(port, ["a@example.co.jp"])[0]
        assert [(o.code, o.outcome) for o in out] == [(251, "deferred")], pipelining
        assert script.got == []
    script.mail = ""
