"""Who holds a delivery lease: host, process table, pid and a per-start nonce.

A lease owner reads `host:pid:pidns:nonce`. The nonce tells two runs of one pid apart
(a restarted container often gets the same pid back); the pid namespace tells two
containers that share a host name apart (`--network host`), so a guard never takes
another container's live process for a dead one of its own. A dead local owner's
leases are given back at start instead of waiting for them to run out.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:  # not Linux: the host name alone says "this host"
        return "-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:  # a zombie (killed, not yet reaped) holds its pid but is dead
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


@dataclass(frozen=True)
class LeaseOwner:
    host: str
    pid: int
    pidns: str | None  # None: a lease written before owners had one ("host:pid")
    nonce: str

    @classmethod
    def this_process(cls) -> LeaseOwner:
        # the column holds 128 characters; a host name is at most 64 on Linux
        return cls(socket.gethostname()[:64], os.getpid(), _pid_namespace(),
                   secrets.token_hex(6))

    @classmethod
    def parse(cls, text: str) -> LeaseOwner | None:
        parts = text.split(":")
        if len(parts) == 4 and parts[1].isdigit():
            return cls(parts[0], int(parts[1]), parts[2], parts[3])
        if len(parts) == 2 and parts[1].isdigit():
            return cls(parts[0], int(parts[1]), None, "")
        return None  # a configured name or something else: left to run out

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.pidns}:{self.nonce}"

    def is_dead_local(self, other: LeaseOwner) -> bool:
        """True when `other` ran on this host (same name, same process table) and its
        process is gone: its leases can be given back at once."""
        if other == self or other.host != self.host:
            return False
        if other.pidns is not None and other.pidns != self.pidns:
            return False
        if other.pid == self.pid:
            return True  # our pid, another start: that run is over
        return not _alive(other.pid)
