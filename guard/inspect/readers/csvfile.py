"""Comma- and tab-separated files: the whole text, and its rows as a table."""

from __future__ import annotations

import csv
import io

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
    try:
        for row in csv.reader(io.StringIO(text), delimiter=delimiter):
            cells = trim_row([c.strip() for c in row])
            if not cells:
                continue
            ex.cells += len(cells)
            if ex.cells > ex.limits.max_cells:
                ex.problem("too_large", att.where, f"cell limit {ex.limits.max_cells} reached")
                break
            rows.append(cells)
    except csv.Error as e:
        ex.problem("parse_error", att.where, f"csv: {e}")
    ex.table(att.where, rows)
