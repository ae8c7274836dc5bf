"""`guard incident report|open|update`: a misdelivery reported for a sender (a helpdesk,
an admin), a message an officer puts on record as an incident, and the officer's
findings on an incident. The report of an incident is
`guard report incident ID` (cli/report.py). The web page a sender uses
(web/misdelivery.py) calls the same function, guard/incident/desk.report_misdelivery."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from guard.cli.common import UsageError, os_user, settings_of, with_store

if TYPE_CHECKING:
    from guard.incident.desk import Opened
    from guard.store.access import Store
    from guard.store.incidents import Incident


def add_commands(sub: Any) -> None:
    inc = sub.add_parser("incident", help="incidents: report a misdelivery, record findings")
    isub = inc.add_subparsers(dest="incident_cmd", required=True)
    rep = isub.add_parser("report", help="report a delivered message as sent to the wrong "
                                         "person (opens an incident, alerts the officers)")
    which = rep.add_mutually_exclusive_group(required=True)
    which.add_argument("--message-id", help="the message's Message-ID header, e.g. '<…@…>'")
    which.add_argument("--queue-id", help="the guard's queue id of the message")
    rep.add_argument("--wrong-recipient", action="append", required=True, metavar="ADDR",
                     help="a recipient it should not have gone to (repeat for several)")
    rep.add_argument("--note", default="", help="what the sender says happened")
    rep.add_argument("--by", help="who reports it (default: the account running this)")
    rep.set_defaults(func=cmd_report)
    op = isub.add_parser("open", help="put a message on record as an incident (a severe "
                                      "hold, a release after an override)")
    op.add_argument("queue_id")
    op.add_argument("--note", default="", help="why it is an incident")
    op.set_defaults(func=cmd_open)
    up = isub.add_parser("update", help="the officer's findings on an incident")
    up.add_argument("incident_id")
    for name in ("cause", "harm", "measures", "notes"):
        up.add_argument(f"--{name}")
    up.add_argument("--final", action="store_true", help="the report is final (確報)")
    up.set_defaults(func=cmd_update)


def cmd_report(args: argparse.Namespace) -> int:
    from guard.incident.desk import report_misdelivery
    from guard.store import incidents as I
    from guard.store.incidents import IncidentError

    settings = settings_of(args)
    reporter = f"cli:{args.by or os_user()}"

    async def go(store: Store) -> Opened:
        assert store.writer is not None
        ident = args.queue_id or args.message_id
        async with store.engine.connect() as conn:
            if args.queue_id:  # by its key; a Message-ID lookup scans (rare: a helpdesk)
                m = await I.recorded(conn, args.queue_id.strip())
                found = [(m.id, m.sender)] if m is not None else []
            else:
                found = await I.by_message_id_header(conn, args.message_id)
        if not found:
            raise UsageError(f"no message with {'queue id' if args.queue_id else 'Message-ID'}"
                             f" {ident} is recorded")
        if len(found) > 1:
            raise UsageError(f"{ident} names {len(found)} messages "
                             f"({', '.join(q for q, _s in found)}): give --queue-id")
        try:
            return await report_misdelivery(
                store.engine, store.writer, queue_id=found[0][0],
                wrong_recipients=args.wrong_recipient, reporter=reporter, note=args.note)
        except IncidentError as e:
            raise UsageError(str(e)) from None

    opened = with_store(settings, go, write=True)
    inc = opened.incident
    print(f"incident {inc.id} {'opened' if opened.new else 'already open'} on message "
          f"{inc.message_id} (wrong recipients: {', '.join(inc.wrong_recipients)})")
    print(f"the same sender's other messages to them: {len(opened.others)}")
    for o in opened.others:
        print(f"  {o.id}  {o.address}  {o.state}  {o.subject}")
    print(f"report: guard report incident {inc.id}")
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    from guard.incident.desk import open_severe
    from guard.store.incidents import IncidentError

    opened_by = f"cli:{os_user()}"

    async def go(store: Store) -> Incident:
        assert store.writer is not None
        try:
            return await open_severe(store.engine, store.writer, queue_id=args.queue_id,
                                     opened_by=opened_by, note=args.note)
        except IncidentError as e:
            raise UsageError(str(e)) from None

    inc = with_store(settings_of(args), go, write=True)
    print(f"incident {inc.id} opened on message {inc.message_id}")
    print(f"report: guard report incident {inc.id}")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    from guard.store import incidents as I

    fields = {k: getattr(args, k) for k in I.OFFICER_FIELDS if getattr(args, k) is not None}
    if not fields and not args.final:
        raise UsageError("nothing to change: give --cause, --harm, --measures, --notes "
                         "or --final")
    actor = f"cli:{os_user()}"

    async def go(store: Store) -> Incident:
        assert store.writer is not None
        try:
            return await store.writer.submit(lambda conn, now: I.update_incident(
                conn, now, args.incident_id, actor, fields, final=args.final))
        except I.IncidentError as e:
            raise UsageError(str(e)) from None

    inc = with_store(settings_of(args), go, write=True)
    print(f"incident {inc.id}: {inc.state}")
    return 0
