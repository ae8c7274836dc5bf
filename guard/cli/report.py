"""`guard report near-misses|rules|incident`: the near misses of a month (staff
training), the yearly review of the rules (PDCA) and the report of one incident
(guard/incident/, the same as /reports/incidents/ID). Read-only; the figures come from
guard/report/ (the same functions as the web pages), the rules and departments from
the policy (--policy, else the configured one), months and weeks in review.timezone."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from guard.cli.common import UsageError, policy_path, settings_of, with_store

if TYPE_CHECKING:
    from guard.incident.report import IncidentReport
    from guard.report.nearmiss import NearMissReport
    from guard.report.read import PolicyFacts
    from guard.report.rules import RulesReport
    from guard.store.access import Store

FORMATS = ("md", "csv", "json")


def add_commands(sub: Any) -> None:
    rep = sub.add_parser("report", help="reports: near misses, the yearly rule review")
    rs = rep.add_subparsers(dest="report_cmd", required=True)
    nm = rs.add_parser("near-misses", help="near misses (ヒヤリハット) of one month")
    nm.add_argument("--month", required=True, help="YYYY-MM (in review.timezone)")
    nm.add_argument("--format", choices=FORMATS, default="md")
    nm.add_argument("--names", action="store_true",
                    help="name the top senders (anonymised otherwise)")
    nm.add_argument("--policy", help="the policy for departments (default: the configured one)")
    nm.set_defaults(func=cmd_near_misses)
    ru = rs.add_parser("rules", help="the yearly review of the rules")
    ru.add_argument("--year", required=True, help="YYYY (in review.timezone)")
    ru.add_argument("--format", choices=FORMATS, default="md")
    ru.add_argument("--min-holds", type=int, default=10,
                    help="holds a rule needs before it can be called a rubber stamp")
    ru.add_argument("--policy", help="the policy whose rules are reviewed "
                                     "(default: the configured one)")
    ru.set_defaults(func=cmd_rules)
    inc = rs.add_parser("incident", help="the incident report (first report, 5W1H, the "
                                         "five viewpoints, the APPI prompt)")
    inc.add_argument("id", help="an incident id (I…) or a message's queue id")
    inc.add_argument("--format", choices=FORMATS, default="md")
    inc.add_argument("--policy", help="the policy for organisations and departments "
                                      "(default: the configured one, if any)")
    inc.set_defaults(func=cmd_incident)


def _facts(args: argparse.Namespace, settings: Any) -> PolicyFacts:
    from guard.cli.common import load_policy_at
    from guard.report.read import PolicyFacts

    return PolicyFacts.of(load_policy_at(policy_path(args, settings)))


def cmd_near_misses(args: argparse.Namespace) -> int:
    from guard.ownmail import timezone_of
    from guard.report import periods, render
    from guard.report.read import near_miss_report

    settings = settings_of(args)
    tz = timezone_of(settings)
    try:
        period = periods.month(args.month, tz)
    except periods.PeriodError as e:
        raise UsageError(str(e)) from None
    facts = _facts(args, settings)

    async def run(store: Store) -> NearMissReport:
        async with store.engine.connect() as conn:
            return await near_miss_report(conn, period, facts, tz, names=args.names)

    r = with_store(settings, run)
    return _write(args.format, r, render.near_miss_markdown, render.near_miss_csv,
                  lambda r: render.dump_json(render.near_miss_json(r)))


def cmd_rules(args: argparse.Namespace) -> int:
    from guard.ownmail import timezone_of
    from guard.report import periods, render
    from guard.report.read import rules_report

    settings = settings_of(args)
    tz = timezone_of(settings)
    try:
        period = periods.year(args.year, tz)
    except periods.PeriodError as e:
        raise UsageError(str(e)) from None
    if args.min_holds < 1:
        raise UsageError("--min-holds must be at least 1")
    facts = _facts(args, settings)

    async def run(store: Store) -> RulesReport:
        async with store.engine.connect() as conn:
            return await rules_report(conn, period, facts, min_holds=args.min_holds)

    r = with_store(settings, run)
    return _write(args.format, r, render.rules_markdown, render.rules_csv,
                  lambda r: render.dump_json(render.rules_json(r)))


def cmd_incident(args: argparse.Namespace) -> int:
    from guard.config import ConfigError
    from guard.incident import render
    from guard.incident.desk import load_report
    from guard.ownmail import timezone_of

    settings = settings_of(args)
    tz = timezone_of(settings)
    try:
        policy: Any = _facts_policy(args, settings)
    except ConfigError:
        if args.policy:
            raise
        policy = None  # no policy configured: organisations by domain only

    async def run(store: Store) -> IncidentReport | None:
        async with store.engine.connect() as conn:
            return await load_report(conn, args.id, tz, policy=policy)

    r = with_store(settings, run)
    if r is None:
        raise UsageError(f"no incident or message {args.id} is recorded (or it was purged)")
    return _write(args.format, r, render.markdown, render.csv_text, render.dump_json)


R = TypeVar("R")


def _write(fmt: str, report: R, md: Callable[[R], str], csv: Callable[[R], str],
           js: Callable[[R], str]) -> int:
    """A report on standard output in the --format asked for (md, csv or json)."""
    sys.stdout.write(md(report) if fmt == "md" else csv(report) if fmt == "csv"
                     else js(report))
    return 0


def _facts_policy(args: argparse.Namespace, settings: Any) -> Any:
    from guard.cli.common import load_policy_at

    return load_policy_at(policy_path(args, settings))
