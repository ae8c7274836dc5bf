"""Keep long base64 bodies away from the stdlib's line-by-line MIME parser.

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
"""

from __future__ import annotations

import re
import secrets
from email.message import Message

MIN_LINES = 64  # shorter runs are cheap to parse as they are
MIN_MESSAGE = 256 * 1024

# Every maximal run of lines of at least 40 base64 characters (encoders write 60 to 76;
# a short last line stays a line of its own), possessive so that the scan stays linear
# whatever the text; runs shorter than MIN_LINES are left as they are. (Starting at a
# newline lets the regex engine jump from line to line in C.)
_RUN = re.compile(rb"\n((?:[A-Za-z0-9+/=]{40,}+\r?\n)++)")


class Base64Stash:
    def __init__(self) -> None:
        self._key = "guard-stash-" + secrets.token_hex(8)
        self._runs: list[bytes] = []
        self._token = re.compile(re.escape(self._key) + r"-([0-9]+)\.")

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
            out += [raw[last:start], b"%s-%d." % (self._key.encode(), len(self._runs))]
            self._runs.append(raw[start:end])
            last = end
        if not out:
            return raw
        out.append(raw[last:])
        return b"".join(out)

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
            part.set_payload(self._token.sub(
                lambda m: self._runs[int(m.group(1))].decode("ascii"), payload))
