"""Engine: findings + rules → one verdict, strictest action wins, every reason kept."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from guard.accept.decide import rejection
from guard.inspect.finding import Finding
from guard.policy import (
    Action,
    Policy,
    PolicyDoc,
    Verdict,
    compile_policy,
    default_policy,
    evaluate,
    load_policy,
)
from guard.policy.engine import UNINSPECTABLE_DEFAULT_RULE
from guard.smtp.replies import reply

EXAMPLE = Path(__file__).resolve().parents[2] / "policies"
SENDER = "sato@example.co.jp"
OUTSIDE = "yamada@customer.example"
INSIDE = "suzuki@example.co.jp"


def make(*rules: dict[str, Any], **sections: Any) -> Policy:
    doc: dict[str, Any] = {"rules": list(rules), **sections}
    doc.setdefault("defaults", {}).setdefault("internal_domains", ["example.co.jp"])
    return compile_policy(PolicyDoc.model_validate(doc))


def rule(name: str, action: str, *conditions: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "action": action, "conditions": list(conditions), **extra}


def f(symbol: str, score: float = 1.0, count: int = 1, where: str = "", **kw: Any) -> Finding:
    return Finding(symbol=symbol, score=score, count=count, where=where, **kw)


def run(
    policy: Policy,
    findings: list[Finding],
    *,
    sender: str = SENDER,
    rcpt: tuple[str, ...] = (OUTSIDE,),
    **kw: Any,
) -> Verdict:
    return evaluate(policy, findings, sender=sender, rcpt_tos=list(rcpt), **kw)


def smtp_reply(verdict: Verdict, utf8: bool = False) -> str:
    """The reply a client reads for a reject verdict (the verdict carries no SMTP text)."""
    return reply(rejection(verdict), utf8=utf8)


# -- default and combination


def test_conditions_on_evidence_tell_lists_and_keywords_apart() -> None:
    policy = make(
        rule("withdrawn-members", "reject", {"symbol": "suppressed",
                                             "evidence": {"list": "withdrawn"}}),
        rule("opted-out", "confirm", {"symbol": "suppressed", "evidence": {"list": "opt_out"}}),
        rule("drafts", "tag", {"symbol": "keyword", "evidence": {"rule": ["draft", "wip"]}},
             tag={"subject_prefix": "[draft] "}),
    )
    withdrawn = f("suppressed", evidence={"list": "withdrawn"})
    opted_out = f("suppressed", evidence={"list": "opt_out"})
    assert run(policy, [opted_out]).action is Action.CONFIRM
    v = run(policy, [opted_out, withdrawn])
    assert v.action is Action.REJECT
    assert [(r.rule, r.evidence["list"]) for r in v.reasons] == [
        ("withdrawn-members", "withdrawn"), ("opted-out", "opt_out")]
    assert run(policy, [f("suppressed", evidence={"list": "newsletter"})]).action is Action.PASS
    assert run(policy, [f("keyword", evidence={"rule": "wip"})]).action is Action.TAG
    assert run(policy, [f("keyword", evidence={"rule": "confidential"})]).action is Action.PASS
    # a list-valued evidence matches when it holds one of the values
    orgs = make(rule("r", "confirm", {"symbol": "external_orgs",
                                      "evidence": {"domains": "rival.example"}}))
    assert run(orgs, [f("external_orgs", evidence={"domains": ["a.example", "rival.example"]})]
               ).action is Action.CONFIRM
    assert run(orgs, [f("external_orgs", evidence={"domains": ["a.example"]})]
               ).action is Action.PASS


def test_evidence_domains_and_addresses_compare_in_one_form() -> None:
    """An admin writes the domain as people do (upper case, Japanese, a host name);
    findings carry registrable A-label domains and readable addresses."""
    policy = make(
        rule("rival", "confirm", {"symbol": "new_domain",
                                  "evidence": {"domains": ["Mail.Rival.Example", "例え.jp"]}}),
        rule("close-to-boss", "approve", {"symbol": "lookalike",
                                          "evidence": {"resembles": "Bucho@例え.jp"}}),
    )
    assert run(policy, [f("new_domain", evidence={"domains": ["rival.example"]})]
               ).action is Action.CONFIRM
    assert run(policy, [f("new_domain", evidence={"domains": ["xn--r8jz45g.jp"]})]
               ).action is Action.CONFIRM
    assert run(policy, [f("new_domain", evidence={"domains": ["rival.example.org"]})]
               ).action is Action.PASS
    assert run(policy, [f("lookalike", evidence={"resembles": "bucho@例え.jp"})]
               ).action is Action.APPROVE


def test_nothing_matches_means_pass_with_no_reasons() -> None:
    policy = make(rule("r", "reject", "pii.my_number"))
    verdict = run(policy, [f("new_domain")])
    assert verdict.action is Action.PASS
    assert verdict.reasons == []
    assert verdict.rule is None
    assert verdict.to_json()["action"] == "pass"


def test_default_policy_passes_everything() -> None:
    findings = [f("pii.my_number", 0.99), f("uninspectable.encrypted"), f("lookalike")]
    verdict = run(default_policy(), findings)
    assert (verdict.action, verdict.reasons, verdict.modifiers.bcc) == (Action.PASS, [], False)


def test_strictest_action_wins_whatever_the_order() -> None:
    policy = make(
        rule("first-time", "delay", "new_domain"),
        rule("my-number", "reject", "pii.my_number"),
        rule("lookalike", "confirm", "lookalike"),
    )
    verdict = run(policy, [f("lookalike"), f("new_domain"), f("pii.my_number")])
    assert verdict.action is Action.REJECT
    assert verdict.rule == "my-number"
    # every matching rule's reason is kept, in rule order
    assert [(r.rule, r.symbol, r.action) for r in verdict.reasons] == [
        ("first-time", "new_domain", Action.DELAY),
        ("my-number", "pii.my_number", Action.REJECT),
        ("lookalike", "lookalike", Action.CONFIRM),
    ]


@pytest.mark.parametrize(
    ("lenient", "strict"),
    [
        ("pass", "tag"),
        ("tag", "bcc"),
        ("bcc", "delay"),
        ("delay", "confirm"),
        ("confirm", "approve"),
        ("approve", "reject"),
    ],
)
def test_each_step_of_the_action_order(lenient: str, strict: str) -> None:
    policy = make(
        rule("strict", strict, "lookalike"),
        rule("lenient", lenient, "lookalike"),
        defaults={"approver_group": "g"},
        groups={"g": {"approvers": ["boss@example.co.jp"]}},
    )
    assert run(policy, [f("lookalike")]).action.value == strict


def test_tie_goes_to_the_rule_written_first() -> None:
    policy = make(
        rule("long", "delay", "new_domain", delay_minutes=30),
        rule("short", "delay", "lookalike", delay_minutes=5),
    )
    verdict = run(policy, [f("lookalike"), f("new_domain")])
    assert (verdict.rule, verdict.delay_minutes) == ("long", 30)


def test_reason_carries_the_finding_and_falls_back_to_rule_text() -> None:
    policy = make(
        rule("new", "delay", "new_domain", message={"ja": "初めて", "en": "first time"}),
    )
    finding = f(
        "new_domain",
        0.8,
        2,
        "rcpt",
        evidence={"domain": "customer.example"},
        recipients=(OUTSIDE,),
        reason_ja="初めての送信先ドメイン customer.example",
    )
    [reason] = run(policy, [finding]).reasons
    assert reason.rule == "new"
    assert (reason.symbol, reason.score, reason.count) == ("new_domain", 0.8, 2)
    assert reason.where == "rcpt"
    assert reason.evidence == {"domain": "customer.example"}
    assert reason.recipients == (OUTSIDE,)
    assert reason.reason_ja == "初めての送信先ドメイン customer.example"
    assert reason.reason_en == "first time"  # the finding had none: the rule's text


def test_scope_only_rule_is_its_own_reason() -> None:
    policy = make(
        rule("internal", "pass", scope={"direction": "internal"}, message={"ja": "社内"}),
    )
    verdict = run(policy, [], rcpt=(INSIDE,))
    assert verdict.rule == "internal"
    assert [(r.rule, r.symbol, r.reason_ja) for r in verdict.reasons] == [("internal", "", "社内")]


def test_one_finding_matched_by_two_conditions_is_one_reason() -> None:
    policy = make(rule("r", "confirm", "pii", "pii.card"))
    assert len(run(policy, [f("pii.card")]).reasons) == 1


def test_disabled_rule_is_ignored() -> None:
    policy = make(rule("off", "reject", "lookalike", enabled=False))
    assert run(policy, [f("lookalike")]).action is Action.PASS


# -- modifiers


FIRST_MARK = {"headers": {"X-Guard": "new"}, "subject_prefix": "[初] "}


def test_bcc_and_tag_combine_with_a_hold() -> None:
    policy = make(
        rule("visible", "bcc", {"symbol": "visible_external", "min_count": 5}),
        rule("mark", "tag", "new_domain", tag=FIRST_MARK),
        rule("mark2", "tag", "new_domain", tag={"headers": {"X-Guard": "ignored", "X-Two": "2"}}),
        rule("first", "delay", "new_domain"),
    )
    verdict = run(policy, [f("visible_external", count=7), f("new_domain")])
    assert verdict.action is Action.DELAY
    assert verdict.modifiers.bcc is True
    assert verdict.modifiers.tag is not None
    assert verdict.modifiers.tag.headers == (("X-Guard", "new"), ("X-Two", "2"))
    assert verdict.modifiers.tag.subject_prefix == "[初] "
    assert verdict.to_json()["modifiers"]["bcc"] is True


def test_tag_and_bcc_alone_deliver_with_bcc_as_the_action() -> None:
    policy = make(
        rule("mark", "tag", "new_domain"),
        rule("visible", "bcc", "visible_external"),
    )
    verdict = run(policy, [f("new_domain"), f("visible_external")])
    assert verdict.action is Action.BCC
    assert verdict.delivered_now and not verdict.held
    assert verdict.modifiers.tag is not None
    assert verdict.modifiers.tag.headers == (("X-Guard-Tag", "mark"),)  # the default mark


def test_tag_parameter_on_a_hold_rule_marks_the_message() -> None:
    policy = make(rule("first", "delay", "new_domain", tag={"subject_prefix": "[社外] "}))
    verdict = run(policy, [f("new_domain")])
    assert verdict.modifiers.tag is not None and verdict.modifiers.tag.subject_prefix == "[社外] "


def test_reject_drops_modifiers_but_keeps_reasons() -> None:
    policy = make(rule("visible", "bcc", "visible_external"), rule("no", "reject", "pii.my_number"))
    verdict = run(policy, [f("visible_external"), f("pii.my_number")])
    assert verdict.action is Action.REJECT
    assert verdict.modifiers.bcc is False and verdict.modifiers.tag is None
    assert [r.rule for r in verdict.reasons] == ["visible", "no"]


# -- scope


def test_direction_outbound_external() -> None:
    policy = make(rule("ext", "confirm", "lookalike", scope={"direction": "outbound-external"}))
    assert run(policy, [f("lookalike")], rcpt=(INSIDE,)).action is Action.PASS
    assert run(policy, [f("lookalike")], rcpt=(INSIDE, OUTSIDE)).action is Action.CONFIRM
    # subdomains of an internal domain are internal
    assert run(policy, [f("lookalike")], rcpt=("a@osaka.example.co.jp",)).action is Action.PASS


def test_direction_internal() -> None:
    policy = make(rule("in", "tag", "pii", scope={"direction": "internal"}))
    assert run(policy, [f("pii.phone")], rcpt=(INSIDE,)).action is Action.TAG
    assert run(policy, [f("pii.phone")], rcpt=(INSIDE, OUTSIDE)).action is Action.PASS


def test_internal_can_be_given_as_a_set_or_a_callable() -> None:
    policy = make(rule("ext", "confirm", "lookalike", scope={"direction": "outbound-external"}))
    findings = [f("lookalike")]
    assert run(policy, findings, internal={"customer.example"}).action is Action.PASS
    assert run(policy, findings, internal=lambda a: a == OUTSIDE).action is Action.PASS
    assert run(policy, findings, internal=lambda a: False).action is Action.CONFIRM
    assert run(policy, findings, internal="customer.example").action is Action.PASS
    assert run(policy, findings, internal="example.co.jp").action is Action.CONFIRM


def test_sender_patterns_are_case_insensitive_globs() -> None:
    policy = make(rule("s", "confirm", "lookalike", scope={"senders": ["*@sales.example.co.jp"]}))
    verdict = run(policy, [f("lookalike")], sender="<Sato@Sales.Example.co.jp>")
    assert verdict.action is Action.CONFIRM
    assert run(policy, [f("lookalike")], sender="sato@example.co.jp").action is Action.PASS


def test_sender_group_by_exact_address_or_pattern() -> None:
    policy = make(
        rule("hr-only", "approve", "pii", scope={"groups": ["hr"]}, approver_group="hr"),
        groups={
            "sales": {"members": ["*@example.co.jp"]},
            "hr": {
                "members": ["tanaka@example.co.jp", "jinji-*@example.co.jp"],
                "approvers": ["boss@example.co.jp"],
            },
        },
    )
    for sender in ("tanaka@example.co.jp", "jinji-tokyo@example.co.jp"):
        assert run(policy, [f("pii.phone")], sender=sender).action is Action.APPROVE
    assert run(policy, [f("pii.phone")], sender="sato@example.co.jp").action is Action.PASS
    # an exact member entry is a stronger statement than a pattern
    assert policy.groups_of("tanaka@example.co.jp") == ("hr", "sales")
    assert policy.group_of("sato@example.co.jp") == "sales"
    assert policy.group_of("someone@elsewhere.example") is None


def test_recipient_domains_include_subdomains_and_wildcards() -> None:
    policy = make(
        rule("plain", "confirm", "pii", scope={"recipient_domains": ["gmail.com"]}),
        rule(
            "sub",
            "approve",
            "pii",
            scope={"recipient_domains": ["*.bank.example"]},
            approver_group="g",
        ),
        groups={"g": {"approvers": ["boss@example.co.jp"]}},
    )
    pii = [f("pii.phone")]
    assert run(policy, pii, rcpt=("a@gmail.com",)).action is Action.CONFIRM
    assert run(policy, pii, rcpt=("a@mail.GMAIL.com",)).action is Action.CONFIRM
    assert run(policy, pii, rcpt=("a@notgmail.com",)).action is Action.PASS
    assert run(policy, pii, rcpt=("a@bank.example",)).action is Action.PASS
    assert run(policy, pii, rcpt=("a@tokyo.bank.example",)).action is Action.APPROVE
    assert run(policy, pii, rcpt=(INSIDE, "a@gmail.com")).action is Action.CONFIRM


# -- conditions


@pytest.mark.parametrize(
    ("finding", "matches"),
    [
        (f("pii.table", 0.9, 10, "attachment:顧客.xlsx"), True),
        (f("pii.table", 0.9, 9, "attachment:顧客.xlsx"), False),  # count below
        (f("pii.table", 0.79, 10, "attachment:顧客.xlsx"), False),  # score below
        (f("pii.table", 0.8, 10, "attachment:a.zip/b.csv"), True),  # bounds are inclusive
        (f("pii.table", 0.9, 50, "body"), False),  # not in an attachment
        (f("pii.table_like", 0.9, 50, "attachment:x"), False),  # not the same symbol
    ],
)
def test_thresholds_and_where(finding: Finding, matches: bool) -> None:
    cond = {"symbol": "pii.table", "min_count": 10, "min_score": 0.8, "where": "attachment"}
    policy = make(rule("list", "confirm", cond))
    assert (run(policy, [finding]).action is Action.CONFIRM) is matches


def test_family_matches_every_member_but_not_a_longer_name() -> None:
    policy = make(rule("fam", "confirm", "pii"))
    assert run(policy, [f("pii.my_number")]).action is Action.CONFIRM
    assert run(policy, [f("pii")]).action is Action.CONFIRM
    assert run(policy, [f("piiz")]).action is Action.PASS


def test_all_needs_every_condition_any_needs_one() -> None:
    both = ["new_domain", {"symbol": "pii", "min_count": 3}]
    policy_all = make(rule("r", "confirm", *both, match="all"))
    policy_any = make(rule("r", "confirm", *both, match="any"))
    only_new = [f("new_domain"), f("pii.phone", count=2)]
    full = [f("new_domain"), f("pii.phone", count=3)]
    assert run(policy_all, only_new).action is Action.PASS
    assert run(policy_any, only_new).action is Action.CONFIRM
    verdict = run(policy_all, full)
    assert verdict.action is Action.CONFIRM
    assert [r.symbol for r in verdict.reasons] == ["new_domain", "pii.phone"]


# -- uninspectable default


def test_uninspectable_external_mail_is_held_by_default() -> None:
    policy = make()
    verdict = run(policy, [f("uninspectable.encrypted", where="attachment:a.zip")])
    assert verdict.action is Action.CONFIRM
    assert verdict.rule == UNINSPECTABLE_DEFAULT_RULE
    assert verdict.reasons[0].symbol == "uninspectable.encrypted"
    assert verdict.expiry_minutes == 1440 and verdict.on_expiry == "cancel"
    # internal-only mail is not held for it
    assert run(policy, [f("uninspectable.encrypted")], rcpt=(INSIDE,)).action is Action.PASS


def test_a_rule_covering_uninspectable_replaces_the_default() -> None:
    partner = {"recipient_domains": ["partner.example"]}
    policy = make(rule("partner-zip", "tag", "uninspectable", scope=partner))
    assert run(policy, [f("uninspectable.encrypted")], rcpt=("a@partner.example",)).action is (
        Action.TAG
    )
    assert run(policy, [f("uninspectable.encrypted")]).action is Action.CONFIRM


def test_uninspectable_default_is_configurable() -> None:
    policy = make(defaults={"internal_domains": ["example.co.jp"], "uninspectable": "reject"})
    assert run(policy, [f("uninspectable.too_large")]).action is Action.REJECT
    policy = make(defaults={"internal_domains": ["example.co.jp"], "uninspectable": "pass"})
    assert run(policy, [f("uninspectable.too_large")]).reasons == []


# -- parameters of the winning rule


def test_delay_parameters_from_defaults_or_rule() -> None:
    verdict = run(make(rule("d", "delay", "new_domain")), [f("new_domain")])
    assert (verdict.delay_minutes, verdict.expiry_minutes, verdict.on_expiry) == (5, 5, "send")
    assert verdict.held
    policy = make(rule("d", "delay", "new_domain", delay_minutes=15, on_expiry="cancel"))
    verdict = run(policy, [f("new_domain")])
    assert (verdict.delay_minutes, verdict.on_expiry) == (15, "cancel")


def test_confirm_parameters() -> None:
    policy = make(
        rule("c", "confirm", "lookalike", expiry_minutes=60, message={"ja": "確認", "en": "check"})
    )
    verdict = run(policy, [f("lookalike")])
    assert (verdict.expiry_minutes, verdict.on_expiry) == (60, "cancel")
    assert (verdict.message_ja, verdict.message_en) == ("確認", "check")
    assert verdict.delay_minutes is None and verdict.reject_code is None


GROUPS = {
    "sales": {
        "members": ["*@example.co.jp"],
        "approvers": ["bucho@example.co.jp"],
        "backup_approvers": ["kacho@example.co.jp"],
        "escalate_after": 60,
    },
    "hr": {
        "members": ["tanaka@example.co.jp"],
        "approvers": ["jinji-bucho@example.co.jp", "jinji-kacho@example.co.jp"],
        "approvals_required": 2,
    },
    "security": {"approvers": ["security@example.co.jp"]},
}
APPROVE_DEFAULTS = {"internal_domains": ["example.co.jp"], "approver_group": "security"}


def test_approve_goes_to_the_senders_group() -> None:
    policy = make(rule("a", "approve", "suppressed"), groups=GROUPS, defaults=APPROVE_DEFAULTS)
    verdict = run(policy, [f("suppressed")], sender="sato@example.co.jp")
    assert verdict.approver_group == "sales"
    assert verdict.approvers == ("bucho@example.co.jp",)
    assert verdict.backup_approvers == ("kacho@example.co.jp",)
    assert (verdict.escalate_after_minutes, verdict.approvals_required) == (60, 1)
    assert (verdict.expiry_minutes, verdict.on_expiry) == (2880, "cancel")
    hr = run(policy, [f("suppressed")], sender="tanaka@example.co.jp")
    # tanaka is in hr (exact) and in sales (pattern): the exact entry decides
    assert (hr.approver_group, hr.approvals_required) == ("hr", 2)


def test_nobody_approves_their_own_mail() -> None:
    policy = make(rule("a", "approve", "suppressed"), groups=GROUPS, defaults=APPROVE_DEFAULTS)
    verdict = run(policy, [f("suppressed")], sender="bucho@example.co.jp")
    assert verdict.approver_group == "sales"
    assert verdict.approvers == ("kacho@example.co.jp",)  # the deputy
    assert "bucho@example.co.jp" not in verdict.approvers + verdict.backup_approvers


def test_sender_outside_every_group_goes_to_the_fallback_group() -> None:
    policy = make(rule("a", "approve", "suppressed"), groups=GROUPS, defaults=APPROVE_DEFAULTS)
    verdict = run(policy, [f("suppressed")], sender="guest@partner.example")
    assert (verdict.approver_group, verdict.approvers) == ("security", ("security@example.co.jp",))


def test_named_approver_group() -> None:
    policy = make(
        rule("a", "approve", "suppressed", approver_group="hr"),
        groups=GROUPS,
        defaults=APPROVE_DEFAULTS,
    )
    assert run(policy, [f("suppressed")], sender="sato@example.co.jp").approver_group == "hr"


def test_reject_reply_is_ascii_unless_the_session_allows_utf8() -> None:
    policy = make(
        rule(
            "no",
            "reject",
            "pii.my_number",
            message={"ja": "マイナンバーは送れません", "en": "No My Number outside"},
        )
    )
    verdict = run(policy, [f("pii.my_number")])
    assert (verdict.reject_code, verdict.reject_status) == (550, "5.7.1")
    assert smtp_reply(verdict) == "550 5.7.1 No My Number outside"
    assert smtp_reply(verdict).isascii()
    assert smtp_reply(verdict, utf8=True) == (
        "550 5.7.1 マイナンバーは送れません / No My Number outside"
    )
    assert verdict.to_json()["reject_text"] == "5.7.1 No My Number outside"


def test_reject_defaults_and_overrides() -> None:
    policy = make(
        rule("no", "reject", "pii.my_number", reject_code=554, reject_status="5.7.0"),
        defaults={"internal_domains": ["example.co.jp"], "language": "ja"},
    )
    verdict = run(policy, [f("pii.my_number")])
    assert smtp_reply(verdict).startswith("554 5.7.0 Message refused by the outbound mail policy")
    assert smtp_reply(verdict, utf8=True) == (
        "554 5.7.0 送信ポリシーによりこのメールの送信を拒否しました。"
    )
    with pytest.raises(ValueError):
        smtp_reply(run(make(), []))


# -- the JSON contract


def test_to_json_contract() -> None:
    policy = make(rule("lookalike", "confirm", "lookalike"))
    finding = f("lookalike", 0.9, evidence={"did_you_mean": "abc.example"}, recipients=(OUTSIDE,))
    data = run(policy, [finding]).to_json()
    assert data["action"] == "confirm"
    assert data["reasons"] == [
        {
            "rule": "lookalike",
            "action": "confirm",
            "symbol": "lookalike",
            "where": "",
            "evidence": {"did_you_mean": "abc.example"},
            "score": 0.9,
            "count": 1,
            "recipients": [OUTSIDE],
            "reason_ja": "",
            "reason_en": "",
        }
    ]
    json.dumps(data)  # serialisable as is


# -- speed


def test_twenty_rules_twenty_findings_under_half_a_millisecond() -> None:
    families = [
        "new_domain",
        "lookalike",
        "pii.phone",
        "pii.table",
        "keyword",
        "external_orgs",
        "visible_external",
        "customer_mismatch",
        "suppressed",
        "pii.card",
    ]
    rules = [
        rule(
            f"r{i}",
            ["tag", "bcc", "delay", "confirm"][i % 4],
            {"symbol": families[i % 10], "min_count": 2, "where": "attachment"},
            {"symbol": families[(i + 3) % 10], "min_score": 0.5},
            scope={"direction": "outbound-external", "groups": ["sales"]} if i % 3 else {},
        )
        for i in range(20)
    ]
    policy = make(*rules, groups={"sales": {"members": ["*@example.co.jp"]}})
    findings = [f(families[i % 10], 0.7, 3, f"attachment:{i}.xlsx") for i in range(20)]
    rcpt = (OUTSIDE, "b@other.example", INSIDE)
    assert len(run(policy, findings, rcpt=rcpt).reasons) > 20
    # CPU time of this process, best of several batches: other work on a busy CI
    # machine must not make this fail
    best = float("inf")
    for _ in range(7):
        start = time.process_time()
        for _ in range(200):
            run(policy, findings, rcpt=rcpt)
        best = min(best, (time.process_time() - start) / 200)
    assert best < 0.0005, f"{best * 1000:.3f} ms per message"


# -- the shipped example policy, case by case (mission.md)


@pytest.fixture(scope="module")
def example() -> Policy:
    return load_policy(EXAMPLE)


CUSTOMER = "yamada@sakura-shoji.example"


@pytest.mark.parametrize(
    ("findings", "sender", "rcpt", "action", "rule"),
    [
        ([], SENDER, (INSIDE,), "pass", "internal-mail-passes"),
        ([], SENDER, (CUSTOMER,), "pass", None),
        (
            [f("new_domain", recipients=(CUSTOMER,))],
            SENDER,
            (CUSTOMER,),
            "delay",
            "first-time-domain",
        ),
        ([f("lookalike")], SENDER, (CUSTOMER,), "confirm", "lookalike-recipient"),
        (
            [f("suppressed", evidence={"list": "opt_out"})],
            SENDER,
            (CUSTOMER,),
            "approve",
            "suppressed-recipient",
        ),
        (
            [f("visible_external", count=6, where="header:to")],
            SENDER,
            (CUSTOMER,),
            "bcc",
            "many-visible-recipients",
        ),
        ([f("visible_external", count=4, where="header:to")], SENDER, (CUSTOMER,), "pass", None),
        ([f("external_orgs", count=3)], SENDER, (CUSTOMER,), "confirm", "several-organisations"),
        ([f("external_orgs", count=2)], SENDER, (CUSTOMER,), "pass", None),
        (
            [f("pii.people_list", 0.85, 12, "attachment:名簿.xlsx")],
            SENDER,
            (CUSTOMER,),
            "approve",
            "personal-data-external",
        ),
        (
            [f("pii.people_list", 0.85, 9, "attachment:名簿.xlsx")],
            SENDER,
            (CUSTOMER,),
            "pass",
            None,
        ),
        (
            [f("pii.card", 0.95, 1, "attachment:注文.csv")],
            SENDER,
            (CUSTOMER,),
            "approve",
            "personal-data-external",
        ),
        # anywhere in the message: a card with context or a people list in the body
        (
            [f("pii.card", 0.95, 1, "body")],
            SENDER,
            (CUSTOMER,),
            "approve",
            "personal-data-external",
        ),
        ([f("pii.card", 0.5, 1, "body")], SENDER, (CUSTOMER,), "pass", None),
        (
            [f("pii.people_list", 0.85, 12, "body")],
            SENDER,
            (CUSTOMER,),
            "approve",
            "personal-data-external",
        ),
        # records in the body count too (own contact data is discounted by the scan, so a
        # branch-office table gives no findings to begin with)
        ([f("pii.records", 0.7, 12, "body")], SENDER, (CUSTOMER,), "approve",
         "personal-data-external"),
        ([f("pii.records", 0.7, 9, "body")], SENDER, (CUSTOMER,), "pass", None),
        # a mass mailing from one mailbox: 200 outside recipients in an hour, or 1000 a day
        ([f("sender_volume.hour", count=200, where="rcpt")], SENDER, (CUSTOMER,), "approve",
         "mass-mailing-from-a-mailbox"),
        ([f("sender_volume.hour", count=199, where="rcpt"),
          f("sender_volume.day", count=999, where="rcpt")], SENDER, (CUSTOMER,), "pass", None),
        ([f("sender_volume.day", count=1000, where="rcpt")], SENDER, (CUSTOMER,), "approve",
         "mass-mailing-from-a-mailbox"),
        # a first message to a private address; a new address at a company is no such thing
        ([f("new_address", where="rcpt", evidence={"domains": ["gmail.com"]},
            recipients=("new.friend@gmail.com",))], SENDER, ("new.friend@gmail.com",),
         "delay", "first-time-private-address"),
        ([f("new_address", where="rcpt", evidence={"domains": ["sakura-shoji.example"]},
            recipients=(CUSTOMER,))], SENDER, (CUSTOMER, "old.friend@gmail.com"), "pass",
         None),
        (
            [f("pii.my_number", 0.9, 1, "attachment:a.pdf")],
            SENDER,
            (CUSTOMER,),
            "reject",
            "my-number-external",
        ),
        ([f("pii.my_number", 0.9, 1, "body")], SENDER, (INSIDE,), "pass", "internal-mail-passes"),
        (
            [f("uninspectable.encrypted", where="attachment:a.zip")],
            SENDER,
            (CUSTOMER,),
            "confirm",
            "uninspectable-attachment",
        ),
        ([f("uninspectable.encrypted")], SENDER, (INSIDE,), "pass", "internal-mail-passes"),
        ([f("customer_mismatch")], SENDER, (CUSTOMER,), "confirm", "customer-mismatch"),
        ([f("keyword", where="subject")], SENDER, (CUSTOMER,), "approve", "confidential-keyword"),
        (
            [f("pii.records", 0.7, 12, "attachment:x.docx")],
            SENDER,
            (CUSTOMER,),
            "approve",
            "personal-data-external",
        ),
        (
            [f("pii.records", 0.7, 2, "attachment:x.docx")],
            "tanaka@example.co.jp",
            (CUSTOMER,),
            "approve",
            "hr-personal-data",
        ),
        (
            [f("pii.people_list", 0.8, 3, "attachment:x.csv")],
            "jinji-1@example.co.jp",
            ("a@gmail.com",),
            "approve",
            "hr-personal-data",
        ),
        (
            [f("pii.records", 0.7, 2, "attachment:x.docx")],
            SENDER,
            ("a@gmail.com",),
            "confirm",
            "freemail-personal-data",
        ),
        ([f("pii.corporate_number", 0.6, 1, "body")], SENDER, ("a@gmail.com",), "pass", None),
        (
            [f("pii.people_list", 0.85, 20, "attachment:名簿.csv")],
            SENDER,
            (INSIDE,),
            "tag",
            "internal-personal-data-mark",
        ),
    ],
)
def test_example_policy_cases(
    example: Policy,
    findings: list[Finding],
    sender: str,
    rcpt: tuple[str, ...],
    action: str,
    rule: str | None,
) -> None:
    verdict = run(example, findings, sender=sender, rcpt=rcpt)
    assert (verdict.action.value, verdict.rule) == (action, rule)


def test_example_approvers(example: Policy) -> None:
    pii = [f("pii.people_list", 0.85, 30, "attachment:名簿.xlsx")]
    sales = run(example, pii, sender="sato@example.co.jp", rcpt=(CUSTOMER,))
    assert (sales.approver_group, sales.approvers) == ("sales", ("eigyo-bucho@example.co.jp",))
    hr = run(
        example,
        [f("pii.records", 0.7, 1, "attachment:a.xlsx")],
        sender="tanaka@example.co.jp",
        rcpt=(CUSTOMER,),
    )
    assert (hr.approver_group, hr.approvals_required) == ("hr", 2)
    other = run(example, pii, sender="kimura@example.co.jp", rcpt=(CUSTOMER,))
    assert other.approver_group == "security"


def test_example_my_number_reject_text(example: Policy) -> None:
    verdict = run(example, [f("pii.my_number", 0.9)], rcpt=(CUSTOMER,))
    assert smtp_reply(verdict).startswith("550 5.7.1 Mail containing a My Number")
    assert "マイナンバー" in smtp_reply(verdict, utf8=True)


def test_example_combines_delay_bcc_and_keeps_every_reason(example: Policy) -> None:
    findings = [f("new_domain"), f("visible_external", count=8, where="header:cc")]
    verdict = run(example, findings, rcpt=(CUSTOMER,))
    assert verdict.action is Action.DELAY
    assert verdict.modifiers.bcc is True
    assert {r.rule for r in verdict.reasons} == {"first-time-domain", "many-visible-recipients"}
    assert verdict.delay_minutes == 5
