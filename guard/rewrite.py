"""Edits of the stored bytes that a verdict or a reviewer asks for: tag headers, a
subject mark, and To/Cc → Bcc. Only the header block is touched, field by field; the
body and every other header keep their exact bytes (the message is never re-generated:
that would change MIME boundaries and encodings and break signatures).

The To/Cc fix: the first To/Cc field becomes `To: undisclosed-recipients:;` (RFC 5322
group syntax, what Bcc-only mail shows), other To/Cc fields are removed. No Bcc field is
added: the envelope already carries every recipient."""

from __future__ import annotations

from email.header import Header

__all__ = ["add_headers", "field_name", "move_to_bcc", "prefix_subject", "split_fields"]


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


def split_fields(head: bytes) -> list[bytes]:
    """Header block → fields, each with its continuation lines and line endings."""
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def field_name(f: bytes) -> bytes:
    name, colon, _ = f.partition(b":")
    return name.strip().lower() if colon else b""


def move_to_bcc(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n")
    sep = b"\r\n\r\n"
    if end < 0:
        end, sep = data.find(b"\n\n"), b"\n\n"
    if end < 0:  # headers only
        end, sep = len(data), b""
    head, rest = data[:end], data[end + len(sep):]
    eol = b"\r\n" if sep != b"\n\n" else b"\n"
    out: list[bytes] = []
    replaced = False
    for f in split_fields(head + eol if head else b""):
        if field_name(f) in (b"to", b"cc"):
            if not replaced:
                out.append(UNDISCLOSED + eol)
                replaced = True
            continue
        out.append(f)
    if not replaced:
        return data
    new_head = b"".join(out)
    return new_head[: len(new_head) - len(eol)] + sep + rest
