"""Tables inside a text: the rows of a people list that is not a spreadsheet.

A list pasted from Excel into a mail body arrives as tab-separated lines; a list typed
or pasted as plain text has its columns aligned with runs of spaces or full-width
spaces; a Word table's rows come out of the docx and .doc readers as tab-separated
lines; a PDF roster comes out of the PDF reader as lines whose cells are separated by
tabs (guard.inspect.readers.pdf). Each gives its rows here, to the same table reader
as a spreadsheet (guard.inspect.pii.tables), so pii.people_list does not depend on the
file format.

A table starts only at a header line: at least two cells that name personal-data
columns (氏名, 住所, 携帯, メール...; context_words.classify_header). Prose, a signature,
an invoice's line items (品名 / 数量 / 単価 / 金額) and a branch list (支店名 / 住所 /
電話) have no such header with a person column, so they never become a people list
(tables.table_text decides that, as for spreadsheets). The table runs to the first
blank line or the first line that is not shaped like its rows.

Linear: one pass over the lines; header classification only on lines that have a
column gap and are short enough to be a header; at most `max_cells` cells collected.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain

from guard.inspect.pii.context_words import classify_header

# A column gap in an aligned line: a tab, two spaces, or a full-width space (two
# columns wide), with any spaces around it.
_GAP = re.compile(r"[ \u3000]*(?:\t|  |\u3000)[ \t\u3000]*")
_QUOTE = re.compile(r"(?:>[ \t]?)+")  # "> " reply markers: a quoted list is a list too
_HEADER_MAX_CHARS = 400  # a longer line is prose or data, not a header
_HEADER_MAX_CELLS = 40
_ROW_MAX_CHARS = 4000  # a longer line ends the table (bounded per-line work)
_ALIGN_SLACK = 1  # a cell may start one column left of its header


@dataclass(frozen=True)
class TextTable:
    first_line: int  # line index of the header in the text
    rows: list[list[str]]  # header row first


def _width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _pieces(line: str) -> list[tuple[int, str]]:
    """(display column, text) of each piece of an aligned line, split at gaps."""
    out: list[tuple[int, str]] = []
    col = 0
    pos = 0
    for m in _GAP.finditer(line):
        if m.start() > pos:
            out.append((col, line[pos:m.start()]))
        col += sum(map(_width, line[pos:m.end()]))
        pos = m.end()
    if pos < len(line):
        out.append((col, line[pos:]))
    return out


def _has_gap(line: str) -> bool:
    """_GAP.search(line), by C substring tests: a regex search with a leading `*` tries
    every position (6.7 ms per 100 KiB of prose, the plain tests ~0.3)."""
    return "\t" in line or "  " in line or "\u3000" in line


def _unquote(line: str) -> str:
    """Without its first run of "> " markers; the regex only where there is a '>'."""
    return _QUOTE.sub("", line, count=1) if ">" in line else line


def _header_cells(line: str) -> tuple[bool, list[tuple[int, str]]] | None:
    """(tab-separated?, cells) when the line reads as a header of a people list."""
    if len(line) > _HEADER_MAX_CHARS or not _has_gap(line):
        return None
    tabbed = "\t" in line
    if tabbed:
        cells = [(i, c.strip(" \u3000")) for i, c in enumerate(line.split("\t"))]
    else:
        cells = _pieces(line)
    if not 2 <= len(cells) <= _HEADER_MAX_CELLS:
        return None
    classes = {cls for _, c in cells if c and (cls := classify_header(c)) is not None}
    return (tabbed, cells) if len(classes) >= 2 else None


def _aligned_row(pieces: list[tuple[int, str]], starts: list[int]) -> list[str]:
    """The pieces of a row in their header's columns; pieces under one header (a
    family and given name split by a full-width space) are one cell again."""
    cells = [""] * len(starts)
    k = 0
    for col, text in pieces:
        while k + 1 < len(starts) and starts[k + 1] <= col + _ALIGN_SLACK:
            k += 1
        cells[k] = f"{cells[k]} {text}" if cells[k] else text
    return cells


def _gap_lines(text: str) -> Iterator[int]:
    """Indexes of the lines of `text` (split at "\n") that hold a column gap (a tab, two
    spaces or U+3000), in order. Each form's next place is kept and looked for again
    (str.find, in C) only once the search has passed it: the places a regex alternation
    finds, without the regex trying every position of a body that has no gap."""
    n = len(text)

    def after(gap: str, pos: int) -> int:
        at = text.find(gap, pos)
        return n if at < 0 else at

    tab, two, wide = after("\t", 0), after("  ", 0), after("\u3000", 0)
    line, last, pos = 0, 0, 0
    while True:
        if tab < pos:
            tab = after("\t", pos)
        if two < pos:
            two = after("  ", pos)
        if wide < pos:
            wide = after("\u3000", pos)
        start = min(tab, two, wide)
        if start >= n:
            return
        line += text.count("\n", last, start)
        last = start
        yield line
        end = text.find("\n", start)
        if end < 0:
            return
        pos = end + 1


def find_tables(text: str, max_cells: int) -> list[TextTable]:
    """The people-list-shaped tables in `text`, within `max_cells` cells in all."""
    tables: list[TextTable] = []
    # Only a line with a column gap can be a header: find those in one search (removing
    # a quote marker never makes a gap), not line by line (a roster of 180,000 lines
    # without any gap cost 1.7 s here).
    candidates = _gap_lines(text)
    first_gap = next(candidates, None)
    if first_gap is None:  # no line with a gap: not split into lines (~0.07 ms a 100 KiB)
        return []
    candidates = chain((first_gap,), candidates)
    lines = text.split("\n")
    cells_left = max_cells
    i = 0
    while i < len(lines) and cells_left > 0:
        i = next((c for c in candidates if c >= i), len(lines))
        if i == len(lines):
            break
        line = _unquote(lines[i]).rstrip("\r")
        header = _header_cells(line)
        i += 1
        if header is None:
            continue
        tabbed, head = header
        rows = [[c for _, c in head]]
        starts = [col for col, _ in head]
        cells_left -= len(head)
        first = i - 1
        while i < len(lines) and cells_left > 0:
            row_line = _unquote(lines[i]).rstrip("\r")
            if not row_line.strip() or len(row_line) > _ROW_MAX_CHARS:
                break
            if tabbed:
                if "\t" not in row_line:
                    break
                row = [c.strip(" \u3000") for c in row_line.split("\t")]
            else:
                pieces = _pieces(row_line)
                if len(pieces) < 2:
                    break
                row = _aligned_row(pieces, starts)
            rows.append(row)
            cells_left -= len(row)
            i += 1
        if len(rows) > 1:
            tables.append(TextTable(first, rows))
    return tables
