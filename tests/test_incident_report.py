"""The incident report's judgements, from recorded facts alone (guard/incident/report.py
is pure): which APPI criterion the data may meet, what the prompt then says, the people
estimate, and what is left blank for the officer."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from guard.incident import render
from guard.incident.report import UNKNOWN, Orgs, build
from guard.store.incidents import Incident, RecordedMessage, RecordedRecipient
from guard.store.reports import AuditRow

ALICE = "alice@example.co.jp"
T0 = 1_796_600_000.0


def reason(symbol: str, count: int, where: str = "body", **evidence: Any) -> dict[str, Any]:
    return {"rule": "r", "symbol": symbol, "where": where, "count": count, "score": 0.9,
            "evidence": evidence, "reason_ja": symbol, "reason_en": symbol}


def message(*reasons: dict[str, Any], state: str = "delivered",
            rcpts: tuple[tuple[str, str], ...] = (("bob@example.net", "delivered"),),
            audit: tuple[AuditRow, ...] = ()) -> RecordedMessage:
    m = RecordedMessage("Q1", state, "alice", ALICE, f"Alice <{ALICE}>", "名簿", "<m@x>", 100,
                        T0, {"action": "approve", "rule": "r", "reasons": list(reasons)})
    m.recipients = [RecordedRecipient(a, s, 250, "") for a, s in rcpts]
    m.audit = list(audit)
    return m


ORGS = Orgs(is_internal=lambda a: a.endswith("@example.co.jp"),
            customer=lambda d: "取引先A" if d == "customer.example" else None)


def status(r: Any) -> dict[str, str]:
    return {c.key: c.status for c in r.appi}


def test_a_list_of_more_than_1000_people_with_sensitive_columns():
    m = message(reason("pii.people_list", 1200, "attachment:名簿.xlsx",
                       classes=["name", "phone", "sensitive"]),
                reason("pii.phone", 1180, "attachment:名簿.xlsx"),
                reason("new_domain", 1, "rcpt"))
    r = build(m, None, [], ORGS, UTC)
    assert status(r) == {"sensitive": "may_apply", "financial": "not_indicated",
                         "malicious": "unknown", "over_1000": "may_apply"}
    assert "要配慮個人情報" in r.appi_prompt and "more than 1,000 people" in r.appi_prompt
    assert "30日以内" in r.appi_prompt and "within 30 days" in r.appi_prompt
    # per attachment: each kind with its count; the largest is the estimate
    assert [(i.symbol, i.where, i.count) for i in r.what] == [
        ("pii.people_list", "attachment:名簿.xlsx", 1200),
        ("pii.phone", "attachment:名簿.xlsx", 1180)]
    assert "1200 人分" in dict((k, v) for k, _j, _e, v in r.viewpoints)["how_much"]


def test_nothing_reportable_and_nothing_sent_outside():
    inside = message(reason("pii.phone", 2), rcpts=(("carol@example.co.jp", "delivered"),))
    r = build(inside, None, [], ORGS, UTC)
    assert set(status(r).values()) == {"not_indicated", "unknown"}
    assert "Nothing in the guard's records meets a reporting criterion" in r.appi_prompt
    assert r.where[0].kind == "社内 / internal"
    # card numbers that never left: the prompt says so instead of "report"
    cancelled = message(reason("pii.card", 5), state="cancelled",
                        rcpts=(("bob@example.net", "pending"),))
    r = build(cancelled, None, [], ORGS, UTC)
    assert status(r)["financial"] == "may_apply"
    assert "did not go outside" in r.appi_prompt and "promptly" not in r.appi_prompt


def test_my_number_adds_the_number_act_and_a_customer_is_named():
    m = message(reason("pii.my_number", 3, "attachment:源泉.pdf"),
                rcpts=(("x@customer.example", "delivered"),))
    inc = Incident("I1", "Q1", T0 + 60, "web:" + ALICE, "misdelivery",
                   ("x@customer.example",), "", "first_report", "", "", "対策済み", "", T0 + 60)
    r = build(m, inc, [], ORGS, UTC)
    assert "My Number Act" in r.appi_prompt
    assert r.where[0].kind == "顧客 / customer: 取引先A" and r.where[0].wrong
    # the guard cannot know the cause or the harm: blank; the officer's measures shown
    assert r.officer == {"cause": UNKNOWN, "harm": UNKNOWN, "measures": "対策済み",
                         "notes": UNKNOWN}
    md = render.markdown(r)
    assert "| 再発防止策 / Measures | 対策済み |" in md
    assert f"| 原因 / Cause | {UNKNOWN} |" in md
    assert r.when["reported"] == "2026-12-06 23:34:20 UTC"


def test_an_internal_or_undelivered_wrong_recipient_is_no_delivery_outside():
    """The APPI prompt's "went outside" counts a wrong recipient only when it is outside
    and the mail went (or is going) there."""
    cards = reason("pii.card", 2)

    def misdelivered(address: str, state: str) -> Any:
        m = message(cards, rcpts=((address, state),))
        inc = Incident("I1", "Q1", T0 + 60, "web:" + ALICE, "misdelivery", (address,), "",
                       "first_report", "", "", "", "", T0 + 60)
        return build(m, inc, [], ORGS, UTC)

    for address, state in (("carol@example.co.jp", "delivered"),  # internal
                           ("bob@example.net", "failed")):  # never delivered
        r = misdelivered(address, state)
        assert "did not go outside" in r.appi_prompt, (address, state)
    r = misdelivered("bob@example.net", "pending")  # going outside
    assert "may meet the reporting criteria" in r.appi_prompt
    assert r.where[0].internal is False
    assert misdelivered("carol@example.co.jp", "delivered").where[0].internal is True


def test_a_sampled_count_is_a_lower_bound():
    """Large sheets are sampled (evidence.truncated): the count is "≥ N" and whether more
    than 1,000 people are in it is unknown, not "not indicated"."""
    r = build(message(reason("pii.phone", 800, "attachment:顧客.csv", truncated=True)),
              None, [], ORGS, UTC)
    assert status(r)["over_1000"] == "unknown"
    assert "≥ 800" in r.first["how_many"]
    assert "≥ 800 人分" in dict((k, v) for k, _j, _e, v in r.viewpoints)["how_much"]
    whole = build(message(reason("pii.phone", 800)), None, [], ORGS, UTC)
    assert status(whole)["over_1000"] == "not_indicated" and "≥" not in whole.first["how_many"]


def test_a_misdelivery_first_report_says_when_it_happened_and_when_it_was_found():
    delivered = AuditRow(T0 + 5, "relay:x", "delivered", "queued", "delivered", {})
    m = message(reason("pii.card", 1), audit=(delivered,))
    inc = Incident("I1", "Q1", T0 + 3600, "web:" + ALICE, "misdelivery", ("bob@example.net",),
                   "", "first_report", "", "", "", "", T0 + 3600)
    r = build(m, inc, [], ORGS, UTC)
    assert r.first["when"] == ("発生 / happened: 2026-12-06 23:33:25 UTC; "
                               "発覚・報告 / discovered, reported: 2026-12-07 00:33:20 UTC")


def test_csv_cells_never_start_a_formula():
    m = message(reason("pii.card", 1))
    m.subject = "=HYPERLINK(\"http://x.example\",\"open\")"
    inc = Incident("I1", "Q1", T0, "web:" + ALICE, "misdelivery", ("bob@example.net",),
                   "+cmd|' /C calc'!A0", "first_report", "-2+3", "@SUM(1)", "\tx", "", T0)
    text = render.csv_text(build(m, inc, [], ORGS, UTC))
    import csv
    import io

    for row in csv.reader(io.StringIO(text)):
        for c in row:
            assert not c.startswith(("=", "+", "-", "@", "\t", "\r")), row
    assert "'=HYPERLINK(" in text and "'+cmd|" in text and "'-2+3" in text


def test_an_incident_whose_message_was_purged_still_reports():
    from guard.incident.report import purged_message

    inc = Incident("I1", "Q1", T0, "web:" + ALICE, "misdelivery", ("bob@example.net",),
                   "", "first_report", "", "", "", "", T0)
    r = build(purged_message(inc), inc, [], ORGS, UTC)
    assert r.purged and r.queue_id == "Q1"
    assert [(x.address, x.wrong, x.state) for x in r.where] == [
        ("bob@example.net", True, "purged")]
    md = render.markdown(r)
    assert "メッセージの記録は保持期間を過ぎて削除されました" in md and "message purged" in md
    assert r.when["submitted"] == ""


def test_a_view_link_shows_addresses_only_when_the_policy_allows():
    from guard.incident.report import link_first
    from guard.web.incidents import link_page

    m = message(reason("pii.card", 1), rcpts=(("bob@example.net", "delivered"),
                                               ("x@customer.example", "delivered")))
    inc = Incident("I1", "Q1", T0, "web:" + ALICE, "misdelivery", ("bob@example.net",),
                   "秘密のメモ", "first_report", "原因", "", "", "", T0)
    r = build(m, inc, [], ORGS, UTC)
    masked = link_first(r, False)
    assert "bob@example.net" not in masked["to_whom"]
    assert masked["to_whom"].startswith("example.net (社外 / external)")
    assert "bob@example.net" in link_first(r, True)["to_whom"]
    page = link_page(r, False)
    for hidden in ("bob@example.net", "x@customer.example", "名簿", "秘密のメモ", "原因",
                   ALICE):
        assert hidden not in page, hidden
