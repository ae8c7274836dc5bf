"""Text of a Word 97–2003 document (.doc), from its piece table ([MS-DOC] 2.4.1).

Japanese offices still send .doc files; without this reader every one was
"uninspectable" and went to confirmation. The text is read the way Word itself finds
it: the FIB (at the start of the WordDocument stream) names the table stream and the
Clx in it; the Clx's piece table maps character positions to byte runs of the
WordDocument stream, each either UTF-16LE or "compressed" 8-bit (cp1252). That covers
the main text, footnotes, headers, comments and text boxes, in that order.

Layout as for .docx: a paragraph ends with a newline, a table cell with a tab, a table
row with a newline. A row's end is a paragraph mark like a cell's (\\x07); the
paragraph properties (PAPX, in the FKP pages the PlcBtePapx names) tell them apart by
sprmPFTtp. Fields keep their result and drop their code ("HYPERLINK …"). Formatting,
pictures and the "fast-saved" incremental format are not read. Encrypted documents are
reported as such (uninspectable.encrypted).

`read_doc` reads one into an extraction, with the files embedded in it (ObjectPool)."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from guard.inspect.readers.extraction import Extraction
from guard.mail.message import Attachment

_WIDENT = 0xA5EC  # the FIB's magic number
_FCLCB_BTE_PAPX = 13  # indexes in FibRgFcLcb97
_FCLCB_CLX = 33
_MAX_PIECES = 1_000_000
_PAGE = 512
_TTP_SPRMS = (0x2417, 0x244C)  # sprmPFTtp, sprmPFInnerTtp: a table row's end mark
_ROW_END = "\x1d"  # stands for a row's end mark until the layout (not in Word's text)
_FIELD_MARK = re.compile("[\x13\x14\x15]")


class DocError(Exception):
    """Not a Word document this reader understands, or a broken one (a parse_error)."""


class DocEncrypted(Exception):
    """The document is password-protected (encrypted or XOR-obfuscated)."""


@dataclass
class DocText:
    text: str
    truncated: bool  # the text went past max_chars and was cut


def _u16(b: bytes, at: int) -> int:
    return int(struct.unpack_from("<H", b, at)[0])


def _u32(b: bytes, at: int) -> int:
    return int(struct.unpack_from("<I", b, at)[0])


def doc_text(stream: Callable[[str], bytes | None], max_chars: int) -> DocText:
    """The text of a .doc; `stream(name)` gives a stream of the compound file (or None).
    Raises DocEncrypted or DocError."""
    try:
        return _read(stream, max_chars)
    except struct.error as e:
        raise DocError(f"truncated Word structure: {e}") from None


def _read(stream: Callable[[str], bytes | None], max_chars: int) -> DocText:
    word = stream("WordDocument")
    if word is None or len(word) < 0x22 or _u16(word, 0) != _WIDENT:
        raise DocError("no Word 97 FIB at the start of the WordDocument stream")
    flags = _u16(word, 0x0A)
    if flags & 0x0100:  # fEncrypted (RC4 or, with fObfuscated, XOR)
        raise DocEncrypted("password-protected Word document")
    table = stream("1Table" if flags & 0x0200 else "0Table")  # fWhichTblStm
    if table is None:
        raise DocError("the table stream the FIB names is missing")
    # FibBase (32 bytes), then counted blocks: FibRgW97, FibRgLw97, FibRgFcLcb
    at = 0x20
    at += 2 + 2 * _u16(word, at)
    at += 2 + 4 * _u16(word, at)
    if _u16(word, at) <= _FCLCB_CLX:
        raise DocError("FIB too short to name the piece table")
    fclcb = at + 2

    def part(index: int) -> bytes:
        fc, lcb = _u32(word, fclcb + 8 * index), _u32(word, fclcb + 8 * index + 4)
        if fc + lcb > len(table):
            raise DocError("a FIB entry points past the table stream")
        return table[fc:fc + lcb]

    clx = part(_FCLCB_CLX)
    if not clx:
        raise DocError("no piece table")
    row_ends = _row_end_marks(word, part(_FCLCB_BTE_PAPX))
    return _pieces_text(word, clx, row_ends, max_chars)


def _row_end_marks(word: bytes, plc: bytes) -> frozenset[int]:
    """Where the paragraphs that end table rows end (stream offsets just past their
    mark), from the PAPX FKP pages ([MS-DOC] 2.9.178 PlcBtePapx, 2.9.176 PapxFkp)."""
    if len(plc) < 12:
        return frozenset()
    n = (len(plc) - 4) // 8
    ends: set[int] = set()
    for k in range(n):
        pn = _u32(plc, 4 * (n + 1) + 4 * k) & 0x3FFFFF
        page = word[pn * _PAGE:(pn + 1) * _PAGE]
        if len(page) < _PAGE:
            raise DocError("a paragraph-property page lies past the WordDocument stream")
        crun = page[_PAGE - 1]
        if 4 * (crun + 1) + 13 * crun > _PAGE - 1:
            raise DocError("malformed paragraph-property page")
        for i in range(crun):
            offset = 2 * page[4 * (crun + 1) + 13 * i]
            if offset and _is_row_end(page, offset):
                ends.add(_u32(page, 4 * (i + 1)))
    return frozenset(ends)


def _is_row_end(page: bytes, at: int) -> bool:
    """Does the PapxInFkp at `at` carry sprmPFTtp or sprmPFInnerTtp = 1?"""
    cb = page[at]
    start, size = (at + 2, 2 * page[at + 1]) if cb == 0 else (at + 1, 2 * cb - 1)
    grpprl = page[start + 2:min(start + size, _PAGE - 1)]  # after the style index
    pos = 0
    while pos + 2 <= len(grpprl):
        sprm = _u16(grpprl, pos)
        pos += 2
        if sprm in _TTP_SPRMS:
            return pos < len(grpprl) and grpprl[pos] == 1
        spra = sprm >> 13
        if spra == 6:  # variable: a length byte (two for sprmTDefTable)
            if sprm == 0xD608:
                if pos + 2 > len(grpprl):
                    break
                pos += 1 + _u16(grpprl, pos)
            elif pos < len(grpprl):
                pos += 1 + grpprl[pos]
            else:
                break
        else:
            pos += (1, 1, 2, 4, 2, 2, 0, 3)[spra]
    return False


def _pieces_text(word: bytes, clx: bytes, row_ends: frozenset[int],
                 max_chars: int) -> DocText:
    pos = 0
    while pos < len(clx) and clx[pos] == 0x01:  # Prc: property modifiers, skipped
        pos += 3 + _u16(clx, pos + 1)
    if pos >= len(clx) or clx[pos] != 0x02:
        raise DocError("no piece table (Pcdt) in the Clx")
    lcb = _u32(clx, pos + 1)
    plc = clx[pos + 5:pos + 5 + lcb]
    n = (len(plc) - 4) // 12
    if len(plc) != lcb or n <= 0 or n > _MAX_PIECES or lcb != 4 + 12 * n:
        raise DocError("malformed piece table")
    cps = struct.unpack_from(f"<{n + 1}I", plc, 0)
    parts: list[str] = []
    total = 0
    truncated = False
    for i in range(n):
        cch = cps[i + 1] - cps[i]
        if cch < 0:
            raise DocError("piece table positions go backwards")
        if total + cch > max_chars:  # (pieces may repeat: stop at the cap, not later)
            cch, truncated = max_chars - total, True
        fc = _u32(plc, 4 * (n + 1) + 8 * i + 2)
        width = 1 if fc & 0x40000000 else 2  # fCompressed: cp1252 at fc / 2
        start = (fc & 0x3FFFFFFF) // 2 if width == 1 else fc
        raw = word[start:start + width * cch]
        if len(raw) != width * cch:
            raise DocError("a text piece runs past the WordDocument stream")
        text = raw.decode("cp1252" if width == 1 else "utf-16-le", "replace")
        if row_ends and "\x07" in text:
            text = _mark_row_ends(text, start, width, row_ends)
        parts.append(text)
        total += cch
        if truncated:
            break
    return DocText(_plain("".join(parts)), truncated)


def _mark_row_ends(text: str, start: int, width: int, row_ends: frozenset[int]) -> str:
    chars = list(text)
    k = text.find("\x07")
    while k >= 0:
        if start + width * (k + 1) in row_ends:
            chars[k] = _ROW_END
        k = text.find("\x07", k + 1)
    return "".join(chars)


# Word's special characters in the text stream ([MS-DOC] 2.8.x): paragraph, cell, row,
# line, page and column marks become layout (a row's last cell gives up its tab to the
# row's newline); object anchors and note references go. (str.replace per character
# present: str.translate with a dict is ~20x slower on Japanese text)
_LAYOUT = (("\x07" + _ROW_END, "\n"), (_ROW_END, "\n"), ("\r", "\n"), ("\x07", "\t"),
           ("\x0b", "\n"), ("\x0c", "\n"), ("\x0e", "\n"), ("\x1e", "-"), ("\x1f", ""),
           ("\x01", ""), ("\x02", ""), ("\x03", ""), ("\x04", ""), ("\x05", ""),
           ("\x08", ""), ("\x13", ""), ("\x14", ""), ("\x15", ""))


def _plain(text: str) -> str:
    if "\x13" in text:
        text = _field_results(text)
    for special, layout in _LAYOUT:
        if special in text:
            text = text.replace(special, layout)
    return text


def _field_results(text: str) -> str:
    """Fields are \\x13 code \\x14 result \\x15, and nest: keep the results (what the
    reader sees), drop the codes (a field inside another's code goes with that code).
    Marks that do not pair up (a field never closed) drop nothing: text is not thrown
    away on a guess."""
    out: list[str] = []
    stack: list[bool] = []  # per open field: past its \x14 (showing its result)?
    in_code = 0  # open fields still in their code part
    start = 0
    for m in _FIELD_MARK.finditer(text):
        i, ch = m.start(), m.group()
        if not in_code:
            out.append(text[start:i])
        if ch == "\x13":
            stack.append(False)
            in_code += 1
        elif ch == "\x14" and stack and not stack[-1]:
            stack[-1] = True
            in_code -= 1
        elif ch == "\x15" and stack:
            in_code -= not stack.pop()
        start = i + 1
    if stack:
        return text  # unbalanced: the layout drops the marks, the text stays
    out.append(text[start:])
    return "".join(out)


# --- into an extraction ------------------------------------------------------------------

def read_doc(ex: Extraction, ole: Any, streams: set[str], att: Attachment, depth: int) -> None:
    """Word 97–2003 through its piece table, and the files embedded in it (ObjectPool).
    `ole`: the open compound file (olefile.OleFileIO), `streams`: its stream paths."""
    try:
        doc = doc_text(
            lambda name: _ole_stream(ex, ole, name) if name in streams else None,
            ex.limits.max_text_chars)
    except DocEncrypted as e:
        ex.problem("encrypted", att.where, str(e))
        return
    except DocError as e:
        ex.problem("parse_error", att.where, f"Word .doc: {e}")
        return
    if doc.truncated:
        ex.problem("too_large", att.where,
                   f"text truncated at {ex.limits.max_text_chars} characters")
    ex.text(att.where, doc.text)
    _object_pool(ex, ole, streams, att, depth)


def _ole_stream(ex: Extraction, ole: Any, name: str | list[str]) -> bytes:
    return ex.charged(bytes(ole.openstream(name).read()))


def _object_pool(ex: Extraction, ole: Any, streams: set[str], att: Attachment,
                 depth: int) -> None:
    """Objects embedded in a .doc ([MS-DOC] 2.1.5 ObjectPool): a whole file
    ("Package": an xlsx or docx) or a packaged file (Ole10Native) is read like an
    attachment; other objects (an Excel 97 sheet as OLE streams) are reported."""
    objects: dict[str, set[str]] = {}
    for s in streams:
        parts = s.split("/")
        if len(parts) >= 3 and parts[0] == "ObjectPool":
            objects.setdefault(parts[1], set()).add("/".join(parts[2:]))
    for obj, names in sorted(objects.items()):
        where = f"{att.where}/ObjectPool/{obj}"
        if "Package" in names:
            data = _ole_stream(ex, ole, ["ObjectPool", obj, "Package"])
            ex.inner_name(where, obj)
            ex.run(Attachment(filename=obj, content_type="", data=data, where=where),
                   depth + 1)
        elif "\x01Ole10Native" in names:
            raw = _ole_stream(ex, ole, ["ObjectPool", obj, "\x01Ole10Native"])
            name, data = _ole10_native(raw)
            ex.inner_name(f"{where}/{name}", name)
            ex.run(Attachment(filename=name, content_type="", data=data,
                              where=f"{where}/{name}"), depth + 1)
        elif names & {"Workbook", "Book", "WordDocument", "PowerPoint Document",
                      "CONTENTS", "Contents"}:
            ex.problem("unknown_binary", where, "embedded Office object not inspected")


def _ole10_native(raw: bytes) -> tuple[str, bytes]:
    """(file name, bytes) of a packaged file: u32 size, u16 type, then the label, the
    source path, two u32, the temporary path (NUL-terminated, ANSI) and the data."""
    try:
        pos = 6
        label_end = raw.index(b"\x00", pos)
        label = raw[pos:label_end].decode("cp932", "replace")
        pos = raw.index(b"\x00", label_end + 1) + 1 + 8  # source path, two u32
        pos = raw.index(b"\x00", pos) + 1  # temporary path
        size = struct.unpack_from("<I", raw, pos)[0]
        data = raw[pos + 4:pos + 4 + size]
        if len(data) == size:
            return (label.replace("/", "_").replace("\\", "_") or "object"), data
    except (ValueError, struct.error):
        pass
    return "object", raw
