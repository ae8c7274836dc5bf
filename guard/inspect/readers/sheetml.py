"""The sampling xlsx sheet reader: the first rows of a worksheet part read as table rows,
the rest counted.

What is read completely and what is sampled (docs/benchmarks.md "Inspection"), per sheet:

* the first rows up to `sample_cells` cells are parsed completely (every cell type,
  shared strings, rich text, dates from the number formats): they are the Table rows the
  personal-data detectors look at (they only scan the first 20k cells of a table anyway,
  guard.inspect.run.PII_LIMITS);
* every row after that is *counted* on the raw bytes (rows that hold at least one value)
  and reported as `Table.more_rows`, so the people-list row count is the sheet's real
  row count;
* the text of rows after the sample is not lost: every shared string (each text cell of
  the workbook is one, stored once) that the sampled rows did not use, every inline
  string (`t="inlineStr"`, as openpyxl writes) and every formula string result
  (`t="str"`) after the sample go into the attachment's text, which the keyword and
  customer-name detectors read in full. Numbers, booleans and dates after the sample are
  counted, not read.

The shared rules (what is refused, what falls back to calamine) are in
guard.inspect.readers.ooxml.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

from guard.inspect.readers.cellvalues import cell_str, excel_date
from guard.inspect.readers.ooxml import (
    S_NS_B,
    Malformed,
    MiB,
    Unsupported,
    check_end,
    check_namespaces,
    decode_utf8,
    ooxml_unescape,
    prolog,
    screen,
    units,
    xml_unescape,
)
from guard.inspect.readers.sharedstrings import SharedStrings

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
    return ooxml_unescape(xml_unescape(decode_utf8(raw)))


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
    # t="str": a formula's string result (searched for as `t="str` or `t='str`, which
    # _TAIL_STR needs: ~25 % faster than "str" over markup, and "'" is a memchr)
    if b't="str' in piece or (b"'" in piece and b"t='str" in piece):
        out.extend(_TAIL_STR.findall(piece))
    if not out:
        return []
    text = xml_unescape(decode_utf8(b"\n".join(out)))
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
    for unit in units(chunks, b"</row>", max_carry):
        if first:
            start = prolog(unit[:4096])
            unit = unit[start:]
            screen(unit)
            if not re.match(rb"\s*<worksheet[\s>]", unit[:4096]):
                raise Unsupported("worksheet root with a namespace prefix")
            check_namespaces(unit[:4096], {b"": S_NS_B})
            first = False
        else:
            screen(unit)
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
            # (memchr for "i" first: rows as Excel writes them often have none, and a
            # four-byte search over markup costs ~30 ms on a 10 MB workbook's sheet)
            inline = b"i" in tail and _TAIL_IS in tail
            more += _count_value_rows(tail)
            texts.extend(_tail_texts(tail, inline))
        if unit:
            last = unit[-4096:]
    if first:
        raise Malformed("empty sheet part")
    check_end(last, b"</worksheet")
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
