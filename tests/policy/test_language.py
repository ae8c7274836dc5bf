"""The policy language's exceptions, recipient classes, grouped conditions and places:
what the compiled policy decides, what `policy check` says, what --explain shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from guard.inspect.finding import Finding
from guard.policy import Action, Policy, PolicyDoc, Verdict, compile_policy, evaluate, load_policy
from guard.policy.scope import RecipientTables
from guard.policy.why import explain
from tests.policy.helpers import errors, write

SENDER = "sato@example.co.jp"
OUTSIDE = "yamada@outside.example"
CUSTOMER = "tanaka@mail.sakura-shoji.example"  # a subdomain of a customer's domain
CONTRACTOR = "kato@partner-logistics.example"
SUPPLIER = "ito@design-office.example"
TABLES = RecipientTables(
    customers={"sakura-shoji.example": "さくら商事株式会社"},
    partners={"partner-logistics.example": frozenset({"contractor"}),
              "design-office.example": frozenset({"supplier"}),
              "plain-partner.example": frozenset()},
)


def make(*rules: dict[str, Any], **sections: Any) -> Policy:
    doc: dict[str, Any] = {"rules": list(rules), **sections}
    doc.setdefault("defaults", {}).setdefault("internal_domains", ["example.co.jp"])
    doc.setdefault("groups", {"hr": {"members": ["jinji@example.co.jp"]}})
    return compile_policy(PolicyDoc.model_validate(doc), tables=TABLES)


def rule(name: str, action: str, *conditions: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "action": action, "conditions": list(conditions), **extra}


def f(symbol: str, count: int = 1, where: str = "", **kw: Any) -> Finding:
    return Finding(symbol=symbol, score=1.0, count=count, where=where, **kw)


def run(policy: Policy, findings: list[Finding], *, sender: str = SENDER,
        rcpt: tuple[str, ...] = (OUTSIDE,)) -> Verdict:
    return evaluate(policy, findings, sender=sender, rcpt_tos=list(rcpt))


# -- scope: except


def test_except_senders_and_groups_exclude_the_rule() -> None:
    policy = make(rule("confidential-out", "reject", "keyword", scope={
        "direction": "outbound-external",
        "except": {"senders": ["news@example.co.jp"], "groups": ["hr"]}}))
    kw = [f("keyword")]
    assert run(policy, kw).action is Action.REJECT
    assert run(policy, kw, sender="News@example.co.jp").action is Action.PASS
    assert run(policy, kw, sender="jinji@example.co.jp").action is Action.PASS


def test_except_recipient_is_customer_excludes_only_mail_to_a_customer() -> None:
    policy = make(rule("plan-out", "confirm", "keyword",
                       scope={"except": {"recipient_is": "customer"}}))
    assert run(policy, [f("keyword")], rcpt=(OUTSIDE,)).action is Action.CONFIRM
    assert run(policy, [f("keyword")], rcpt=(OUTSIDE, CUSTOMER)).action is Action.PASS


# -- scope: what the recipients are


@pytest.mark.parametrize(("wanted", "rcpt", "matches"), [
    ("customer", CUSTOMER, True),
    ("customer", CONTRACTOR, False),
    ("partner", SUPPLIER, True),
    ("partner", "x@plain-partner.example", True),
    ("partner", CUSTOMER, False),
    ("partner:contractor", CONTRACTOR, True),
    ("partner:Contractor", CONTRACTOR, True),  # kinds compare case-folded
    ("partner:contractor", SUPPLIER, False),
    ("list:withdrawn", "gone@example.com", True),
    ("list:withdrawn", "opted@example.com", False),
])
def test_recipient_is_names_the_tables_and_lists(wanted: str, rcpt: str, matches: bool) -> None:
    policy = make(rule("r", "confirm", scope={"recipient_is": wanted}))
    findings = [f("suppressed", where="rcpt", evidence={"list": "withdrawn"},
                  recipients=("Gone@example.com",)),
                f("suppressed", where="rcpt", evidence={"list": "opt_out"},
                  recipients=("opted@example.com",))]
    verdict = run(policy, findings, rcpt=(OUTSIDE, rcpt))
    assert (verdict.action is Action.CONFIRM) is matches


def test_every_external_recipient_is() -> None:
    policy = make(rule("to-partners-only", "tag", "keyword",
                       scope={"every_external_recipient_is": ["partner", "customer"]}))
    kw = [f("keyword")]
    assert run(policy, kw, rcpt=(CONTRACTOR, CUSTOMER, "sato2@example.co.jp")).action is Action.TAG
    assert run(policy, kw, rcpt=(CONTRACTOR, OUTSIDE)).action is Action.PASS
    # no external recipient at all: "every external recipient is a partner" says nothing
    assert run(policy, kw, rcpt=("suzuki@example.co.jp",)).action is Action.PASS


# -- grouped conditions


def test_a_and_b_or_c() -> None:
    policy = make(rule("r", "confirm", {"all": ["pii.phone", "pii.address"]}, "pii.my_number"))
    phone, address, my_number = f("pii.phone"), f("pii.address"), f("pii.my_number")
    assert run(policy, [phone]).action is Action.PASS
    assert run(policy, [address]).action is Action.PASS
    v = run(policy, [phone, address])
    assert v.action is Action.CONFIRM
    # every finding that made it match is a reason
    assert [r.symbol for r in v.reasons] == ["pii.phone", "pii.address"]
    assert [r.symbol for r in run(policy, [my_number]).reasons] == ["pii.my_number"]
    assert [r.symbol for r in run(policy, [phone, address, my_number]).reasons] == [
        "pii.phone", "pii.address", "pii.my_number"]


def test_not_means_no_finding_satisfies_it() -> None:
    policy = make(rule("keyword-without-card", "tag", {"all": [
        "keyword", {"not": {"symbol": "pii.card", "min_score": 0.9}}]}))
    assert run(policy, [f("keyword")]).action is Action.TAG
    assert run(policy, [f("keyword"), f("pii.card")]).action is Action.PASS
    weak_card = Finding("pii.card", score=0.5)
    assert run(policy, [f("keyword"), weak_card]).action is Action.TAG
    # the reasons are the findings that held, not the absent card
    assert [r.symbol for r in run(policy, [f("keyword")]).reasons] == ["keyword"]


def test_a_rule_matching_only_through_not_gives_the_rule_as_its_reason() -> None:
    policy = make(rule("no-disclaimer", "tag", {"not": "keyword"},
                       description="mail without the confidentiality keyword"))
    v = run(policy, [])
    assert v.action is Action.TAG
    assert [(r.rule, r.symbol) for r in v.reasons] == [("no-disclaimer", "")]
    assert run(policy, [f("keyword")]).action is Action.PASS


def test_match_all_with_groups_and_nesting() -> None:
    policy = make(rule("r", "approve", {"any": ["pii.card", "pii.my_number"]},
                       {"not": {"any": [{"all": ["keyword", "new_domain"]}]}},
                       match="all", approver_group="sec"),
                  groups={"sec": {"approvers": ["boss@example.co.jp"]}})
    assert run(policy, [f("pii.card")]).action is Action.APPROVE
    assert run(policy, [f("pii.card"), f("keyword")]).action is Action.APPROVE
    assert run(policy, [f("pii.card"), f("keyword"), f("new_domain")]).action is Action.PASS
    assert run(policy, [f("keyword")]).action is Action.PASS


# -- places and shares


def test_where_takes_a_list_and_except_where_excludes() -> None:
    policy = make(
        rule("listed", "tag", {"symbol": "keyword", "where": ["subject", "attachment"]}),
        rule("not-quoted", "confirm", {"symbol": "keyword", "where": "body",
                                       "except_where": ["body.quoted", "body.disclaimer"]}),
    )
    assert run(policy, [f("keyword", where="attachment:a.pdf")]).rule == "listed"
    assert run(policy, [f("keyword", where="body.quoted")]).action is Action.PASS
    assert run(policy, [f("keyword", where="body.disclaimer")]).action is Action.PASS
    assert run(policy, [f("keyword", where="body.signature")]).action is Action.CONFIRM
    assert run(policy, [f("keyword", where="body")]).action is Action.CONFIRM


@pytest.mark.parametrize(("where", "new"), [
    ("body", True), ("body.quoted", False), ("body.signature", False),
    ("body.disclaimer", False), ("subject", False), ("attachment:a.txt", False),
])
def test_new_text_is_the_body_without_quote_signature_and_disclaimer(where: str,
                                                                     new: bool) -> None:
    policy = make(rule("r", "confirm", {"symbol": "keyword", "where": "new_text"}))
    assert (run(policy, [f("keyword", where=where)]).action is Action.CONFIRM) is new
    # and excluding it leaves the rest
    negated = make(rule("r", "confirm", {"symbol": "keyword", "except_where": "new_text"}))
    assert (run(negated, [f("keyword", where=where)]).action is Action.CONFIRM) is (not new)


def test_min_percent_is_a_share_of_the_lines_and_needs_them() -> None:
    policy = make(rule("mostly-records", "confirm",
                       {"symbol": "pii.records", "min_percent": 30}))
    assert run(policy, [f("pii.records", 3, evidence={"lines": 10})]).action is Action.CONFIRM
    assert run(policy, [f("pii.records", 2, evidence={"lines": 10})]).action is Action.PASS
    assert run(policy, [f("pii.records", 9)]).action is Action.PASS  # no lines: not satisfied
    assert run(policy, [f("pii.records", 9, evidence={"lines": 0})]).action is Action.PASS
    assert run(policy, [f("pii.records", 9, evidence={"lines": True})]).action is Action.PASS


# -- explain


def test_explain_shows_the_branch_the_except_and_the_customer() -> None:
    policy = make(
        rule("grouped", "confirm", {"all": ["pii.phone", "pii.address"]}, "pii.my_number",
             scope={"recipient_is": "customer"}),
        rule("excluded", "reject", "keyword", scope={"except": {"senders": SENDER}}),
    )
    findings = [f("pii.phone", where="body"), f("pii.address", where="body"), f("keyword")]
    grouped, excluded = explain(policy, findings, sender=SENDER, rcpt_tos=[CUSTOMER])
    assert grouped.matched
    assert grouped.scope.tests == (
        ("recipient_is", True, f"{CUSTOMER} is a customer (さくら商事株式会社)"),)
    tree = grouped.to_json()["conditions"]
    assert tree["test"] == "any" and tree["held"]
    assert [(c["test"], c["held"]) for c in tree["children"]] == [
        ("all", True), ("pii.my_number", False)]
    assert tree["findings"] == ["pii.phone@body", "pii.address@body"]
    text = "\n".join(grouped.lines())
    assert "holds  all" in text and "fails  pii.my_number" in text
    assert not excluded.matched
    assert excluded.scope.excluded_by == ("senders", f"the sender {SENDER} is listed")
    assert "excluded by except.senders" in excluded.lines()[0]


# -- policy check: errors in admins' words, with file:line:column


def _policy(tmp_path: Path, rules: str, *, partners: str | None = None,
            customers: bool = True) -> Path:
    lists = []
    if partners is not None:
        write(tmp_path, "partners.csv", partners)
        lists.append("  partners: partners.csv")
    if customers:
        write(tmp_path, "customers.csv", "name,domains\nさくら商事株式会社,sakura-shoji.example\n")
        lists.append("  customers: customers.csv")
    head = "groups:\n  hr: {members: [jinji@example.co.jp]}\n"
    if lists:
        head += "lists:\n" + "\n".join(lists) + "\n"
    return write(tmp_path, "policy.yaml", head + "rules:\n" + rules)


def test_unknown_key_in_except_and_in_a_group_suggests_the_spelling(tmp_path: Path) -> None:
    path = _policy(tmp_path, """\
  - name: r
    action: confirm
    scope: {except: {sender: [a@example.co.jp]}}
    conditions:
      - any: [pii.card, {symbol: keyword, wher: body}]
""")
    first, second = errors(path)
    assert first.startswith(f"{path}:8:22: rules[0].scope.except.sender: unknown key 'sender' "
                            "(did you mean 'senders'?)")
    assert second.startswith(f"{path}:10:43: rules[0].conditions[0].any[1].wher: unknown key "
                             "'wher' (did you mean 'where'?)")


def test_wrong_nesting_is_explained(tmp_path: Path) -> None:
    path = _policy(tmp_path, """\
  - name: r
    action: confirm
    conditions:
      - {all: [pii.card], symbol: keyword}
      - not: [pii.card, pii.my_number]
      - any: []
""")
    a, b, c = errors(path)
    assert a.startswith(f"{path}:9:27: rules[0].conditions[0].symbol: unknown key 'symbol'; "
                        "a group holds only its 'all'")
    assert b.startswith(f"{path}:10:14: rules[0].conditions[1].not: expected one condition")
    assert c == f"{path}:11:14: rules[0].conditions[2].any: expected at least 1 item; got a list"


def test_nesting_deeper_than_the_limit_is_an_error(tmp_path: Path) -> None:
    path = _policy(tmp_path, """\
  - name: r
    action: confirm
    conditions:
      - any: [{not: {all: [{any: [{not: pii}]}]}}]
""")
    [message] = errors(path)
    assert message.startswith(f"{path}:9:35: rules[0].conditions[0].any[0].not.all[0].any[0]: "
                              "conditions nested 5 groups deep; at most 4")


def test_unknown_recipient_class_and_missing_table(tmp_path: Path) -> None:
    path = _policy(tmp_path, """\
  - name: r
    action: confirm
    scope:
      recipient_is: [contractor, customers]
  - name: s
    action: confirm
    scope: {recipient_is: partner}
""", customers=False)
    a, b = errors(path)
    assert a.startswith(f"{path}:7:22: rules[0].scope.recipient_is[0]: unknown recipient class "
                        "'contractor' (did you mean 'partner:contractor' or 'list:contractor'?)")
    assert b.startswith(f"{path}:7:34: rules[0].scope.recipient_is[1]: unknown recipient class "
                        "'customers' (did you mean 'customer'?)")
    path = _policy(tmp_path, """\
  - name: s
    action: confirm
    scope: {recipient_is: partner}
""", customers=False)
    assert errors(path) == [
        f"{path}:6:27: rules[0].scope.recipient_is: partner needs lists.partners "
        "(the partners.csv file)"]


def test_a_kind_no_partner_has_and_min_percent_without_lines_are_warnings(
        tmp_path: Path) -> None:
    path = _policy(tmp_path, """\
  - name: r
    action: confirm
    scope:
      except: {recipient_is: ["partner:vendor", "partner:contractor"]}
    conditions:
      - {symbol: pii.phone, min_percent: 50}
      - {symbol: pii, min_percent: 50}
""", partners="domain,name,kind\npartner-logistics.example,P,contractor\n")
    policy = load_policy(path)
    assert [w.split(": warning: ")[0] for w in policy.warnings] == [
        f"{path}:10:31", f"{path}:12:42"]
    assert "no partner in partners.csv has the kind 'vendor' (kinds there: contractor)" in (
        policy.warnings[0])
    assert "pii.phone findings carry no line count" in policy.warnings[1]
    assert policy.tables.partner_kinds("partner-logistics.example") == {"contractor"}
    assert policy.tables.customer("sakura-shoji.example") == "さくら商事株式会社"


def test_a_bad_partner_row_fails_the_load_when_a_scope_reads_the_table(tmp_path: Path) -> None:
    path = _policy(tmp_path, """\
  - name: r
    action: confirm
    scope: {recipient_is: "partner:contractor"}
""", partners="domain,kind\npartner-logistics.example,contractor\nnot a domain,x\n")
    [message] = errors(path)
    assert message.startswith(f"{tmp_path / 'partners.csv'}:3:1: ")


def test_min_percent_out_of_range(tmp_path: Path) -> None:
    path = _policy(tmp_path, """\
  - name: r
    action: confirm
    conditions: [{symbol: pii.records, min_percent: 0}]
""")
    assert errors(path) == [
        f"{path}:8:53: rules[0].conditions[0].min_percent: expected a number > 0.0; got 0"]


def test_the_readme_examples_of_these_constructs_are_valid() -> None:
    import re

    import yaml

    readme = (Path(__file__).resolve().parents[2] / "policies" / "README.md").read_text()
    part = readme[readme.index("#### What the recipients are"):readme.index("### Actions")]
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", part, re.S)]
    assert len(blocks) >= 5  # the sections may gain examples; each must stay valid
    for block in blocks:
        for item in block if isinstance(block, list) else [block]:
            PolicyDoc.model_validate({"rules": [{"name": "r", "action": "confirm", **item}]})


async def test_a_new_kind_in_partners_csv_reaches_the_scopes_on_reload(tmp_path: Path) -> None:
    from guard.policy import PolicyWatcher

    path = _policy(tmp_path, """\
  - name: contractors
    action: confirm
    scope: {recipient_is: "partner:contractor"}
""", partners="domain,kind\npartner-logistics.example,supplier\n")
    watcher = PolicyWatcher(path, interval=60, settle=0.001)
    await watcher.start()
    try:
        assert run(watcher.current, [], rcpt=(CONTRACTOR,)).action is Action.PASS
        (tmp_path / "partners.csv").write_text(
            "domain,kind\npartner-logistics.example,contractor\n", encoding="utf-8")
        assert await watcher.check() is True
        assert run(watcher.current, [], rcpt=(CONTRACTOR,)).action is Action.CONFIRM
    finally:
        await watcher.stop()
