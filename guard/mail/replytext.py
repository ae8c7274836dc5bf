"""A reason text as one reply line can carry it (RFC 5321 4.2): a reply line is at most
512 octets with its code and CRLF, so the text is cut at TEXT_MAX characters. smtp/
words the replies with these; the policy previews the same text in its verdicts."""

from __future__ import annotations

TEXT_MAX = 400


def ascii_line(text: str) -> str:
    """Printable ASCII, runs of white space as one space, at most TEXT_MAX characters."""
    cleaned = "".join(c if 32 <= ord(c) < 127 else " " for c in text)
    return " ".join(cleaned.split())[:TEXT_MAX]


def one_line(text: str) -> str:
    """No control characters, runs of white space as one space, at most TEXT_MAX."""
    cleaned = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text)
    return " ".join(cleaned.split())[:TEXT_MAX]
