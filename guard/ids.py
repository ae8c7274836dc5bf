"""Queue ids: short, unique across instances, sortable by time (like Postfix long queue ids);
the name of this instance in audit rows; and the sender name of the guard's own mail."""

from __future__ import annotations

import os
import socket
import time

# messages.sender of the guard's own mail (hold notices, alerts, DSNs): never an alert
# event nor in a report, so no users.yaml user may take the name (guard/users.py)
GUARD_SENDER = "guard"

_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZ"  # no vowels: ids never spell words


def _encode(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, len(_ALPHABET))
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def new_queue_id() -> str:
    """10 chars of milliseconds since the epoch + 8 random chars (≈ 40 bits)."""
    ms = time.time_ns() // 1_000_000
    rnd = int.from_bytes(os.urandom(5), "big")
    return _encode(ms, 10) + _encode(rnd, 8)


def instance_id() -> str:
    """This process in the audit trail (`relay:<it>`, `policy:<it>`) when the instance_id
    setting is empty: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"
