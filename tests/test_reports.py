"""The near-miss report and the yearly rule review, checked against the events that
made them: held messages stored and moved through the hold lifecycle (the functions
the web, the CLI and the timers call), then the reports read back from the store —
through the report functions and through `guard report` — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from guard.hold.acts import Actor
from guard.report import periods
from guard.report.read import PolicyFacts, near_miss_report, rules_report
from tests.hold.conftest import (
    ALICE,
    BOB,
    BOSS,
    DAVE,
    DEPUTY,
    Harness,
    close_harness,
    make_settings,
    open_harness,
    verdict,
)

POLICY = Path(__file__).with_name("data") / "report_policy.yaml"
CURRENT = ("r-confirm", "r-approve", "r-stamp", "r-tag", "r-reject", "r-never")
GROUPS = {ALICE: "sales", DAVE: "it"}
FACTS = PolicyFacts(CURRENT, GROUPS.get)
ADMIN = Actor("admin", "root", "cli")
BOSS_ACTS = Actor("approver", BOSS, "web", "192.0.2.20")


def sender(addr: str) -> Actor:
    return Actor("sender", addr, "web", "192.0.2.10")


def why(rule: str, symbol: str, action: str) -> dict[str, Any]:
    return {"rule": rule, "action": action, "symbol": symbol, "where": "rcpt",
            "evidence": {}, "score": 0.9, "count": 1, "reason_ja": symbol,
            "reason_en": symbol, "recipients": [BOB]}


def v(action: str, rule: str, symbol: str, *also: dict[str, Any], **kw: Any
      ) -> dict[str, Any]:
    return verdict(action, rule=rule, reasons=[why(rule, symbol, action), *also], **kw)


async def make_events(hs: Harness) -> dict[str, str]:
    """A known month: 4 near misses, approvals, a confirmation, an expiry, an
    escalation, a tag, a reject, and a rule no longer in the policy."""
    ids: dict[str, str] = {}
    put = hs.put
    # near misses: the sender cancels twice (alice, dave), an approver rejects, an admin
    ids["m1"] = await put(v("confirm", "r-confirm", "new_domain"))
    ids["m2"] = await put(v("approve", "r-approve", "pii.my_number", approvers=[BOSS]))
    ids["m5"] = await put(v("confirm", "r-confirm", "new_domain"), mail_from=DAVE,
                          sender="dave")
    ids["m8"] = await put(v("confirm", "r-old", "lookalike"))
    assert (await hs.lc.cancel(ids["m1"], sender(ALICE), reason="wrong")).code == "cancelled"
    assert (await hs.lc.reject(ids["m2"], BOSS_ACTS, reason="no")).code == "rejected"
    assert (await hs.lc.cancel(ids["m5"], sender(DAVE), reason="wrong")).code == "cancelled"
    assert (await hs.lc.cancel(ids["m8"], ADMIN, reason="admin")).code == "cancelled"
    # approved (with a second rule among its reasons), confirmed, expired, escalated
    ids["m3"] = await put(v("approve", "r-approve", "pii.my_number",
                            why("r-confirm", "new_domain", "confirm"), approvers=[BOSS]))
    assert (await hs.lc.approve(ids["m3"], BOSS_ACTS)).code == "approved"
    ids["m4"] = await put(v("confirm", "r-confirm", "new_domain"))
    assert (await hs.lc.release(ids["m4"], sender(ALICE))).state == "queued"
    ids["m9"] = await put(v("confirm", "r-confirm", "new_domain", on_expiry="cancel"))
    await hs.set_times(ids["m9"], hold_until=-1)
    assert (await hs.lc.expire(ids["m9"])).state == "expired"
    ids["m10"] = await put(v("approve", "r-approve", "pii.my_number", approvers=[BOSS],
                             backup_approvers=[DEPUTY]))
    await hs.set_times(ids["m10"], escalate_at=-1)
    assert (await hs.lc.escalate(ids["m10"])).code == "escalated"
    # a rubber stamp: every hold approved
    for k in ("s1", "s2"):
        ids[k] = await put(v("approve", "r-stamp", "lookalike", approvers=[BOSS]))
        assert (await hs.lc.approve(ids[k], BOSS_ACTS)).code == "approved"
    # delivered with a tag; refused at DATA
    ids["t1"] = await put(v("tag", "r-tag", "pii.phone"), state="queued")
    ids["x1"] = await put(v("reject", "r-reject", "pii.card"), state="rejected")
    return ids


def this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def expected_near_misses(names: bool) -> dict[str, Any]:
    return {
        "report": "near-misses", "month": this_month(), "total": 4,
        "reason": [{"key": "new_domain", "count": 2}, {"key": "lookalike", "count": 1},
                   {"key": "pii.my_number", "count": 1}],
        "rule": [{"key": "r-confirm", "count": 2}, {"key": "r-approve", "count": 1},
                 {"key": "r-old", "count": 1}],
        "department": [{"key": "sales", "count": 3}, {"key": "it", "count": 1}],
        "week": [{"key": periods.iso_week(time.time(), UTC), "count": 4}],
        "decided_by": [{"key": "sender", "count": 2}, {"key": "admin", "count": 1},
                       {"key": "approver", "count": 1}],
        "top_senders": [
            {"label_ja": ALICE if names else "送信者A",
             "label_en": ALICE if names else "Sender A", "count": 3},
            {"label_ja": DAVE if names else "送信者B",
             "label_en": DAVE if names else "Sender B", "count": 1}],
        "names": names,
    }


def approval_seconds(audit: list[dict[str, Any]]) -> float:
    held = next(a["at"] for a in audit if a["action"] == "held")
    approved = next(a["at"] for a in audit if a["action"] == "approve")
    return float(approved - held)


def row(rule: str, **counts: Any) -> dict[str, Any]:
    base = {k: 0 for k in ("fired", "held", "tagged", "refused", "approved", "confirmed",
                           "released", "cancelled", "rejected", "expired", "escalated")}
    return {"rule": rule, **base, "median_approval_seconds": None, **counts}


def run_cli(tmp_path: Path, db_url: str, *args: str) -> str:
    env = {**os.environ, "GUARD_DATABASE_URL": db_url, "GUARD_REVIEW__TIMEZONE": "UTC",
           "GUARD_SECRET_FILE": str(tmp_path / "guard.secret")}
    r = subprocess.run([sys.executable, "-m", "guard.cli", "report", *args,
                        "--policy", str(POLICY)], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


async def test_reports_count_exactly_the_events_that_made_them(db_url: str, tmp_path: Path):
    hs = await open_harness(make_settings(tmp_path, GUARD_DATABASE_URL=db_url))
    try:
        ids = await make_events(hs)
        audits = {k: await hs.audit(ids[k]) for k in ("m3", "s1", "s2")}
        async with hs.engine.connect() as conn:
            nm = await near_miss_report(conn, periods.month(this_month(), UTC), FACTS, UTC)
            rr = await rules_report(conn, periods.year(this_month()[:4], UTC), FACTS,
                                    min_holds=2)
    finally:
        await close_harness(hs)

    from guard.report import render

    assert render.near_miss_json(nm) == expected_near_misses(False)
    stamp = sorted(approval_seconds(audits[k]) for k in ("s1", "s2"))
    want_rules = [
        row("r-confirm", fired=5, held=4, confirmed=1, cancelled=2, expired=1),
        row("r-approve", fired=3, held=3, approved=1, rejected=1, escalated=1,
            median_approval_seconds=approval_seconds(audits["m3"])),
        row("r-stamp", fired=2, held=2, approved=2,
            median_approval_seconds=(stamp[0] + stamp[1]) / 2),
        row("r-tag", fired=1, tagged=1), row("r-reject", fired=1, refused=1),
        row("r-never")]
    doc = render.rules_json(rr)
    assert doc["rules"] == want_rules
    assert doc["never_fired"] == ["r-never"]
    assert doc["rubber_stamps"] == ["r-stamp"]
    assert doc["removed"] == [row("r-old", fired=1, held=1, cancelled=1)]

    md = render.near_miss_markdown(nm)
    assert "ヒヤリハット件数 / Near misses: **4**" in md
    assert "| 送信者A / Sender A | 3 |" in md and ALICE not in md  # anonymised
    assert "| r-stamp | 2 | 2 |" in render.rules_markdown(rr)

    # the same figures through the real command (JSON with names; CSV)
    got = json.loads(run_cli(tmp_path, db_url, "near-misses", "--month", this_month(),
                             "--format", "json", "--names"))
    # departments as the policy file labels them
    assert got == {**expected_near_misses(True), "department": [
        {"key": "営業部 / Sales (sales)", "count": 3}, {"key": "it", "count": 1}]}
    lines = run_cli(tmp_path, db_url, "rules", "--year", this_month()[:4],
                    "--format", "csv", "--min-holds", "2").splitlines()
    assert lines[0] == ("rule,in_policy,fired,held,tagged,refused,approved,confirmed,"
                        "released,cancelled,rejected,expired,escalated,"
                        "median_approval_seconds,never_fired,rubber_stamp")
    assert lines[1] == "r-confirm,1,5,4,0,0,0,1,0,2,0,1,0,,0,0"
    assert lines[3] == f"r-stamp,1,2,2,0,0,2,0,0,0,0,0,0,{(stamp[0] + stamp[1]) / 2:.3f},0,1"
    assert lines[6] == "r-never,1,0,0,0,0,0,0,0,0,0,0,0,,1,0"
    assert lines[7] == "r-old,0,1,1,0,0,0,0,0,1,0,0,0,,0,0"
    assert len(lines) == 8


def test_a_month_that_is_not_one_is_refused_in_one_line(tmp_path: Path):
    env = {**os.environ, "GUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}"}
    r = subprocess.run([sys.executable, "-m", "guard.cli", "report", "near-misses", "--month",
                        "2026-13", "--policy", str(POLICY)], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "YYYY-MM" in r.stderr


def test_months_and_weeks_are_in_the_review_time_zone():
    from zoneinfo import ZoneInfo

    jst = ZoneInfo("Asia/Tokyo")
    p = periods.month("2026-12", jst)
    assert p.since == datetime(2026, 11, 30, 15, tzinfo=UTC).timestamp()
    assert p.until == datetime(2026, 12, 31, 15, tzinfo=UTC).timestamp()
    assert periods.iso_week(datetime(2026, 12, 31, 16, tzinfo=UTC).timestamp(), jst) \
        == "2026-W53"
    with pytest.raises(periods.PeriodError):
        periods.year("26", jst)
