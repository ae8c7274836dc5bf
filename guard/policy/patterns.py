"""What admins write to name many domains or addresses, compiled for fast matching.

A domain set ("example.co.jp" with its subdomains, "*.example.co.jp" subdomains only)
and address globs ("*@example.co.jp"): the values are already in their compared form
(schema normalises domains to A-labels and addresses to their keys).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable


class DomainSet:
    """Domains and their subdomains; "*.example.com" means subdomains only."""

    __slots__ = ("exact", "suffixes")

    def __init__(self, patterns: Iterable[str]) -> None:
        exact: set[str] = set()
        suffixes: list[str] = []
        for pattern in patterns:
            if pattern.startswith("*."):
                suffixes.append(pattern[1:])
            else:
                exact.add(pattern)
                suffixes.append("." + pattern)
        self.exact = frozenset(exact)
        self.suffixes = tuple(suffixes)

    def __contains__(self, domain: object) -> bool:
        return isinstance(domain, str) and (
            domain in self.exact or (bool(self.suffixes) and domain.endswith(self.suffixes))
        )


def glob_pattern(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One regular expression matching any of the globs; None when there are none."""
    parts = [fnmatch.translate(p) for p in patterns]
    return re.compile("|".join(parts)) if parts else None
