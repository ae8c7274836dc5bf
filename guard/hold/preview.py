"""What the review page shows of a held message: headers, attachment list, a text preview.

Held mail is never rendered as HTML: an HTML-only body is reduced to its text (scripts,
styles and tags dropped), and the page escapes whatever comes out. Broken MIME gives a
partial preview, never an exception. Parsing runs in a thread (large messages), and
only within the limits inspection parses in (guard.mail.message.prescan): beyond them the
page shows the subject and sender, no body.

Attachment names are read exactly as the inspection reads them (`message.part_filename`:
RFC 2047 inside quotes as Outlook writes, RFC 2231 continuations as Thunderbird does,
`utf-8''` as iPhone mail does, raw Shift_JIS bytes as CP932; zip member names through
`ziparchive.member_name`), so the names on the page are the names in the reasons and a
file is listed once.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses

from guard.inspect.readers.ziparchive import member_name
from guard.mail.message import (
    PARSER_POLICY,
    ParseLimits,
    decode_subject,
    html_to_text,
    part_filename,
    prescan,
    read_header_fields,
)
from guard.mail.textdecode import decode_declared

MAX_TEXT = 6000
MAX_PARTS = 500


MAX_MEMBERS = 100  # zip member names listed per archive


@dataclass
class Attachment:
    name: str
    size: int
    content_type: str
    members: list[str] = field(default_factory=list)  # names inside a zip archive
    more_members: int = 0  # members not listed (over MAX_MEMBERS)


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


_ZIP_TYPES = ("application/zip", "application/x-zip-compressed", "application/x-zip")


def _is_zip(filename: str, ctype: str, data: bytes) -> bool:
    """A zip archive people packed (not a docx/xlsx, which are zips too)."""
    return data[:4] == b"PK\x03\x04" and (
        filename.lower().endswith(".zip") or ctype in _ZIP_TYPES)


def _zip_members(data: bytes) -> tuple[list[str], int]:
    """The names in an archive (its directory only: nothing is inflated), as the
    inspection reads them; encrypted members are listed too."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return [], 0
    names = [member_name(i) for i in infos[:MAX_MEMBERS]]
    return names, max(len(infos) - MAX_MEMBERS, 0)


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
        # the inspection's policy: a header the stdlib cannot decode (an RFC 2231
        # ISO-2022-JP name with ①) does not lose the whole preview
        msg = BytesParser(policy=PARSER_POLICY).parsebytes(data)
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
            filename = part_filename(part)
            if disposition == "attachment" or filename:
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
                att = Attachment(filename or "(no name)", len(data), ctype)
                if _is_zip(filename, ctype, data):
                    att.members, att.more_members = _zip_members(data)
                pv.attachments.append(att)
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
