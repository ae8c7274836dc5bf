"""Holds: the lifecycle of a held message (lifecycle.py), its timers, the notices
(notify/), the link tokens and what a review link shows (links.py), wired by service.py.
hold/ knows no web: the review pages are built from a HoldService (guard/web/review.py)."""
