"""The incident desk: open an incident for a misdelivery a sender reports (the web page
and `guard incident report` call the same function), find a message by its Message-ID,
and read the report of an incident or a message. The SQL is in store/incidents.py; the
report is built by the pure report.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import tzinfo

from guard.ids import new_queue_id
from guard.incident.report import IncidentReport, Orgs, build, purged_message
from guard.inspect.domains import registrable_domain
from guard.policy import Policy
from guard.store import AsyncConnection, AsyncEngine
from guard.store import incidents as I
from guard.store.incidents import Incident, IncidentError, SentTo
from guard.store.writer import BatchWriter

# A misdelivery is reported on mail that went out (or is going): held mail is cancelled
# on its review page instead, and refused or cancelled mail never left.
REPORTABLE_STATES = frozenset({"delivered", "queued", "deferred", "bounced"})
# …and to a recipient it went to or is going to (recipients.state; pending includes one
# deferred): not one dropped from a hold or refused by the receiving server
WRONG_RECIPIENT_STATES = frozenset({"delivered", "pending"})


@dataclass(frozen=True)
class Opened:
    incident: Incident
    others: list[SentTo]  # the sender's other messages to the same wrong recipients
    new: bool = True  # False: the same misdelivery was already open (nothing written)


def new_incident_id() -> str:
    """"I" and a queue id: sortable by time, and never a queue id (those have no vowels)."""
    return "I" + new_queue_id()


def owns(sender: str, user_name: str, identities: Sequence[str]) -> bool:
    """Whether a signed-in user is the message's sender: the messages.sender column
    holds the authenticated user's name, or the MAIL FROM address when the client was
    trusted by its network."""
    s = sender.strip().lower()
    return bool(s) and (s == user_name.lower() or s in {a.lower() for a in identities})


def looks_like_queue_id(ident: str) -> bool:
    """A Message-ID has an "@" (RFC 5322 msg-id); the guard's queue ids never do."""
    return bool(ident) and "@" not in ident and "<" not in ident


async def find(conn: AsyncConnection, ident: str, *, senders: Sequence[str] | None = None
               ) -> list[tuple[str, str]]:
    """(queue id, sender) of the messages a person means by `ident`: the guard's queue
    id (read by its key), or a Message-ID header (with or without <>). With `senders`
    (the signed-in user's name and addresses) only their messages, by the sender index;
    without, the helpdesk's lookup scans (store/incidents.by_message_id_header)."""
    ident = ident.strip()
    if looks_like_queue_id(ident):
        m = await I.recorded(conn, ident)
        if m is not None and (senders is None or m.sender in set(senders)
                              or m.sender.lower() in {s.lower() for s in senders}):
            return [(m.id, m.sender)]
        return []
    return await I.by_message_id_header(conn, ident, senders)


async def report_misdelivery(engine: AsyncEngine, writer: BatchWriter, *, queue_id: str,
                             wrong_recipients: Sequence[str], reporter: str,
                             note: str = "") -> Opened:
    """Open a misdelivery incident on a message: the wrong recipients must be among its
    recipients. One transaction (incident row + `misdelivery_reported` audit row); then
    the sender's other messages to those recipients. IncidentError (one line) else."""
    async with engine.connect() as conn:
        m = await I.recorded(conn, queue_id)
    if m is None:
        raise IncidentError(f"no message {queue_id} is recorded")
    if m.state not in REPORTABLE_STATES:
        raise IncidentError(
            f"message {queue_id} is {m.state}: "
            + ("cancel it on its review page instead" if m.state == "held"
               else "it was never sent"))
    theirs = {r.address.lower(): r for r in m.recipients}
    wrong: list[str] = []
    for a in wrong_recipients:
        r = theirs.get(a.strip().lower())
        if r is None:
            raise IncidentError(f"{a.strip()} is not a recipient of message {queue_id}")
        if r.state not in WRONG_RECIPIENT_STATES:
            raise IncidentError(f"{r.address} was not sent message {queue_id} "
                                f"(recipient {r.state})")
        wrong.append(r.address)
    if not wrong:
        raise IncidentError("name at least one wrong recipient")
    iid = new_incident_id()

    async def op(conn: AsyncConnection, now: float) -> Incident:
        return await I.open_incident(conn, now, incident_id=iid, message_id=queue_id,
                                     kind="misdelivery", opened_by=reporter,
                                     wrong_recipients=wrong, note=note)

    incident = await writer.submit(op)
    async with engine.connect() as conn:
        others = [o for o in await I.sent_to(conn, m.sender, wrong) if o.id != queue_id]
    return Opened(incident, others, new=incident.id == iid)


async def reported(conn: AsyncConnection, incident_id: str
                   ) -> tuple[Incident, str, list[SentTo]] | None:
    """A misdelivery as its reporter sees it after reporting: the incident, its message's
    sender (whose it is) and the sender's other messages to the wrong recipients. None:
    no such incident, or its message is no longer recorded."""
    incident = await I.get_incident(conn, incident_id)
    if incident is None or incident.kind != "misdelivery":
        return None
    m = await I.recorded(conn, incident.message_id)
    if m is None:
        return None
    others = [o for o in await I.sent_to(conn, m.sender, incident.wrong_recipients)
              if o.id != m.id]
    return incident, m.sender, others


async def open_severe(engine: AsyncEngine, writer: BatchWriter, *, queue_id: str,
                      opened_by: str, note: str = "") -> Incident:
    """An officer puts a message on record as an incident (a severe hold, a release
    after an override): one transaction, the incident row and `incident_opened`."""
    iid = new_incident_id()

    async def op(conn: AsyncConnection, now: float) -> Incident:
        return await I.open_incident(conn, now, incident_id=iid, message_id=queue_id,
                                     kind="severe", opened_by=opened_by, note=note)

    return await writer.submit(op)


def orgs_of(policy: Policy | None) -> Orgs:
    """Recipients' organisations as the policy knows them (internal domains, customers,
    partners); without a policy, only their registrable domains."""
    if policy is None:
        return Orgs(org_domain=registrable_domain)
    tables = policy.tables
    return Orgs(is_internal=policy.is_internal, customer=tables.customer,
                is_partner=lambda d: tables.partner_kinds(d) is not None,
                org_domain=registrable_domain)


def department_of(policy: Policy | None) -> Callable[[str], str | None]:
    """The sender's department as people know it: "営業部 / Sales (sales)"."""
    return (lambda sender: None) if policy is None else policy.department_of


async def load_report(conn: AsyncConnection, ident: str, tz: tzinfo, *,
                      policy: Policy | None = None) -> IncidentReport | None:
    """The report of an incident (its id) or of a message (its queue id: its latest
    incident if it has one, else what the guard recorded about it). None: neither.
    Incidents are kept when retention purges their message: such a report is built
    from the incident row and says the message was purged."""
    ident = ident.strip()
    incident = await I.get_incident(conn, ident) if ident.startswith("I") else None
    queue_id = incident.message_id if incident else ident
    m = await I.recorded(conn, queue_id)
    if incident is None:
        found = await I.incidents_of(conn, queue_id)
        incident = found[-1] if found else None
    if m is None:
        if incident is None:
            return None
        m = purged_message(incident)
    others: list[SentTo] = []
    if incident is not None and incident.wrong_recipients and m.sender:
        others = await I.sent_to(conn, m.sender, incident.wrong_recipients)
    sender = m.mail_from or m.sender
    return build(m, incident, others, orgs_of(policy), tz, department_of(policy)(sender))
