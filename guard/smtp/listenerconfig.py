"""One listener's settings, as its sessions read them (built by guard.smtp.listeners)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from guard.smtp.identity import IdentityMode
from guard.smtp.received import ListenerKind


@dataclass
class ListenerConfig:
    kind: ListenerKind
    hostname: str
    max_message_size: int
    max_recipients: int
    max_connections: int
    timeout: float
    auth_failures: int
    max_hops: int
    trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    data_total_timeout: float = 1800.0
    # whose addresses a message may carry (guard.smtp.identity)
    sender_identity: IdentityMode = "off"
    identity_header: str = ""
    # this guard's mark in its own Received: lines, and how many of them a message may
    # already carry (mail loops); b"" = not checked
    loop_marker: bytes = b""
    max_passes: int = 2
