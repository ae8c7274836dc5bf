"""What the SMTP layer hands to the pipeline: one complete message and its envelope.

A plain dataclass: the pipeline, inspection and the SMTP front processes (which pickle
it to the main process) use it without importing the SMTP server library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from guard.users import User

ListenerKind = Literal["submission", "smtps", "trusted"]


@dataclass
class ReceivedMessage:
    """A complete message as the SMTP layer hands it to the pipeline."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # exactly as received, dot-unstuffed
    client_ip: str
    helo: str
    listener: ListenerKind
    tls: bool
    user: User | None  # authenticated user; None on a trusted listener
    mail_options: list[str]

    @property
    def sender(self) -> str:
        """Who is responsible: the authenticated user, or the MTA's MAIL FROM."""
        return self.user.name if self.user else self.mail_from
