"""What detectors read of one outbound message: the parsed view and its pieces.

guard.mail.message builds a MessageView from the raw bytes; attachment text and tables
are added by extraction (guard.inspect.extract), normally in a worker process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

Problem = tuple[str, str, str]  # (code, where, detail)


@dataclass(frozen=True)
class Attachment:
    filename: str  # decoded (RFC 2047/2231, raw 8-bit names recovered), "" if none
    content_type: str  # bare type, lower case: "application/pdf"
    data: bytes  # transfer-decoded payload
    where: str  # "attachment:<filename>" (or "part:<n>" if unnamed)
    charset: str = ""  # declared MIME charset, a hint for text attachments


@dataclass(frozen=True)
class TextChunk:
    where: str  # "subject", "body", "attachment:x.docx", "attachment:a.zip/b.csv"
    text: str


@dataclass(frozen=True)
class Table:
    where: str
    rows: list[list[str]]  # first row is usually the header row; capped by limits
    # Rows after `rows` that hold a value but were counted, not read: a big sheet is
    # sampled (guard.inspect.readers.sheetml), and row counts (people lists) must still be true.
    more_rows: int = 0


# Header fields kept for the detectors of the message's shape (guard.inspect.envelope):
# the first value of each, cut to SHAPE_VALUE_MAX characters.
SHAPE_FIELDS = ("list-unsubscribe", "precedence", "x-mailer", "user-agent",
                "message-id", "thread-index")
SHAPE_VALUE_MAX = 300


@dataclass
class MessageView:
    mail_from: str
    rcpt_tos: list[str]
    subject: str = ""
    from_addrs: list[str] = field(default_factory=list)
    to_addrs: list[str] = field(default_factory=list)
    cc_addrs: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    header_problems: list[str] = field(default_factory=list)
    # the first value of the fields guard.inspect.envelope reads (List-Unsubscribe,
    # Precedence, X-Mailer, User-Agent, Message-ID, Thread-Index), lower-case names
    header_fields: dict[str, str] = field(default_factory=dict)
    # long texts come as consecutive chunks with the same where (see split_text)
    texts: list[TextChunk] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    # (code, where, detail): "encrypted", "too_deep", "too_many_parts", "too_large",
    # "parse_error", "bomb", "timeout", "unknown_binary", "worker_died", "no_text"
    problems: list[Problem] = field(default_factory=list)
    # (where, filename) of files inside archives, including encrypted ones
    inner_names: list[tuple[str, str]] = field(default_factory=list)


TEXT_CHUNK_CHARS = 1_000_000


def split_text(text: str, limit: int = TEXT_CHUNK_CHARS) -> list[str]:
    """Cut a long text into pieces of at most `limit` characters, at line ends where
    possible. Long texts (a 20 MB CSV) then reach detectors as several consecutive
    TextChunks with the same `where`; moving one huge str between processes or joining
    it would hold the GIL long enough to stall the event loop."""
    if len(text) <= limit:
        return [text]
    out: list[str] = []
    start = 0
    while len(text) - start > limit:
        cut = text.rfind("\n", start + limit // 2, start + limit)
        cut = cut + 1 if cut >= 0 else start + limit
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return out


def split_pieces(pieces: Iterable[str], limit: int = TEXT_CHUNK_CHARS) -> list[str]:
    """split_text("".join(pieces)), without building the whole text first: the same
    chunks (each cut depends only on the next `limit` characters), one copy less."""
    out: list[str] = []
    pending: list[str] = []
    size = 0
    for piece in pieces:
        pending.append(piece)
        size += len(piece)
        if size > limit:
            chunks = split_text("".join(pending), limit)
            out.extend(chunks[:-1])
            pending, size = [chunks[-1]], len(chunks[-1])
    out.append("".join(pending))
    return out
