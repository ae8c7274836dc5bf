"""Comma- and tab-separated files: the whole text, and its rows as a table.

As for a sheet (guard.inspect.readers.xlsx), the first `sheet_sample_cells` cells are
read as table rows and the later rows are counted (Table.more_rows: rows holding a
value); the text keeps every row. A 90,000-row customer CSV spent most of its
inspection building rows the personal-data scan never reads (it reads 20,000 cells).
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from guard.inspect.readers.extraction import Extraction, trim_row
from guard.mail.message import Attachment


def read_csv(ex: Extraction, att: Attachment, depth: int) -> None:
    _read(ex, att, tsv=False)


def read_tsv(ex: Extraction, att: Attachment, depth: int) -> None:
    _read(ex, att, tsv=True)


def _read(ex: Extraction, att: Attachment, tsv: bool) -> None:
    text = ex.decode(att)
    ex.text(att.where, text)
    first = text[:4096].split("\n", 1)[0]
    delimiter = "\t" if tsv or first.count("\t") > first.count(",") else ","
    rows: list[list[str]] = []
    more = 0
    lim = ex.limits
    sample = min(lim.sheet_sample_cells, lim.max_cells - ex.cells)
    buf = io.StringIO(text)
    reader = csv.reader(buf, delimiter=delimiter)
    read = 0
    try:
        for row in reader:
            cells = trim_row([c.strip() for c in row])
            if not cells:
                continue
            ex.cells += len(cells)
            if ex.cells > lim.max_cells:
                ex.problem("too_large", att.where, f"cell limit {lim.max_cells} reached")
                break
            rows.append(cells)
            read += len(cells)
            if read >= sample:  # the rest is counted, not read
                more, error = _count_rows(text, buf.tell(), reader, delimiter)
                if error:
                    ex.problem("parse_error", att.where, f"csv: {error}")
                if more and sample < lim.sheet_sample_cells:
                    # the sample was cut by the cell limit (of an archive's files
                    # together), not by the sample size: as for sheets
                    ex.problem("too_large", att.where, f"cell limit {lim.max_cells} reached")
                break
    except csv.Error as e:
        ex.problem("parse_error", att.where, f"csv: {e}")
    ex.table(att.where, rows, more)


def _count_rows(text: str, pos: int, reader: Any, delimiter: str) -> tuple[int, str]:
    """Rows after `pos` that hold a value, and the reader's error if it met one there
    (the rows before it are counted, as reading them would have kept them). Without
    quotes and bare CRs (which the reader refuses) a row is a line, and the lines of
    only delimiters and whitespace are counted out in one search; otherwise the reader
    goes on, and counts."""
    rest = text[pos:]
    if not rest:
        return 0, ""
    if '"' not in rest and rest.count("\r") == rest.count("\r\n"):
        rest = rest.removesuffix("\n")
        # Lines of only whitespace (as str.strip sees it) other than the line break, and
        # the delimiter: the first line, and each one after a "\n", found by a search
        # that jumps from one "\n" to the next (a ^ in MULTILINE mode is tried at every
        # character: 33 -> 8 ms for the bench CSV's 6 M characters). Possessive: a tab
        # is both whitespace and a TSV's delimiter, and a plain * tried 2^n splits of a
        # line of n tabs before a value (a shorter run ends before a blank, never at \n).
        blank = rf"(?:[^\S\n]|{re.escape(delimiter)})*+(?=\n|\Z)"
        empty = len(re.findall("\n" + blank, rest)) + (re.match(blank, rest) is not None)
        return rest.count("\n") + 1 - empty, ""
    n = 0
    try:
        for row in reader:
            n += any(c.strip() for c in row)
    except csv.Error as e:
        return n, str(e)
    return n, ""
