"""The reply line a client reads for the pipeline's outcome (RFC 5321 4.2, RFC 3463).

An SMTP reply line is at most 512 octets with its code and CRLF; a reason text is made
one line of printable ASCII (or, for a session that allows UTF-8, one line without
control characters) and cut at 400 characters.
"""

from __future__ import annotations

from guard.mail.replytext import TEXT_MAX, ascii_line, one_line
from guard.smtp.outcome import Accepted, Held, Outcome, Rejected, TryLater

__all__ = ["TEXT_MAX", "UNAVAILABLE", "ascii_line", "one_line", "reply"]

# An error of the guard itself while taking a message: the client sends again.
UNAVAILABLE = TryLater("queue temporarily unavailable")


def reply(outcome: Outcome, *, utf8: bool = False) -> str:
    """The reply line for `outcome` (no CRLF)."""
    if isinstance(outcome, Accepted):
        return f"250 2.0.0 Ok: {outcome.state} as {outcome.id}"
    if isinstance(outcome, Held):
        if outcome.queued_id:
            return (f"250 2.0.0 Ok: held as {outcome.hold_id} for some recipients, "
                    f"queued as {outcome.queued_id} for the others")
        return f"250 2.0.0 Ok: held as {outcome.hold_id}"
    if isinstance(outcome, Rejected):
        if utf8 and outcome.reason_utf8:
            return f"{outcome.code} {one_line(f'{outcome.status} {outcome.reason_utf8}')}"
        return f"{outcome.code} {ascii_line(f'{outcome.status} {outcome.reason}')}"
    if isinstance(outcome, TryLater):
        return f"451 4.3.0 Error: {outcome.reason}, try again later"
    raise TypeError(f"not an outcome: {outcome!r}")

