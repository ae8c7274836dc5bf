"""Which audit rows alert, how severe, and the words of the mail (guard/alert/events.py,
compose.py): pure, from stored verdicts as the store keeps them."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from guard.alert.compose import Words, burst, first_report
from guard.alert.events import Facts, classify
from guard.store.alerts import MessageFacts
from guard.store.records import AuditRow

FACTS = Facts(is_internal=lambda a: a.endswith("@example.co.jp"), min_records=10)
WORDS = Words(ZoneInfo("Asia/Tokyo"), "https://guard.example.co.jp",
              organisation=lambda d: "取引先株式会社" if d.endswith("client.example") else None)
T0 = 1_796_000_000.0


def reason(symbol: str, count: int = 1) -> dict[str, Any]:
    return {"rule": "r", "action": "approve", "symbol": symbol, "where": "body",
            "count": count, "recipients": [], "score": 0.9}


def msg(*reasons: dict[str, Any], to: tuple[str, ...] = ("a@client.example",),
        mid: str = "M1", action: str = "approve") -> MessageFacts:
    return MessageFacts(mid, "alice@example.co.jp", "alice", T0, "held",
                        {"action": action, "rule": "r", "reasons": list(reasons)}, to)


def row(action: str, frm: str = "", to: str = "held", actor: str = "smtp:alice",
        detail: dict[str, Any] | None = None, rid: int = 1, mid: str = "M1") -> AuditRow:
    return AuditRow(rid, T0 + rid, mid, actor, action, frm, to, detail or {})


def test_my_number_and_cards_are_severe_only_going_outside() -> None:
    """The issue's "going outside" holds for all three data types: to colleagues only,
    a hold is the digest's (minor), not a first report."""
    internal = ("bob@example.co.jp",)
    assert classify(row("held"), msg(reason("pii.my_number", 3)), FACTS).severe  # type: ignore[union-attr]
    e = classify(row("rejected", to="rejected"), msg(reason("pii.card")), FACTS)
    assert e is not None and e.severe and e.kind == "rejected" and e.data == (("pii.card", 1),)
    for sym in ("pii.my_number", "pii.card"):
        inside = classify(row("held"), msg(reason(sym, 3), to=internal), FACTS)
        assert inside is not None and inside.kind == "held" and not inside.severe, sym
        # and the one internal recipient left after an outside one was dropped
        both = msg(reason(sym), to=internal)
        assert classify(row("release", "held", "queued", "cli:admin:x@example.co.jp",
                            {"by": "admin"}), both, FACTS) is None


def test_records_are_severe_only_from_min_records_and_only_to_outside() -> None:
    nine = classify(row("held"), msg(reason("pii.people_list", 9)), FACTS)
    assert nine is not None and not nine.severe and nine.kind == "held"  # the digest's
    assert classify(row("held"), msg(reason("pii.records", 10)), FACTS).severe  # type: ignore[union-attr]
    inside = msg(reason("pii.people_list", 50), to=("bob@example.co.jp",))
    assert not classify(row("held"), inside, FACTS).severe  # type: ignore[union-attr]


def test_an_override_names_who_and_a_linked_password_mail_does_not_alert() -> None:
    severe = msg(reason("pii.card"))
    e = classify(row("release", "held", "queued", "cli:admin:boss@example.co.jp",
                     {"by": "admin", "via": "cli"}), severe, FACTS)
    assert e is not None and (e.kind, e.by_role, e.by) == ("released", "admin",
                                                           "boss@example.co.jp")
    e = classify(row("approve", "held", "queued", "web:approver:sec@example.co.jp",
                     {"by": "approver", "approver": "sec@example.co.jp"}), severe, FACTS)
    assert e is not None and (e.by_role, e.by) == ("approver", "sec@example.co.jp")
    e = classify(row("expire", "held", "queued", "timer:system:host:1",
                     {"by": "system", "via": "timer"}), severe, FACTS)
    assert e is not None and (e.by_role, e.by) == ("timer", "")
    assert classify(row("release", "held", "queued", detail={"linked_to": "Z"}), severe,
                    FACTS) is None
    assert classify(row("release", "held", "queued"), msg(reason("new_domain")), FACTS) is None
    # an approval that is not the last one needed moves nothing
    assert classify(row("approve", "held", "held"), severe, FACTS) is None


def test_near_misses_are_minor_and_other_rows_are_no_events() -> None:
    e = classify(row("cancel", "held", "cancelled", "web:sender:alice@example.co.jp",
                     {"near_miss": True, "by": "sender"}), msg(reason("pii.card")), FACTS)
    assert e is not None and (e.kind, e.severe) == ("near_miss", False)
    assert classify(row("delivered", "queued", "delivered"), msg(), FACTS) is None
    assert classify(row("held"), None, FACTS) is None  # the guard's own mail, or purged


def test_the_first_report_names_organisations_not_addresses_unless_allowed() -> None:
    m = msg(reason("pii.my_number", 2), to=("a@client.example", "b@mail.client.example",
                                            "c@other.example"))
    e = classify(row("held"), m, FACTS)
    assert e is not None
    subject, body = first_report([e], WORDS)
    assert subject == ("[guard] 重大: マイナンバーを含むメールを保留 / "
                       "Severe: mail with My Number held")
    assert "宛先: 取引先株式会社 (client.example)、other.example（3 人）" in body
    assert "a@client.example" not in body and "c@other" not in body
    assert "2026-" in body and "JST" in body
    shown = Words(WORDS.tz, WORDS.base_url, show_addresses=True)
    _, body = first_report([e], shown)
    assert "宛先: a@client.example、b@mail.client.example、c@other.example" in body


def test_one_messages_events_count_once_in_a_burst() -> None:
    card = msg(reason("pii.card"), mid="M1")
    held = classify(row("held", rid=1), card, FACTS)
    released = classify(row("release", "held", "queued", "cli:admin:x@example.co.jp",
                            {"by": "admin"}, rid=2), card, FACTS)
    other = classify(row("rejected", to="rejected", rid=3, mid="M2"),
                     msg(reason("pii.records", 40), mid="M2"), FACTS)
    assert held and released and other
    subject, body = burst([[held, released], [other]], WORDS)
    assert subject == "[guard] 重大: 2 件の重大な事象 / Severe: 2 events"
    assert "対応別: 保留解除・送信 1、拒否 1" in body
    assert "データ別（通数）: カード番号 1、個人の記録 1" in body


def test_a_misdelivery_names_who_reported_it() -> None:
    """The page lets only the sender report ("web:<sender>"); the CLI is the helpdesk's
    or an admin's ("cli:<who>"): the alert says which."""
    def reported(reporter: str) -> tuple[str, str, str]:
        e = classify(row("misdelivery_reported", "delivered", "delivered", detail={
            "incident": "I1", "wrong_recipients": ["x@wrong.example"],
            "reporter": reporter}), msg(), FACTS)
        assert e is not None and e.severe and e.kind == "misdelivery"
        assert e.outside == ("x@wrong.example",) and e.incident == "I1"
        return e.by_role, e.by, first_report([e], WORDS)[1]

    role, by, text = reported("web:alice@example.co.jp")
    assert (role, by) == ("sender", "alice@example.co.jp")
    assert "報告: 送信者 alice@example.co.jp" in text and "web:" not in text
    assert "送信者が誤送信を報告しました（インシデント I1）" in text
    role, by, text = reported("cli:helpdesk@example.co.jp")
    assert (role, by) == ("admin", "helpdesk@example.co.jp")
    assert "Reported by: an administrator helpdesk@example.co.jp" in text
    assert "a misdelivery was reported (incident I1)" in text and "the sender reported" \
        not in text
