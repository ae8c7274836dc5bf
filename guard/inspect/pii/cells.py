"""Typed table cells: a cell that is exactly one value of its column's class (phone,
e-mail, date of birth) is read directly, without the text scanner."""

from __future__ import annotations

import re
from datetime import date

from guard.inspect.pii.candidates import EMAIL_PATTERN
from guard.inspect.pii.dates import DATE_RE, parse_date
from guard.inspect.pii.hits import BIRTH_DATE, EMAIL, PHONE, Hit, clamp
from guard.inspect.pii.numbers import (
    NON_DIGIT,
    PHONE_CONTEXT_BOOST,
    PHONE_FORMAT_BOOST,
    intl_phone_readings,
    phone_reading,
)

# A cell that is exactly one value of its column's class skips the text scanner: in a
# 20,000-row customer list most cells are like that, and reading them directly is
# several times cheaper than pattern search + context lookup per cell.
_CELL_PHONE = re.compile(r"\+?\(?\d[\d\-‐‑‒–—―−﹣ー. ()]{7,18}\d")
_CELL_EMAIL = re.compile(EMAIL_PATTERN)
TYPED_CELL_CLASSES = frozenset({"phone", "email", "birth_date"})


def scan_cell(cls: str, cell: str, header: str, today: date) -> Hit | None:
    """The value of a typed cell (header class `cls`), scored with its header as the
    label; None when the cell is not exactly one such value (the caller then gives it
    to the text scanner, which handles "03-1234-5678（代表）" and other mixtures)."""
    label = (header.lower(),) if header else ()
    if cls == "phone":
        if len(cell) in (9, 10) and cell.isascii() and cell.isdigit() and cell[0] != "0":
            # typed into Excel as a number, which drops the leading 0 (9012345678)
            cell = "0" + cell
        if not _CELL_PHONE.fullmatch(cell):
            return None
        if cell[0] == "+":
            readings = intl_phone_readings(cell)
        else:
            digits = NON_DIGIT.sub("", cell)
            phone = phone_reading(digits, cell, formatted=len(digits) != len(cell))
            readings = [phone] if phone is not None else []
        if not readings:
            return None
        r = readings[0]
        score = r.base + (PHONE_FORMAT_BOOST if r.formatted else 0.0)
        score += PHONE_CONTEXT_BOOST if label else 0.0
        return Hit(PHONE, r.key, clamp(score), -1, r.raw, r.detail, label)
    if cls == "email":
        if not _CELL_EMAIL.fullmatch(cell):
            return None
        return Hit(EMAIL, cell.lower(), 0.3, -1, cell)
    if cls == "birth_date":
        m = DATE_RE.fullmatch(cell)
        parsed = parse_date(m, today) if m else None
        if parsed is None:
            return None
        return Hit(
            BIRTH_DATE, parsed.key, 0.8 if parsed.full else 0.5, -1, parsed.key,
            "era" if parsed.era else "western", label,
        )
    return None
