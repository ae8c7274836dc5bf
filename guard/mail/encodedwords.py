"""RFC 2047 encoded words ("=?ISO-2022-JP?B?...?=") in header values, decoded with the
guard's charset map (guard.mail.textdecode), so that ISO-2022-JP words holding NEC
characters (①) and CP932 words labelled Shift_JIS decode as the sender meant.
"""

from __future__ import annotations

import base64
import binascii
import re

from guard.mail.textdecode import decode_declared

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_HEX2 = re.compile(rb"[0-9A-Fa-f]{2}")


def _decode_word_bytes(enc: str, payload: str) -> bytes:
    if enc in "bB":
        data = payload.encode("ascii", "replace")
        data = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        data += b"=" * (-len(data) % 4)  # lenient padding, as MUAs are
        try:
            return base64.b64decode(data)
        except binascii.Error:
            return base64.b64decode(data[:-4])  # a lone trailing character ("X===")
    # Q encoding: "_" is space, =XX is a byte
    out = bytearray()
    i = 0
    raw = payload.encode("ascii", "replace")
    while i < len(raw):
        c = raw[i]
        if c == 0x5F:
            out.append(0x20)
        elif c == 0x3D and _HEX2.fullmatch(raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 2
        else:
            out.append(c)
        i += 1
    return bytes(out)


def decode_encoded_words(value: str) -> str:
    """Decode RFC 2047 encoded words with our charset map (so ISO-2022-JP words with ①
    and Shift_JIS-labelled CP932 words decode). Adjacent words in the same charset are
    joined as bytes first: encoders often split one multibyte character across words.
    Whitespace between adjacent encoded words is dropped (RFC 2047 §6.2). Never raises."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: bytearray = bytearray()
    pending_charset: str | None = None
    pos = 0

    def flush() -> None:
        nonlocal pending_charset
        if pending_charset is not None:
            out.append(decode_declared(bytes(pending), pending_charset))
            pending.clear()
            pending_charset = None

    for m in _ENCODED_WORD.finditer(value):
        between = value[pos : m.start()]
        if between and not (between.isspace() and pending_charset is not None):
            flush()
            out.append(between)
        charset = m.group(1).split("*", 1)[0].lower()
        if pending_charset is not None and charset != pending_charset:
            flush()
        pending_charset = charset
        try:
            pending.extend(_decode_word_bytes(m.group(2), m.group(3)))
        except Exception:  # malformed word: keep it literally rather than fail
            flush()
            out.append(m.group(0))
        pos = m.end()
    flush()
    out.append(value[pos:])
    return "".join(out)
