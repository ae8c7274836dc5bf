"""MAIL, RCPT and DATA in one write when the upstream offers PIPELINING (RFC 2920).

aiosmtplib sends one command and waits for its reply: four round trips per message
(MAIL, RCPT, DATA, the data), each a write, a wake-up of the event loop and a reply
parsed on the guard's main process. With PIPELINING the envelope and DATA go as one
group and their replies are read after it (RFC 2920 3.1: DATA last in the group), then
the data as before: two round trips.

aiosmtplib's protocol cannot read several replies that arrive together (it parses one
per read and drops what comes while no command waits), so for the group the session's
transport is given `_Replies`, a reader of its own, and handed back after it; a
connection lost meanwhile is passed on to aiosmtplib's protocol, so the session knows.

The commands are the bytes aiosmtplib would send (its own address quoting and checks),
and each reply is parsed as aiosmtplib parses it (code; the lines' texts joined by LF).
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Sequence

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import COMMAND_INJECTION_REGEX, MAX_LINE_LENGTH, MAX_RESPONSE_LENGTH

# aiosmtplib closes the session on a 421 reply to a command (SMTP.execute_command)
SERVICE_CLOSING = 421
_INVALID = -1  # aiosmtplib's SMTPStatus.invalid_response


@functools.lru_cache(maxsize=4096)
def _quoted(address: str) -> bytes | str:
    """`<address>` as aiosmtplib quotes it (email.utils.parseaddr per call: cached, the
    same few senders and recipients come again and again), or the text of the ValueError
    it raises (the text, not the exception: a cached exception raised again keeps every
    raise's frames, and with them each message, in its traceback)."""
    try:
        return quote_address(address).encode("ascii")
    except ValueError as e:  # UnicodeEncodeError too
        return str(e)


def command(verb: bytes, address: str, options: Sequence[str] = ()) -> bytes:
    """`MAIL FROM:<a> opts` / `RCPT TO:<a>` with its CRLF, as aiosmtplib builds and checks
    it (SMTP.mail / rcpt, SMTPProtocol.execute_command); ValueError as they raise it."""
    quoted = _quoted(address)
    if isinstance(quoted, str):
        raise ValueError(quoted)
    args = [verb, (b"FROM:" if verb == b"MAIL" else b"TO:") + quoted,
            *(o.encode("ascii") for o in options)]
    for arg in args:
        if COMMAND_INJECTION_REGEX.search(arg):
            raise ValueError("Command arg contains a prohibited control character")
    return b" ".join(args) + b"\r\n"


class _Replies(asyncio.Protocol):
    """The replies to a pipelined group, in order, as they arrive."""

    def __init__(self, inner: asyncio.BaseProtocol) -> None:
        self.inner = inner  # aiosmtplib's protocol: told when the connection goes
        self._buf = bytearray()
        self._replies: collections.deque[aiosmtplib.SMTPResponse] = collections.deque()
        self._error: aiosmtplib.SMTPException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._parse()
        if len(self._buf) > MAX_RESPONSE_LENGTH:  # what is left is one unfinished reply
            self._fail(aiosmtplib.SMTPResponseException(_INVALID, "Response too long"))
        self._wake()

    def _parse(self) -> None:
        """Every complete reply in the buffer (aiosmtplib's _read_response_from_buffer)."""
        buf = self._buf
        start = 0
        while self._error is None:
            lines: list[bytes] = []
            offset = start
            code = _INVALID
            complete = False
            while (end := buf.find(b"\n", offset)) >= 0:
                line = bytes(buf[offset:end + 1])
                if len(line) > MAX_LINE_LENGTH:
                    self._error = aiosmtplib.SMTPResponseException(_INVALID, "Response too long")
                    break
                try:
                    code = int(line[:3])
                except ValueError:
                    self._error = aiosmtplib.SMTPResponseException(
                        _INVALID, "Malformed SMTP response line: "
                        + line.decode("utf-8", errors="ignore"))
                    break
                offset += len(line)
                lines.append(line[4:].strip(b" \t\r\n"))
                if line[3:4] != b"-":
                    complete = True
                    break
            if not complete:
                break
            self._replies.append(aiosmtplib.SMTPResponse(
                code, b"\n".join(lines).decode("utf-8", "surrogateescape")))
            start = offset
        del buf[:start]

    def _fail(self, error: aiosmtplib.SMTPException) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def eof_received(self) -> bool | None:
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return self.inner.eof_received()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        error = aiosmtplib.SMTPServerDisconnected("Connection lost")
        error.__cause__ = exc
        self._fail(error)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    async def next(self, reply_timeout: float | None) -> aiosmtplib.SMTPResponse:
        """The next reply; SMTPServerDisconnected, SMTPReadTimeoutError or (a reply that
        is not SMTP) SMTPResponseException as aiosmtplib raises them."""
        loop = asyncio.get_running_loop()
        # one deadline for the whole reply, as aiosmtplib's: a reply that trickles in a
        # byte at a time must not restart the clock with each byte
        deadline = None if reply_timeout is None else loop.time() + reply_timeout
        while not self._replies:
            if self._error is not None:
                raise self._error
            self._waiter = loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, None if deadline is None
                                       else max(0.0, deadline - loop.time()))
            except TimeoutError as e:
                raise aiosmtplib.SMTPReadTimeoutError(
                    "Timed out waiting for server response") from e
            finally:
                self._waiter = None
        return self._replies.popleft()


class Group:
    """One pipelined exchange on an aiosmtplib session: `send` writes, `reply` reads the
    replies in order; `close` gives the transport back to aiosmtplib's protocol."""

    def __init__(self, smtp: aiosmtplib.SMTP) -> None:
        protocol, transport = smtp.protocol, smtp.transport
        if protocol is None or transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._smtp = smtp
        self._transport = transport
        self._inner = protocol
        self._replies = _Replies(protocol)
        transport.set_protocol(self._replies)

    def send(self, data: bytes) -> None:
        if self._replies.lost or self._transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._transport.write(data)  # type: ignore[attr-defined]

    async def reply(self, reply_timeout: float | None) -> aiosmtplib.SMTPResponse:
        try:
            return await self._replies.next(reply_timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self._smtp.close()  # as aiosmtplib does: the replies are out of step now
            raise
        except aiosmtplib.SMTPResponseException:
            self._smtp.close()  # not SMTP: nothing after it can be paired
            raise

    def close(self) -> None:
        if not self._replies.lost and not self._transport.is_closing():
            self._transport.set_protocol(self._inner)
