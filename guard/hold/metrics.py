"""Prometheus metrics of holds, notices and review links (served on /metrics with the rest).

To add one: define it here, named guard_<what>_<unit> (a counter ends in _total), with
few label values; the module that observes it imports it from here."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HOLD_TRANSITIONS = Counter(
    "guard_hold_transitions_total", "Hold lifecycle changes by action and who acted",
    ["action", "by"])
NEAR_MISSES = Counter(
    "guard_near_misses_total",
    "Held messages stopped by a person (cancelled or rejected): ヒヤリハット", ["by", "kind"])
NOTICES = Counter("guard_notices_total", "Notices queued, by kind", ["kind"])
NOTICE_FAILURES = Counter(
    "guard_notice_failures_total", "Notices that could not be built (bad address)")
REVIEW_REQUESTS = Counter(
    "guard_review_requests_total", "Review page requests by method and result",
    ["method", "result"])
# GETs and HEADs with no User-Agent or within seconds of the notice: mail scanners that
# prefetch links (they never act: GET is read-only), counted to show how many there are
LINK_SCANNER_HITS = Counter(
    "guard_link_scanner_hits_total", "Review link fetches that look automated")
DECISION_LATENCY = Histogram(
    "guard_hold_decision_seconds", "Time from acceptance to the release or cancel of a hold",
    ["kind"], buckets=(10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 86400, 3 * 86400))
