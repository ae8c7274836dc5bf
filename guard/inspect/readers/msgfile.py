"""Outlook .msg files ([MS-OXMSG]): subject, body and attachments, for inspection.

Forwarding a mail "as an attachment" from Outlook attaches a .msg; before this reader
every such mail was "uninspectable" and went to confirmation. A .msg is a compound file
(olefile reads it): each MAPI property of the message is a stream
`__substg1.0_PPPPTTTT` (property id, type), each recipient and attachment a storage of
its own, and an attached message a nested storage of the same shape.

What is read: the subject (0x0037), the plain body (0x1000) or else the HTML body
(0x1013), and every attachment — by value (0x3701, binary) as a file to inspect like any
other, an attached message (0x3701, object) recursively. String properties are UTF-16
(type 001F), or 8-bit (001E) in the message's code page (0x3FFD, else 0x3FDE, else the
Japanese-first detection cascade); the HTML body in its own <meta charset>, else the
internet code page (0x3FDE, as Outlook writes it), else 0x3FFD. A body only in
compressed RTF (0x1009) and OLE-object attachments (method 6) are reported, not read.

`read_msg_file` reads one into an extraction."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

from guard.inspect.readers.extraction import Extraction
from guard.mail.message import Attachment, html_to_text
from guard.mail.textdecode import decode_declared

_ATTACH = "__attach_version1.0_#"
_RECIP = "__recip_version1.0_#"
_PROPS = "__properties_version1.0"
_EMBEDDED = "__substg1.0_3701000D"

# Windows code pages a Japanese Outlook uses, as codec names; others are tried as cpNNN
_CODEPAGES = {932: "cp932", 50220: "iso-2022-jp", 50221: "iso-2022-jp", 50222: "iso-2022-jp",
              51932: "euc-jp", 20932: "euc-jp", 65001: "utf-8", 20127: "us-ascii",
              28591: "iso-8859-1"}


class MsgError(Exception):
    """Not an Outlook message this reader understands (a parse_error)."""


@dataclass
class MsgAttachment:
    name: str
    data: bytes | None = None  # attached by value
    message: MsgMessage | None = None  # an attached message
    # why neither could be read: (problem code, detail)
    problem: tuple[str, str] | None = None


@dataclass
class MsgMessage:
    subject: str = ""
    body: str = ""
    html: str = ""  # the HTML body when there is no plain one (the caller strips tags)
    attachments: list[MsgAttachment] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (code, detail)


def read_msg(ole: Any, max_attachments: int = 500, max_depth: int = 5) -> MsgMessage:
    """Read a .msg from its open compound file (an olefile.OleFileIO). Raises MsgError
    (or olefile's errors) on a broken file."""
    return _Reader(ole, max_attachments, max_depth).message((), top=True, depth=0)


class _Reader:
    def __init__(self, ole: Any, max_attachments: int, max_depth: int) -> None:
        self.ole = ole
        self.max_attachments = max_attachments
        self.max_depth = max_depth
        self.attachments = 0
        # the children of every storage, by path
        self.children: dict[tuple[str, ...], set[str]] = {}
        for path in ole.listdir(streams=True, storages=True):
            self.children.setdefault(tuple(path[:-1]), set()).add(path[-1])

    def _stream(self, path: tuple[str, ...]) -> bytes:
        with self.ole.openstream(list(path)) as f:
            return bytes(f.read())

    def _codepages(self, at: tuple[str, ...], header: int) -> dict[int, str]:
        """The code pages among the fixed-size properties (PT_LONG 0x3FFD, the
        message's; 0x3FDE, the internet one), as codec names."""
        if _PROPS not in self.children.get(at, ()):
            return {}
        raw = self._stream((*at, _PROPS))
        found: dict[int, str] = {}
        for pos in range(header, len(raw) - 15, 16):
            tag, _flags, value = struct.unpack_from("<IIi", raw, pos)
            if tag & 0xFFFF == 0x0003 and tag >> 16 in (0x3FFD, 0x3FDE) and value > 0:
                found[tag >> 16] = _CODEPAGES.get(value, f"cp{value}")
        return found

    def _string(self, at: tuple[str, ...], prop: int, codepage: str | None) -> str:
        names = self.children.get(at, set())
        unicode_, string8 = f"__substg1.0_{prop:04X}001F", f"__substg1.0_{prop:04X}001E"
        if unicode_ in names:
            return self._stream((*at, unicode_)).decode("utf-16-le", "replace").rstrip("\x00")
        if string8 in names:
            raw = self._stream((*at, string8)).rstrip(b"\x00")
            return decode_declared(raw, codepage)  # (no code page: the detection cascade)
        return ""

    def message(self, at: tuple[str, ...], top: bool, depth: int) -> MsgMessage:
        names = self.children.get(at, set())
        if not any(n.startswith("__substg1.0_") for n in names):
            raise MsgError("no message properties")
        pages = self._codepages(at, 32 if top else 24)
        codepage = pages.get(0x3FFD) or pages.get(0x3FDE)
        msg = MsgMessage(subject=self._string(at, 0x0037, codepage),
                         body=self._string(at, 0x1000, codepage))
        if not msg.body:
            html = "__substg1.0_10130102"
            if html in names:
                raw = self._stream((*at, html))
                meta = _META_CHARSET.search(raw[:4096])
                label = (meta.group(1).decode("ascii") if meta else
                         pages.get(0x3FDE) or pages.get(0x3FFD))
                msg.html = decode_declared(raw, label)
            else:
                msg.html = self._string(at, 0x1013, pages.get(0x3FDE) or codepage)
            if not msg.html.strip() and any(n.startswith("__substg1.0_1009") for n in names):
                msg.problems.append(("unknown_binary", "a body only in compressed RTF"))
        for name in sorted(n for n in names if n.startswith(_ATTACH)):
            if self.attachments >= self.max_attachments:
                msg.attachments.append(MsgAttachment("", problem=(
                    "too_many_parts", f"more than {self.max_attachments} attachments")))
                break
            self.attachments += 1
            msg.attachments.append(self._attachment((*at, name), codepage, depth))
        return msg

    def _attachment(self, at: tuple[str, ...], codepage: str | None,
                    depth: int) -> MsgAttachment:
        names = self.children.get(at, set())
        name = (self._string(at, 0x3707, codepage) or self._string(at, 0x3704, codepage)
                or self._string(at, 0x3001, codepage) or at[-1].rsplit("#", 1)[-1])
        name = _one_name(name)
        if "__substg1.0_37010102" in names:
            return MsgAttachment(name, data=self._stream((*at, "__substg1.0_37010102")))
        if _EMBEDDED in names:
            inner = (*at, _EMBEDDED)
            kids = self.children.get(inner, set())
            if not any(k.startswith("__substg1.0_") for k in kids):
                return MsgAttachment(name, problem=("unknown_binary",
                                                    "embedded OLE object not inspected"))
            if depth + 1 > self.max_depth:
                return MsgAttachment(name, problem=("too_deep",
                                                    "attached messages nested too deeply"))
            return MsgAttachment(name, message=self.message(inner, top=False, depth=depth + 1))
        return MsgAttachment(name, problem=("unknown_binary",
                                            "attachment without data (a link or reference)"))


_UNSAFE_NAME = re.compile(r"[\x00-\x1f/\\]")
_META_CHARSET = re.compile(rb"""<meta[^>]*charset\s*=\s*["']?([A-Za-z0-9._-]+)""", re.I)


def _one_name(name: str) -> str:
    """A file name for `where` paths: one path component, one line."""
    return _UNSAFE_NAME.sub("_", name.strip())[:255] or "attachment"


# --- into an extraction ------------------------------------------------------------------

def read_msg_file(ex: Extraction, ole: Any, att: Attachment, depth: int) -> None:
    """An Outlook item: its subject and body as text, its attachments like any others,
    attached items inside it too. `ole`: the open compound file."""
    try:
        msg = read_msg(ole, ex.limits.parse_limits.max_parts, ex.limits.max_depth - depth)
    except MsgError as e:
        ex.problem("parse_error", att.where, f"Outlook .msg: {e}")
        return
    _add_message(ex, msg, att.where, depth)


def _add_message(ex: Extraction, msg: MsgMessage, where: str, depth: int) -> None:
    if msg.subject:
        ex.text(where, msg.subject)
    body = msg.body or (html_to_text(msg.html) if msg.html else "")
    if body:
        ex.text(where, body)
    for code, detail in msg.problems:
        ex.problem(code, where, detail)
    for a in msg.attachments:
        inner = f"{where}/{a.name}"
        if a.name:
            ex.inner_name(inner, a.name)  # names are checked too
        if a.problem is not None:
            ex.problem(a.problem[0], inner, a.problem[1])
        elif a.message is not None:
            _add_message(ex, a.message, inner, depth + 1)
        elif a.data is not None:
            ex.run(Attachment(filename=a.name, content_type="",
                              data=ex.charged(a.data), where=inner), depth + 1)
