"""Header values as text: unfolding, the subject, and strict address lists.

The addresses are read by a hand-written splitter cross-checked against
email.utils.parseaddr: any disagreement, quote, bracket or comment out of place makes the
field malformed rather than guessed (the shapes behind CVE-2023-27043). The stdlib's
structured header parser is not used: it is quadratic on hostile fields (gh-136063).
"""

from __future__ import annotations

import email.utils
import re

from guard.mail import headerscan
from guard.mail.encodedwords import decode_encoded_words
from guard.mail.limits import MAX_COMMENT_NESTING, ParseLimits
from guard.mail.textdecode import decode_header_bytes

_FOLD_RE = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")


def unfold(value: str) -> str:
    """A header value with its folds taken out (RFC 5322 2.2.3)."""
    return _FOLD_RE.sub("", value)


_SURROGATE_RE = re.compile("[\udc80-\udcff]")


def has_surrogates(value: str) -> bool:
    # raw 8-bit header bytes arrive as lone surrogates (surrogateescape)
    return _SURROGATE_RE.search(value) is not None


def raw_to_text(value: str) -> str:
    """A raw header value; 8-bit bytes (non-MIME Shift_JIS/UTF-8) recovered."""
    if has_surrogates(value):
        value = decode_header_bytes(value.encode("utf-8", "surrogateescape"))
    return value


def decode_subject(raw_value: str) -> str:
    return decode_encoded_words(raw_to_text(unfold(raw_value))).strip()


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
        if has_surrogates(value):
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
