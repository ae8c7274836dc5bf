"""Text of a Word 97–2003 document (.doc), from its piece table ([MS-DOC] 2.4.1).

Japanese offices still send .doc files; without this reader every one was
"uninspectable" and went to confirmation. The text is read the way Word itself finds
it: the FIB (at the start of the WordDocument stream) names the table stream and the
Clx in it; the Clx's piece table maps character positions to byte runs of the
WordDocument stream, each either UTF-16LE or "compressed" 8-bit (cp1252). That covers
the main text, footnotes, headers, comments and text boxes, in that order.

Fields keep their result and drop their code ("HYPERLINK …"); paragraph, cell and
line marks become newlines and tabs. Formatting, pictures and the "fast-saved"
incremental format (Word 6/95 era) are not read. Encrypted documents are reported as
such (the caller turns that into uninspectable.encrypted)."""

from __future__ import annotations

import re
import struct

_WIDENT = 0xA5EC  # the FIB's magic number
_FCLCB_CLX = 33  # index of fcClx/lcbClx in FibRgFcLcb97
_MAX_PIECES = 1_000_000
_FIELD_MARK = re.compile("[\x13\x14\x15]")


class DocError(Exception):
    """Not a Word document this reader understands, or a broken one (a parse_error)."""


class DocEncrypted(Exception):
    """The document is password-protected (encrypted or XOR-obfuscated)."""


def _u16(b: bytes, at: int) -> int:
    return int(struct.unpack_from("<H", b, at)[0])


def _u32(b: bytes, at: int) -> int:
    return int(struct.unpack_from("<I", b, at)[0])


def doc_text(word: bytes, table0: bytes | None, table1: bytes | None,
             max_chars: int) -> str:
    """The text of a .doc from its WordDocument stream and its 0Table/1Table streams
    (whichever exist). Raises DocEncrypted or DocError."""
    try:
        return _read(word, table0, table1, max_chars)
    except struct.error as e:
        raise DocError(f"truncated Word structure: {e}") from None


def _read(word: bytes, table0: bytes | None, table1: bytes | None, max_chars: int) -> str:
    if len(word) < 0x22 or _u16(word, 0) != _WIDENT:
        raise DocError("no Word 97 FIB at the start of the WordDocument stream")
    flags = _u16(word, 0x0A)
    if flags & 0x0100:  # fEncrypted (RC4 or, with fObfuscated, XOR)
        raise DocEncrypted("password-protected Word document")
    table = table1 if flags & 0x0200 else table0  # fWhichTblStm
    if table is None:
        raise DocError("the table stream the FIB names is missing")
    # FibBase (32 bytes), then counted blocks: FibRgW97, FibRgLw97, FibRgFcLcb
    at = 0x20
    csw = _u16(word, at)
    at += 2 + 2 * csw
    cslw = _u16(word, at)
    at += 2 + 4 * cslw
    cb_fclcb = _u16(word, at)
    at += 2
    if cb_fclcb <= _FCLCB_CLX:
        raise DocError("FIB too short to name the piece table")
    fc_clx = _u32(word, at + 8 * _FCLCB_CLX)
    lcb_clx = _u32(word, at + 8 * _FCLCB_CLX + 4)
    if lcb_clx == 0 or fc_clx + lcb_clx > len(table):
        raise DocError("piece table outside the table stream")
    return _pieces_text(word, table[fc_clx:fc_clx + lcb_clx], max_chars)


def _pieces_text(word: bytes, clx: bytes, max_chars: int) -> str:
    pos = 0
    while pos < len(clx) and clx[pos] == 0x01:  # Prc: property modifiers, skipped
        pos += 3 + _u16(clx, pos + 1)
    if pos >= len(clx) or clx[pos] != 0x02:
        raise DocError("no piece table (Pcdt) in the Clx")
    lcb = _u32(clx, pos + 1)
    plc = clx[pos + 5:pos + 5 + lcb]
    n = (len(plc) - 4) // 12
    if n <= 0 or n > _MAX_PIECES or len(plc) != 4 + 12 * n:
        raise DocError("malformed piece table")
    cps = struct.unpack_from(f"<{n + 1}I", plc, 0)
    parts: list[str] = []
    total = 0
    for i in range(n):
        cch = cps[i + 1] - cps[i]
        if cch < 0:
            raise DocError("piece table positions go backwards")
        fc = _u32(plc, 4 * (n + 1) + 8 * i + 2)
        if fc & 0x40000000:  # fCompressed: one byte a character at fc / 2
            start = (fc & 0x3FFFFFFF) // 2
            raw = word[start:start + cch]
            if len(raw) != cch:
                raise DocError("a text piece runs past the WordDocument stream")
            parts.append(raw.decode("cp1252", "replace"))
        else:
            raw = word[fc:fc + 2 * cch]
            if len(raw) != 2 * cch:
                raise DocError("a text piece runs past the WordDocument stream")
            parts.append(raw.decode("utf-16-le", "replace"))
        total += cch
        if total >= max_chars:
            break
    return _plain("".join(parts)[:max_chars])


# Word's special characters in the text stream ([MS-DOC] 2.8.x): paragraph, cell/row,
# line, page and column marks become layout; object anchors and note references go.
# (str.replace per character present: str.translate with a dict is ~20x slower on
# Japanese text)
_LAYOUT = (("\r", "\n"), ("\x07", "\t"), ("\x0b", "\n"), ("\x0c", "\n"), ("\x0e", "\n"),
           ("\x1e", "-"), ("\x1f", ""), ("\x01", ""), ("\x02", ""), ("\x03", ""),
           ("\x04", ""), ("\x05", ""), ("\x08", ""))


def _plain(text: str) -> str:
    if "\x13" in text:
        text = _field_results(text)
    for special, layout in _LAYOUT:
        if special in text:
            text = text.replace(special, layout)
    return text


def _field_results(text: str) -> str:
    """Fields are \\x13 code \\x14 result \\x15, and nest: keep the results (what the
    reader sees), drop the codes (a field inside another's code goes with that code)."""
    out: list[str] = []
    stack: list[bool] = []  # per open field: past its \\x14 (showing its result)?
    start = 0
    for m in _FIELD_MARK.finditer(text):
        i, ch = m.start(), m.group()
        if all(stack):  # no open field is in its code part
            out.append(text[start:i])
        if ch == "\x13":
            stack.append(False)
        elif ch == "\x14" and stack:
            stack[-1] = True
        elif ch == "\x15" and stack:
            stack.pop()
        start = i + 1
    if all(stack):
        out.append(text[start:])
    return "".join(out)
