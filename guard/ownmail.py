"""The guard's own mail (hold notices, alerts): the address it comes from, the time zone
its times are shown in, and where its links point. Shared by hold/ and alert/, which
may not import each other, so it lives below both."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tzlocal

from guard.config import Settings

log = logging.getLogger("guard.notify")


def review_base_url(settings: Settings) -> str:
    base = settings.review.base_url or settings.web.base_url or f"http://{settings.web.listen}"
    return base.rstrip("/")


def timezone_of(settings: Settings) -> tzinfo:
    """review.timezone, or the machine's own zone (TZ, else /etc/localtime) when unset."""
    name = settings.review.timezone
    try:
        return ZoneInfo(name) if name else tzlocal.get_localzone()
    except (ZoneInfoNotFoundError, ValueError) as e:
        # (a configured name is checked when the settings load; this is the machine's)
        log.warning("time zone %r unusable (%s); showing UTC", name or "local", e)
        return UTC


def format_time(t: float | None, tz: tzinfo, *, seconds: bool = False) -> str:
    """'2026-12-06 15:04 JST': the zone's label always goes with the time (with
    `seconds`, '2026-12-06 15:04:05 JST', as the incident report's audit trail shows)."""
    if t is None:
        return ""
    return datetime.fromtimestamp(t, tz).strftime(
        "%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z").strip()


def notice_from_address(settings: Settings, internal_domains: Sequence[str] = ()) -> str:
    """The From: of notices: review.notice_from_header, else a no-reply address at the
    policy's first internal domain (the company's own, which people recognise), else
    at smtp.hostname when the policy names no domain."""
    if settings.review.notice_from_header:
        return settings.review.notice_from_header
    domain = next((d.strip().strip(".") for d in internal_domains if d.strip(".")), "")
    return f"noreply@{domain or settings.smtp.hostname}"
