"""The parsed view of one outbound message that detectors read.

`parse_message` turns raw bytes into a `MessageView`: decoded subject, header addresses
(parsed strictly), body texts and the attachments' raw bytes. Attachment text extraction
happens later (guard.inspect.extract), normally in a worker process (guard.inspect.isolate).

Rules that shape this module (docs: pii-and-extraction.md §3, reliability.md §1.6, tests I):
- Never raise for bad input. Anything not inspectable becomes a `problems` entry, so the
  policy can fail closed (hold) instead of the relay dropping or crashing.
- Cheap byte scans enforce size, nesting and part-count limits BEFORE the stdlib parse:
  the stdlib recurses per nesting level (RecursionError at depth ~300/1000) and its header
  value parser is quadratic (gh-136063) and recursive on nested comments.
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

from guard.inspect.textdecode import (
    decode_declared,
    decode_encoded_words,
    decode_header_bytes,
)
from guard.mimestash import Base64Stash

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
    # sampled (guard.inspect.ooxml), and row counts (people lists) must still be true.
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


@dataclass(frozen=True)
class ParseLimits:
    """Defaults from pii-and-extraction.md §6."""

    max_message_bytes: int = 50 * 1024 * 1024
    max_parts: int = 500
    max_depth: int = 20  # multipart nesting
    max_rfc822_depth: int = 5  # message/rfc822 inside message/rfc822 ...
    max_header_bytes: int = 256 * 1024  # the top-level header block
    # One Content-Type/-Disposition/-Transfer-Encoding field. The stdlib value parser is
    # quadratic: a 100 KB field took 5.4 s, 4 KB takes ~10 ms.
    max_mime_field_bytes: int = 4096
    max_mime_field_total: int = 512 * 1024
    max_comment_nesting: int = 20  # "((((" recursion in the stdlib value parser
    max_addresses_per_header: int = 1000
    max_text_chars: int = 20_000_000  # per body part
    max_total_text_chars: int = 50_000_000  # per message


# Upper bound on parser recursion we let the stdlib attempt (multipart depth plus
# message/rfc822 parts); depth 100 is known to be fine on 3.11.
_SAFE_PARSE_DEPTH = 100



class _RawValueHeader:
    """Header class for values the stdlib header parser raises on: str() is the value."""

    max_count = None

    @classmethod
    def parse(cls, value: str, kwds: dict[str, object]) -> None:
        kwds["decoded"] = value
        kwds["parse_tree"] = None
        kwds["defects"] = [email.errors.InvalidHeaderDefect("unparsable header value")]


class _SafeHeaderRegistry(HeaderRegistry):
    """policy.default's registry, except that a header value it cannot parse does not
    abort the whole parse. Found here: a Content-Type `name*=ISO-2022-JP''…` holding an
    NEC character (①) raises UnicodeDecodeError from inside BytesParser on 3.11, which
    would make ordinary Japanese mail unparsable. The message code only needs str() of
    these headers (get_content_type, get_param, get_boundary all re-split the string)."""

    def __call__(self, name: str, value: str) -> BaseHeader:
        try:
            return super().__call__(name, value)
        except Exception:
            cls = type("_RawValueHeader", (_RawValueHeader, self.base_class), {})
            return cls(name, value)  # type: ignore[no-any-return]


# policy.default semantics (decoded headers, RFC 2231), with the registry above
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
_FIELD_END_RE = re.compile(rb"(?:\r\n|\r|\n)(?![ \t])")
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


def _prescan(raw: bytes, limits: ParseLimits) -> list[Problem]:
    """Byte-level checks that make the stdlib parse safe and bounded. Any problem found
    here means we do not attempt the full parse (headers are still read)."""
    if len(raw) > limits.max_message_bytes:
        return [("too_large", "message",
                 f"{len(raw)} bytes > limit {limits.max_message_bytes}")]
    low = raw.lower()

    # MIME fields the parser will turn into header objects (quadratic, recursive)
    total = 0
    for m in _MIME_FIELD_RE.finditer(low):
        if not _at_line_start(low, m.start()):
            continue
        end_m = _FIELD_END_RE.search(raw, m.end())
        end = end_m.start() if end_m else len(raw)
        size = end - m.start()
        total += size
        if size > limits.max_mime_field_bytes:
            return [("too_large", "headers",
                     f"MIME header field of {size} bytes > {limits.max_mime_field_bytes}")]
        if b"(" in raw[m.end():end] and (
            _max_paren_depth(raw[m.end():end]) > limits.max_comment_nesting
        ):
            return [("parse_error", "headers", "MIME header comments nested too deep")]
    if total > limits.max_mime_field_total:
        return [("too_large", "headers", f"{total} bytes of MIME header fields")]

    # Multipart nesting and part count from boundary delimiter lines
    boundaries: set[bytes] = set()
    for m in _BOUNDARY_RE.finditer(low):
        vm = _BOUNDARY_VALUE_RE.match(raw, m.start())
        if vm:
            value = (vm.group(1) if vm.group(1) is not None else vm.group(2)).rstrip()
            if value:
                boundaries.add(value)
    stack: list[bytes] = []
    max_depth = 0
    parts = 0
    if boundaries:
        for m in _DASH_LINE_RE.finditer(raw):
            if not _at_line_start(raw, m.start()):
                continue
            line = m.group(1).rstrip(b" \t")
            if line in boundaries:
                parts += 1
                if line in stack:
                    del stack[stack.index(line) + 1 :]
                else:
                    stack.append(line)
                    max_depth = max(max_depth, len(stack))
            elif line.endswith(b"--") and line[:-2] in boundaries:
                if line[:-2] in stack:
                    del stack[stack.index(line[:-2]) :]
    if max_depth > limits.max_depth:
        return [("too_deep", "message",
                 f"multipart nesting {max_depth} > limit {limits.max_depth}")]
    if parts > limits.max_parts:
        return [("too_many_parts", "message", f"{parts} parts > limit {limits.max_parts}")]
    rfc822 = sum(1 for m in _RFC822_RE.finditer(low) if _at_line_start(low, m.start()))
    if max_depth + rfc822 > _SAFE_PARSE_DEPTH:
        return [("too_many_parts", "message", f"{rfc822} message/rfc822 parts")]
    return []


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
    CVE-2023-27043), so that nothing is guessed."""
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


def _read_headers_only(raw: bytes, view: MessageView, limits: ParseLimits) -> None:
    """Subject and addresses from the top header block alone, capped in size."""
    m = _HEADER_END_RE.search(raw, 0, limits.max_header_bytes + 4)
    if m is None:
        block = raw[: limits.max_header_bytes]
        cut = max(block.rfind(b"\n"), block.rfind(b"\r"))
        block = block[: cut + 1] if cut > 0 else block
    else:
        block = raw[: m.end()]
    try:
        # compat32 here on purpose: we only need raw (name, value) pairs, and even a
        # headers-only parse under policy.default builds a Content-Type header object
        # (the quadratic parser this fallback exists to avoid)
        msg = BytesParser(policy=email.policy.compat32).parsebytes(block, headersonly=True)
        _read_headers(msg, view, limits)
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
        problems = _prescan(raw, limits)
        if not prefix:
            header_end = _HEADER_END_RE.search(raw, 0, limits.max_header_bytes + 4)
            if header_end is None and len(raw) > limits.max_header_bytes:
                problems.append(("too_large", "headers",
                                 f"header block > {limits.max_header_bytes} bytes"))
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
