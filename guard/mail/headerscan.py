"""Header fields read straight from the bytes, in linear time, without the email package.

The email package reads a header block line by line in Python, and its structured
header parser is quadratic in the length of a field (a Content-Type with 10,000
parameters took 3.5 s). What has to happen before a message is known to be safe to
parse uses these scans instead: the limits checked before any parse
(`message.prescan`), the Subject/From/Message-ID of the queue listing
(`pipeline.summarize_headers`), the envelope of `guard policy test`, and the headers
of a message that is not parsed at all.

Each function is a few passes of C code (bytes.find, count, a regex that starts with a
literal) over the block; Python runs once per field asked for, never once per field
present, so a block of 30,000 fields costs what a block of 30 does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# where a field ends: a line end not followed by a fold. Starting with a literal lets
# the regex engine jump from line end to line end in C; a CR before the LF is taken
# off by the caller. (A bare CR, which SMTP refuses, then does not end a field: the
# field only looks longer, the safe direction for a limit.)
_FIELD_END_RE = re.compile(rb"\n(?![ \t])")


def header_block(data: bytes, limit: int) -> tuple[bytes, bool]:
    """The header block of `data`: its fields with their line ends, without the blank
    line; and whether the block ends within `limit` bytes. A block that does not is
    cut at the last line end before `limit`."""
    crlf = data.find(b"\r\n\r\n", 0, limit + 4)
    # a bare-LF end counts only before the CRLF one (not searched past it: a CRLF
    # message has none, and the search would read the whole body)
    lf = data.find(b"\n\n", 0, limit + 2 if crlf < 0 else crlf + 1)
    ends = [i for i in (crlf, lf) if i >= 0]
    if ends:
        end = min(ends)
        return data[:end + (2 if data[end:end + 2] == b"\r\n" else 1)], True
    if len(data) <= limit:
        return data, True  # headers only, no body
    block = data[:limit]
    cut = block.rfind(b"\n")
    return (block[:cut + 1] if cut > 0 else block), False


def count_fields(block: bytes) -> int:
    """How many fields a header block holds: its lines, less the folded ones."""
    lines = block.count(b"\n") + (1 if block and not block.endswith(b"\n") else 0)
    return lines - block.count(b"\n ") - block.count(b"\n\t")


def field_end(data: bytes, start: int, limit: int | None = None) -> int:
    """Where the field that starts (or whose value starts) at `start` ends: at its last
    line end, folds included; at most `limit` bytes on."""
    stop = len(data) if limit is None else min(len(data), start + limit)
    m = _FIELD_END_RE.search(data, start, stop)
    if m is None:
        return stop
    end = m.start()
    return end - 1 if end > start and data[end - 1] == 0x0D else end


def longest_field(block: bytes) -> int:
    """The size in bytes of the longest field of a header block (folds included). One
    Python step per field: call it on a block whose field count is known to be small."""
    starts = [0] + [m.end() for m in _FIELD_END_RE.finditer(block)]
    return max(b - a for a, b in zip(starts, [*starts[1:], len(block)], strict=True))


def field_values(block: bytes, names: Iterable[bytes], first_only: bool = False,
                 max_fields: int | None = None, max_value_bytes: int | None = None
                 ) -> dict[bytes, list[bytes]]:
    """The raw values of the fields called `names` (lower case), in order: what follows
    the colon, leading blanks and the final line end taken off, folds kept (the shape
    email.policy.compat32 stores). `first_only` stops at each name's first field;
    `max_fields` caps how many fields of one name are read, `max_value_bytes` how much
    of each value."""
    low = b"\n" + block.lower()  # offsets in `low` are one more than in `block`
    out: dict[bytes, list[bytes]] = {}
    for name in names:
        values: list[bytes] = []
        needle = b"\n" + name
        pos = low.find(needle)
        while pos >= 0:
            colon = pos + len(needle)  # in `low`: the value starts at `colon` in `block`
            while low[colon:colon + 1] in (b" ", b"\t"):  # "Subject :" (obsolete syntax)
                colon += 1
            if low[colon:colon + 1] != b":":
                pos = low.find(needle, colon)
                continue
            end = field_end(block, colon, max_value_bytes)
            values.append(block[colon:end].lstrip(b" \t").rstrip(b"\r\n"))
            if first_only or (max_fields is not None and len(values) >= max_fields):
                break
            pos = low.find(needle, end)
        if values:
            out[name] = values
    return out
