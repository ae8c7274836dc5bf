"""Plain text and HTML attachments: decoded (declared charset, else detected) and, for
HTML, reduced to its text."""

from __future__ import annotations

from guard.inspect.readers.extraction import Extraction
from guard.mail.message import Attachment, html_to_text


def read_text(ex: Extraction, att: Attachment, depth: int) -> None:
    ex.text(att.where, ex.decode(att))


def read_html(ex: Extraction, att: Attachment, depth: int) -> None:
    ex.text(att.where, html_to_text(ex.decode(att)))
