"""Dates of birth: Western and Japanese-era dates, validated as real dates.

A date on its own is not personal data (it scores 0 without context), so the
scanner only runs this parser in a small window around a birth-date context word
(生年月日, 誕生日, DOB...). That keeps the pattern off the hot path and out of the
combined RE2 pattern, where it would compete with numeric runs for the same digits.
Python `re` is fine here: the windows are ~100 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

# Era name -> (first day, last day). 明治 starts on 1868-01-25, 明治元年1月1日 (the era
# applies from the start of that year); 元年 = year 1. Gregorian year =
# first_day.year + era_year - 1.
ERAS: dict[str, tuple[date, date]] = {
    "明治": (date(1868, 1, 25), date(1912, 7, 29)),
    "大正": (date(1912, 7, 30), date(1926, 12, 24)),
    "昭和": (date(1926, 12, 25), date(1989, 1, 7)),
    "平成": (date(1989, 1, 8), date(2019, 4, 30)),
    "令和": (date(2019, 5, 1), date(9999, 12, 31)),
}
ERA_LETTERS = {"M": "明治", "T": "大正", "S": "昭和", "H": "平成", "R": "令和"}

_SEP = r"[/.\-−‐‑–]"
_ERA = r"(?P<era>明治|大正|昭和|平成|令和|(?<![A-Za-z])[MTSHRmtshr])"
_ERA_YEAR = r"\s?(?P<ey>元|\d{1,2})"

# Alternatives are tried left to right at each position, so full dates come before the
# partial (year or year-month) forms.
DATE_RE = re.compile(
    # era, full: 昭和58年1月2日, 令和元年5月1日, S58.1.2, H3/4/5
    rf"{_ERA}{_ERA_YEAR}\s?(?:年\s?(?P<em>\d{{1,2}})\s?月\s?(?P<ed>\d{{1,2}})\s?日"
    rf"|(?P<es>{_SEP})(?P<em2>\d{{1,2}})(?P=es)(?P<ed2>\d{{1,2}})(?!\d))"
    # Western, full: 1985年4月12日, 1985/04/12, 1985-4-12, 19850412
    rf"|(?<!\d)(?P<wy>(?:19|20)\d{{2}})\s?(?:年\s?(?P<wm>\d{{1,2}})\s?月\s?(?P<wd>\d{{1,2}})\s?日"
    rf"|(?P<ws>{_SEP})(?P<wm2>\d{{1,2}})(?P=ws)(?P<wd2>\d{{1,2}})(?!\d)"
    rf"|(?P<wm3>[01]\d)(?P<wd3>[0-3]\d)(?!\d))"
    # day/month/year or month/day/year: 12/04/1985 (ambiguous; valid if either reading is)
    rf"|(?<!\d)(?P<xa>\d{{1,2}})/(?P<xb>\d{{1,2}})/(?P<xy>(?:19|20)\d{{2}})(?!\d)"
    # era, partial: 平成3年, 平成3年4月 (only letters-free era names; "S58" alone is noise)
    rf"|(?P<pera>明治|大正|昭和|平成|令和)\s?(?P<pey>元|\d{{1,2}})\s?年(?:\s?(?P<pem>\d{{1,2}})\s?月)?"
    # Western, partial: 1985年, 1985年4月
    rf"|(?<!\d)(?P<py>(?:19|20)\d{{2}})\s?年(?:\s?(?P<pm>\d{{1,2}})\s?月)?"
)


@dataclass(frozen=True)
class ParsedDate:
    # Distinct-value key: "1985-04-12", or "1991-04" / "1991" for partial dates.
    key: str
    full: bool
    era: bool


def era_year_to_gregorian(era: str, era_year: int) -> int | None:
    """平成3 -> 1991, 令和1 -> 2019; None when the year is outside the era."""
    name = ERA_LETTERS.get(era.upper(), era)
    if name not in ERAS or era_year < 1:
        return None
    first, last = ERAS[name]
    year = first.year + era_year - 1
    return year if year <= last.year else None


def _era_date(era: str, era_year: int, month: int, day: int) -> date | None:
    name = ERA_LETTERS.get(era.upper(), era)
    year = era_year_to_gregorian(name, era_year)
    if year is None:
        return None
    try:
        value = date(year, month, day)
    except ValueError:
        return None
    first, last = ERAS[name]
    # 昭和64年1月8日 and 平成31年5月1日 do not exist: the era had already ended.
    return value if first <= value <= last else None


def _real(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _plausible_birth(value: date, today: date) -> bool:
    # Age 0..120: a future date or a 19th-century date is a schedule or a history note.
    return value <= today and value.year >= today.year - 120


def _plausible_year(year: int, today: date) -> bool:
    return today.year - 120 <= year <= today.year


def _year_of(token: str) -> int:
    return 1 if token == "元" else int(token)


def parse_date(m: re.Match[str], today: date) -> ParsedDate | None:
    """Validate one DATE_RE match as a possible date of birth."""
    g = m.groupdict()
    if g["era"]:
        month = g["em"] or g["em2"]
        day = g["ed"] or g["ed2"]
        value = _era_date(g["era"], _year_of(g["ey"]), int(month), int(day))
        if value and _plausible_birth(value, today):
            return ParsedDate(value.isoformat(), True, True)
        return None
    if g["wy"]:
        month = g["wm"] or g["wm2"] or g["wm3"]
        day = g["wd"] or g["wd2"] or g["wd3"]
        value = _real(int(g["wy"]), int(month), int(day))
        if value and _plausible_birth(value, today):
            return ParsedDate(value.isoformat(), True, False)
        return None
    if g["xy"]:
        a, b, year = int(g["xa"]), int(g["xb"]), int(g["xy"])
        # Prefer day/month (most of the world) but accept month/day (US) when only that
        # reading is a real date; the key is the same date either way when unambiguous.
        for value in (_real(year, b, a), _real(year, a, b)):
            if value and _plausible_birth(value, today):
                return ParsedDate(value.isoformat(), True, False)
        return None
    if g["pera"]:
        gregorian = era_year_to_gregorian(g["pera"], _year_of(g["pey"]))
        if gregorian is None or not _plausible_year(gregorian, today):
            return None
        month = g["pem"]
        if month is not None and not _era_has_month(g["pera"], gregorian, int(month)):
            return None
        return _partial(gregorian, month, era=True)
    if g["py"]:
        year = int(g["py"])
        if not _plausible_year(year, today):
            return None
        return _partial(year, g["pm"], era=False)
    return None


def _era_has_month(era: str, year: int, month: int) -> bool:
    """平成31年5月 does not exist (令和 began on 5月1日); 平成31年4月 does."""
    if not 1 <= month <= 12:
        return False
    first, last = ERAS[era]
    month_first = date(year, month, 1)
    month_last = date(year + (month == 12), month % 12 + 1, 1)
    return first < month_last and month_first <= last


def _partial(year: int, month: str | None, era: bool) -> ParsedDate | None:
    if month is None:
        return ParsedDate(f"{year:04d}", False, era)
    if not 1 <= int(month) <= 12:
        return None
    return ParsedDate(f"{year:04d}-{int(month):02d}", False, era)
