"""Keep long bodies away from the stdlib's line-by-line MIME parser.

email.feedparser reads a message one line at a time in Python (about 2 µs a line): a
10 MB attachment is 135,000 base64 lines and half a second of parsing that decides
nothing, since the parser only needs the structure (headers and boundaries). So before
parsing, every run of at least `MIN_LINES` lines made only of base64 characters is
replaced by one token line; after parsing, the token in a part's payload is replaced by
the original lines before anything decodes it.

Why the structure cannot change: a boundary line starts with "--", a header line has a
":" and a folded header line starts with blank space; none of them is made of base64
characters (A-Z a-z 0-9 + / =), and neither is the token, so the parser sees every line
that matters exactly as before. The token carries a random per-message key, so content
cannot imitate it.

A message that is not multipart goes further: its whole body becomes one token
(`stash_body`). After a header block that ends in a blank line, email.feedparser reads
every remaining line into the payload unless the Content-Type is multipart/* or
message/*, so the payload is the token and restoring it gives the same string. Whether
that branch was taken is checked on the parsed message (`body_was_read_whole`); if it was
not, the message is parsed again in full. A 100 KiB text body is ~1,300-2,200 lines
the parser no longer reads one by one (~1 ms).
"""

from __future__ import annotations

import re
import secrets
from email.message import Message

MIN_LINES = 64  # shorter runs are cheap to parse as they are
# Messages of any size: the scan costs ~0.15 ms per 100 KiB, the 1,200 lines of a 90 KiB
# attachment ~0.6 ms in the parser (tests/bench/worker_bench.py, jis-png and utf8-pdf)
MIN_MESSAGE = 0

# The top header block as email.feedparser reads it: lines its headerRE takes for header
# lines (a field, a fold, a Unix "From "), each ended by CRLF or LF, no bare CR (which
# the parser would take for a line end); the blank line that must follow is checked apart.
_HEADER_LINES = re.compile(rb"(?:(?:From |[\041-\071\073-\176]*:|[\t ])[^\r\n]*+\r?\n)*+")

# Every maximal run of lines of at least 40 base64 characters (encoders write 60 to 76;
# a short last line stays a line of its own), possessive so that the scan stays linear
# whatever the text; runs shorter than MIN_LINES are left as they are. (Starting at a
# newline lets the regex engine jump from line to line in C.)
_RUN = re.compile(rb"\n((?:[A-Za-z0-9+/=]{40,}+\r?\n)++)")

# A token, whatever its key: one pattern compiled once, the key compared in restore.
# (A pattern built from each message's key cost ~90 µs to compile, more than half the
# parse of a 4 KiB message.) No token can begin inside another's match: "g" is neither
# a hex digit, nor "-", "." or a digit, and occurs once in the prefix.
_KEY_HEX = 16  # secrets.token_hex(8)
_TOKEN = re.compile(rf"guard-stash-([0-9a-f]{{{_KEY_HEX}}})-([0-9]+)\.")


class Base64Stash:
    def __init__(self) -> None:
        self._hex = secrets.token_hex(_KEY_HEX // 2)
        self._key = "guard-stash-" + self._hex
        self._runs: list[bytes] = []

    def stash(self, raw: bytes) -> bytes:
        """`raw` with each long base64 run replaced by a token line."""
        if len(raw) < MIN_MESSAGE:
            return raw
        out: list[bytes] = []
        last = 0
        for m in _RUN.finditer(raw):
            start, stop = m.span(1)  # (offsets: the run is not copied before it counts)
            if raw.count(b"\n", start, stop) < MIN_LINES:
                continue
            end = stop - (2 if raw[stop - 2: stop] == b"\r\n" else 1)  # its last EOL stays
            out += [raw[last:start], self._add(raw[start:end])]
            last = end
        if not out:
            return raw
        out.append(raw[last:])
        return b"".join(out)

    def stash_body(self, raw: bytes) -> bytes | None:
        """`raw` with its whole body as one token, or None: when its top header block is
        not one the parser reads to a blank line, names a multipart or message/* type
        (then the parser reads the body as parts; `stash` is for those), or the body is
        empty. Parse the result, then check `body_was_read_whole`."""
        m = _HEADER_LINES.match(raw)
        end = m.end() if m is not None else 0
        if raw.startswith(b"\r\n", end):
            start = end + 2
        elif raw.startswith(b"\n", end):
            start = end + 1
        else:
            return None
        head = raw[:end].lower()
        # (a cheap first test; body_was_read_whole is the exact one)
        if start == len(raw) or b"multipart" in head or b"message/" in head:
            return None
        return raw[:start] + self._add(raw[start:])

    @staticmethod
    def body_was_read_whole(msg: Message) -> bool:
        """Whether the parser read the body of `msg` (parsed from stash_body) as one
        payload: the test email.feedparser makes after the headers."""
        return msg.get_content_maintype() not in ("message", "multipart")

    def clear(self) -> None:
        """Forget what was stashed (before stashing the same message again)."""
        self._runs.clear()

    def _add(self, run: bytes) -> bytes:
        self._runs.append(run)
        return b"%s-%d." % (self._key.encode(), len(self._runs) - 1)

    def restore(self, part: Message) -> None:
        """Put the original lines back into a leaf part's payload (before decoding)."""
        if not self._runs:
            return
        # The stored payload as the parser left it: get_payload() would decode 8-bit
        # content (held as surrogate escapes) with the part's charset, and setting that
        # back would change what get_payload(decode=True) returns. (The stored payload has
        # no public accessor, nor a declared type.)
        payload = getattr(part, "_payload", None)
        if isinstance(payload, str) and self._key in payload:
            part.set_payload(_TOKEN.sub(self._original, payload))

    def _original(self, m: re.Match[str]) -> str:
        """A token's lines (decoded as BytesParser decodes the message: 8-bit bytes as
        surrogates); a token with another key is content, left as it is."""
        if m.group(1) != self._hex:
            return m.group(0)
        return self._runs[int(m.group(2))].decode("ascii", "surrogateescape")
