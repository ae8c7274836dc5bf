"""`guard audit export` (the audit trail for the company's SIEM) and `guard lookup`
(every recorded message to or from one address, for a data subject's request; the
lookup is itself audited)."""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from guard.cli.common import UsageError, os_user, settings_of, with_store

if TYPE_CHECKING:
    from guard.store.access import Store
    from guard.store.records import AuditRow

CSV_COLUMNS = ("time", "message_id", "actor", "action", "from_state", "to_state", "detail")


def add_commands(sub: Any) -> None:
    ap = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="audit_cmd", required=True)
    ex = ap.add_parser("export", help="audit rows for a SIEM, one line each, oldest first")
    ex.add_argument("--since", required=True, type=when,
                    help="30d (the last 30 days), 2026-11-01 or 2026-11-01T09:00 (UTC)")
    ex.add_argument("--until", type=when, help="same forms; default: now")
    ex.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    ex.add_argument("--output", "-o", help="file (default: standard output)")
    ex.set_defaults(func=cmd_audit_export)

    lk = sub.add_parser("lookup", help="every recorded message to or from one address "
                        "(a data subject's request; the lookup is audited)")
    lk.add_argument("address")
    lk.add_argument("--format", choices=("text", "json"), default="text")
    lk.add_argument("--actor", help="who asks (default: the OS user), kept in the audit row")
    lk.set_defaults(func=cmd_lookup)


_AGO = re.compile(r"^(\d+)([dh])$")


def when(text: str) -> float:
    """30d / 12h (ago), or an ISO 8601 date or time (UTC unless it says otherwise)."""
    m = _AGO.match(text.strip())
    if m:
        return time.time() - int(m.group(1)) * (86400 if m.group(2) == "d" else 3600)
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: not 30d, 12h, 2026-11-01 or 2026-11-01T09:00") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _line(row: AuditRow) -> dict[str, Any]:
    return {"time": iso(row.at), "message_id": row.message_id, "actor": row.actor,
            "action": row.action, "from_state": row.from_state, "to_state": row.to_state,
            "detail": row.detail}


def cmd_audit_export(args: argparse.Namespace) -> int:
    from guard.store import records

    settings = settings_of(args)
    if args.until is not None and args.until <= args.since:
        raise UsageError("--until is not after --since")

    # opened before the store (a file that cannot be written fails first), closed after
    out: TextIO = (open(args.output, "w", encoding="utf-8", newline="")
                   if args.output else sys.stdout)

    async def go(store: Store) -> int:
        n = 0
        writer = csv.writer(out) if args.format == "csv" else None
        if writer is not None:
            writer.writerow(CSV_COLUMNS)
        async with store.engine.connect() as conn:
            async for row in records.audit_rows(conn, args.since, args.until):
                line = _line(row)
                if writer is not None:
                    detail = json.dumps(line["detail"], ensure_ascii=False,
                                        separators=(",", ":"))
                    writer.writerow([*(line[c] for c in CSV_COLUMNS[:-1]), detail])
                else:
                    out.write(json.dumps(line, ensure_ascii=False,
                                         separators=(",", ":")) + "\n")
                n += 1
        return n

    try:
        n = with_store(settings, go)
    finally:
        if out is not sys.stdout:
            out.close()
    if args.output:
        print(f"{n} audit rows written to {args.output}", file=sys.stderr)
    return 0


def mask(address: str) -> str:
    """t***@example.co.jp: enough for a person to recognise the request, not the address."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return address[:1] + "***"
    return f"{local[:1]}***@{domain}"


def _keyed(settings: Any, address: str) -> str:
    """The address's keyed hash under the guard's secret (the suppression lists' form),
    "" when this host has no secret or the address is not valid."""
    from guard.mail.digests import address_digest
    from guard.secret import NoSecretHome, load_secret

    try:
        secret = load_secret(settings)
    except NoSecretHome:
        return ""
    if secret is None:
        return ""
    try:
        return address_digest(secret, address).hex()
    except ValueError:
        return ""


def cmd_lookup(args: argparse.Namespace) -> int:
    from guard.store import records

    settings = settings_of(args)
    if "@" not in args.address:
        raise UsageError(f"{args.address!r} is not an address")
    actor = f"cli:{args.actor or os_user()}"
    detail_base = {"os_user": os_user(), "address_masked": mask(args.address),
                   "address_hmac": _keyed(settings, args.address)}

    async def go(store: Store) -> list[records.Recorded]:
        assert store.writer is not None
        async with store.engine.connect() as conn:
            found = await records.messages_of(conn, args.address)
        await store.writer.submit(lambda conn, now: records.record_lookup(
            conn, now, actor, {**detail_base, "found": len(found)}))
        return found

    found = with_store(settings, go, write=True)
    if args.format == "json":
        print(json.dumps([{"id": r.id, "time": iso(r.received_at), "direction": r.direction,
                           "state": r.state, **({"subject": r.subject} if r.subject else {}),
                           "rule": r.rule} for r in found], ensure_ascii=False, indent=1))
        return 0
    for r in found:
        print("\t".join((r.id, iso(r.received_at), r.direction, r.state, r.rule or "-",
                         r.subject)))
    print(f"{len(found)} messages (this lookup is recorded in the audit trail)",
          file=sys.stderr)
    return 0
