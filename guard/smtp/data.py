"""DATA: the message bytes read in blocks, unstuffed and checked as they arrive.

aiosmtpd reads DATA line by line in Python (~20 MB/s); this reader takes 64 KiB blocks,
finds the end marker with one C scan per block, and unstuffs and checks each block as it
comes, so nothing after the final dot runs over the whole message on the event loop.
Same semantics as aiosmtpd ≥ 1.4.5: only <CRLF>.<CRLF> ends the data; dot unstuffing per
RFC 5321 4.5.2; the size limit is answered after the final dot (the rest is read and
dropped). The checks after it are
stricter than aiosmtpd: a bare CR or LF and NUL are refused (SMTP smuggling), and so
are mail loops (too many Received: fields, or this guard's own too often).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from guard.smtp.listenerconfig import ListenerConfig

log = logging.getLogger("guard.smtp")


class DataTooLarge(Exception):
    """More than the size limit; the data was read up to its end and dropped."""


class DataTooSlow(Exception):
    """The DATA phase took longer than its total deadline (a client trickling bytes)."""


@dataclass
class Body:
    """The dot-unstuffed message and what the checks need from all of it."""

    data: bytes
    bare_newline: bool  # a CR or LF that is not part of a CRLF
    nul: bool
    long_line: bool  # a line longer than the line limit (CRLF included)


class _Unstuffer:
    """Unstuffs and checks the message part by part as the blocks arrive.

    A 30 MB message checked after the final dot held the SMTP front's event loop for
    0.1-0.2 s of CPU (bytes copies, counts, a split into 400k lines), and EHLO on
    other connections waited 0.5-0.7 s on a busy machine (tests/bench/stall_bench.py).
    Per part it is the same C calls over 64 KiB. The caller cuts the raw data only where
    no CRLF, no "<CRLF>." and no end marker can straddle the cut (`_safe_cut`), so the
    sums over the parts are exactly the checks over the whole message.
    """

    def __init__(self, line_limit: int) -> None:
        self.out = bytearray()
        self._first = True  # the first part starts with the virtual CRLF
        self._line = 0  # octets of the line not yet ended (its LF not seen yet)
        self._max = line_limit - 1  # a line of N octets incl. CRLF has N-1 before its LF
        self.bare_newline = self.nul = self.long_line = False

    def feed(self, raw: bytes | bytearray) -> None:
        # RFC 5321 4.5.2: delete the first character of every line that starts with a dot
        part = raw.replace(b"\r\n.", b"\r\n")
        if self._first:
            self._first = False
            part = part[2:]
        crlf = part.count(b"\r\n")
        if part.count(b"\n") != crlf or part.count(b"\r") != crlf:
            self.bare_newline = True
        if b"\x00" in part:
            self.nul = True
        if not self.long_line:
            # split + max runs in C: 0.4 ms per MiB, where a [^\n]{N} regex took 90 ms
            lines = part.split(b"\n")
            if len(lines) == 1:
                self._line += len(part)
            else:
                longest = max(self._line + len(lines[0]), max(map(len, lines[1:-1]), default=0))
                self._line = len(lines[-1])
                self.long_line = longest > self._max
            self.long_line = self.long_line or self._line > self._max
        self.out += part

    def body(self) -> Body:
        return Body(bytes(self.out), self.bare_newline, self.nul, self.long_line)


def _safe_cut(raw: bytearray) -> int:
    """Where `raw` may be cut so that the parts give what the whole gives; 0 for nowhere.
    Four octets stay back, so an end marker across the cut would have been found already;
    of three neighbouring positions at least one splits neither a CRLF nor a <CRLF>."""
    i = len(raw) - 4
    while i >= 2:
        if raw[i - 1:i + 1] != b"\r\n" and raw[i - 2:i + 1] != b"\r\n.":
            return i
        i -= 1
    return 0


async def read_data(reader: asyncio.StreamReader, size_limit: int, total_timeout: float,
                    on_block: Callable[[], None], line_limit: int) -> Body | None:
    """The dot-unstuffed message; None when the connection closed before the end.
    `on_block` runs for every block read (the session's idle timeout starts again)."""
    # a virtual CRLF in front: the end marker is then always b"\r\n.\r\n", even for
    # an empty message (".\r\n" right after the 354)
    raw = bytearray(b"\r\n")  # received, not yet unstuffed; a few octets between blocks
    done = 0  # octets of raw data (with the virtual CRLF) handed to the unstuffer
    body = _Unstuffer(line_limit)
    discarding = False
    tail = b""
    started = time.monotonic()
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return None
        on_block()
        if time.monotonic() - started > total_timeout:
            raise DataTooSlow
        if discarding:
            window = tail + chunk
            end = window.find(b"\r\n.\r\n")
            if end >= 0:
                _unread(reader, window[end + 5:])
                raise DataTooLarge
            tail = window[-4:]
            continue
        raw += chunk
        end = raw.find(b"\r\n.\r\n")
        if end >= 0:
            _unread(reader, bytes(raw[end + 5:]))
            if size_limit and done + end > size_limit:
                raise DataTooLarge
            body.feed(raw[:end + 2])
            return body.body()
        if size_limit and done + len(raw) - 2 > size_limit + 3:
            discarding = True
            tail = bytes(raw[-4:])
            raw = bytearray()
            body = _Unstuffer(line_limit)  # free what was kept
            continue
        cut = _safe_cut(raw)
        if cut:
            body.feed(raw[:cut])
            del raw[:cut]
            done += cut


def data_problem(body: Body, cfg: ListenerConfig) -> tuple[str, str] | None:
    """(metric label, reply line) when the received message is refused, else None."""
    if body.bare_newline:
        return ("bare_newline",
                "550 5.6.11 Bare CR or LF is not allowed in DATA (RFC 5321 2.3.8)")
    if body.nul:
        return ("nul", "550 5.6.0 NUL characters are not allowed in the message")
    # every line ≤ 1000 octets incl. CRLF, +1 for a transparency dot (as aiosmtpd)
    if body.long_line:
        return ("line_too_long", "500 5.5.2 Line too long (see RFC5321 4.5.3.1.6)")
    data = body.data
    if _hops(data) >= cfg.max_hops:
        return ("too_many_hops", "554 5.4.6 Too many hops (mail loop?)")
    if cfg.loop_marker:
        passes = _own_passes(data, cfg.loop_marker)
        if passes >= cfg.max_passes:
            log.warning("mail loop: the message already passed this guard %d times", passes)
            return ("mail_loop", f"554 5.4.6 Mail loop: the message already passed "
                    f"{cfg.hostname} {passes} times")
    return None


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
