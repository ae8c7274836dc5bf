"""Schema validation: every error names file:line:column, the path, and what was expected."""

from __future__ import annotations

from pathlib import Path

from guard.policy import Action, load_policy
from guard.policy.schema import Rule
from tests.policy.helpers import errors, write


def test_bad_action_names_line_column_and_choices(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        version: 1
        rules:
          - name: first
            action: pass
          - name: second
            action: hold
        """,
    )
    assert errors(path) == [
        f"{path}:6:13: rules[1].action: expected one of pass, tag, bcc, drop, delay, confirm, "
        "approve, reject; got 'hold'"
    ]


def test_unknown_key_points_at_the_key_and_suggests_spelling(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        rules:
          - name: r
            action: confirm
            scope:
              direction: outbound-external
              groupz: [sales]
        """,
    )
    [message] = errors(path)
    assert message.startswith(f"{path}:6:7: rules[0].scope.groupz: unknown key 'groupz'")
    assert "did you mean 'groups'?" in message
    assert "expected one of direction, senders, groups, recipient_domains" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, "policy.yaml", "version: 1\nrule: []\n")
    [message] = errors(path)
    assert message.startswith(f"{path}:2:1: rule: unknown key 'rule' (did you mean 'rules'?)")


def test_wrong_type_reports_got_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        rules:
          - name: r
            action: delay
            delay_minutes: soon
        """,
    )
    assert errors(path) == [
        f"{path}:4:20: rules[0].delay_minutes: expected a whole number; got 'soon'"
    ]


def test_bounds_are_explained(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        rules:
          - name: r
            action: confirm
            conditions:
              - {symbol: pii, min_score: 1.5}
        """,
    )
    assert errors(path) == [
        f"{path}:5:34: rules[0].conditions[0].min_score: expected a number <= 1.0; got 1.5"
    ]


def test_missing_required_key_points_at_the_mapping(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        rules:
          - name: r
            conditions: [new_domain]
        """,
    )
    assert errors(path) == [f"{path}:2:5: rules[0]: missing required key 'action'"]


def test_list_expected_but_mapping_given(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        rules:
          name: r
          action: pass
        """,
    )
    assert errors(path) == [f"{path}:2:3: rules: expected a list; got a mapping"]


def test_every_error_is_reported_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        defaults:
          language: fr
        rules:
          - name: r
            action: nope
        """,
    )
    found = errors(path)
    assert [m.split(": ")[0] for m in found] == [f"{path}:2:13", f"{path}:5:13"]
    assert "defaults.language: expected one of ja, en, both; got 'fr'" in found[0]


def test_bad_regex_in_keyword(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        keywords:
          - name: secret
            pattern: "社外秘(|"
        """,
    )
    [message] = errors(path)
    assert message.startswith(f"{path}:3:14: keywords[0].pattern: expected a valid regular")
    assert "'社外秘(|'" in message


def test_regex_outside_re2_subset_is_refused(tmp_path: Path) -> None:
    # a backreference works in Python re but not in RE2 (linear time, no ReDoS)
    path = write(
        tmp_path,
        "policy.yaml",
        r"""
        keywords:
          - name: repeated
            pattern: '(\w+) \1'
        """,
    )
    [message] = errors(path)
    expected = "keywords[0].pattern: expected a regular expression RE2 supports"
    assert message.startswith(f"{path}:3:14: {expected}")


def test_unknown_group_in_rule_scope(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        groups:
          sales:
            members: ["*@example.co.jp"]
        rules:
          - name: r
            scope:
              groups: [sales, marketing]
            action: tag
        """,
    )
    assert errors(path) == [
        f"{path}:7:23: rules[0].scope.groups[1]: unknown group 'marketing'; expected one of sales"
    ]


def test_unknown_approver_group(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        rules:
          - name: r
            action: approve
            approver_group: legal
        """,
    )
    [message] = errors(path)
    assert message.startswith(f"{path}:4:21: rules[0].approver_group: unknown group 'legal'")


def test_approval_by_senders_group_needs_a_fallback_group(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        rules:
          - name: r
            conditions: [suppressed]
            action: approve
        """,
    )
    [message] = errors(path)
    assert message.startswith(f"{path}:4:13: rules[0].action: approval by the sender's group")
    assert "defaults.approver_group" in message


def test_parameter_that_does_not_fit_the_action(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        rules:
          - name: r
            action: confirm
            delay_minutes: 5
        """,
    )
    assert errors(path) == [
        f"{path}:4:20: rules[0].delay_minutes: delay_minutes applies to action delay, "
        "not to confirm"
    ]


def test_tag_on_a_reject_rule_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        rules:
          - name: r
            conditions: [pii.my_number]
            action: reject
            tag: {subject_prefix: "[x] "}
        """,
    )
    assert errors(path) == [
        f"{path}:5:10: rules[0].tag: tag has no effect on a rejected message (nothing is delivered)"
    ]


def test_duplicate_rule_names_point_at_both(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        rules:
          - name: same
            action: pass
          - name: same
            action: tag
        """,
    )
    assert errors(path) == [
        f"{path}:4:11: rules[1].name: duplicate rule name 'same' (first defined at {path}:2:11)"
    ]


def test_group_needs_as_many_approvers_as_approvals(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        groups:
          hr:
            approvers: [boss@example.co.jp]
            approvals_required: 2
        """,
    )
    [message] = errors(path)
    assert message.startswith(f"{path}:4:25: groups.hr.approvals_required: expected at least 2")


def test_approver_must_be_an_address_not_a_pattern(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        groups:
          hr:
            approvers: ["*@example.co.jp"]
        """,
    )
    [message] = errors(path)
    assert message.startswith(f"{path}:3:17: groups.hr.approvers[0]: expected a mail address")


def test_tag_headers_cannot_inject_lines_or_touch_real_headers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        rules:
          - name: r
            action: tag
            tag:
              headers: {From: boss@example.co.jp}
              subject_prefix: "a\\r\\nBcc: x@example.com "
        """,
    )
    found = errors(path)
    assert found[0].startswith(f"{path}:5:16: rules[0].tag.headers: expected header names")
    assert found[1].startswith(f"{path}:6:23: rules[0].tag.subject_prefix: expected text on one")


def test_unknown_symbol_family_is_a_warning_not_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        rules:
          - name: r
            conditions: [new_domian]
            action: confirm
        """,
    )
    policy = load_policy(path)
    assert len(policy.warnings) == 1
    assert policy.warnings[0].startswith(f"{path}:3:18: warning: rules[0].conditions[0].symbol")
    assert "'new_domian'" in policy.warnings[0]


def test_evidence_conditions_are_checked_against_names_the_policy_knows(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        keywords:
          - {name: confidential, pattern: 社外秘}
        lists:
          suppression: {withdrawn: withdrawn.csv}
        rules:
          - name: r
            conditions:
              - {symbol: keyword, evidence: {rule: [confidential, secret]}}
              - {symbol: suppressed, evidence: {lists: withdrawn}}
              - {symbol: pii.phone, evidence: {kind: x}}
              - {symbol: lookalike, evidence: {kind: homoglyph}}
            action: approve
            approver_group: "@sender"
        """,
    )
    write(tmp_path, "withdrawn.csv", "address\nx@example.com\n")
    found = errors(path)
    assert found[0] == (f"{path}:8:44: rules[0].conditions[0].evidence.rule: no keyword named "
                        "'secret'; expected one of confidential")
    assert found[1].startswith(f"{path}:9:41: rules[0].conditions[1].evidence.lists: unknown "
                               "evidence 'lists' for suppressed (known: list)")
    assert found[2].startswith(f"{path}:10:40: rules[0].conditions[2].evidence.kind: unknown "
                               "evidence 'kind' for pii (known: none")
    assert found[3] == (f"{path}:11:46: rules[0].conditions[3].evidence.kind: expected one of "
                        "skeleton, edit_distance, mixed_script, tld_variant; got 'homoglyph'")


def test_evidence_on_a_list_only_imported_is_a_warning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        rules:
          - name: r
            conditions:
              - {symbol: suppressed, evidence: {list: newsletter}}
            action: reject
        """,
    )
    policy = load_policy(path)
    assert [w.split(": warning: ")[1] for w in policy.warnings] == [
        "rules[0].conditions[0].evidence.list: no list 'newsletter' in lists.suppression; "
        "fine if it is imported with `guard lists import` (declare it `newsletter: {source: "
        "store}` to say so)"]


def test_values_are_normalised(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        defaults:
          internal_domains: "@Example.CO.JP."
        rules:
          - name: r
            scope:
              senders: Tanaka@Example.co.jp
              recipient_domains: [例え.jp, "*.Example.com"]
            conditions: [pii.my_number]
            action: reject
        """,
    )
    policy = load_policy(path)
    rule = policy.doc.rules[0]
    assert policy.internal_domains == {"example.co.jp"}
    assert rule.scope.senders == ["tanaka@example.co.jp"]
    assert rule.scope.recipient_domains == ["xn--r8jz45g.jp", "*.example.com"]
    assert rule.conditions[0].symbol == "pii.my_number"  # shorthand for {symbol: ...}
    assert rule.action is Action.REJECT


def test_defaults_are_the_safe_ones() -> None:
    from guard.policy.schema import Defaults

    defaults = Defaults()
    assert defaults.uninspectable is Action.CONFIRM
    assert (defaults.hold.delay.on_expiry, defaults.hold.confirm.on_expiry) == ("send", "cancel")
    assert defaults.hold.approve.on_expiry == "cancel"
    assert (defaults.reject.code, defaults.reject.status) == (550, "5.7.1")


def test_action_order() -> None:
    ranks = [a.rank for a in Action]
    assert [a.value for a in sorted(Action, key=lambda a: a.rank)] == [
        "pass",
        "tag",
        "bcc",
        "drop",
        "delay",
        "confirm",
        "approve",
        "reject",
    ]
    assert ranks == sorted(ranks)
    assert Rule(name="r", action="approve").action.rank > Action.CONFIRM.rank
