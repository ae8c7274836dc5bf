"""What the review page shows of a held message: headers, attachment list, a text preview.

Held mail is never rendered as HTML: an HTML-only body is reduced to its text (scripts,
styles and tags dropped), and the page escapes whatever comes out. Broken MIME gives a
partial preview, never an exception. Parsing runs in a thread (large messages).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from html.parser import HTMLParser

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


class _TextOfHtml(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})
    _BREAK = frozenset({"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "table",
                        "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BREAK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skip:
            self._skip -= 1
        elif tag in self._BREAK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(data)


def html_to_text(html: str) -> str:
    p = _TextOfHtml()
    with contextlib.suppress(Exception):
        p.feed(html)
        p.close()
    lines = [" ".join(line.split()) for line in "".join(p.out).splitlines()]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip()


def _part_text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
        return content if isinstance(content, str) else ""
    except Exception:
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            return payload.decode(part.get_content_charset() or "utf-8", "replace")
        return ""


def build_preview(data: bytes, max_text: int = MAX_TEXT) -> Preview:
    pv = Preview()
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
