"""What a SpreadsheetML cell value means: number formats that make a number a date or
a duration, Excel serial dates, and cell values as text (the same for the fast sheet
reader and for calamine's values)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

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


