"""The text of one WordprocessingML (docx) or DrawingML (pptx slide) part.

Every w:t / w:delText / a:t run of the part, with the paragraph, table cell/row, tab and
line-break structure of `xml_text`: the defusedxml walk that is also the complete reader
for what the fast one refuses (guard.inspect.readers.ooxml) and the ODF reader.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from guard.inspect.readers.ooxml import (
    Malformed,
    MiB,
    Unsupported,
    check_end,
    check_namespaces,
    decode_utf8,
    prolog,
    root_end_tag,
    screen,
    unit_ranges,
    xml_unescape,
)

_W_NS = frozenset({b"http://schemas.openxmlformats.org/wordprocessingml/2006/main",
                   b"http://purl.oclc.org/ooxml/wordprocessingml/main"})
_A_NS = frozenset({b"http://schemas.openxmlformats.org/drawingml/2006/main",
                   b"http://purl.oclc.org/ooxml/drawingml/main"})
_TEXT_NS = {b"w": _W_NS, b"a": _A_NS}

# One regex pass reads a piece; two patterns over the same tags. Both are written as a
# trie on the bytes after '<' (w:t…, w:delText, w:p…, /w:…, a:…): most tags in a part are
# run and paragraph properties, and the engine should leave each of them after one or
# two byte comparisons. They must list the same tags (tests compare both readers with
# the defusedxml walk on Word-shaped documents).
#
# _FAST gives one string per run (its character data, non-empty) and an empty string
# per paragraph end. Every other tag that shapes the text (tab, break, table cell or
# row, empty paragraph) matches too, with its own closing '>' as the start of its
# string: so the joined strings hold a '>' exactly when the piece has one of those tags,
# or a run whose text holds a raw '>' (writers escape it as &gt;). Such pieces, and
# pieces that start inside a table cell, are read again with _FULL, whose strings say
# what each match was by their first byte (_MARKS):
#   '>' run (then its text)   'p' paragraph end   'a' tab     ':' line break
#   'c' cell start (or, self-closed, an empty cell)   'w' cell end   'r' row end
# Why not marker bytes inserted before the search, or two groups: a replace over the
# whole part, or a tuple per match, each cost about as much as the search itself.
#
# Attribute values may hold '>' and '/' (`<w:t x:y="/>">`): tags are matched with their
# attributes quote by quote (_ATTRS), or a crafted value could end a run tag early and
# hide the run's text. End tags may have spaces before '>' (`</w:p >`).
_ATTRS = rb"""[^>"']*+(?:(?:"[^"]*+"|'[^']*+')[^>"']*+)*+"""  # (unrolled: fewer steps)
_END = rb"(?=[\s/>])"  # the end of a tag's name
_RUN_REST = rb"(?=[\s>])" + _ATTRS + rb"(?<!/)"  # after w:t / a:t / w:delText
# a tab character is <w:tab/>; <w:tab w:val="left" w:pos="840"/> (in <w:tabs>) is a
# tab stop, and every tab stop has w:pos
_TAB_CHAR = rb"ab" + _END + rb"(?![^>]*\sw:pos\s*=)"
_EMPTY_P = rb"p(?:\s" + _ATTRS + rb"(?<=/)|/)"  # <w:p/>, <w:p w:rsidR="…"/>
# after each match, the tags that usually follow and never matter (a run's end, the
# next paragraph's or run's start) are taken in the same match: fewer searches. (A '>'
# in one of their attribute values only ends the skip early: the search goes on from
# there and finds the next tag.)
_SKIP = rb"(?:</w:t></w:r>|<w:p" + _END + rb"[^>]*+(?<!/)>)?+(?:<w:r" + _END + rb"[^>]*+>)?+"
_FAST = re.compile(
    rb"<(?:(?:w:(?:t(?:" + _RUN_REST + rb">|(?:" + _TAB_CHAR + rb"|c" + _END + rb")"
    + _ATTRS + rb"(?=>))"
    rb"|delText" + _RUN_REST + rb">|(?:br|cr)" + _END + _ATTRS + rb"(?=>)|"
    + _EMPTY_P + rb"(?=>))"
    rb"|a:(?:t" + _RUN_REST + rb">|br" + _END + _ATTRS + rb"(?=>)|" + _EMPTY_P + rb"(?=>))"
    rb"|/w:t[cr]\s*(?=>))([^<]+)"
    rb"|/[wa]:p\s*>)" + _SKIP)
_FULL = re.compile(
    rb"<(?:w:(?:t(?:" + _RUN_REST + rb"(?=>)|(?=" + _TAB_CHAR + rb"|c" + _END + rb"))"
    rb"|delText" + _RUN_REST + rb"(?=>)|(?=" + _EMPTY_P + rb">))"
    rb"|/(?:w:(?:(?=p\s*>)|t(?=r\s*>))|a:(?=p\s*>)|(?=w:tc\s*>))"
    rb"|a:(?:t" + _RUN_REST + rb"(?=>)|(?=" + _EMPTY_P + rb">))"
    rb"|[wa](?=:br" + _END + rb")|w(?=:cr" + _END + rb"))([^<]*)" + _SKIP)
# _FULL's structure strings become marker bytes (XML cannot hold them; _word_piece
# refuses a piece that does)
_P, _TAB, _BR, _TC, _TCE, _TR = b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06"
_MARKS = {b"p": _P, b"a": _TAB, b":": _BR, b"w": _TCE, b"r": _TR}  # 'c': _cell_start
_SELF_CLOSED_CELL = re.compile(rb"c(?:\s" + _ATTRS + rb")?/>")
_MARKER_BYTES = (_P, _TAB, _BR, _TC, _TCE, _TR)


# Only a piece this large says whether the next one needs _FULL: the small piece made of
# the paragraph that straddled two chunks has often no tab or table, and switching back
# to _FAST after it cost a Word-shaped document a wasted _FAST pass over every other 4 MB
# piece (which _FULL then read again). Either pattern gives the same text.
_STATE_PIECE = 64 * 1024


@dataclass
class _WordState:
    in_cell: int = 0
    done: list[str] = field(default_factory=list)  # the text of the pieces before
    declared: set[bytes] = field(default_factory=set)
    # a part with tabs, breaks or tables has them in most pieces: after a piece that
    # needed _FULL for them, the next one goes there directly
    fast: bool = True


def _word_piece(buf: bytes, start: int, end: int, state: _WordState) -> str:
    """The text of buf[start:end], a piece that ends at a paragraph end."""
    screen(buf, start, end)
    for marker in _MARKER_BYTES:  # (not XML; _FULL's markers must be ours)
        if buf.find(marker, start, end) >= 0:
            raise Malformed("control character not allowed in XML")
    state.declared |= check_namespaces(buf, _TEXT_NS, start, end)
    if state.fast and not state.in_cell:
        body = b"".join([c or b"\n" for c in _FAST.findall(buf, start, end)])
        # (a raw CR would join the paragraph end's LF when line ends are normalised)
        if b">" not in body and b"\r" not in body:
            return xml_unescape(decode_utf8(body))
    return _word_full(buf, start, end, state)


def _cell_start(c: bytes) -> bytes:
    return _TC + _TCE if _SELF_CLOSED_CELL.match(c) else _TC  # <w:tc/> starts and ends


def _word_full(buf: bytes, start: int, end: int, state: _WordState) -> str:
    marks = _MARKS
    body = b"".join([c[1:] if c[:1] == b">" else marks.get(c[:1]) or _cell_start(c)
                     for c in _FULL.findall(buf, start, end)])
    table = _TC in body or _TCE in body or _TR in body
    if end - start >= _STATE_PIECE:
        state.fast = not (table or _TAB in body or _BR in body)
    text = xml_unescape(decode_utf8(body))
    if state.in_cell == 0 and not table:
        return _layout(text)
    return _word_tables(text, state)


def _layout(text: str, in_cell: bool = False) -> str:
    """Paragraph ends (a space inside a table cell), tabs and breaks. (str.translate
    would look each character up in a dict: ~20x slower on Japanese text.)"""
    text = text.replace("\x01", " " if in_cell else "\n")
    if "\x02" in text:
        text = text.replace("\x02", "\t")
    if "\x03" in text:
        text = text.replace("\x03", "\n")
    return text


_TABLE_SPLIT = re.compile("([\x04-\x06])")


def _word_tables(text: str, state: _WordState) -> str:
    """The cell/row rules of xml_text over the marked text: paragraphs inside
    a cell end with a space, a cell with a tab (replacing that space), a row with a
    newline (replacing the last cell's tab). One step per cell or row marker; the text
    between two of them is laid out at once."""
    out: list[str] = []
    last = ""  # what the last step ended with: " " (a paragraph in a cell), "\t", or ""
    for k, part in enumerate(_TABLE_SPLIT.split(text)):
        if k % 2 == 0:  # the text between markers
            if part:
                out.append(_layout(part, state.in_cell > 0))
                tail = part[-1]
                last = (" " if tail == "\x01" and state.in_cell else
                        "\t" if tail == "\x02" else "")
        elif part == "\x04":
            state.in_cell += 1
        elif part == "\x05":
            state.in_cell -= 1
            if out and last == " ":
                out[-1] = out[-1][:-1]
            elif not out and state.done and state.done[-1].endswith(" "):
                # the cell's last paragraph ended the previous piece (pieces end at
                # paragraph ends)
                state.done[-1] = state.done[-1][:-1]
            out.append("\t")
            last = "\t"
        else:  # "\x06", a row end
            if out and last == "\t":
                out[-1] = out[-1][:-1]
            out.append("\n")
            last = ""
    return "".join(out)


def word_text(chunks: Iterable[bytes], kind: str, max_carry: int = 64 * MiB) -> str:
    """Text of one docx part (kind "w") or pptx part (kind "a"), as xml_text
    gives it. Raises Unsupported or Malformed."""
    return "".join(word_texts(chunks, kind, max_carry))


def word_texts(chunks: Iterable[bytes], kind: str, max_carry: int = 64 * MiB) -> list[str]:
    """word_text in pieces (one per few MB of XML, each ending at a paragraph end), for
    a caller that would cut the text again anyway: joining costs a copy."""
    cut = b"</w:p>" if kind == "w" else b"</a:p>"
    state = _WordState()
    out = state.done
    root_end = b""
    last = b""
    for n, (buf, start, end) in enumerate(unit_ranges(chunks, cut, max_carry)):
        if n == 0:
            start += prolog(buf[start:start + 4096])
            root_end = root_end_tag(buf[start:start + 4096])
        out.append(_word_piece(buf, start, end, state))
        if end > start:
            last = buf[max(start, end - 4096):end]
    check_end(last, root_end)
    if not ({b"w", b"a"} & state.declared) and (out and any(out)):
        raise Unsupported("text prefixes not declared")
    return out


# --- the complete reader: a defusedxml walk (also the ODF text reader) --------------------

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
_ODF_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TEXT_TAGS = {_W + "t", _A + "t", _W + "delText"}
_PARA_TAGS = {_W + "p", _A + "p", _ODF_TEXT + "p", _ODF_TEXT + "h"}


def xml_text(stream: IO[bytes]) -> str:
    """Text of one OOXML/ODF part: w:t / a:t runs, tabs and breaks as whitespace, a
    newline per paragraph, table rows as tab-separated lines (so header rows such as
    "氏名\t電話" stay recognisable). defusedxml with forbid_dtd: parts never carry a
    DOCTYPE, and refusing one stops entity-expansion bombs."""
    from defusedxml.ElementTree import iterparse

    out: list[str] = []
    in_cell = 0
    for event, elem in iterparse(stream, events=("start", "end"), forbid_dtd=True):
        tag = elem.tag
        if event == "start":
            if tag == _W + "tc":
                in_cell += 1
            continue
        if tag in _TEXT_TAGS:
            out.append(elem.text or "")
        elif tag == _W + "tab" and _W + "pos" not in elem.attrib:  # (else a tab stop)
            out.append("\t")
        elif tag in (_W + "br", _W + "cr", _A + "br"):  # a:br: a line break in a slide
            out.append("\n")
        elif tag == _W + "tc":
            in_cell -= 1
            if out and out[-1] == " ":
                out.pop()
            out.append("\t")
        elif tag == _W + "tr":
            if out and out[-1] == "\t":
                out.pop()
            out.append("\n")
            elem.clear()
        elif tag in _PARA_TAGS:
            if tag.startswith(_ODF_TEXT):
                out.append("".join(elem.itertext()))
            out.append(" " if in_cell else "\n")
            elem.clear()  # keep memory flat on big documents
    return "".join(out)
