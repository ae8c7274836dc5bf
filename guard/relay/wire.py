"""A stored message in its DATA wire form, and the DATA command that sends it as is.

aiosmtplib's `SMTP.data` re-encodes every message with two regex passes (line endings,
then dot-stuffing): about 1 ms per 100 KiB on the event loop, for bytes the guard already
holds in CRLF form (smtp/data.py refuses a bare CR or LF). `wire_form` gives byte for byte
what `SMTP.data` would send, with C scans and one `bytes.replace` (tens of µs per 100 KiB);
only a message that is not CRLF-clean (one the guard built itself, say) takes the regex.
`send_data` sends that payload over aiosmtplib's session with its public protocol calls.
"""

from __future__ import annotations

import re

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings

# RFC 5321 4.1.1.4: 354, then the data ending in <CRLF>.<CRLF>, then 250
_START_INPUT = 354
_COMPLETED = 250


# a line that starts with a dot, in CRLF-clean data (every LF is a CRLF's)
_DOT_LINE = re.compile(rb"\n\.")
# the one-split check below is taken for lines of this many octets on average or more
# (the mail the guard relays: base64 and quoted-printable lines of 78); it gives up on
# data with more lines, which the counts then check at their usual cost
_SPLIT_LINE = 32


def _crlf_clean(data: bytes) -> bool:
    """Every CR and LF in data is part of a CRLF pair. Cut at the pairs, no CR or LF
    may be left: one C split and two memchr scans, ~30 % less than the three counts
    for 100 KiB of 78-octet lines (tests/bench/main_cpu_bench.py wire)."""
    cut = data.split(b"\r\n", len(data) // _SPLIT_LINE)
    if len(cut) <= len(data) // _SPLIT_LINE:  # all of it was cut
        rest = b"".join(cut)
        return b"\r" not in rest and b"\n" not in rest
    crlf = data.count(b"\r\n")
    return data.count(b"\n") == crlf and data.count(b"\r") == crlf


def wire_form(*parts: bytes) -> bytes:
    """The parts joined, line endings CRLF (a bare CR or LF becomes CRLF), a dot that
    starts a line doubled (RFC 5321 4.5.2), a final CRLF if missing, then ".\\r\\n"."""
    data = b"".join(parts) if len(parts) != 1 else parts[0]
    if not _crlf_clean(data):
        data = normalize_message_line_endings(data)  # aiosmtplib's own, same result
    if data[:1] == b".":
        data = b"." + data
    # clean now, so a "\n." is a "\r\n.": the regex finds it faster than the replace
    # (~30 against ~70 us per 100 KiB), and most mail has none
    if _DOT_LINE.search(data) is not None:
        data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


async def send_data(smtp: aiosmtplib.SMTP, payload: bytes, reply_timeout: float | None
                    ) -> aiosmtplib.SMTPResponse:
    """DATA with a payload from `wire_form`; as `SMTP.data`: SMTPDataError on a reply
    other than 354 / 250, the session closed when the connection is lost or times out."""
    protocol = smtp.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    try:
        start = await protocol.execute_command(b"DATA", timeout=reply_timeout)
        if start.code != _START_INPUT:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        # no await between the write and read_response (which marks a reply as
        # expected): nothing the server says can arrive unpaired in between
        protocol.write(payload)
        reply = await protocol.read_response(timeout=reply_timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        smtp.close()
        raise
    if reply.code != _COMPLETED:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return reply
