"""The parsed view of one outbound message that detectors read.

`parse_message` turns raw bytes into a `MessageView`: decoded subject, header addresses
(parsed strictly), body texts and the attachments' raw bytes. Attachment text extraction
happens later (guard.inspect.extract), normally in a worker process (guard.inspect.isolate).

Rules that shape this module (docs: pii-and-extraction.md §3, reliability.md §1.6, tests I):
- Never raise for bad input. Anything not inspectable becomes a `problems` entry, so the
  policy can fail closed (hold) instead of the relay dropping or crashing.
- Cheap byte scans (`prescan`) enforce size, header, nesting and part-count limits
  BEFORE the stdlib parse: the stdlib recurses per nesting level (RecursionError at depth
  ~300/1000) and reads headers line by line in Python. Its structured header parser is
  quadratic (gh-136063) and recursive on nested comments, so it is not used at all: the
  MIME fields are kept as their raw values, which the string-based Message methods
  (get_content_type, get_param, get_boundary) read in linear time.
- The parse is for deciding policy only. The relay forwards the original bytes.
"""

from __future__ import annotations

import email.errors
import email.policy
import email.utils
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import Message
from email.parser import BytesParser
from html.parser import HTMLParser

from guard.mail import headerscan
from guard.mail.encodedwords import decode_encoded_words
from guard.mail.mimestash import Base64Stash
from guard.mail.textdecode import decode_declared, decode_header_bytes

Problem = tuple[str, str, str]  # (code, where, detail)


@dataclass(frozen=True)
class Attachment:
    filename: str  # decoded (RFC 2047/2231, raw 8-bit names recovered), "" if none
    content_type: str  # bare type, lower case: "application/pdf"
    data: bytes  # transfer-decoded payload
    where: str  # "attachment:<filename>" (or "part:<n>" if unnamed)
    charset: str = ""  # declared MIME charset, a hint for text attachments


@dataclass(frozen=True)
class TextChunk:
    where: str  # "subject", "body", "attachment:x.docx", "attachment:a.zip/b.csv"
    text: str


@dataclass(frozen=True)
class Table:
    where: str
    rows: list[list[str]]  # first row is usually the header row; capped by limits
    # Rows after `rows` that hold a value but were counted, not read: a big sheet is
    # sampled (guard.inspect.readers.ooxml), and row counts (people lists) must still be true.
    more_rows: int = 0


@dataclass
class MessageView:
    mail_from: str
    rcpt_tos: list[str]
    subject: str = ""
    from_addrs: list[str] = field(default_factory=list)
    to_addrs: list[str] = field(default_factory=list)
    cc_addrs: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    header_problems: list[str] = field(default_factory=list)
    # long texts come as consecutive chunks with the same where (see split_text)
    texts: list[TextChunk] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    # (code, where, detail): "encrypted", "too_deep", "too_many_parts", "too_large",
    # "parse_error", "bomb", "timeout", "unknown_binary", "worker_died", "no_text"
    problems: list[Problem] = field(default_factory=list)
    # (where, filename) of files inside archives, including encrypted ones
    inner_names: list[tuple[str, str]] = field(default_factory=list)


TEXT_CHUNK_CHARS = 1_000_000


def split_text(text: str, limit: int = TEXT_CHUNK_CHARS) -> list[str]:
    """Cut a long text into pieces of at most `limit` characters, at line ends where
    possible. Long texts (a 20 MB CSV) then reach detectors as several consecutive
    TextChunks with the same `where`; moving one huge str between processes or joining
    it would hold the GIL long enough to stall the event loop."""
    if len(text) <= limit:
        return [text]
    out: list[str] = []
    start = 0
    while len(text) - start > limit:
        cut = text.rfind("\n", start + limit // 2, start + limit)
        cut = cut + 1 if cut >= 0 else start + limit
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return out


def split_pieces(pieces: Iterable[str], limit: int = TEXT_CHUNK_CHARS) -> list[str]:
    """split_text("".join(pieces)), without building the whole text first: the same
    chunks (each cut depends only on the next `limit` characters), one copy less."""
    out: list[str] = []
    pending: list[str] = []
    size = 0
    for piece in pieces:
        pending.append(piece)
        size += len(piece)
        if size > limit:
            chunks = split_text("".join(pending), limit)
            out.extend(chunks[:-1])
            pending, size = [chunks[-1]], len(chunks[-1])
    out.append("".join(pending))
    return out


# Comments in a header field nested deeper than this are malformed: the stdlib parsers
# recurse per level, and stripping comments innermost first costs a pass per level.
MAX_COMMENT_NESTING = 20


@dataclass(frozen=True)
class ParseLimits:
    """Defaults from pii-and-extraction.md §6."""

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


# Upper bound on parser recursion we let the stdlib attempt (multipart depth plus
# message/rfc822 parts); depth 100 is known to be fine on 3.11.
_SAFE_PARSE_DEPTH = 100


class _RawValueHeader:
    """Header class whose str() is the field's (unfolded) value, as written."""

    max_count = None

    @classmethod
    def parse(cls, value: str, kwds: dict[str, object]) -> None:
        kwds["decoded"] = value
        kwds["parse_tree"] = None


class _UnparsableHeader(_RawValueHeader):
    @classmethod
    def parse(cls, value: str, kwds: dict[str, object]) -> None:
        super().parse(value, kwds)
        kwds["defects"] = [email.errors.InvalidHeaderDefect("unparsable header value")]


# Read by the parse (get_content_type, get_param, get_boundary, the transfer decoding),
# all of which split str(header) themselves: the structured header object would only
# add the quadratic value parser (a 4 KB Content-Type of 400 parameters: 65 ms, with
# comments "(a)(a)…": 550 ms; as a raw value: 3 ms and 1 ms).
_RAW_FIELDS = frozenset({"content-type", "content-disposition", "content-transfer-encoding"})


class _SafeHeaderRegistry(HeaderRegistry):
    """policy.default's registry, with two changes. The MIME fields above are kept as
    their raw values. And a header value it cannot parse does not abort the whole parse:
    found here, a `name*=ISO-2022-JP''…` holding an NEC character (①) raised
    UnicodeDecodeError from inside BytesParser on 3.11, which made ordinary Japanese
    mail unparsable (the message code only needs str() of those headers)."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[type, type] = {}

    def __call__(self, name: str, value: str) -> BaseHeader:
        if name.lower() in _RAW_FIELDS:
            return self._as(_RawValueHeader, name, value)
        try:
            return super().__call__(name, value)
        except Exception:
            return self._as(_UnparsableHeader, name, value)

    def _as(self, kind: type, name: str, value: str) -> BaseHeader:
        cls = self._classes.get(kind)
        if cls is None:  # (the stdlib makes a new class per header; one is enough)
            cls = self._classes[kind] = type(kind.__name__, (kind, self.base_class), {})
        return cls(name, value)


# policy.default semantics (RFC 2231 in get_param, 8-bit bytes kept), the registry above
_PARSER_POLICY = email.policy.default.clone(header_factory=_SafeHeaderRegistry())
PARSER_POLICY = _PARSER_POLICY  # the review page's preview parses with it too

# --- cheap pre-parse scans -------------------------------------------------------
# Every pattern starts with a literal so the regex engine can skip ahead quickly
# (an "(?:^|[\r\n])" prefix made these scans ~80x slower on a 30 MB message). Matches
# are then checked to start a line. Case-insensitive ones run over a lower-cased copy.

_BOUNDARY_RE = re.compile(rb"boundary")
_BOUNDARY_VALUE_RE = re.compile(rb'boundary\*?\s*=\s*(?:"([^"\r\n]*)"|([^\s;"]+))', re.I)
_DASH_LINE_RE = re.compile(rb"--([^\r\n]*)")
_MIME_FIELD_RE = re.compile(rb"content-(?:type|disposition|transfer-encoding)[ \t]*:")
_RFC822_RE = re.compile(rb"content-type[ \t]*:\s*message/rfc822")
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


def prescan(raw: bytes, limits: ParseLimits = ParseLimits()) -> list[Problem]:
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

    # The MIME fields, which the parse reads over and over
    total = 0
    for m in _MIME_FIELD_RE.finditer(low):
        if not _at_line_start(low, m.start()):
            continue
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
    rfc822 = sum(1 for m in _RFC822_RE.finditer(low) if _at_line_start(low, m.start()))
    if max_depth + rfc822 > _SAFE_PARSE_DEPTH:
        return [("too_many_parts", "message", f"{rfc822} message/rfc822 parts")]
    return []


# --- what the main process may read itself ---------------------------------------
# guard.accept.decide reads a message of this shape in the main process, where a slow read
# would hold up every other session, and sends anything else to a worker, which has
# a deadline. Within these bounds the parse costs at most a few ms whatever the bytes
# (tests/bench/hostile_headers.py, docs/benchmarks.md): lines cost ~0.3 µs each, a
# part ~0.15 ms, an address ~20 µs, an encoded word ~10 µs. The size also bounds the
# text detectors that run after the parse (1-2 µs a byte on text crafted for them).
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


# --- headers ---------------------------------------------------------------------

_FOLD_RE = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")


def unfold(value: str) -> str:
    """A header value with its folds taken out (RFC 5322 2.2.3)."""
    return _FOLD_RE.sub("", value)


_SURROGATE_RE = re.compile("[\udc80-\udcff]")


def _has_surrogates(value: str) -> bool:
    # raw 8-bit header bytes arrive as lone surrogates (surrogateescape)
    return _SURROGATE_RE.search(value) is not None


def _raw_to_text(value: str) -> str:
    """A raw header value; 8-bit bytes (non-MIME Shift_JIS/UTF-8) recovered."""
    if _has_surrogates(value):
        value = decode_header_bytes(value.encode("utf-8", "surrogateescape"))
    return value


def decode_subject(raw_value: str) -> str:
    return decode_encoded_words(_raw_to_text(unfold(raw_value))).strip()


_ADDR_LOCAL = r'(?:[^\s"(),.:;<>@\[\]\\]+(?:\.[^\s"(),.:;<>@\[\]\\]+)*|"(?:[^"\\\r\n]|\\.)*")'
_ADDR_DOMAIN = r"[^\s\"(),.:;<>@\[\]\\]+(?:\.[^\s\"(),.:;<>@\[\]\\]+)*"
_ADDR_SPEC_RE = re.compile(f"{_ADDR_LOCAL}@{_ADDR_DOMAIN}")
_COMMENT_RE = re.compile(r"\((?:[^()\\]|\\.)*\)")


def _strip_comments(text: str) -> str:
    prev = None
    while prev != text and "(" in text:  # nested comments: innermost first
        prev, text = text, _COMMENT_RE.sub(" ", text)
    return text


def split_address_list(value: str) -> list[str] | None:
    """Split an address-list at top-level commas, honouring quotes, comments, angle
    brackets and groups. Returns None when the structure is malformed (unbalanced
    parentheses or brackets, ';' outside a group, a stray ')' or '>' — the shapes behind
    CVE-2023-27043 — or comments nested deeper than MAX_COMMENT_NESTING), so that
    nothing is guessed."""
    segments: list[str] = []
    cur: list[str] = []
    in_quote = False
    comment = 0
    in_angle = False
    in_group = False
    escaped = False
    for ch in value:
        if escaped:
            cur.append(ch)
            escaped = False
            continue
        if ch == "\\" and (in_quote or comment):
            cur.append(ch)
            escaped = True
            continue
        if in_quote:
            cur.append(ch)
            if ch == '"':
                in_quote = False
            continue
        if ch == "(":
            comment += 1
            if comment > MAX_COMMENT_NESTING:  # no mail client writes this; recursion
                return None                     # and quadratic work in what follows
        elif ch == ")":
            if comment == 0:
                return None
            comment -= 1
        if comment or ch in "()":
            cur.append(ch)
            continue
        if ch == '"':
            in_quote = True
        elif ch == "<":
            if in_angle:
                return None
            in_angle = True
        elif ch == ">":
            if not in_angle:
                return None
            in_angle = False
        elif in_angle:
            if ch in ",:;":  # obsolete source routes are not accepted
                return None
        elif ch == ",":
            segments.append("".join(cur))
            cur = []
            continue
        elif ch == ":":
            if in_group:
                return None
            in_group = True
            cur = []  # the group's display name
            continue
        elif ch == ";":
            if not in_group:
                return None  # "a@x; b@y" as typed into Outlook
            in_group = False
            segments.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if in_quote or comment or in_angle or in_group:
        return None
    segments.append("".join(cur))
    return [s for s in segments if s.strip()]


def mailbox_addr(segment: str) -> str | None:
    """The addr-spec of one mailbox, or None if it is not exactly one well-formed one.
    Cross-checked against email.utils.parseaddr: any disagreement is malformed."""
    stripped = _strip_comments(segment)
    if "<" in stripped:
        before, _, rest = stripped.partition("<")
        inner, _, after = rest.partition(">")
        if after.strip():
            return None
        addr = inner.strip()
        # an unquoted '@' in the display name is the "alice@x<bob@y>" confusion shape;
        # "bob@y <bob@y>" (some MUAs) is not ambiguous
        display = re.sub(r'"(?:[^"\\]|\\.)*"', "", before).strip()
        if "@" in display and display.lower() != addr.lower():
            return None
    else:
        addr = stripped.strip()
    if not _ADDR_SPEC_RE.fullmatch(addr):
        return None
    _name, parsed = email.utils.parseaddr(segment)
    if parsed != addr:
        return None
    return addr


def parse_address_header(
    name: str, values: list[str], max_addresses: int
) -> tuple[list[str], list[str]]:
    """Strictly parse all values of one address header. Returns (addresses, problems)."""
    addrs: list[str] = []
    problems: list[str] = []
    for raw in values:
        value = unfold(raw)
        if _has_surrogates(value):
            # SMTPUTF8 addresses or 8-bit display names
            value = decode_header_bytes(value.encode("utf-8", "surrogateescape"))
        if "\r" in value or "\n" in value or "\x00" in value:
            problems.append(f"malformed address in {name}")
            continue
        segments = split_address_list(value)
        if segments is None:
            problems.append(f"malformed address in {name}")
            continue
        for seg in segments:
            if len(addrs) >= max_addresses:
                problems.append(f"too many addresses in {name}")
                break
            addr = mailbox_addr(seg)
            if addr is None:
                problems.append(f"malformed address in {name}")
                break
            addrs.append(addr)
    return addrs, list(dict.fromkeys(problems))


_ADDRESS_HEADERS = (("from", "From"), ("to", "To"), ("cc", "Cc"), ("reply-to", "Reply-To"))


def _read_headers(msg: Message, view: MessageView, limits: ParseLimits,
                  prefix: str = "") -> None:
    values: dict[str, list[str]] = {}
    for key, value in msg.raw_items():
        values.setdefault(key.lower(), []).append(str(value))
    _read_header_values(values, view, limits, prefix)


def _read_header_values(values: dict[str, list[str]], view: MessageView,
                        limits: ParseLimits, prefix: str = "") -> None:
    """Subject and addresses from raw field values (lower-case names)."""
    subjects = values.get("subject", [])
    subject = decode_subject(subjects[0]) if subjects else ""
    if prefix:
        if subject:
            view.texts.append(TextChunk(prefix, subject))
        return
    view.subject = subject
    view.texts.append(TextChunk("subject", subject))
    for key, label in _ADDRESS_HEADERS:
        addrs, problems = parse_address_header(
            label, values.get(key, []), limits.max_addresses_per_header)
        view.header_problems.extend(problems)
        target = {"from": view.from_addrs, "to": view.to_addrs, "cc": view.cc_addrs,
                  "reply-to": view.reply_to}[key]
        target.extend(addrs)


_READ_FIELDS = (b"subject", b"from", b"to", b"cc", b"reply-to")


def read_header_fields(raw: bytes, names: tuple[bytes, ...], limits: ParseLimits
                       ) -> dict[str, list[str]]:
    """Raw values of the top header block's fields called `names`, without a parse (8-bit
    bytes as surrogate escapes, as the parser gives them), from a block of at most
    max_header_bytes; of each name one field more than max_addresses_per_header (so
    that parse_address_header sees the excess), of each value max_header_field_bytes
    (a longer address field then ends malformed)."""
    block, _ = headerscan.header_block(raw, limits.max_header_bytes)
    found = headerscan.field_values(block, names,
                                    max_fields=limits.max_addresses_per_header + 1,
                                    max_value_bytes=limits.max_header_field_bytes)
    return {name.decode(): [v.decode("ascii", "surrogateescape") for v in values]
            for name, values in found.items()}


def _read_headers_only(raw: bytes, view: MessageView, limits: ParseLimits) -> None:
    """Subject and addresses from the top header block alone, for a message that is not
    parsed: read by headerscan, in linear time whatever the block holds."""
    try:
        _read_header_values(read_header_fields(raw, _READ_FIELDS, limits), view, limits)
    except Exception as e:  # a broken header block: nothing more to read
        view.problems.append(("parse_error", "headers", _describe(e)))


# --- parameters and filenames ----------------------------------------------------

_RAW_PARAM_RE = {
    name: re.compile(
        rb"(?:^|;)\s*" + name.encode() + rb'\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', re.I)
    for name in ("filename", "name")
}


def _raw_header(part: Message, name: str) -> str | None:
    for key, value in part.raw_items():
        if key.lower() == name:
            return str(value)
    return None


def _param_from_raw(raw_value: str, param: str) -> str:
    value = unfold(raw_value)
    if _has_surrogates(value):
        # raw 8-bit bytes in the header (old MUAs): recover from the bytes themselves
        m = _RAW_PARAM_RE[param].search(value.encode("utf-8", "surrogateescape"))
        if not m:
            return ""
        found = m.group(1) if m.group(1) is not None else m.group(2)
        return decode_encoded_words(decode_header_bytes(found)).strip()
    # compat32 Message gives us RFC 2231 (charset, language, latin-1 text) tuples and
    # joins continuations; we decode the bytes with our own charset map.
    holder = Message()
    holder["X"] = value
    got = holder.get_param(param, header="x")
    if got is None:
        return ""
    if isinstance(got, tuple):
        charset, _lang, text = got
        data = str(text).encode("latin-1", "replace")
        return decode_declared(data, charset or "utf-8").strip()
    return decode_encoded_words(email.utils.unquote(str(got))).strip()


def part_filename(part: Message) -> str:
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        raw = _raw_header(part, header)
        if raw is not None:
            name = _param_from_raw(raw, param)
            if name:
                return name
    return ""


# --- bodies ----------------------------------------------------------------------

class _HTMLText(HTMLParser):
    _SKIP = frozenset({"script", "style", "template"})
    _BLOCK = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6",
                        "table", "ul", "ol", "blockquote", "pre", "hr", "section"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK:
            self.out.append("\n")
        elif tag in ("td", "th"):
            self.out.append("\t")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(data)


def html_to_text(html: str) -> str:
    parser = _HTMLText()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient; keep whatever was read
        pass
    return re.sub(r"\n{3,}", "\n\n", "".join(parser.out))


_PAYLOAD_DEFECTS = (
    "InvalidBase64CharactersDefect",
    "InvalidBase64PaddingDefect",
    "InvalidBase64LengthDefect",
    "StartBoundaryNotFoundDefect",
    "MultipartInvariantViolationDefect",
    "NoBoundaryInMultipartDefect",
    "MisplacedEnvelopeHeaderDefect",
)


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:300]


def _defect_problems(part: Message, where: str) -> list[Problem]:
    """Defects that mean content may have been lost or misread. A missing closing
    boundary is not one of them: the last part is still read in full."""
    names = {type(d).__name__ for d in getattr(part, "defects", [])}
    return [("parse_error", where, d) for d in _PAYLOAD_DEFECTS if d in names]


# --- the walk --------------------------------------------------------------------

class _Walk:
    """Iterative walk over the parsed tree (no recursion of our own)."""

    def __init__(self, view: MessageView, limits: ParseLimits, stash: Base64Stash) -> None:
        self.view = view
        self.limits = limits
        self.stash = stash
        self.leaves = 0
        self.text_chars = 0
        self.stopped = False

    def add_text(self, where: str, text: str) -> None:
        room = self.limits.max_total_text_chars - self.text_chars
        cap = min(self.limits.max_text_chars, room)
        if len(text) > cap:
            self.view.problems.append(
                ("too_large", where, f"text truncated at {cap} characters"))
            text = text[: max(cap, 0)]
        if text:
            self.text_chars += len(text)
            self.view.texts.extend(TextChunk(where, t) for t in split_text(text))

    def run(self, root: Message, prefix: str = "") -> None:
        # (part, multipart depth, rfc822 depth, where prefix of the enclosing message)
        stack: list[tuple[Message, int, int, str]] = [(root, 0, 0, prefix)]
        while stack and not self.stopped:
            part, depth, rdepth, pre = stack.pop()
            try:
                self._visit(part, depth, rdepth, pre, stack)
            except RecursionError:
                self.view.problems.append(("too_deep", pre or "message", "recursion"))
            except Exception as e:  # one bad part must not lose the rest
                self.view.problems.append(("parse_error", pre or "message", _describe(e)))

    def _where(self, pre: str, filename: str, n: int) -> str:
        leaf = filename if filename else f"part:{n}"
        if pre:
            return f"{pre}/{leaf}"
        return f"attachment:{filename}" if filename else leaf

    def _visit(self, part: Message, depth: int, rdepth: int, pre: str,
               stack: list[tuple[Message, int, int, str]]) -> None:
        ctype = part.get_content_type()
        if part.is_multipart():
            children = part.get_payload()
            if not isinstance(children, list):
                return
            if ctype == "message/rfc822" and children and isinstance(children[0], Message):
                self.leaves += 1
                where = self._where(pre, part_filename(part) or "", self.leaves)
                if rdepth + 1 > self.limits.max_rfc822_depth:
                    self.view.problems.append(
                        ("too_deep", where, f"message/rfc822 nesting > "
                                            f"{self.limits.max_rfc822_depth}"))
                    return
                sub = children[0]
                _read_headers(sub, self.view, self.limits, prefix=where)
                stack.append((sub, depth + 1, rdepth + 1, where))
                return
            if depth + 1 > self.limits.max_depth:
                self.view.problems.append(
                    ("too_deep", pre or "message", f"multipart nesting > {self.limits.max_depth}"))
                return
            self.view.problems.extend(_defect_problems(part, pre or "message"))
            for child in reversed(children):
                if isinstance(child, Message):
                    stack.append((child, depth + 1, rdepth, pre))
            return

        self.leaves += 1
        if self.leaves > self.limits.max_parts:
            self.view.problems.append(
                ("too_many_parts", pre or "message", f"> {self.limits.max_parts} parts"))
            self.stopped = True
            return
        filename = part_filename(part)
        where = self._where(pre, filename, self.leaves)
        self.stash.restore(part)
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        self.view.problems.extend(_defect_problems(part, where))
        charset = part.get_content_charset() or ""
        disposition = part.get_content_disposition()
        if ctype in ("text/plain", "text/html") and not filename and disposition != "attachment":
            body_where = pre or "body"
            text = decode_declared(data, charset)
            if ctype == "text/html":
                text = html_to_text(text)
            self.add_text(body_where, text)
            return
        self.view.attachments.append(
            Attachment(filename=filename, content_type=ctype, data=data, where=where,
                       charset=charset))


def parse_message(
    raw: bytes,
    mail_from: str,
    rcpt_tos: list[str],
    limits: ParseLimits = ParseLimits(),
) -> MessageView:
    """Parse raw message bytes into a MessageView. Never raises for bad input."""
    view = MessageView(mail_from=mail_from, rcpt_tos=list(rcpt_tos))
    parse_into(raw, view, limits)
    return view


def parse_into(raw: bytes, view: MessageView, limits: ParseLimits, prefix: str = "") -> None:
    """Parse `raw` and add what it holds to `view`. With a prefix (a nested .eml found by
    extraction), its subject and bodies are texts at `prefix` and its attachments live
    under `prefix/…`; its header addresses are not the outer message's and are ignored."""
    where = prefix or "message"
    try:
        problems = prescan(raw, limits)
        if problems:
            view.problems.extend((c, prefix or w, d) for c, w, d in problems)
            if not prefix:
                _read_headers_only(raw, view, limits)
            return
        stash = Base64Stash()
        try:
            msg = BytesParser(policy=_PARSER_POLICY).parsebytes(stash.stash(raw))
        except RecursionError:
            view.problems.append(("too_deep", where, "parser recursion limit"))
            if not prefix:
                _read_headers_only(raw, view, limits)
            return
        _read_headers(msg, view, limits, prefix=prefix)
        _Walk(view, limits, stash).run(msg, prefix)
    except Exception as e:  # the contract: never raise, record and fail closed
        view.problems.append(("parse_error", where, _describe(e)))
