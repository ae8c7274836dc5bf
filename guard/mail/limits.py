"""How much of a message the parse may read, and the byte scans that enforce it first.

`prescan` checks size, header blocks, MIME fields, multipart nesting and part count
BEFORE the stdlib parse: the stdlib recurses per nesting level (RecursionError at depth
~300/1000) and reads headers line by line in Python, so a message beyond these limits is
not parsed at all (its headers are still read, by guard.mail.headerscan). `cheap_to_read`
says whether a message is small and plain enough for the main process to parse itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from guard.mail import headerscan
from guard.mail.view import Problem

# Comments in a header field nested deeper than this are malformed: the stdlib parsers
# recurse per level, and stripping comments innermost first costs a pass per level.
MAX_COMMENT_NESTING = 20


@dataclass(frozen=True)
class ParseLimits:
    """What one parse may read (inspection's defaults; INLINE_LIMITS for the main process)."""

    max_message_bytes: int = 50 * 1024 * 1024
    max_parts: int = 500
    max_depth: int = 20  # multipart nesting
    max_rfc822_depth: int = 5  # message/rfc822 inside message/rfc822 ...
    max_header_bytes: int = 256 * 1024  # one header block (the message's, a part's)
    # Fields in one header block: a long Received: chain is 50 (the hop limit), a busy
    # Outlook or Gmail message 40-80. The parser reads each field in Python.
    max_header_fields: int = 1000
    max_header_field_bytes: int = 100 * 1024  # one field, folds included (Postfix: 100 KB)
    # One Content-Type/-Disposition/-Transfer-Encoding field (the parse reads these
    # once per part and more; their values are split by hand, in linear time).
    max_mime_field_bytes: int = 4096
    max_mime_field_total: int = 512 * 1024
    # ";" in one MIME field: Thunderbird cuts a long file name into RFC 2231
    # continuations of ~70 bytes, so a 4 KiB field holds about 60.
    max_params_per_field: int = 100
    max_comment_nesting: int = MAX_COMMENT_NESTING  # in MIME fields
    max_addresses_per_header: int = 1000
    max_text_chars: int = 20_000_000  # per body part
    max_total_text_chars: int = 50_000_000  # per message


DEFAULT_LIMITS = ParseLimits()

# Upper bound on parser recursion we let the stdlib attempt (multipart depth plus
# message/rfc822 parts); depth 100 is known to be fine on 3.11.
_SAFE_PARSE_DEPTH = 100


# The scans. Every pattern starts with a literal so the regex engine can skip ahead quickly
# (an "(?:^|[\r\n])" prefix made these scans ~80x slower on a 30 MB message). Matches
# are then checked to start a line. Case-insensitive ones run over a lower-cased copy.

_BOUNDARY_RE = re.compile(rb"boundary")
_BOUNDARY_VALUE_RE = re.compile(rb'boundary\*?\s*=\s*(?:"([^"\r\n]*)"|([^\s;"]+))', re.I)
_DASH_LINE_RE = re.compile(rb"--([^\r\n]*)")
_MIME_FIELD_RE = re.compile(rb"content-(?:type|disposition|transfer-encoding)[ \t]*:")
_RFC822_TAIL_RE = re.compile(rb"\s*message/rfc822")  # after a content-type field's ":"
_HEADER_END_RE = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def _at_line_start(data: bytes, pos: int) -> bool:
    return pos == 0 or data[pos - 1] in (0x0A, 0x0D)


def _max_paren_depth(value: bytes) -> int:
    depth = best = 0
    for b in value:
        if b == 0x28:
            depth += 1
            best = max(best, depth)
        elif b == 0x29 and depth:
            depth -= 1
    return best


def _header_block_problem(block: bytes, limits: ParseLimits, label: str) -> Problem | None:
    """Field count and field size of one header block (`label` names it in the detail)."""
    if len(block) > limits.max_header_bytes:
        return ("too_large", "headers",
                f"{label}: header block > {limits.max_header_bytes} bytes")
    fields = headerscan.count_fields(block)
    if fields > limits.max_header_fields:
        return ("too_many_headers", "headers",
                f"{label}: {fields} header fields > limit {limits.max_header_fields}")
    if len(block) > limits.max_header_field_bytes:
        size = headerscan.longest_field(block)
        if size > limits.max_header_field_bytes:
            return ("too_large", "headers", f"{label}: header field of {size} bytes > "
                                            f"limit {limits.max_header_field_bytes}")
    return None


def _part_headers(raw: bytes, line_end: int, stop: int, limits: ParseLimits) -> bytes | None:
    """The header block of the part whose delimiter line ends at `line_end`: up to its
    blank line, or up to `stop` (the next delimiter line) if that comes first. None if
    it is longer than max_header_bytes."""
    start = raw.find(b"\n", line_end, stop) + 1
    if start <= 0:
        return b""
    window = min(stop, start + limits.max_header_bytes + 4)
    m = _HEADER_END_RE.search(raw, line_end, window)
    if m is not None:
        return raw[start:m.start()] if m.start() > start else b""
    return raw[start:stop] if window == stop else None


def prescan(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> list[Problem]:
    """Byte-level checks that make the stdlib parse safe and bound its work: size, the
    header blocks (size, fields, longest field), the MIME fields (size, parameters,
    comment nesting), multipart nesting and part count. Any problem found here means
    the message is not parsed (its headers are still read, by headerscan). Linear in
    the size of the message: C scans, and Python once per MIME field and delimiter
    line."""
    if len(raw) > limits.max_message_bytes:
        return [("too_large", "message",
                 f"{len(raw)} bytes > limit {limits.max_message_bytes}")]
    block, ended = headerscan.header_block(raw, limits.max_header_bytes)
    if not ended:
        return [("too_large", "headers", f"header block > {limits.max_header_bytes} bytes")]
    problem = _header_block_problem(block, limits, "message")
    if problem:
        return [problem]
    low = raw.lower()

    # The MIME fields, which the parse reads over and over; message/rfc822 types counted
    total = rfc822 = 0
    for m in _MIME_FIELD_RE.finditer(low):
        if not _at_line_start(low, m.start()):
            continue
        if low.startswith(b"type", m.start() + 8) and _RFC822_TAIL_RE.match(low, m.end()):
            rfc822 += 1
        end = headerscan.field_end(raw, m.end())
        size = end - m.start()
        total += size
        if size > limits.max_mime_field_bytes:
            return [("too_large", "headers",
                     f"MIME header field of {size} bytes > {limits.max_mime_field_bytes}")]
        params = raw.count(b";", m.end(), end)
        if params > limits.max_params_per_field:
            return [("too_many_params", "headers", f"MIME header field with {params} "
                     f"parameters > limit {limits.max_params_per_field}")]
        if raw.count(b"(", m.end(), end) > limits.max_comment_nesting and (
            _max_paren_depth(raw[m.end():end]) > limits.max_comment_nesting
        ):
            return [("parse_error", "headers", "MIME header comments nested too deep")]
    if total > limits.max_mime_field_total:
        return [("too_large", "headers", f"{total} bytes of MIME header fields")]

    # Multipart nesting and part count from the boundary delimiter lines; the header
    # block of each part
    boundaries: set[bytes] = set()
    for m in _BOUNDARY_RE.finditer(low):
        vm = _BOUNDARY_VALUE_RE.match(raw, m.start())
        if vm:
            value = (vm.group(1) if vm.group(1) is not None else vm.group(2)).rstrip()
            if value:
                boundaries.add(value)
    delimiters: list[tuple[int, int, bytes]] = []  # (line start, line end, boundary)
    if boundaries:
        for m in _DASH_LINE_RE.finditer(raw):
            if _at_line_start(raw, m.start()):
                line = m.group(1).rstrip(b" \t")
                if line in boundaries or (line.endswith(b"--") and line[:-2] in boundaries):
                    delimiters.append((m.start(), m.end(), line))
    level: dict[bytes, int] = {}  # open boundary → its nesting level (1 = outermost)
    max_depth = parts = 0
    for i, (_, line_end, line) in enumerate(delimiters):
        if line in boundaries:
            parts += 1
            if line in level:  # the next part of an open multipart: close what it held
                depth = level[line]
                level = {b: d for b, d in level.items() if d <= depth}
            else:
                level[line] = len(level) + 1
                max_depth = max(max_depth, len(level))
                if max_depth > limits.max_depth:
                    return [("too_deep", "message",
                             f"multipart nesting > limit {limits.max_depth}")]
            if parts <= limits.max_parts:
                stop = delimiters[i + 1][0] if i + 1 < len(delimiters) else len(raw)
                head = _part_headers(raw, line_end, stop, limits)
                problem = (("too_large", "headers", f"part {parts}: header block > "
                            f"{limits.max_header_bytes} bytes") if head is None
                           else _header_block_problem(head, limits, f"part {parts}"))
                if problem:
                    return [problem]
        elif line[:-2] in level:  # a close delimiter
            depth = level[line[:-2]]
            level = {b: d for b, d in level.items() if d < depth}
    if parts > limits.max_parts:
        return [("too_many_parts", "message", f"{parts} parts > limit {limits.max_parts}")]
    if max_depth + rfc822 > _SAFE_PARSE_DEPTH:
        return [("too_many_parts", "message", f"{rfc822} message/rfc822 parts")]
    return []


# What the main process may read itself: guard.accept.decide reads a message of this
# shape in the main process, where a slow read would hold up every other session, and
# sends anything else to a worker, which has a deadline. Within these bounds the parse
# costs at most a few ms whatever the bytes (tests/bench/hostile_headers.py,
# docs/benchmarks.md): lines cost ~0.3 µs each, a part ~0.15 ms, an address ~20 µs, an
# encoded word ~10 µs. The size also bounds the text detectors that run after the parse
# (1-2 µs a byte on text crafted for them).
INLINE_LIMITS = ParseLimits(
    max_message_bytes=16 * 1024, max_parts=8, max_depth=3, max_header_bytes=16 * 1024,
    max_header_fields=100, max_header_field_bytes=4096, max_mime_field_bytes=1024,
    max_mime_field_total=8 * 1024, max_params_per_field=16)
INLINE_MAX_LINES = 2000
INLINE_MAX_ADDRESSES = 100  # "@" in the top header block


def cheap_to_read(raw: bytes) -> bool:
    """Whether parse_message(raw) is known to be cheap enough for the event loop: within
    INLINE_LIMITS, and no attached message (whose own headers the limits do not see)."""
    if len(raw) > INLINE_LIMITS.max_message_bytes or raw.count(b"\n") > INLINE_MAX_LINES:
        return False
    block, _ = headerscan.header_block(raw, INLINE_LIMITS.max_header_bytes)
    if block.count(b"@") > INLINE_MAX_ADDRESSES or b"message/" in raw.lower():
        return False
    return not prescan(raw, INLINE_LIMITS)
