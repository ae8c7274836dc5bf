"""Incidents: a message that went where it should not have (a misdelivery a sender
reported after the fact) or that an officer wants on record (a severe hold), with the
officer's own findings beside what the guard recorded.

The guard fills in what it knows when the incident is opened (the message, who
opened it, the wrong recipients); cause, harm, measures and notes are the officer's,
free text, edited later. Opening is one transaction: the incident row and one audit
row on the message (`misdelivery_reported` or `incident_opened`), which the alert
dispatcher turns into a mail to the officers. Neither changes the message's state,
so it is not a lifecycle move (guard/store/lifecycle.py): like `lookup`, an event
about a message, not a step of it.

Also here: what the incident report reads (the message, its recipients and audit
rows) and the other messages a sender sent to the same wrong recipients.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Float, Index, String, Table, Text, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from guard.store.queue import add_audit
from guard.store.reports import AuditRow
from guard.store.schema import audit, json_object, messages, metadata, recipients

KINDS = ("misdelivery", "severe")
STATES = ("first_report", "final")
OFFICER_FIELDS = ("cause", "harm", "measures", "notes")
# the audit action of opening an incident of each kind (the alerts contract: the
# dispatcher mails the officers on `misdelivery_reported`)
OPEN_ACTIONS = {"misdelivery": "misdelivery_reported", "severe": "incident_opened"}
MAX_TEXT = 4000  # an officer's field, a sender's note

incidents = Table(
    "incidents", metadata,
    Column("id", String(32), primary_key=True),  # "I" + a queue id: never a queue id
    # the guard's queue id; no foreign key: the incident outlives the message row,
    # which retention purges
    Column("message_id", String(32), nullable=False),
    Column("opened_at", Float, nullable=False),  # database time
    Column("opened_by", Text, nullable=False),  # "web:alice", "cli:root"
    Column("kind", String(16), nullable=False),  # misdelivery | severe
    Column("wrong_recipients", Text, nullable=False, default="[]"),  # JSON list
    Column("reporter_note", Text, nullable=False, default=""),
    Column("state", String(16), nullable=False, default="first_report"),  # | final
    # the officer's: what the guard cannot know
    Column("cause", Text, nullable=False, default=""),
    Column("harm", Text, nullable=False, default=""),
    Column("measures", Text, nullable=False, default=""),
    Column("notes", Text, nullable=False, default=""),
    Column("updated_at", Float, nullable=False),
    Index("ix_incidents_message", "message_id"),
)


class IncidentError(ValueError):
    """An incident cannot be opened or changed as asked (one line, for the person)."""


@dataclass(frozen=True)
class Incident:
    id: str
    message_id: str
    opened_at: float
    opened_by: str
    kind: str
    wrong_recipients: tuple[str, ...]
    reporter_note: str
    state: str
    cause: str
    harm: str
    measures: str
    notes: str
    updated_at: float


def _incident(r: Any) -> Incident:
    try:
        wrong = json.loads(r.wrong_recipients or "[]")
    except ValueError:
        wrong = []
    return Incident(r.id, r.message_id, float(r.opened_at), r.opened_by, r.kind,
                    tuple(str(a) for a in wrong), r.reporter_note or "", r.state,
                    r.cause or "", r.harm or "", r.measures or "", r.notes or "",
                    float(r.updated_at))


async def open_incident(conn: AsyncConnection, now: float, *, incident_id: str,
                        message_id: str, kind: str, opened_by: str,
                        wrong_recipients: Sequence[str] = (), note: str = "") -> Incident:
    """One transaction: the incident row and the audit row on its message (detail:
    incident, wrong_recipients, reporter). IncidentError if the message is unknown.

    A misdelivery already open (first report) on the same message with the same wrong
    recipients is returned as it is, with no new row and no audit row: a reload or a
    second click reports one misdelivery once, and alerts the officers once."""
    if kind not in KINDS:
        raise IncidentError(f"unknown incident kind {kind!r} (one of {', '.join(KINDS)})")
    row = (await conn.execute(select(messages.c.state).where(
        messages.c.id == message_id))).first()
    if row is None:
        raise IncidentError(f"no message {message_id} is recorded")
    wrong = list(dict.fromkeys(wrong_recipients))
    if kind == "misdelivery":
        same = {a.lower() for a in wrong}
        for known in await incidents_of(conn, message_id):
            if (known.kind == "misdelivery" and known.state == "first_report"
                    and {a.lower() for a in known.wrong_recipients} == same):
                return known
    await conn.execute(insert(incidents).values(
        id=incident_id, message_id=message_id, opened_at=now, opened_by=opened_by,
        kind=kind, wrong_recipients=json.dumps(wrong, ensure_ascii=False),
        reporter_note=note[:MAX_TEXT], state="first_report", cause="", harm="",
        measures="", notes="", updated_at=now))
    await add_audit(conn, now, message_id, opened_by, OPEN_ACTIONS[kind], row.state,
                    row.state, {"incident": incident_id, "wrong_recipients": wrong,
                                "reporter": opened_by})
    return Incident(incident_id, message_id, now, opened_by, kind, tuple(wrong),
                    note[:MAX_TEXT], "first_report", "", "", "", "", now)


async def update_incident(conn: AsyncConnection, now: float, incident_id: str, actor: str,
                          fields: dict[str, str], *, final: bool = False) -> Incident:
    """The officer's fields (cause, harm, measures, notes) and, with `final`, the
    report made final; one audit row on the message (`incident_updated`)."""
    bad = set(fields) - set(OFFICER_FIELDS)
    if bad:
        raise IncidentError(f"not an officer's field: {', '.join(sorted(bad))}")
    current = await get_incident(conn, incident_id)
    if current is None:
        raise IncidentError(f"no incident {incident_id}")
    values: dict[str, Any] = {k: v[:MAX_TEXT] for k, v in fields.items()}
    if final:
        values["state"] = "final"
    values["updated_at"] = now
    await conn.execute(update(incidents).where(incidents.c.id == incident_id).values(values))
    await add_audit(conn, now, current.message_id, actor, "incident_updated", detail={
        "incident": incident_id, "fields": sorted(fields), "final": final})
    got = await get_incident(conn, incident_id)
    assert got is not None
    return got


async def get_incident(conn: AsyncConnection, incident_id: str) -> Incident | None:
    row = (await conn.execute(select(incidents).where(incidents.c.id == incident_id))).first()
    return _incident(row) if row is not None else None


async def incidents_of(conn: AsyncConnection, message_id: str) -> list[Incident]:
    """The incidents opened on a message, oldest first."""
    rows = await conn.execute(select(incidents).where(incidents.c.message_id == message_id)
                              .order_by(incidents.c.opened_at, incidents.c.id))
    return [_incident(r) for r in rows]


# --- what the report reads -----------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRecipient:
    address: str
    state: str
    last_code: int | None
    last_reply: str


@dataclass
class RecordedMessage:
    """Everything the guard recorded about one message (never its bytes)."""

    id: str
    state: str
    sender: str
    mail_from: str
    header_from: str
    subject: str
    message_id_header: str
    size: int
    received_at: float
    verdict: dict[str, Any]
    recipients: list[RecordedRecipient] = field(default_factory=list)
    audit: list[AuditRow] = field(default_factory=list)


async def recorded(conn: AsyncConnection, message_id: str) -> RecordedMessage | None:
    """The message row, its recipients in order and its audit rows, oldest first."""
    r = (await conn.execute(select(messages).where(messages.c.id == message_id))).first()
    if r is None:
        return None
    m = RecordedMessage(r.id, r.state, r.sender, r.mail_from, r.header_from or "",
                        r.subject or "", r.message_id_header or "", int(r.size),
                        float(r.received_at), json_object(r.verdict))
    for x in await conn.execute(select(recipients).where(recipients.c.message_id == message_id)
                                .order_by(recipients.c.idx)):
        m.recipients.append(RecordedRecipient(x.address, x.state, x.last_code,
                                              x.last_reply or ""))
    for a in await conn.execute(select(audit).where(audit.c.message_id == message_id)
                                .order_by(audit.c.at, audit.c.id)):
        m.audit.append(AuditRow(float(a.at), a.actor, a.action, a.from_state or "",
                                     a.to_state or "", json_object(a.detail)))
    return m


async def by_message_id_header(conn: AsyncConnection, value: str,
                                senders: Sequence[str] | None = None
                                ) -> list[tuple[str, str]]:
    """(queue id, sender) of the messages stored with this Message-ID header (angle
    brackets optional), newest first: a split hold stores one message as two rows.

    There is no index on the header (one would cost every accept): with `senders` (a
    signed-in user's name and addresses, as the messages.sender column holds them) the
    lookup uses ix_messages_sender_received and reads only their mail; without (the
    helpdesk's CLI, rare) it scans."""
    v = value.strip()
    if not v:
        return []
    bare = v.strip("<>")
    stmt = select(messages.c.id, messages.c.sender).where(
        messages.c.message_id_header.in_((f"<{bare}>", bare)))
    if senders is not None:
        who = sorted({s for s in senders if s})
        if not who:
            return []
        stmt = stmt.where(messages.c.sender.in_(who))
    rows = await conn.execute(stmt.order_by(messages.c.received_at.desc(), messages.c.id))
    return [(r.id, r.sender) for r in rows]


@dataclass(frozen=True)
class SentTo:
    id: str
    received_at: float
    state: str
    subject: str
    address: str  # the wrong recipient it went to
    recipient_state: str


async def sent_to(conn: AsyncConnection, sender: str, addresses: Sequence[str], *,
                  limit: int = 500) -> list[SentTo]:
    """Every stored message of `sender` (the messages.sender column) with one of
    `addresses` among its recipients (compared case-insensitively), newest first."""
    wanted = sorted({a.strip().lower() for a in addresses if a.strip()})
    if not wanted:
        return []
    rows = await conn.execute(
        select(messages.c.id, messages.c.received_at, messages.c.state, messages.c.subject,
               recipients.c.address, recipients.c.state.label("rstate"))
        .join(recipients, recipients.c.message_id == messages.c.id)
        .where(messages.c.sender == sender, func.lower(recipients.c.address).in_(wanted))
        .order_by(messages.c.received_at.desc(), messages.c.id, recipients.c.idx)
        .limit(limit))
    return [SentTo(r.id, float(r.received_at), r.state, r.subject or "", r.address, r.rstate)
            for r in rows]
