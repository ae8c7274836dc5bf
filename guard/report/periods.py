"""A month or a year as [since, until) in epoch seconds, in the review time zone: a
near miss at 00:30 JST on the 1st belongs to that month in Japan."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo


class PeriodError(ValueError):
    """Not a month (YYYY-MM) or a year (YYYY)."""


@dataclass(frozen=True)
class Period:
    label: str  # "2026-11" or "2026"
    since: float
    until: float


def month(text: str, tz: tzinfo) -> Period:
    m = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise PeriodError(f"{text!r} is not a month (YYYY-MM)")
    y, mo = int(m.group(1)), int(m.group(2))
    start = datetime(y, mo, 1, tzinfo=tz)
    end = datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=tz)
    return Period(f"{y:04d}-{mo:02d}", start.timestamp(), end.timestamp())


def year(text: str, tz: tzinfo) -> Period:
    if not re.fullmatch(r"\d{4}", text.strip()):
        raise PeriodError(f"{text!r} is not a year (YYYY)")
    y = int(text)
    return Period(f"{y:04d}", datetime(y, 1, 1, tzinfo=tz).timestamp(),
                  datetime(y + 1, 1, 1, tzinfo=tz).timestamp())


def iso_week(t: float, tz: tzinfo) -> str:
    """'2026-W48' (ISO 8601: weeks start on Monday; the year is the week's year)."""
    y, w, _ = datetime.fromtimestamp(t, tz).isocalendar()
    return f"{y:04d}-W{w:02d}"
