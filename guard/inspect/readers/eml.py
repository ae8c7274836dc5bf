"""Attached messages (.eml, message/rfc822): parsed like the message itself, their
attachments read like any others, one level deeper."""

from __future__ import annotations

from guard.inspect.readers.extraction import Extraction
from guard.mail.message import Attachment, MessageView, parse_into


def read(ex: Extraction, att: Attachment, depth: int) -> None:
    view = MessageView(mail_from="", rcpt_tos=[])
    parse_into(att.data, view, ex.limits.parse_limits, prefix=att.where)
    for chunk in view.texts:
        ex.text(chunk.where, chunk.text)
    ex.out.problems.extend(view.problems)
    for inner in view.attachments:
        ex.inner_name(inner.where, inner.filename)
        ex.run(inner, depth + 1)
