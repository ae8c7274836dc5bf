"""Whose mail this is: the envelope sender and the From:/Sender: mailboxes must be
addresses of the user who sent it (smtp.sender_identity, smtp.trusted_sender_identity).

On an AUTH listener the user is the login; on a trusted listener it is named by a
header the office MTA sets (smtp.trusted_identity_header): a header such as
X-Authenticated-User, or "Received" for the "(Authenticated sender: NAME)" that Postfix
(smtpd_sasl_authenticated_header) puts into its own, topmost, Received: line.

The header is read with a bounded reader: the header section up to 256 KiB, From and
Sender fields up to 8 KiB each, parsed by the strict address reader of guard.mail.headers
(no MIME parse on the event loop). The address is what counts; a display name or comment
that shows another address ("ceo@example.co.jp" <alice@…>) is refused as well, since
that is what a reader sees.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from typing import Literal

from guard.mail.addresses import address_key
from guard.mail.encodedwords import decode_encoded_words
from guard.mail.headers import parse_address_header, unfold
from guard.mail.rewrite import field_name, split_fields
from guard.mail.textdecode import decode_header_bytes
from guard.users import User, UserDirectory

IdentityMode = Literal["enforce", "envelope", "off"]

MAX_HEADER_BYTES = 256 * 1024
MAX_FIELD_BYTES = 8192
MAX_FIELDS = 20  # From and Sender fields looked at, each
MAX_MAILBOXES = 100

_AUTHENTICATED_SENDER = re.compile(r"\(Authenticated sender:\s*([^\s()]+)\s*\)", re.I)
# something a reader takes for an address, in a decoded display name or comment
_ATOM = r"[^\s<>()\[\]\\,;:\"'@]"
_SHOWN_ADDRESS = re.compile(rf"{_ATOM}+@{_ATOM}+\.{_ATOM}+")


def owns(user: User, address: str) -> bool:
    """True when `address` is one of the user's addresses or aliases."""
    if not address:
        return False
    key = address_key(address)
    return any(address_key(a) == key for a in user.identities)


def _shown(text: str) -> str:
    """A value fit for an SMTP reply: ASCII, one line, bounded."""
    clean = text.encode("ascii", "backslashreplace").decode("ascii")
    clean = "".join(c if " " <= c <= "~" else "?" for c in clean)
    return clean[:200]


def header_fields(data: bytes, names: Collection[bytes],
                  limit: int = MAX_HEADER_BYTES) -> dict[bytes, list[bytes]] | None:
    """The raw values of the wanted fields of the top header section; None when the
    header section is longer than `limit` (it cannot be read within the bound)."""
    if data.startswith(b"\r\n"):  # no header section at all
        return {}
    end = data.find(b"\r\n\r\n", 0, limit + 4)
    if end < 0:
        if len(data) > limit:
            return None
        head = data
    else:
        head = data[:end + 2]
    out: dict[bytes, list[bytes]] = {}
    for f in split_fields(head):
        name = field_name(f)
        if name in names:
            value = f.partition(b":")[2]
            out.setdefault(name, []).append(value[:-2] if value.endswith(b"\r\n") else value)
    return out


def trusted_identity(data: bytes, header: str) -> str | None:
    """The user name the office MTA put on a message (trusted listeners)."""
    wanted = header.strip().lower().encode("ascii", "replace")
    fields = header_fields(data, (wanted,))
    values = (fields or {}).get(wanted, [])
    if not values:
        return None
    first = unfold(values[0].decode("utf-8", "replace")).strip()
    if wanted == b"received":
        m = _AUTHENTICATED_SENDER.search(first)
        return m.group(1) if m else None
    return first if first and not any(c.isspace() for c in first) else None


def _check_field(user: User, label: str, raw: bytes) -> str | None:
    if len(raw) > MAX_FIELD_BYTES:
        return f"550 5.7.1 {label}: header too long to check ({MAX_FIELD_BYTES} bytes at most)"
    # raw 8-bit (Shift_JIS, UTF-8) or ISO-2022-JP display names from old mailers: decoded
    # first, so that no byte of a Japanese character passes for an "@" or a quote
    text = raw.decode("ascii") if raw.isascii() and b"\x1b" not in raw else (
        decode_header_bytes(raw))
    addrs, problems = parse_address_header(label, [text], MAX_MAILBOXES)
    if problems or not addrs:
        why = problems[0] if problems else f"no address in {label}"
        return f"550 5.7.1 {label}: header cannot be read ({why})"
    for a in addrs:
        if not owns(user, a):
            return (f"550 5.7.1 {label}: header <{_shown(a)}> is not an address of user "
                    f"{_shown(user.name)}")
    decoded = decode_encoded_words(unfold(text))
    for a in _SHOWN_ADDRESS.findall(unicodedata.normalize("NFKC", decoded)):
        if not owns(user, a):
            return (f"550 5.7.1 {label}: header shows <{_shown(a)}>, which is not an "
                    f"address of user {_shown(user.name)}")
    return None


def header_problem(user: User, data: bytes) -> str | None:
    """Every From: and Sender: mailbox must be the user's (the 550 reply, else None).
    A redirect (Resent-From:, the original author's From: kept) is refused too: a
    reader sees only the From:."""
    fields = header_fields(data, (b"from", b"sender"))
    if fields is None:
        return (f"550 5.7.1 Header section larger than {MAX_HEADER_BYTES // 1024} KiB: "
                "the sender cannot be checked")
    # a message without From: claims nobody (RFC 5322 wants one, but that is for the
    # receiving systems to judge); the envelope sender was checked at MAIL
    for label, name in (("From", b"from"), ("Sender", b"sender")):
        values = fields.get(name, [])
        if len(values) > MAX_FIELDS:
            return f"550 5.7.1 Too many {label}: headers"
        for raw in values:
            problem = _check_field(user, label, raw)
            if problem:
                return problem
    return None


def identity_problem(mode: IdentityMode, kind: str, identity_header: str, user: User | None,
                     mail_from: str, data: bytes, users: UserDirectory | None) -> str | None:
    """The check after DATA: the refusal to answer, or None.

    AUTH listeners already checked MAIL FROM when it was given (handle_MAIL); a trusted
    listener learns the user only from the header, so it checks MAIL FROM here."""
    if mode == "off":
        return None
    if kind == "trusted":
        if not mail_from:
            return None  # a DSN from the MTA itself: nobody's identity
        name = trusted_identity(data, identity_header)
        if name is None:
            return f"550 5.7.1 No authenticated user on this message ({_shown(identity_header)})"
        user = users.get(name) if users is not None else None
        if user is None:
            return f"550 5.7.1 Authenticated user {_shown(name)} is not in the guard's users file"
        if not owns(user, mail_from):
            return (f"550 5.7.1 <{_shown(mail_from)}>: Sender address not owned by user "
                    f"{_shown(user.name)}")
    if user is None:
        return "550 5.7.1 No authenticated user"
    if mode == "enforce":
        return header_problem(user, data)
    return None
