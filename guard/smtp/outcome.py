"""What the pipeline answers for one received message, as types.

The pipeline (guard.accept) returns one of these; only guard.smtp.replies turns it into
the reply line the client reads. With SMTP front processes the main process pickles the
outcome back to the front that holds the session, and the front formats it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from guard.smtp.received import ReceivedMessage


@dataclass(frozen=True)
class Accepted:
    """Committed for delivery (250)."""

    state: str  # the stored state: "queued"
    id: str  # the queue id


@dataclass(frozen=True)
class Held:
    """Committed and held until a person decides or a delay runs out (250)."""

    kind: str  # the verdict's action: delay | confirm | approve
    hold_id: str  # the message's queue id, which the notices and hold pages name
    queued_id: str = ""  # a split: the part for the recipients no rule holds, sent now


@dataclass(frozen=True)
class Rejected:
    """Refused for good (5xx); the refusal is recorded, nothing is delivered."""

    code: int  # 5xx
    status: str  # the enhanced status code, "5.7.1"
    reason: str  # the administrator's text; made one ASCII line in the reply
    reason_utf8: str = ""  # the text for a session that allows UTF-8 ("" = reason)


@dataclass(frozen=True)
class TryLater:
    """Not taken now (451 4.3.0): the client keeps the message and sends it again."""

    reason: str  # "queue database unavailable"


Outcome = Accepted | Held | Rejected | TryLater

# The pipeline's entry point as the SMTP layer sees it.
Acceptor = Callable[[ReceivedMessage], Awaitable[Outcome]]
