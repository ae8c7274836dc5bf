"""What the review page shows of a held message: headers, attachment list, a text preview.

Held mail is never rendered as HTML: an HTML-only body is reduced to its text (scripts,
styles and tags dropped), and the page escapes whatever comes out. Broken MIME gives a
partial preview, never an exception. Parsing runs in a thread (large messages), and
only within the limits inspection parses in (guard.message.prescan): beyond them the
page shows the subject and sender, no body.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses

from guard.inspect.textdecode import decode_declared
from guard.message import (
    ParseLimits,
    decode_subject,
    html_to_text,
    prescan,
    read_header_fields,
)

MAX_TEXT = 6000
MAX_PARTS = 500


@dataclass
class Attachment:
    name: str
    size: int
    content_type: str


@dataclass
class Preview:
    subject: str = ""
    from_: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    text: str = ""
    truncated: bool = False
    from_html: bool = False  # the text was taken out of an HTML body
    attachments: list[Attachment] = field(default_factory=list)
    error: str = ""


def _part_text(part: EmailMessage) -> str:
    """The same decoding as inspection (Japanese-first: undeclared or mislabelled
    charsets are detected), so the page shows what the detectors read."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return decode_declared(payload, part.get_content_charset())


def build_preview(data: bytes, max_text: int = MAX_TEXT) -> Preview:
    pv = Preview()
    problems = prescan(data)
    if problems:  # beyond the parse limits: inspection did not parse it, nor does this
        pv.error = problems[0][0]
        fields = read_header_fields(data, (b"subject", b"from"), ParseLimits())
        pv.subject = decode_subject(next(iter(fields.get("subject", [])), ""))
        pv.from_ = decode_subject(next(iter(fields.get("from", [])), ""))
        return pv
    try:
        msg = BytesParser(policy=policy.default).parsebytes(data)
    except Exception as e:  # RecursionError on absurd nesting, among others
        pv.error = type(e).__name__
        return pv
    assert isinstance(msg, EmailMessage)
    with contextlib.suppress(Exception):
        pv.subject = str(msg.get("subject", "") or "")
    with contextlib.suppress(Exception):
        pv.from_ = str(msg.get("from", "") or "")
    for name, target in (("to", pv.to), ("cc", pv.cc)):
        with contextlib.suppress(Exception):
            values = [str(v) for v in msg.get_all(name, [])]
            target.extend(f"{n} <{a}>" if n else a for n, a in getaddresses(values) if a)
    plain: str | None = None
    html: str | None = None
    try:
        for i, part in enumerate(msg.walk()):
            if i >= MAX_PARTS:
                break
            if part.is_multipart():
                continue
            ctype = part.get_content_type()
            disposition = part.get_content_disposition()
            filename = part.get_filename()
            if disposition == "attachment" or filename:
                payload = part.get_payload(decode=True)
                pv.attachments.append(Attachment(
                    str(filename or "(no name)"),
                    len(payload) if isinstance(payload, bytes) else 0, ctype))
            elif ctype == "text/plain" and plain is None:
                plain = _part_text(part)
            elif ctype == "text/html" and html is None:
                html = _part_text(part)
    except Exception as e:
        pv.error = type(e).__name__
    if plain is None and html is not None:
        plain, pv.from_html = html_to_text(html), True
    text = (plain or "").replace("\r\n", "\n")
    pv.truncated = len(text) > max_text
    pv.text = text[:max_text]
    return pv
