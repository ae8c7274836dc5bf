"""defaults.linked_password: a PPAP password mail goes with its encrypted-attachment mail
(held with it, refused with it) unless a rule says otherwise; errors with positions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guard.inspect.finding import Finding
from guard.policy import Action, Policy, PolicyDoc, compile_policy, evaluate
from guard.policy.engine import LINKED_PASSWORD_RULE
from tests.policy.helpers import errors, write

OUTSIDE = "tantou@partner.example"


def make(*rules: dict[str, Any], **defaults: Any) -> Policy:
    doc = {"rules": list(rules), "defaults": {"internal_domains": ["example.co.jp"],
                                              **defaults}}
    return compile_policy(PolicyDoc.model_validate(doc))


def ppap(state: str) -> Finding:
    return Finding("ppap.password", 1.0, where="body",
                   evidence={"queue_id": "Q1", "state": state, "after_minutes": 3})


def run(policy: Policy, *findings: Finding):
    return evaluate(policy, list(findings), sender="sato@example.co.jp", rcpt_tos=[OUTSIDE])


def test_held_with_the_held_zip() -> None:
    v = run(make(), ppap("held"))
    assert v.action is Action.CONFIRM and v.rule == LINKED_PASSWORD_RULE
    assert v.linked_to is not None and v.linked_to.to_json() == {
        "queue_id": "Q1", "effect": "hold", "state": "held"}
    assert v.to_json()["linked_to"]["queue_id"] == "Q1"
    assert [r.symbol for r in v.reasons] == ["ppap.password"]
    assert "Q1" in v.message_ja and "Q1" in v.message_en  # the held notice says so


def test_refused_with_a_refused_or_cancelled_zip() -> None:
    for state in ("rejected", "cancelled", "expired"):
        v = run(make(), ppap(state))
        assert v.action is Action.REJECT and v.linked_to and v.linked_to.effect == "refuse"
        assert "Q1" in (v.reject_text or "") and "Q1" in v.message_ja


def test_a_sent_zip_leaves_the_password_mail_to_the_rules() -> None:
    for state in ("queued", "deferred", "delivered"):
        v = run(make(), ppap(state))
        assert v.action is Action.PASS and v.linked_to is None


def test_a_rule_on_the_symbol_overrides_the_default() -> None:
    policy = make({"name": "no-ppap", "action": "reject",
                   "conditions": [{"symbol": "ppap.password"}]})
    v = run(policy, ppap("held"))
    assert v.action is Action.REJECT and v.rule == "no-ppap" and v.linked_to is None
    tagged = make({"name": "mark", "action": "tag", "conditions": [{"symbol": "ppap"}],
                   "tag": {"subject_prefix": "[PW] "}})
    assert run(tagged, ppap("held")).linked_to is None


def test_a_stricter_rule_keeps_it_to_itself_a_confirm_rule_does_not() -> None:
    approve = make({"name": "records", "action": "approve",
                    "conditions": [{"symbol": "pii"}]}, approver_group=None)
    v = run(approve, ppap("held"), Finding("pii.phone", 0.9))
    assert v.action is Action.APPROVE and v.linked_to is None
    confirm = make({"name": "first-time", "action": "confirm",
                    "conditions": [{"symbol": "new_domain"}]})
    v = run(confirm, ppap("held"), Finding("new_domain", 1.0))
    assert v.action is Action.CONFIRM and v.linked_to is not None
    assert {r.rule for r in v.reasons} == {"first-time", LINKED_PASSWORD_RULE}


def test_policy_mode_leaves_it_to_the_rules() -> None:
    v = run(make(linked_password="policy"), ppap("held"))
    assert v.action is Action.PASS and v.linked_to is None


def test_errors_have_positions(tmp_path: Path) -> None:
    path = write(tmp_path, "policy.yaml", """
        defaults:
          linked_password: hold
          linked_password_minutes: 0
        """)
    found = errors(path)
    assert found[0].startswith(f"{path}:2:20: defaults.linked_password: expected one of "
                               "hold_with_attachment, policy; got 'hold'"), found
    assert found[1].startswith(f"{path}:3:28: defaults.linked_password_minutes"), found


async def test_without_a_store_nothing_is_linked() -> None:
    """`guard policy test --no-history`: no store to ask, so no ppap.password finding
    and no link, whatever the mail says."""
    from guard.accept.decide import Inspector
    from tests.test_ppap import ALICE, password_mail

    ins = await Inspector(None, b"k" * 32).inspect(make(), password_mail(), ALICE,
                                                   [OUTSIDE], "alice")
    assert "ppap.password" not in {f.symbol for f in ins.findings}
    assert ins.verdict.linked_to is None
