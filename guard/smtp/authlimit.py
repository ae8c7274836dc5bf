"""Failed AUTH per client address, over every connection and every SMTP front process.

aiosmtpd's per-connection limit alone lets a client guess for ever by reconnecting.
The window lives in the main process (`AuthLimiter`); a front asks it over its link
(`guard.smtp.front.RemoteAuthGate`), the main process's own sessions directly
(`LocalAuthGate`). A blocked address gets `454 4.7.0` at AUTH, without a password check,
until its block runs out; a success does not clear anything (an attacker who owns one
account must not reset the count while guessing another's password).
"""

from __future__ import annotations

import collections
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Tracked addresses at most; beyond, the addresses whose last failure is oldest go first.
MAX_TRACKED = 100_000

BLOCKED_REPLY = "454 4.7.0 Too many authentication failures, try again later"


def client_key(ip: str) -> str:
    """What one client is: an IPv4 address, or an IPv6 /64 (one host's usual share)."""
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class AuthLimiter:
    """Sliding window of failure times per client key, and the blocks it caused."""

    def __init__(self, max_failures: int, window: float, block_seconds: float,
                 clock: Callable[[], float] = time.monotonic,
                 max_tracked: int = MAX_TRACKED) -> None:
        self.max_failures = max_failures
        self.window = window
        self.block_seconds = block_seconds
        self.clock = clock
        self.max_tracked = max_tracked
        # key → recent failure times (at most max_failures kept), oldest first
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict())
        self._blocked_until: dict[str, float] = {}

    def blocked_for(self, ip: str) -> float:
        """Seconds this client stays blocked (0: it may try)."""
        if self.max_failures <= 0:
            return 0.0
        key = client_key(ip)
        until = self._blocked_until.get(key)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._blocked_until[key]
            return 0.0
        return left

    def failed(self, ip: str) -> float:
        """Record one failure; the seconds the client is now blocked (0: not blocked)."""
        if self.max_failures <= 0:
            return 0.0
        now = self.clock()
        key = client_key(ip)
        times = self._failures.pop(key, None)
        if times is None:
            times = collections.deque(maxlen=self.max_failures)
        times.append(now)
        self._failures[key] = times  # most recent last
        self._prune(now)
        if len(times) >= self.max_failures and now - times[0] <= self.window:
            self._blocked_until[key] = now + self.block_seconds
            times.clear()
            return self.block_seconds
        return 0.0

    def _prune(self, now: float) -> None:
        while len(self._failures) > self.max_tracked:
            self._failures.popitem(last=False)
        while self._failures:
            key, times = next(iter(self._failures.items()))
            if times and now - times[-1] <= self.window:
                break
            del self._failures[key]
        if len(self._blocked_until) > self.max_tracked:
            self._blocked_until = {k: u for k, u in self._blocked_until.items() if u > now}

    def tracked(self) -> int:
        return len(self._failures) + len(self._blocked_until)


@dataclass(frozen=True)
class AuthQuery:
    """A front's question to the main process: op "check" or "failed" for one address."""

    op: str
    ip: str


class AuthGate(Protocol):
    async def blocked_for(self, ip: str) -> float: ...

    async def failed(self, ip: str) -> float: ...


class LocalAuthGate:
    """The gate of the sessions in the main process (smtp.front_processes = 0)."""

    def __init__(self, limiter: AuthLimiter) -> None:
        self.limiter = limiter

    async def blocked_for(self, ip: str) -> float:
        return self.limiter.blocked_for(ip)

    async def failed(self, ip: str) -> float:
        return self.limiter.failed(ip)


def answer(limiter: AuthLimiter, query: AuthQuery) -> float:
    """The main process's answer to a front: the seconds blocked."""
    return limiter.failed(query.ip) if query.op == "failed" else limiter.blocked_for(query.ip)
