"""The parse: the raw bytes of one outbound message → the MessageView detectors read.

`parse_message` turns raw bytes into a `MessageView` (guard.mail.view): decoded subject,
header addresses (parsed strictly), body texts and the attachments' raw bytes. Attachment
text extraction happens later (guard.inspect.extract), normally in a worker process
(guard.inspect.isolate).

Rules that shape the parse:
- Never raise for bad input. Anything not inspectable becomes a `problems` entry, so the
  policy can fail closed (hold) instead of the relay dropping or crashing.
- The limits first: byte scans (guard.mail.limits.prescan) bound size, headers, nesting
  and part count BEFORE the stdlib parse, which recurses per nesting level and reads
  headers line by line in Python. Beyond them only the top header block is read.
- No structured header parser: it is quadratic (gh-136063) and recursive on nested
  comments. The MIME fields are kept as their raw values, which the string-based Message
  methods (get_content_type, get_param, get_boundary) read in linear time.
- The parse is for deciding policy only. The relay forwards the original bytes.

Other rooms take the parsed message's names from here (`__all__`): the view's types, the
limits, the header readers (guard.mail.headers) and a part's name and text
(guard.mail.parts) come along with the parse.
"""

from __future__ import annotations

import email.errors
import email.policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import Message
from email.parser import BytesParser

from guard.mail.flowed import unflow
from guard.mail.headers import (
    decode_subject,
    mailbox_addr,
    parse_address_header,
    read_header_fields,
    split_address_list,
    unfold,
)
from guard.mail.limits import (
    DEFAULT_LIMITS,
    INLINE_LIMITS,
    MAX_COMMENT_NESTING,
    ParseLimits,
    cheap_to_read,
    prescan,
)
from guard.mail.mimestash import Base64Stash
from guard.mail.parts import defect_problems, html_to_text, part_filename
from guard.mail.textdecode import decode_declared
from guard.mail.view import (
    SHAPE_FIELDS,
    SHAPE_VALUE_MAX,
    TEXT_CHUNK_CHARS,
    Attachment,
    MessageView,
    Problem,
    Table,
    TextChunk,
    split_pieces,
    split_text,
)

__all__ = [
    "INLINE_LIMITS", "MAX_COMMENT_NESTING", "PARSER_POLICY", "TEXT_CHUNK_CHARS", "Attachment",
    "MessageView", "ParseLimits", "Problem", "Table", "TextChunk", "cheap_to_read",
    "decode_subject", "html_to_text", "mailbox_addr", "parse_address_header", "parse_into",
    "parse_message", "part_filename", "prescan", "read_header_fields", "split_address_list",
    "split_pieces", "split_text", "unfold",
]


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
    for key in SHAPE_FIELDS:
        if values.get(key):
            view.header_fields[key] = " ".join(values[key][0].split())[:SHAPE_VALUE_MAX]
    for key, label in _ADDRESS_HEADERS:
        addrs, problems = parse_address_header(
            label, values.get(key, []), limits.max_addresses_per_header)
        view.header_problems.extend(problems)
        target = {"from": view.from_addrs, "to": view.to_addrs, "cc": view.cc_addrs,
                  "reply-to": view.reply_to}[key]
        target.extend(addrs)


_READ_FIELDS = (b"subject", b"from", b"to", b"cc", b"reply-to",
                *(f.encode() for f in SHAPE_FIELDS))


def _read_headers_only(raw: bytes, view: MessageView, limits: ParseLimits) -> None:
    """Subject and addresses from the top header block alone, for a message that is not
    parsed: read by headerscan, in linear time whatever the block holds."""
    try:
        _read_header_values(read_header_fields(raw, _READ_FIELDS, limits), view, limits)
    except Exception as e:  # a broken header block: nothing more to read
        view.problems.append(("parse_error", "headers", _describe(e)))


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:300]


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
            self.view.problems.extend(defect_problems(part, pre or "message"))
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
        self.view.problems.extend(defect_problems(part, where))
        charset = part.get_content_charset() or ""
        disposition = part.get_content_disposition()
        if ctype in ("text/plain", "text/html") and not filename and disposition != "attachment":
            body_where = pre or "body"
            text = decode_declared(data, charset)
            if ctype == "text/html":
                text = html_to_text(text)
            elif str(part.get_param("format", "")).lower() == "flowed":
                delsp = str(part.get_param("delsp", "")).lower() == "yes"
                text = unflow(text, delsp)
            self.add_text(body_where, text)
            return
        self.view.attachments.append(
            Attachment(filename=filename, content_type=ctype, data=data, where=where,
                       charset=charset))


def _parse(raw: bytes, stash: Base64Stash) -> Message:
    """The stdlib parse of `raw`, the lines it need not read one by one stashed."""
    parser = BytesParser(policy=_PARSER_POLICY)
    whole = stash.stash_body(raw)
    if whole is not None:
        msg = parser.parsebytes(whole)
        if stash.body_was_read_whole(msg):
            return msg
        stash.clear()  # the parser read the body as parts: parse it in full
    return parser.parsebytes(stash.stash(raw))


def parse_message(
    raw: bytes,
    mail_from: str,
    rcpt_tos: list[str],
    limits: ParseLimits = DEFAULT_LIMITS,
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
            msg = _parse(raw, stash)
        except RecursionError:
            view.problems.append(("too_deep", where, "parser recursion limit"))
            if not prefix:
                _read_headers_only(raw, view, limits)
            return
        _read_headers(msg, view, limits, prefix=prefix)
        _Walk(view, limits, stash).run(msg, prefix)
    except Exception as e:  # the contract: never raise, record and fail closed
        view.problems.append(("parse_error", where, _describe(e)))
