"""Whether a new connection is served at all: a trusted listener serves only its
networks, and every listener at most `max_connections` sessions at once. A refused
client reads one reply line, then the connection is closed."""

from __future__ import annotations

import ipaddress
import logging

from guard.smtp.listenerconfig import ListenerConfig

log = logging.getLogger("guard.smtp")

ACCESS_DENIED = "554 5.7.1 Access denied"
TOO_MANY = "421 4.7.0 Too many connections, try again later"


def refusal(cfg: ListenerConfig, open_sessions: int, ip: str) -> tuple[str, str] | None:
    """(metric label, reply line) when the connection from `ip` is refused, else None.
    `open_sessions`: the listener's sessions open now, this one not counted."""
    if cfg.kind == "trusted":
        try:
            addr = ipaddress.ip_address(ip.split("%")[0])
        except ValueError:
            return ("untrusted_network", ACCESS_DENIED)
        if hasattr(addr, "ipv4_mapped") and addr.ipv4_mapped:  # ::ffff:10.0.0.1
            addr = addr.ipv4_mapped
        if not any(addr in net for net in cfg.trusted_networks):
            log.warning("refused connection from %s: not in trusted networks", ip)
            return ("untrusted_network", ACCESS_DENIED)
    if open_sessions >= cfg.max_connections:
        return ("too_many_connections", TOO_MANY)
    return None
