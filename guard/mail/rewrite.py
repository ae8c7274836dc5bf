"""Edits of the stored bytes that a verdict or a reviewer asks for: tag headers, a
subject mark, To/Cc → Bcc, removed recipients out of To/Cc. Only the header block is
touched, field by field; the body and every other header keep their exact bytes (the
message is never re-generated: that would change MIME boundaries and encodings and
break signatures).

The To/Cc fix moves external addresses out of To/Cc: each To/Cc field keeps the
mailboxes under the company's domains as they were written (display names, encoded
words; unfolded and folded again), and loses the others; a field left empty goes. If
no To/Cc address is left, the first field becomes `To: undisclosed-recipients:;` (RFC
5322 group syntax, what Bcc-only mail shows). No Bcc field is added: the envelope
already carries every recipient. A field that cannot be parsed strictly is treated as
all external.

Removing a recipient (the sender's "Remove" at confirmation, an approver's at approval)
edits the same way, only the To/Cc fields that name the removed address: the person
taken out of the envelope must not stay visible to everyone else."""

from __future__ import annotations

from collections.abc import Callable, Collection
from email.header import Header

from guard.mail.addresses import address_key, domain_of, domain_to_unicode, in_domain_set
from guard.mail.headers import decode_subject, mailbox_addr, split_address_list, unfold
from guard.mail.limits import ParseLimits

__all__ = ["add_headers", "field_name", "move_to_bcc", "prefix_subject",
           "remove_recipients", "split_fields"]


def _split(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data, b""
    return data[:end + 2], data[end + 2:]


def _encode(name: str, value: str) -> bytes:
    """A header line, RFC 2047-encoded when not ASCII; CR/LF can never get through."""
    clean = " ".join(value.replace("\r", " ").replace("\n", " ").split())
    if clean.isascii():
        return f"{name}: {clean}\r\n".encode("ascii")
    folded = Header(clean, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {folded}\r\n".encode("ascii")


def add_headers(data: bytes, headers: dict[str, str]) -> bytes:
    """Prepend header fields (our X-Guard-* tags) to the message."""
    if not headers:
        return data
    return b"".join(_encode(k, v) for k, v in headers.items()) + data


def prefix_subject(data: bytes, prefix: str) -> bytes:
    """Put a mark in front of the Subject ("[社外] …"); add a Subject if there is none."""
    if not prefix:
        return data
    head, rest = _split(data)
    fields = split_fields(head)
    mark = prefix.replace("\r", " ").replace("\n", " ")
    for i, f in enumerate(fields):
        if field_name(f) == b"subject":
            _, _, value = f.partition(b":")
            if mark.isascii():
                fields[i] = b"Subject: " + mark.encode("ascii") + b" " + value.lstrip(b" ")
            else:
                # an encoded word in front keeps the original value's bytes as they were
                word = Header(mark + " ", "utf-8").encode()
                fields[i] = b"Subject: " + word.encode("ascii") + b"\r\n " + value.lstrip(b" ")
            return b"".join(fields) + rest
    return _encode("Subject", mark) + data


UNDISCLOSED = b"To: undisclosed-recipients:;"
# A To/Cc field with more addresses than inspection reads (ParseLimits) is treated as
# one that cannot be parsed strictly, so the work per field stays bounded.
MAX_REWRITE_ADDRESSES = ParseLimits().max_addresses_per_header


def split_fields(head: bytes) -> list[bytes]:
    """Header block → fields, each with its continuation lines and line endings."""
    # lines gathered per field and joined once: appending to the field's bytes made a
    # field of 80,000 folded lines cost 0.7 s (each += copies the whole field)
    fields: list[list[bytes]] = []
    for line in head.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1].append(line)
        else:
            fields.append([line])
    return [b"".join(lines) for lines in fields]


def field_name(f: bytes) -> bytes:
    name, colon, _ = f.partition(b":")
    return name.strip().lower() if colon else b""


def _kept_mailboxes(f: bytes, keep: Callable[[str], bool], gone: Collection[str]
                    ) -> tuple[list[bytes], bool] | None:
    """The mailboxes of one To/Cc field that `keep` keeps, as they were written, and
    whether that is all of them; None when the field cannot be parsed strictly. A kept
    mailbox whose display name or comment holds another address ("x@client.example"
    <tanaka@…>), or one of the `gone` addresses (RFC 2047-encoded too), is cut down to
    its address. With `gone`, a segment that is not one well-formed mailbox stays
    unless it mentions one of those addresses; without, it goes."""
    value = f.partition(b":")[2]
    if value.count(b"@") > MAX_REWRITE_ADDRESSES:  # not read one by one: unparsable
        return None
    # 8-bit bytes (raw UTF-8 or Shift_JIS names) survive as surrogates
    text = unfold(value.decode("utf-8", "surrogateescape"))
    segments = split_address_list(text.strip())
    if segments is None:
        return None
    kept = []
    for seg in segments:
        addr = mailbox_addr(seg)
        if addr is None:
            if gone and not _mentions(decode_subject(seg), gone):
                kept.append(seg.strip().encode("utf-8", "surrogateescape"))
            continue
        if not keep(addr):
            continue
        seg = seg.strip()
        rest = seg.replace(addr, "")
        if "@" in rest or (gone and _mentions(decode_subject(rest), gone)):
            seg = addr
        kept.append(seg.encode("utf-8", "surrogateescape"))
    return kept, len(kept) == len(segments)


def _mentions(text: str, addresses: Collection[str]) -> bool:
    low = text.lower()
    return any(a.lower() in low for a in addresses)


def _fold(mailbox: bytes, eol: bytes, width: int = 76) -> bytes:
    """Fold a long mailbox (several encoded words) at its spaces again."""
    if len(mailbox) <= width or b" " not in mailbox:
        return mailbox
    lines = [b""]
    for word in mailbox.split(b" "):
        if lines[-1] and len(lines[-1]) + 1 + len(word) > width:
            lines.append(word)
        else:
            lines[-1] = lines[-1] + b" " + word if lines[-1] else word
    return (eol + b" ").join(lines)


def move_to_bcc(data: bytes, internal_domains: Collection[str] = ()) -> bytes:
    """External addresses out of To/Cc; `internal_domains` (and their subdomains) stay.
    A field that cannot be parsed strictly is treated as all external."""
    internal = frozenset(internal_domains)
    return _edit_to_cc(data, lambda a: in_domain_set(domain_of(a), internal))


def remove_recipients(data: bytes, removed: Collection[str]) -> bytes:
    """The removed recipients out of To/Cc, every other mailbox kept as written. Only
    fields naming one of them change; a field that cannot be parsed strictly changes
    only if its text holds a removed address, and then goes whole (the removed person
    must not stay visible; the others still get the mail from the envelope)."""
    gone = {address_key(a) for a in removed if a}
    if not gone:
        return data
    # the addresses as they may be written in a header: as given, A-label, U-label
    written = {a.strip().strip("<>") for a in removed if a} | gone | {
        f"{k.rpartition('@')[0]}@{domain_to_unicode(k.rpartition('@')[2])}" for k in gone}
    return _edit_to_cc(data, lambda a: address_key(a) not in gone, written)


def _edit_to_cc(data: bytes, keep: Callable[[str], bool], gone: Collection[str] = ()
                ) -> bytes:
    """Rewrite the To/Cc fields that lose a mailbox (see the module docstring); with
    `gone`, an unparsable field stays unless it mentions one of those addresses."""
    end = data.find(b"\r\n\r\n")
    sep = b"\r\n\r\n"
    if end < 0:
        end, sep = data.find(b"\n\n"), b"\n\n"
    if end < 0:  # headers only
        end, sep = len(data), b""
    head, rest = data[:end], data[end + len(sep):]
    eol = b"\r\n" if sep == b"\r\n\r\n" or (not sep and b"\r\n" in head) else b"\n"
    out: list[bytes] = []
    changed = False
    first = -1  # where the first To/Cc field was
    for f in split_fields(head + eol if head else b""):
        name = field_name(f)
        if name not in (b"to", b"cc"):
            out.append(f)
            continue
        if first < 0:
            first = len(out)
        parsed = _kept_mailboxes(f, keep, gone)
        kept: list[bytes] = []
        if parsed is None:
            # not strictly parsable: all outside (Bcc fix), or, for a removal, kept
            # as it is unless it names a removed address
            everything = bool(gone) and not _field_mentions(f, gone)
        else:
            kept, everything = parsed
        if everything:
            out.append(f)  # the field keeps its exact bytes
            continue
        changed = True
        if kept:
            label = b"To" if name == b"to" else b"Cc"
            out.append(label + b": " + (b"," + eol + b" ").join(_fold(m, eol) for m in kept)
                       + eol)
    if not changed:
        return data
    if first >= 0 and not any(field_name(f) in (b"to", b"cc") for f in out):
        out.insert(first, UNDISCLOSED + eol)
    new_head = b"".join(out)
    return new_head[: len(new_head) - len(eol)] + sep + rest


def _field_mentions(f: bytes, addresses: Collection[str]) -> bool:
    """Does a field's text (encoded words and 8-bit names decoded) hold one of them?"""
    value = unfold(f.partition(b":")[2].decode("utf-8", "surrogateescape"))
    return _mentions(decode_subject(value), addresses)
