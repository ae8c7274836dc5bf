"""Which audit rows are events an officer hears of, and how severe: a pure function of
the audit row, the stored message (its verdict) and what the policy says (internal
domains, the sender's groups, alerts.min_records).

Severe (a first report at once), all three only for a recipient outside the internal
domains (the issue: personal data "going outside"; the same mail to colleagues only is
the digest's):
- a message refused or held whose verdict reasons show My Number (pii.my_number) or a
  card number (pii.card): specific personal information and data whose misuse causes
  financial harm;
- one refused or held with `min_records` or more people's records (pii.records, the
  rows of a pii.people_list);
- such a severe hold released to an outside recipient anyway: by a person (release,
  approval) or by its time running out with `on_expiry: send`;
- a misdelivery a sender reported (`misdelivery_reported`).
Less severe (the daily digest): the other holds and refusals, and near misses (a held
message a person stopped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from guard.store.alerts import MessageFacts
from guard.store.records import AuditRow

# the data types an alert names, in the order it names them
MY_NUMBER = "pii.my_number"
CARD = "pii.card"
RECORDS = "pii.records"
PEOPLE_LIST = "pii.people_list"
DATA_TYPES = (MY_NUMBER, CARD, PEOPLE_LIST, RECORDS)

# audit actions the dispatcher looks at; the rest it only reads past
ACTIONS = frozenset({"held", "rejected", "release", "approve", "expire", "cancel", "reject",
                     "misdelivery_reported"})
RELEASES = frozenset({"release", "approve", "expire"})


@dataclass(frozen=True)
class Facts:
    """What the classification needs from the current policy."""

    is_internal: Callable[[str], bool]
    min_records: int = 10


@dataclass(frozen=True)
class Event:
    audit_id: int
    at: float
    message_id: str
    # severe: rejected | held | released | misdelivery; minor: held | rejected | near_miss
    kind: str
    severe: bool
    sender: str  # the envelope sender (the authenticated user's address)
    outside: tuple[str, ...]  # the recipients it concerns outside the company
    data: tuple[tuple[str, int], ...]  # (symbol, count) of DATA_TYPES found
    rule: str
    hold_kind: str  # delay | confirm | approve ("" for a refusal)
    by_role: str  # sender | approver | admin | timer | guard
    by: str  # who decided: an address, or ""
    symbols: tuple[str, ...] = ()  # every symbol of the verdict (for the digest)
    incident: str = ""  # a misdelivery's incident id


def data_found(verdict: dict[str, Any]) -> dict[str, int]:
    """The largest count of each data type among the verdict's reasons."""
    found: dict[str, int] = {}
    for r in verdict.get("reasons") or ():
        if not isinstance(r, dict) or r.get("symbol") not in DATA_TYPES:
            continue
        sym = str(r["symbol"])
        try:
            count = max(1, int(r.get("count") or 1))
        except (TypeError, ValueError):
            count = 1
        found[sym] = max(found.get(sym, 0), count)
    return found


def records_of(data: dict[str, int]) -> int:
    """How many people's records: the larger of a people list's rows and the records."""
    return max(data.get(PEOPLE_LIST, 0), data.get(RECORDS, 0))


def is_severe_data(data: dict[str, int], outside: bool, min_records: int) -> bool:
    if not outside:  # inside the company: the digest's
        return False
    return bool(data.get(MY_NUMBER) or data.get(CARD)) or records_of(data) >= min_records


def _actor(actor: str, detail: dict[str, Any]) -> tuple[str, str]:
    """(role, who) from an audit actor "via:role:who" (hold/acts.Actor.audit_name)."""
    parts = actor.split(":", 2)
    role = str(detail.get("by") or (parts[1] if len(parts) == 3 else ""))
    who = parts[2] if len(parts) == 3 else ""
    if role == "approver" and detail.get("approver"):
        who = str(detail["approver"])
    if role not in ("sender", "approver", "admin", "timer"):
        role = "timer" if actor.startswith("timer") or actor.startswith("hold:timer") else role
    return role or "guard", who if "@" in who else ""


def classify(row: AuditRow, msg: MessageFacts | None, facts: Facts) -> Event | None:
    """The event this audit row is, or None (not one an officer hears of)."""
    if row.action not in ACTIONS or msg is None:
        return None
    verdict = msg.verdict
    outside = tuple(a for a in msg.recipients if not facts.is_internal(a))
    data = data_found(verdict)
    severe = is_severe_data(data, bool(outside), facts.min_records)
    symbols = tuple(sorted({str(r.get("symbol")) for r in verdict.get("reasons") or ()
                            if isinstance(r, dict) and r.get("symbol")}))
    hold_kind = str(verdict.get("action") or "")
    hold_kind = hold_kind if hold_kind in ("delay", "confirm", "approve") else ""
    event = Event(audit_id=row.id, at=row.at, message_id=row.message_id, kind="",
                  severe=severe, sender=msg.mail_from, outside=outside,
                  data=tuple((s, data[s]) for s in DATA_TYPES if s in data),
                  rule=str(verdict.get("rule") or ""), hold_kind=hold_kind,
                  by_role="guard", by="", symbols=symbols)
    if row.action == "misdelivery_reported":
        wrong = tuple(str(a) for a in row.detail.get("wrong_recipients") or ())
        # "web:<the sender>" (the page lets only the sender report) or "cli:<who>" (the
        # helpdesk or an admin at the CLI)
        channel, _, who = str(row.detail.get("reporter") or "").partition(":")
        return replace(event, kind="misdelivery", severe=True, outside=wrong or outside,
                       by_role="sender" if channel == "web" else "admin", by=who,
                       incident=str(row.detail.get("incident") or ""))
    if row.action == "rejected" and row.to_state == "rejected":
        return replace(event, kind="rejected")
    if row.action == "held" and row.to_state == "held":
        return replace(event, kind="held")
    if row.action in RELEASES and row.from_state == "held" and row.to_state == "queued":
        if not (severe and outside) or row.detail.get("linked_to"):
            return None  # not a severe hold overridden (a password mail follows its zip)
        role, who = _actor(row.actor, row.detail)
        return replace(event, kind="released", by_role=role, by=who)
    if row.action in ("cancel", "reject") and row.detail.get("near_miss"):
        role, who = _actor(row.actor, row.detail)
        return replace(event, kind="near_miss", severe=False, by_role=role, by=who)
    return None
