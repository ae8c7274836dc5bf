"""Loader: YAML safety and syntax errors, includes, referenced files, the shipped example."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.inspect.context import Customer
from guard.policy import PolicyError, load_customers, load_partners, load_policy
from tests.policy.helpers import errors, write

EXAMPLE = Path(__file__).resolve().parents[2] / "policies"


# -- one file


def test_folder_means_its_policy_yaml(tmp_path: Path) -> None:
    write(tmp_path, "policy.yaml", "rules: [{name: r, action: tag}]\n")
    policy = load_policy(tmp_path)
    assert [r.name for r in policy.rules] == ["r"]
    assert policy.source == (tmp_path / "policy.yaml").resolve()


def test_missing_policy_file(tmp_path: Path) -> None:
    assert errors(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: policy file not found"]


def test_empty_file_is_an_empty_policy(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "policy.yaml", "# nothing yet\n"))
    assert policy.rules == ()


def test_yaml_syntax_error_has_position(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        rules:
          - name: r
            action: [pass
        """,
    )
    [message] = errors(path)
    assert message.startswith(f"{path}:4:1: YAML syntax error:")


def test_tab_indentation_is_a_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("rules:\n\t- name: r\n", encoding="utf-8")
    [message] = errors(path)
    assert message.startswith(f"{path}:2:1: YAML syntax error:")


def test_duplicate_key_is_an_error_not_last_wins(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
        rules:
          - name: r
            action: pass
            action: reject
        """,
    )
    assert errors(path) == [f"{path}:4:5: duplicate key 'action' (first at line 3)"]


def test_python_tags_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "policy.yaml", 'name: !!python/object/apply:os.system ["echo x"]\n')
    assert errors(path) == [
        f"{path}:1:7: unsupported YAML tag tag:yaml.org,2002:python/object/apply:os.system"
    ]
    path = write(tmp_path, "policy.yaml", "name: !!python/name:os.system\n")
    [message] = errors(path)
    assert message.startswith(f"{path}:1:7: YAML syntax error: could not determine a constructor")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "policy.yaml", "keywords: &a [*a]\n")
    [message] = errors(path)
    assert message == f"{path}:1:11: recursive YAML alias"


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    path = tmp_path / "policy.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    [message] = errors(path)
    assert "document too large" in message


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes("name: ok\nrules: []\n# 社外秘\n".encode("cp932"))
    assert errors(path) == [f"{path}:3:3: expected UTF-8 text (save the file as UTF-8)"]


def test_utf8_bom_and_merge_keys_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "\ufeffrules:\n"
        "  - name: r\n"
        "    scope: {<<: {direction: outbound-external}, senders: [a@example.co.jp]}\n"
        "    action: confirm\n",
        encoding="utf-8",
    )
    [rule] = load_policy(path).doc.rules
    assert rule.scope.direction == "outbound-external"
    assert rule.scope.senders == ["a@example.co.jp"]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "policy.yaml", "- name: r\n")
    assert errors(path) == [
        f"{path}:1:1: expected a mapping of sections (defaults:, groups:, rules: ...)"
    ]


# -- includes


def test_include_merges_sections_included_first(tmp_path: Path) -> None:
    write(
        tmp_path,
        "groups.yaml",
        """
        groups:
          sales:
            members: ["*@example.co.jp"]
        rules:
          - name: from-include
            action: tag
        """,
    )
    write(tmp_path, "more/rules.yaml", "rules: [{name: nested, action: bcc}]\n")
    path = write(
        tmp_path,
        "policy.yaml",
        """
        include: [groups.yaml, more/rules.yaml]
        rules:
          - name: own
            scope: {groups: [sales]}
            action: pass
        """,
    )
    policy = load_policy(path)
    assert [r.name for r in policy.rules] == ["from-include", "nested", "own"]
    assert set(policy.groups) == {"sales"}
    assert set(policy.files) == {
        path.resolve(),
        (tmp_path / "groups.yaml").resolve(),
        (tmp_path / "more/rules.yaml").resolve(),
    }


def test_error_in_included_file_names_that_file_and_its_own_index(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules: [{name: a1, action: pass}, {name: a2, action: pass}]\n")
    inc = write(
        tmp_path,
        "sub/b.yaml",
        """
        rules:
          - name: b1
            action: hold
        """,
    )
    path = write(tmp_path, "policy.yaml", "include: [a.yaml, sub/b.yaml]\n")
    assert errors(path) == [
        f"{inc}:3:13: rules[0].action: expected one of pass, tag, bcc, drop, delay, confirm, "
        "approve, reject; got 'hold'"
    ]


def test_semantic_error_in_included_file(tmp_path: Path) -> None:
    inc = write(
        tmp_path,
        "rules.yaml",
        """
        rules:
          - name: r
            scope: {groups: [nobody]}
            action: tag
        """,
    )
    path = write(tmp_path, "policy.yaml", "include: rules.yaml\n")
    [message] = errors(path)
    assert message.startswith(f"{inc}:3:22: rules[0].scope.groups[0]: unknown group 'nobody'")


def test_include_cycle(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "include: [b.yaml]\n")
    write(tmp_path, "b.yaml", "include: [a.yaml]\n")
    path = write(tmp_path, "policy.yaml", "include: [a.yaml]\n")
    [message] = errors(path)
    cycle = "include cycle: a.yaml -> b.yaml -> a.yaml"
    assert message == f"{tmp_path / 'b.yaml'}:1:11: include[0]: {cycle}"


def test_self_include_is_a_cycle(tmp_path: Path) -> None:
    path = write(tmp_path, "policy.yaml", "include: policy.yaml\n")
    assert errors(path) == [f"{path}:1:10: include: include cycle: policy.yaml -> policy.yaml"]


def test_same_file_included_twice(tmp_path: Path) -> None:
    write(tmp_path, "groups.yaml", "groups: {}\n")
    write(tmp_path, "a.yaml", "include: [groups.yaml]\n")
    path = write(tmp_path, "policy.yaml", "include:\n  - a.yaml\n  - groups.yaml\n")
    assert errors(path) == [f"{path}:3:5: include[1]: {tmp_path / 'groups.yaml'} is included twice"]


def test_missing_include(tmp_path: Path) -> None:
    path = write(tmp_path, "policy.yaml", "include:\n  - groups.yaml\n")
    assert errors(path) == [f"{path}:2:5: include[0]: file not found: {tmp_path / 'groups.yaml'}"]


def test_conflicting_settings_across_files(tmp_path: Path) -> None:
    inc = write(tmp_path, "a.yaml", "defaults:\n  language: ja\n")
    path = write(
        tmp_path,
        "policy.yaml",
        """
        include: [a.yaml]
        defaults:
          language: en
        """,
    )
    assert errors(path) == [f"{path}:3:3: defaults.language: already set at {inc}:2:3"]


def test_same_group_defined_in_two_files(tmp_path: Path) -> None:
    inc = write(tmp_path, "a.yaml", "groups:\n  sales:\n    members: [a@example.co.jp]\n")
    path = write(
        tmp_path,
        "policy.yaml",
        "include: [a.yaml]\ngroups:\n  sales:\n    members: [b@example.co.jp]\n",
    )
    assert errors(path) == [f"{path}:4:5: groups.sales.members: already set at {inc}:3:5"]


# -- referenced files


def test_referenced_files_resolve_relative_to_the_declaring_file(tmp_path: Path) -> None:
    write(tmp_path, "conf/lists/opt.csv", "email\n")
    write(tmp_path, "conf/partners.csv", "domain\n")
    write(
        tmp_path,
        "conf/lists.yaml",
        """
        lists:
          partners: partners.csv
          suppression:
            opt_out: lists/opt.csv
        """,
    )
    write(tmp_path, "customers.csv", "name\n")
    path = write(
        tmp_path, "policy.yaml", "include: [conf/lists.yaml]\nlists:\n  customers: customers.csv\n"
    )
    policy = load_policy(path)
    assert policy.partners_file == (tmp_path / "conf/partners.csv").resolve()
    assert policy.customers_file == (tmp_path / "customers.csv").resolve()
    assert policy.suppression_lists == {"opt_out": (tmp_path / "conf/lists/opt.csv").resolve()}
    assert set(policy.watched_files) >= {policy.partners_file, policy.customers_file}


def test_missing_referenced_file(tmp_path: Path) -> None:
    write(tmp_path, "lists/opt_out.csv", "email\n")
    path = write(
        tmp_path,
        "policy.yaml",
        """
        lists:
          customers: customers.csv
          suppression:
            opt_out: lists/opt_out.csv
            withdrawn: lists/withdrawn.csv
        """,
    )
    assert errors(path) == [
        f"{path}:2:14: lists.customers: file not found: {tmp_path / 'customers.csv'}",
        f"{path}:5:16: lists.suppression.withdrawn: file not found: "
        f"{tmp_path / 'lists/withdrawn.csv'}",
    ]


def test_error_carries_the_files_read_so_far(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules: oops\n")
    path = write(tmp_path, "policy.yaml", "include: [a.yaml]\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert set(info.value.files) == {path.resolve(), (tmp_path / "a.yaml").resolve()}


def test_digest_follows_content_not_path_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "policy.yaml", "rules: [{name: r, action: tag}]\n")
    monkeypatch.chdir(tmp_path)
    first = load_policy(path).digest
    assert load_policy("policy.yaml").digest == first
    write(tmp_path, "policy.yaml", "rules: [{name: r, action: bcc}]\n")
    assert load_policy(path).digest != first


# -- partner and customer lists


def test_partner_and_customer_csv(tmp_path: Path) -> None:
    partners = tmp_path / "partners.csv"
    partners.write_text("Domain,name\nPartner.Example,パートナー\n\n例え.jp,\n", encoding="utf-8")
    assert load_partners(partners) == {"partner.example", "xn--r8jz45g.jp"}
    customers = tmp_path / "customers.csv"
    customers.write_bytes(
        "name,aliases,domains\nさくら商事株式会社,さくら商事|Sakura,sakura.example\n".encode(
            "cp932"
        )
    )
    assert load_customers(customers) == (
        Customer("さくら商事株式会社", ("さくら商事", "Sakura"), ("sakura.example",)),
    )


def test_bad_csv_rows_name_the_line(tmp_path: Path) -> None:
    partners = tmp_path / "partners.csv"
    partners.write_text("domain\nok.example\nnot a domain\n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_partners(partners)
    assert str(info.value).startswith(f"{partners}:3:1: ")
    assert "not a mail domain" in str(info.value)
    customers = tmp_path / "customers.csv"
    customers.write_text("name,aliases,domains\nABC商事,ABC,abc.example\nXYZ,,bad domain!\n",
                         encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_customers(customers)
    assert str(info.value).startswith(f"{customers}:3:1: ")


# -- the shipped example


def test_example_policy_loads_without_warnings() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.warnings == ()
    assert policy.internal_domains == {"example.co.jp"}
    assert policy.defaults.company_name == "Example株式会社"
    assert {"sales", "hr"} <= set(policy.groups)
    assert policy.groups["sales"].label.ja == "営業部"
    assert policy.groups["hr"].label.ja == "人事部"
    assert set(policy.suppression_lists) == {"opt_out", "withdrawn"}
    assert policy.new_domain_scope in ("org", "sender")
    assert [k.name for k in policy.keywords] == ["confidential"]
    assert len(policy.digest) == 64


def test_example_lists_parse() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.partners_file is not None and policy.customers_file is not None
    assert load_partners(policy.partners_file)
    assert all(c.domains for c in load_customers(policy.customers_file))
    for name, path in policy.suppression_lists.items():
        header = path.read_text(encoding="utf-8").splitlines()[0]
        assert header.split(",")[0] == "email", name
