"""The "move To/Cc to Bcc" fix: rewrite only the To and Cc fields of the stored bytes.

The message is never re-generated (that would change MIME boundaries, encodings, and
break signatures): the header block is split into fields, the first To/Cc field becomes
`To: undisclosed-recipients:;` (RFC 5322 group syntax, what Bcc-only mail shows), the
other To/Cc fields are removed, and every other byte is kept as it was. No Bcc field is
added: the envelope already carries every recipient.
"""

from __future__ import annotations

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
