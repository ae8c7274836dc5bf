"""An act on a hold: who acts (Actor), the link that authorised it (Link), what came of
it (Result). The web pages, the CLI and the timers build these and pass them to the
lifecycle; they import this module, not the lifecycle's machinery."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from guard.hold.notify.notices import Event

OK = frozenset({"released", "cancelled", "expired", "approved", "approval_partial",
                "rejected", "escalated", "notified", "dropped", "held"})
CANCEL_REASONS = ("wrong_recipient", "wrong_attachment", "wrong_content", "other")


@dataclass(frozen=True)
class Actor:
    """Who acts, in what role, through what, from where."""

    role: str  # sender | approver | admin | timer
    who: str  # an address; for an admin at the CLI, theirs (--by) or the OS account
    via: str  # web | cli | timer
    ip: str = ""
    os_user: str = ""  # the account a CLI command ran under (audited, never shown)

    @property
    def audit_name(self) -> str:
        return f"{self.via}:{self.role}:{self.who}"[:300]

    @property
    def shown(self) -> str:
        """The person notices name: an address, or "" (an admin who gave none, a timer)."""
        return self.who if "@" in self.who and self.role != "timer" else ""

    def event(self, kind: str, **kw: Any) -> Event:
        return Event(kind, self.shown, role=self.role, **kw)

    def detail(self) -> dict[str, Any]:
        d: dict[str, Any] = {"by": self.role, "via": self.via}
        if self.ip:
            d["ip"] = self.ip
        if self.os_user:
            d["os_user"] = self.os_user
        return d


@dataclass
class Result:
    code: str  # one of OK, or not_found | not_held | used | forbidden | already | not_due
    state: str = ""
    queued: int = 0  # messages that became deliverable (the release, notices)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code in OK


@dataclass
class Link:
    """The link token that authorised a web action: consumed with the action."""

    nonce: str
    expires_at: float
