"""Small stand-ins for guard.mail.message's types: only what the content detectors read."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Chunk:
    where: str
    text: str


@dataclass
class Attachment:
    filename: str | None
    content_type: str = "application/octet-stream"
    data: bytes = b""
    where: str = ""


@dataclass
class View:
    """Stand-in for guard.mail.message.MessageView: only what the detectors read."""

    rcpt_tos: list[str] = field(default_factory=list)
    subject: str | None = ""
    texts: list[Chunk] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    inner_names: list[tuple[str, str]] = field(default_factory=list)
