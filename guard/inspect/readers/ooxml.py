"""Fast readers for OOXML parts: xlsx sheets (sampled rows + counted rows) and docx/pptx text.

Why not a general XML parser: an event parser calls Python for every element, and a
10 MB xlsx is ~50 MB of sheet XML with ~1.2 M cells (calamine: ~15 µs a row; defusedxml
iterparse on docx: ~10 M characters/s). These readers do their per-byte work in C
(zlib, bytes.split/count/replace, one `re.findall` per chunk) and call Python per row
or per run only where the result needs it.

What is read completely and what is sampled (docs/benchmarks.md "Inspection"):

- docx/pptx: every w:t / w:delText / a:t run of every part, with the paragraph, table
  cell/row, tab and line-break structure of guard.inspect.extract._xml_text (the
  defusedxml walk this replaces; it is still the fallback and the ODF reader).
- xlsx, per sheet:
  * the first rows up to `sample_cells` cells are parsed completely (expat, with every
    cell type, shared strings, rich text, dates from the number formats): they are the
    Table rows the personal-data detectors look at (they only scan the first 20k cells
    of a table anyway, guard.inspect.run.PII_LIMITS);
  * every row after that is *counted* on the raw bytes (rows that hold at least one
    value) and reported as `Table.more_rows`, so the people-list row count is the
    sheet's real row count;
  * the text of rows after the sample is not lost: every shared string (each text cell
    of the workbook is one, stored once) that the sampled rows did not use, every inline
    string (`t="inlineStr"`, as openpyxl writes) and every formula string result
    (`t="str"`) after the sample go into the attachment's text, which the keyword and
    customer-name detectors read in full. Numbers, booleans and dates after the sample
    are counted, not read.

Security: the same bounded member streams as everything else (zip-bomb caps, ratio and
per-message budgets); no DTD (a DOCTYPE or ENTITY declaration is refused, like
defusedxml's forbid_dtd); only the five predefined entities and character references
are expanded, anything else is a parse error; input must be UTF-8. Anything these
readers do not understand (CDATA, comments or processing instructions in content,
namespace prefixes other than the usual ones, a non-UTF-8 encoding, xlsb) raises
`Unsupported`, and the caller falls back to the slower complete readers (calamine,
defusedxml). Malformed input (truncated part, bad entity, bad shared-string index)
raises `Malformed`, which becomes a parse_error problem.

Not a full well-formedness check of the counted part of a sheet or of a docx: the
readers check the prolog, the namespace bindings, entities, characters and that the
part ends with its root element's end tag, and read every text run a parser would
report; a document broken in the middle is read as far as its runs go.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

MiB = 1024 * 1024


class Unsupported(Exception):
    """The fast reader does not handle this input; use the complete reader."""


class Malformed(Exception):
    """Broken or refused XML (DTD, unknown entity, truncated part): a parse_error."""


# --- shared helpers ----------------------------------------------------------------------

_ENTITY = re.compile(r"&(?:(amp|lt|gt|quot|apos)|#([0-9]{1,7})|#x([0-9a-fA-F]{1,6}));")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _entity(m: re.Match[str]) -> str:
    name, dec, hexa = m.groups()
    if name:
        return _NAMED[name]
    code = int(dec) if dec else int(hexa, 16)
    if code > 0x10FFFF:
        raise Malformed(f"character reference {m.group(0)!r} out of range")
    ch = chr(code)
    if _ILLEGAL_XML.match(ch):
        raise Malformed(f"character reference {m.group(0)!r} is not allowed in XML")
    return ch


def xml_unescape(text: str) -> str:
    """Character data as an XML parser reports it: the five predefined entities and
    character references; any other `&` (an entity a DTD would have to declare, or a
    bare ampersand) is malformed. Line ends are normalised first, as XML requires
    (a literal CR becomes LF; `&#13;` stays a CR)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "&" not in text:
        return text
    out, n = _ENTITY.subn(_entity, text)
    if n != text.count("&"):
        raise Malformed("undefined entity or bare '&' in XML text")
    return out


_OOXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def ooxml_unescape(text: str) -> str:
    """SpreadsheetML strings escape characters XML cannot carry as `_xHHHH_` (Excel
    writes a CR as `_x000D_`, a literal "_x0041_" as `_x005F_x0041_`); calamine
    decodes them, so this does too."""
    if "_x" not in text:
        return text
    return _OOXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


_DECL = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*(<\?xml\b[^>]*\?>)?", re.S)
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def _prolog(head: bytes) -> int:
    """Check the start of a part; return where the content after the XML declaration
    starts. UTF-8 only (OOXML writers use it); UTF-16 and others fall back."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or head[:4] in (b"<\x00?\x00", b"\x00<\x00?"):
        raise Unsupported("UTF-16 XML")
    m = _DECL.match(head)
    assert m is not None  # the pattern matches the empty string
    if m.group(1):
        enc = _ENCODING.search(m.group(1))
        if enc and enc.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
            raise Unsupported(f"XML encoding {enc.group(1).decode('ascii', 'replace')}")
    return m.end()


def _screen(buf: bytes, start: int = 0, end: int | None = None) -> None:
    """What the fast readers refuse (DTDs) or leave to a full parser (CDATA, comments,
    processing instructions inside content). `buf[start:end]` is content after the
    prolog."""
    if end is None:
        end = len(buf)

    def has(needle: bytes) -> bool:
        return buf.find(needle, start, end) >= 0

    # (memchr for the rare byte first: two-byte searches over markup are slower)
    if has(b"!") and has(b"<!"):
        if has(b"<!DOCTYPE") or has(b"<!ENTITY"):
            raise Malformed("DTD forbidden (DOCTYPE or ENTITY declaration)")
        raise Unsupported("CDATA section or comment in content")
    if has(b"?") and has(b"<?"):
        raise Unsupported("processing instruction in content")
    if has(b"\x00"):
        raise Malformed("NUL character in XML")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Malformed(f"not UTF-8: {e}") from None


_ROOT = re.compile(rb"\s*<([A-Za-z_][\w.:-]*)")


def _root_end_tag(content: bytes) -> bytes:
    m = _ROOT.match(content)
    if not m:
        raise Malformed("no root element")
    return b"</" + m.group(1)


def _check_end(tail: bytes, root_end: bytes) -> None:
    """The part must end with its root element's end tag: a crafted truncated part
    (the zip CRC catches an accidental one) is malformed, not silently short."""
    tail = tail.rstrip()
    i = tail.rfind(root_end)
    if i < 0 or not tail.endswith(b">") or tail[i + len(root_end):-1].strip():
        raise Malformed("truncated XML (no end tag of the root element)")


def read_chunks(stream: IO[bytes], size: int = 4 * MiB) -> Iterator[bytes]:
    while True:
        chunk = stream.read(size)
        if not chunk:
            return
        yield chunk


def _units(chunks: Iterable[bytes], cut: bytes, max_carry: int) -> Iterator[bytes]:
    """Re-chunk a byte stream so that each piece ends right after `cut` (a paragraph or
    row end tag): text runs and rows never straddle two pieces. The last piece is the
    rest. A single element larger than max_carry is refused."""
    for buf, start, end in _ranges(chunks, cut, max_carry):
        yield buf if start == 0 and end == len(buf) else buf[start:end]


def _ranges(chunks: Iterable[bytes], cut: bytes, max_carry: int
            ) -> Iterator[tuple[bytes, int, int]]:
    """_units without copying the chunks: (buffer, start, end), where buffer[start:end]
    is a piece. Only the element that straddles two chunks is copied (with the rest
    of the earlier chunk): copying 35 MB of XML costs ~20 ms on these machines."""
    carry = b""
    for chunk in chunks:
        start = 0
        if carry:
            # the first cut in chunk, or one that straddles the carry and the chunk
            k = len(cut)
            overlap = carry[1 - k:]
            w = (overlap + chunk[:k - 1]).find(cut)
            if w >= 0:
                j = w + k - len(overlap)
            else:
                j = chunk.find(cut)
                j = j + k if j >= 0 else -1
            if j < 0:
                carry += chunk
                if len(carry) > max_carry:
                    raise Unsupported("element too large for the streaming reader")
                continue
            joined = carry + chunk[:j]
            yield joined, 0, len(joined)
            start = j
        i = chunk.rfind(cut, start)
        if i < 0:
            carry = chunk[start:]
            if len(carry) > max_carry:
                raise Unsupported("element too large for the streaming reader")
            continue
        i += len(cut)
        yield chunk, start, i
        carry = chunk[i:]
    yield carry, 0, len(carry)


# --- xmlns checks --------------------------------------------------------------------------

# every namespace declaration: a prefix is any name (not only ASCII word characters)
_XMLNS = re.compile(rb"""xmlns(?::([^\s=/>]+))?\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def _check_namespaces(buf: bytes, expected: dict[bytes, frozenset[bytes]], start: int = 0,
                      end: int | None = None) -> set[bytes]:
    """Prefixes in `expected` may only be bound to their namespace URIs, and those URIs
    only to those prefixes (never as the default namespace): the regexes match on the
    prefix. Returns the expected prefixes that this piece (buf[start:end]) declares.
    Anything else that could bind a namespace (a URI written with character
    references, a declaration this pattern does not read) goes to the full parser."""
    seen: set[bytes] = set()
    if end is None:
        end = len(buf)
    if buf.find(b"xmlns", start, end) < 0:
        return seen
    all_uris = {u: p for p, us in expected.items() for u in us}
    found = _XMLNS.findall(buf, start, end)
    if len(found) != buf.count(b"xmlns", start, end):
        raise Unsupported("a namespace declaration the fast reader does not read")
    for prefix, quoted, apos in found:
        uri = quoted or apos
        if b"&" in uri:
            raise Unsupported("namespace URI with references")
        if prefix in expected:
            if uri not in expected[prefix]:
                raise Unsupported(f"prefix {prefix.decode(errors='replace')} bound to "
                                  "another namespace")
            seen.add(prefix)
        elif uri in all_uris:
            raise Unsupported("unusual namespace prefix")
    return seen


# --- docx / pptx text -----------------------------------------------------------------------

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
    _screen(buf, start, end)
    for marker in _MARKER_BYTES:  # (not XML; _FULL's markers must be ours)
        if buf.find(marker, start, end) >= 0:
            raise Malformed("control character not allowed in XML")
    state.declared |= _check_namespaces(buf, _TEXT_NS, start, end)
    if state.fast and not state.in_cell:
        body = b"".join([c or b"\n" for c in _FAST.findall(buf, start, end)])
        # (a raw CR would join the paragraph end's LF when line ends are normalised)
        if b">" not in body and b"\r" not in body:
            return xml_unescape(_decode(body))
    return _word_full(buf, start, end, state)


def _cell_start(c: bytes) -> bytes:
    return _TC + _TCE if _SELF_CLOSED_CELL.match(c) else _TC  # <w:tc/> starts and ends


def _word_full(buf: bytes, start: int, end: int, state: _WordState) -> str:
    marks = _MARKS
    body = b"".join([c[1:] if c[:1] == b">" else marks.get(c[:1]) or _cell_start(c)
                     for c in _FULL.findall(buf, start, end)])
    table = _TC in body or _TCE in body or _TR in body
    state.fast = not (table or _TAB in body or _BR in body)
    text = xml_unescape(_decode(body))
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
    """The cell/row rules of extract._xml_text over the marked text: paragraphs inside
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
    """Text of one docx part (kind "w") or pptx part (kind "a"), as extract._xml_text
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
    for n, (buf, start, end) in enumerate(_ranges(chunks, cut, max_carry)):
        if n == 0:
            start += _prolog(buf[start:start + 4096])
            root_end = _root_end_tag(buf[start:start + 4096])
        out.append(_word_piece(buf, start, end, state))
        if end > start:
            last = buf[max(start, end - 4096):end]
    _check_end(last, root_end)
    if not ({b"w", b"a"} & state.declared) and (out and any(out)):
        raise Unsupported("text prefixes not declared")
    return out


# --- xlsx ------------------------------------------------------------------------------------

_S_NS = ("http://schemas.openxmlformats.org/spreadsheetml/2006/main",
         "http://purl.oclc.org/ooxml/spreadsheetml/main")
_S_NS_B = frozenset(u.encode() for u in _S_NS)
_R_NS = ("http://schemas.openxmlformats.org/officeDocument/2006/relationships",
         "http://purl.oclc.org/ooxml/officeDocument/relationships")
_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"

# calamine's date formats (formats.rs), plus the East Asian built-in date formats
# 27-36 and 50-58 (年/月/日 and era formats in a Japanese Excel): birth dates matter here.
_DATE_IDS = {*range(14, 23), 45, 47, *range(27, 37), *range(50, 59)}
_DURATION_IDS = {46}


def number_format_kind(code: str) -> str:
    """"date", "duration" or "" for a custom number format (calamine's rules)."""
    escaped = is_quote = ap = hms = False
    brackets = 0
    prev = " "
    for s in code:
        if escaped:
            escaped = False
        elif s in "_\\*":
            escaped = True
        elif is_quote:
            if s == '"':
                is_quote = False
        elif s == '"':
            is_quote = True
        elif s == ";":
            return ""
        elif s == "[":
            brackets += 1
        elif s == "]" and brackets == 1 and hms:
            return "duration"
        elif s == "]":
            brackets = max(brackets - 1, 0)
        elif s in "aA" and not ap and brackets == 0:
            ap = True
        elif ap and brackets == 0 and s in "pm/PM":
            return "date"
        elif not ap and brackets == 0 and s in "dmhysDMHYS":
            return "date"
        elif not (hms and s.lower() == prev.lower()):
            hms = prev == "[" and s in "mhsMHS"
        prev = s
    return ""


def excel_date(value: float, kind: str, is_1904: bool) -> object:
    """A serial date as python-calamine returns it: date, time, datetime or timedelta."""
    ms = round(value * 86_400_000)
    if kind == "duration":
        return dt.timedelta(milliseconds=ms)
    if is_1904:
        ms += 1462 * 86_400_000
    elif value < 60:
        ms += 86_400_000  # Excel's 1900-02-29
    days, rest = divmod(ms, 86_400_000)
    if 0 <= value < 1 and not is_1904:
        return (dt.datetime.min + dt.timedelta(milliseconds=rest)).time()
    try:
        day = dt.date(1899, 12, 30) + dt.timedelta(days=days)
    except OverflowError:
        return value
    if rest == 0:
        return day
    return dt.datetime.combine(day, dt.time()) + dt.timedelta(milliseconds=rest)


def cell_str(v: object) -> str:
    """A cell value as text, the way extract() has always written calamine's values."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float):
        # phone and account numbers typed into Excel come back as floats
        if v.is_integer() and abs(v) < 1e16:
            return str(int(v))
        return repr(v)
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    return str(v).strip()


_SST_T = re.compile(r"<t(?:\s[^>]*)?(?<!/)>([^<]*)</t>")
_SST_RPH = re.compile(r"<rPh\b.*?</rPh>|<rPh\b[^>]*/>", re.S)
_SST_RUN_JOIN = re.compile(r"</t>\s*</r>\s*<r>\s*(?:<rPr>.*?</rPr>|<rPr/>)?\s*<t(?:\s[^>]*)?>",
                           re.S)
_SST_ROOT = re.compile(rb"\s*<sst[\s>]")
_SST_STEP = 1 * 1024 * 1024  # bytes of the part parsed per step


class SharedStrings:
    """The strings of sharedStrings.xml by index: rich-text runs joined, phonetic
    readings (rPh: the furigana of names typed with a Japanese IME) left out, as
    calamine does.

    Parsed on demand, in blocks from the start: Excel numbers the strings in the order
    it first writes them, so a sheet's sampled first rows use the first ones. The
    strings no row asked for are only needed as text (`unused_text`): in the usual
    layout (`<si><t>…</t></si>` one after another) that is one replace and one decode,
    not a Python object per string (the bench's 10 MB part: ~0.06 s instead of ~0.2 s)."""

    def __init__(self, data: bytes) -> None:
        start = _prolog(data[:4096])
        body = data[start:]
        _screen(body)
        _check_namespaces(body[:4096], {b"": _S_NS_B})
        if not _SST_ROOT.match(body):
            raise Unsupported("shared strings root is not <sst>")
        _check_end(body[-4096:], b"</sst")
        self._body = body
        self._end = body.rfind(b"</sst")
        first = body.find(b"<si", 0, self._end)
        self._pos = self._end if first < 0 else first  # the next string not parsed yet
        self.parsed: list[str] = []  # the strings parsed so far (grows in place)

    def __getitem__(self, i: int) -> str:
        while i >= len(self.parsed) and self._pos < self._end:
            self._parse(_SST_STEP)
        if i < 0:
            raise IndexError(i)
        return self.parsed[i]

    def _parse(self, size: int) -> None:
        """Parse about `size` more bytes of strings (up to the next <si>)."""
        cut = self._body.find(b"<si", self._pos + size, self._end)
        if cut < 0:
            cut = self._end
        self.parsed.extend(_parse_strings(self._body[self._pos: cut]))
        self._pos = cut

    def unused_text(self, used: set[int]) -> str:
        """Every string whose index is not in `used`, one per line, in order."""
        if used:
            self[max(used)]  # (the sampled rows have asked for these already)
        parsed = self.parsed
        out: list[str] = []
        start = 0
        for i in sorted(used):
            out.extend(parsed[start:i])
            start = i + 1
        out.extend(parsed[start:])
        if self._pos < self._end:
            out.append(_strings_text(self._body[self._pos: self._end]))
        return "\n".join(out)


def _parse_strings(part: bytes) -> list[str]:
    """The strings of a run of whole <si> elements."""
    s = _decode(part)
    # (each `in` below is a pass over the part: the rarer forms are tested together)
    if "<rPh" in s:
        s = _SST_RPH.sub("", s)
    if "</r>" in s:
        s = _SST_RUN_JOIN.sub("", s)
    if "/>" in s:
        s = s.replace("<t/>", "<t></t>").replace("<si/>", "<si><t></t></si>")
    strings = _SST_T.findall(s)
    if len(strings) != s.count("<si"):  # "<si>" and "<si ...>" (never "<sst": checked)
        raise Unsupported("shared strings layout")
    if "&" in s or "\r" in s:
        strings = [xml_unescape(x) if "&" in x or "\r" in x else x for x in strings]
    if "_x" in s:
        strings = [ooxml_unescape(x) if "_x" in x else x for x in strings]
    return strings


def _strings_text(part: bytes) -> str:
    """The strings of a run of whole <si> elements, one per line."""
    plain = part.rstrip()
    if plain.startswith(b"<si><t>") and plain.endswith(b"</t></si>"):
        # when every boundary is exactly this and no other '<' is left, every string
        # was <si><t>text</t></si>
        inner = plain[7:-9].replace(b"</t></si><si><t>", b"\n")
        if b"<" not in inner:
            return ooxml_unescape(xml_unescape(_decode(inner)))
    return "\n".join(_parse_strings(part))


def shared_strings(data: bytes) -> list[str]:
    """Every string of sharedStrings.xml by index (SharedStrings, all parsed)."""
    sst = SharedStrings(data)
    sst._parse(len(data))
    return sst.parsed


@dataclass
class Styles:
    kinds: list[str]  # per cellXfs index: "date", "duration" or ""


def styles(data: bytes) -> Styles:
    from defusedxml.ElementTree import fromstring

    root = fromstring(data, forbid_dtd=True)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    custom = {}
    for fmt in root.iter(f"{ns}numFmt"):
        fid = fmt.get("numFmtId")
        if fid is not None:
            custom[fid] = number_format_kind(fmt.get("formatCode") or "")
    kinds: list[str] = []
    xfs = root.find(f"{ns}cellXfs")
    for xf in xfs if xfs is not None else ():
        fid = xf.get("numFmtId") or "0"
        if fid in custom:
            kinds.append(custom[fid])
        elif fid.isdigit() and int(fid) in _DATE_IDS:
            kinds.append("date")
        elif fid.isdigit() and int(fid) in _DURATION_IDS:
            kinds.append("duration")
        else:
            kinds.append("")
    return Styles(kinds)


@dataclass
class WorkbookParts:
    sheets: list[tuple[str, str]]  # (name, zip member)
    shared_strings: str | None
    styles: str | None
    is_1904: bool


def _resolve(base: str, target: str) -> str:
    import posixpath

    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(posixpath.dirname(base), target))


def workbook_parts(workbook_xml: bytes, rels_xml: bytes, names: set[str]) -> WorkbookParts:
    from defusedxml.ElementTree import fromstring

    wb = fromstring(workbook_xml, forbid_dtd=True)
    rels = fromstring(rels_xml, forbid_dtd=True)
    if not wb.tag.startswith("{") or wb.tag[1: wb.tag.index("}")] not in _S_NS:
        raise Unsupported("workbook namespace")
    ns = wb.tag[: wb.tag.index("}") + 1]
    targets: dict[str, tuple[str, str]] = {}
    by_type: dict[str, str] = {}
    for r in rels.iter(_PKG_REL):
        rtype = (r.get("Type") or "").rsplit("/", 1)[-1]
        if r.get("TargetMode") == "External":
            continue
        path = _resolve("xl/workbook.xml", r.get("Target") or "")
        targets[r.get("Id") or ""] = (rtype, path)
        by_type.setdefault(rtype, path)
    sheets = []
    for sheet in wb.iter(f"{ns}sheet"):
        rid = next((sheet.get(f"{{{u}}}id") for u in _R_NS if sheet.get(f"{{{u}}}id")), None)
        rtype, path = targets.get(rid or "", ("", ""))
        if rtype in ("chartsheet", "dialogsheet", "macrosheet"):
            continue  # no cells (calamine skips them too)
        if rtype != "worksheet" or path not in names:
            raise Unsupported(f"sheet {sheet.get('name')!r}: no worksheet part")
        sheets.append((sheet.get("name") or "", path))
    pr = wb.find(f"{ns}workbookPr")
    is_1904 = pr is not None and (pr.get("date1904") or "").lower() in ("1", "true")
    sst = by_type.get("sharedStrings")
    sty = by_type.get("styles")
    return WorkbookParts(sheets, sst if sst in names else None,
                         sty if sty in names else None, is_1904)


_COL_CACHE: dict[bytes, int] = {}


def _col_index(letters: bytes) -> int:
    n = _COL_CACHE.get(letters)
    if n is None:
        if not letters or len(letters) > 3 or not letters.isalpha():
            raise Malformed(f"bad cell reference {letters[:10]!r}")
        n = 0
        for ch in letters.upper():
            n = n * 26 + ch - 64
        n -= 1
        if len(_COL_CACHE) < 20_000:
            _COL_CACHE[letters] = n
    return n


@dataclass
class SheetResult:
    rows: list[list[str]]  # sampled rows, empty rows left out, trailing empty cells trimmed
    more_rows: int  # rows after the sample that hold at least one value (counted only)
    tail_texts: list[str]  # inline and formula strings after the sample
    cells: int  # cells in `rows`


_ROW = re.compile(rb"<row\b[^>]*?(?:/>|>(.*?)</row>)", re.S)
# The cells Excel, LibreOffice and openpyxl write for numbers, shared strings, booleans
# and formulas: (column, style, type, value), all in one C call per row. A row where
# this does not account for every <c> goes through _CELL (any attribute order,
# quoting, inline strings).
_CELL_FAST = re.compile(
    rb'<c r="([A-Z]{1,3})[0-9]+"(?: s="([0-9]+)")?(?: t="([a-zA-Z]+)")?'
    rb"(?:/>|>(?:<f>[^<]*</f>|<f [^>]*/>|<f [^>]*>[^<]*</f>)?<v>([^<]*)</v></c>)")
_ROW_OR_CELL = re.compile(rb"(<row)\b[^>]*>|" + _CELL_FAST.pattern)
_CELL = re.compile(rb"<c(?=[\s/>])([^>]*?)(?:/>|>(.*?)</c>)", re.S)
_ATTR = re.compile(rb"""([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_V = re.compile(rb"<v>([^<]*)</v>")
_IS = re.compile(rb"<is>(.*?)</is>", re.S)
_T = re.compile(rb"<t(?:\s[^>]*)?(?<!/)>([^<]*)</t>")
_RPH = re.compile(rb"<rPh\b.*?</rPh>", re.S)


def _nth(data: bytes, needle: bytes, n: int) -> int:
    """Offset of the n-th (from 0) occurrence of `needle`, or len(data)."""
    at = -1
    for _ in range(n + 1):
        at = data.find(needle, at + 1)
        if at < 0:
            return len(data)
    return at


def _text(raw: bytes) -> str:
    return ooxml_unescape(xml_unescape(_decode(raw)))


class _Sampler:
    """The first rows of a sheet, until the cell budget is used up."""

    def __init__(self, sst: SharedStrings | list[str], kinds: list[str], is_1904: bool,
                 budget: int, used: set[int] | None) -> None:
        self.sst = sst
        # the strings parsed so far, indexed without a method call (grows in place)
        self.parsed = sst.parsed if isinstance(sst, SharedStrings) else sst
        self.kinds = kinds
        self.is_1904 = is_1904
        self.budget = budget
        self.used = used
        self.pending: list[int] = []  # shared strings of the row being read
        self.rows: list[list[str]] = []
        self.cells = 0

    def feed(self, unit: bytes) -> int | None:
        """Read the rows of `unit`; the offset where counting takes over once the
        budget is used up (at a row that did not fit, or after the last row read)."""
        at = self._feed_bulk(unit)
        return self._feed_rows(unit) if at is False else at

    def _feed_bulk(self, unit: bytes) -> int | bool | None:
        """The usual sheet (every cell in one of _CELL_FAST's forms): one findall for
        all rows of the unit, then a Python step per cell. False: use _feed_rows."""
        first = unit.find(b"<row")
        last = unit.rfind(b"</row>")
        if first < 0 or last < first:
            return False
        region = unit[first: last + 6]
        items = _ROW_OR_CELL.findall(region)
        if len(items) != (region.count(b"<row") + region.count(b"<c ")
                          + region.count(b"<c>")):
            return False  # another cell form somewhere: row by row
        row_no = -1
        cells: list[tuple[int, str]] = []
        for row_start, letters, style, ctype, raw in items:
            if not row_start:
                if raw:
                    value = self._value(ctype or b"n", raw, style)
                    if value:
                        cells.append((_col_index(letters), value))
                continue
            done = self._end_row(cells)
            if done is not None:
                return first + _nth(region, b"<row", row_no + (0 if done else 1))
            cells = []
            row_no += 1
        done = self._end_row(cells)
        if done is not None:
            return first + (_nth(region, b"<row", row_no) if done else len(region))
        return None

    def _end_row(self, cells: list[tuple[int, str]]) -> bool | None:
        """Add the row just read (see _add_row). Its shared strings count as used
        unless the row did not fit: then they stay in the text of the rest."""
        done = self._add_row(cells) if cells else None
        if done is not True and self.used is not None:
            self.used.update(self.pending)
        self.pending.clear()
        return done

    def _add_row(self, cells: list[tuple[int, str]]) -> bool | None:
        """Add a row with values: None if the budget has room for more; True if this
        row did not fit (it is counted with the rest); False if it used the budget up."""
        if self.cells + len(cells) > self.budget:
            return True
        width = max(c for c, _ in cells) + 1
        row = [""] * width
        for c, v in cells:
            row[c] = v
        self.rows.append(row)
        self.cells += len(cells)
        return False if self.cells >= self.budget else None

    def _feed_rows(self, unit: bytes) -> int | None:
        for m in _ROW.finditer(unit):
            content = m.group(1)
            if not content:
                continue
            done = self._end_row(self._row(content))
            if done is not None:
                return m.start() if done else m.end()
        return None

    def _row(self, content: bytes) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        fast = _CELL_FAST.findall(content)
        if len(fast) == content.count(b"<c ") + content.count(b"<c>"):
            for letters, style, ctype, raw in fast:
                if raw:
                    value = self._value(ctype or b"n", raw, style)
                    if value:
                        out.append((_col_index(letters), value))
            return out
        col = -1
        for attrs_raw, inner in _CELL.findall(content):
            attrs = {k: v1 or v2 for k, v1, v2 in _ATTR.findall(attrs_raw)}
            ref = attrs.get(b"r")
            col = _col_index(ref.rstrip(b"0123456789").lstrip(b"$")) if ref else col + 1
            ctype = attrs.get(b"t", b"n")
            if ctype == b"inlineStr":
                m = _IS.search(inner)
                if not m:
                    continue
                inline = m.group(1)
                if b"<rPh" in inline:
                    inline = _RPH.sub(b"", inline)
                value = _text(b"".join(_T.findall(inline))).strip()
            else:
                m = _V.search(inner)
                if not m or not m.group(1):
                    continue
                value = self._value(ctype, m.group(1), attrs.get(b"s", b""))
            if value:
                out.append((col, value))
        return out

    def _value(self, ctype: bytes, raw: bytes, style: bytes) -> str:
        if ctype == b"s":
            try:
                i = int(raw)
                value = self.parsed[i] if 0 <= i < len(self.parsed) else self.sst[i]
            except (ValueError, IndexError):
                raise Malformed(f"shared string index {raw[:20]!r} not found") from None
            self.pending.append(i)
            return value.strip()
        if ctype == b"n":
            try:
                number = float(raw)
            except ValueError:
                raise Malformed(f"bad number {raw[:20]!r}") from None
            if style:
                try:
                    kind = self.kinds[int(style)]
                except (ValueError, IndexError):
                    kind = ""
                if kind:
                    return cell_str(excel_date(number, kind, self.is_1904))
            return cell_str(number)
        if ctype == b"str" or ctype == b"inlineStr":
            return _text(raw).strip()
        if ctype == b"b":
            raw = raw.strip()
            return "TRUE" if raw in (b"1", b"true") else "FALSE" if raw else ""
        if ctype == b"e":
            return ""  # calamine gives error cells (#N/A, #DIV/0!) as empty
        if ctype == b"d":
            text = _text(raw).strip()
            try:
                return cell_str(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
            except ValueError:
                return text
        raise Malformed(f"unknown cell type {ctype[:20]!r}")


# After the sample: a row "holds a value" when it has a <v> or an inline string.
_TAIL_IS = b"<is>"
_TAIL_INLINE = re.compile(rb"<is>(.*?)</is>", re.S)
_TAIL_STR = re.compile(rb"""<c\b[^>]*\bt=["']str["'][^>]*>(?:<f\b[^>]*/>|<f\b[^>]*>[^<]*</f>)?"""
                       rb"""<v>([^<]*)</v>""")


def _tail_texts(piece: bytes, inline: bool) -> list[str]:
    out: list[bytes] = []
    if inline:
        if b"<rPh" in piece:
            piece = _RPH.sub(b"", piece)
        if b"<r>" in piece or b"<r " in piece:  # rich text: join each string's runs
            out.extend(b"".join(_T.findall(x)) for x in _TAIL_INLINE.findall(piece))
        else:  # in a worksheet, <t> only occurs in inline strings: one per string
            out.extend(_T.findall(piece))
    if b"str" in piece:  # t="str": a formula's string result
        out.extend(_TAIL_STR.findall(piece))
    if not out:
        return []
    text = xml_unescape(_decode(b"\n".join(out)))
    return [ooxml_unescape(text)]


def _declares_inside_sheet_data(unit: bytes) -> bool:
    """An xmlns between <sheetData> and </sheetData> (the root declares the usual ones;
    extLst after sheetData declares more): rows could be in another namespace."""
    inside = unit.split(b"</sheetData>", 1)[0]
    start = inside.find(b"<sheetData")
    return b"xmlns" in (inside[start:] if start >= 0 else inside)


_EMPTY_ROW = re.compile(rb"<row\b[^>]*(?<!/)>(?:\s*<c\b[^>]*/>)*\s*</row>")


def _count_value_rows(piece: bytes) -> int:
    """Rows in `piece` (which ends after a </row>) that hold at least one value: every
    row with content, less those whose cells are all empty (<c r="A9" s="3"/>: Excel
    writes them for formatted, empty rows). Self-closing <row/> have no </row>. A cell
    with a formula but no cached value counts as a value."""
    rows = piece.count(b"</row>")
    # The usual case in C: every row ends with a cell's end tag, so no row can be empty
    # (an empty row ends with a self-closed cell or right after its start tag; a 50 MB
    # sheet: two counts, 0.03 s, not 0.2 s for the pattern). Anything else is counted by
    # the pattern.
    if rows == piece.count(b"</c></row>"):
        return rows
    return rows - len(_EMPTY_ROW.findall(piece))


def read_sheet(chunks: Iterator[bytes], sst: SharedStrings | list[str], kinds: list[str],
               is_1904: bool, sample_cells: int, used: set[int] | None,
               max_carry: int = 64 * MiB) -> SheetResult:
    """Sample the first rows of one worksheet part and count the rest (see the module
    docstring). Raises Unsupported or Malformed."""
    sampler = _Sampler(sst, kinds, is_1904, max(sample_cells, 1), used)
    sampling = True
    more = 0
    texts: list[str] = []
    last = b""
    first = True
    for unit in _units(chunks, b"</row>", max_carry):
        if first:
            start = _prolog(unit[:4096])
            unit = unit[start:]
            _screen(unit)
            if not re.match(rb"\s*<worksheet[\s>]", unit[:4096]):
                raise Unsupported("worksheet root with a namespace prefix")
            _check_namespaces(unit[:4096], {b"": _S_NS_B})
            first = False
        else:
            _screen(unit)
        # (memchr first: Excel's rows carry x14ac attributes, but many writers have no x)
        if b"x" in unit and b"xmlns" in unit and _declares_inside_sheet_data(unit):
            raise Unsupported("namespace declaration inside sheetData")
        tail = unit
        if sampling:
            at = sampler.feed(unit)
            if at is None:
                tail = b""
            else:
                sampling = False
                tail = unit[at:]
        if tail:
            inline = _TAIL_IS in tail
            more += _count_value_rows(tail)
            texts.extend(_tail_texts(tail, inline))
        if unit:
            last = unit[-4096:]
    if first:
        raise Malformed("empty sheet part")
    _check_end(last, b"</worksheet")
    return SheetResult(_shift(sampler.rows), more, texts, sampler.cells)


def _shift(rows: list[list[str]]) -> list[list[str]]:
    """Drop the leading columns no sampled row uses (calamine's range starts at the
    first used column), and trailing empty cells."""
    if not rows:
        return rows
    lead = min(next((i for i, c in enumerate(r) if c), len(r)) for r in rows)
    if lead:
        rows = [r[lead:] for r in rows]
    return rows
