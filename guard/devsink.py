"""The built-in development upstream (`guard dev`): an SMTP server on loopback that
captures what the guard delivers, so a newcomer can watch a message go through at
/dev/outbox without running any other mail server. Never used by `guard serve`.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Captured:
    n: int
    at: float
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def subject(self) -> str:
        try:
            h = BytesHeaderParser(policy=default_policy).parsebytes(self.data)
            return str(h.get("subject", ""))
        except Exception:
            return ""


class CaptureHandler:
    def __init__(self, keep: int = 500) -> None:
        self.messages: deque[Captured] = deque(maxlen=keep)
        self._n = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._n += 1
        self.messages.append(Captured(self._n, time.time(), envelope.mail_from or "",
                                      list(envelope.rcpt_tos),
                                      envelope.original_content or b""))
        return f"250 2.0.0 Ok: captured as dev-{self._n}"

    def get(self, n: int) -> Captured | None:
        return next((m for m in self.messages if m.n == n), None)


def capture_protocol_factory(handler: CaptureHandler, hostname: str) -> Any:
    def factory() -> SMTP:
        return SMTP(handler, hostname=hostname, decode_data=False,
                    data_size_limit=100 * 1024 * 1024)
    return factory
