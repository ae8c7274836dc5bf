"""The policy language through `guard policy test --json --explain` on .eml files:
scope exceptions, recipient classes from the CSV tables and lists, grouped conditions,
places."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

import pytest

from guard.cli.main import main
from tests.policy.helpers import write

POLICY = """
defaults:
  internal_domains: [example.co.jp]
lists:
  partners: partners.csv
  customers: customers.csv
  suppression:
    withdrawn: withdrawn.csv
keywords:
  - {name: confidential, pattern: "社外秘|(?i:confidential)", fields: [subject, body, attachment]}
rules:
  - name: contractor-confidential
    action: confirm
    scope:
      direction: outbound-external
      recipient_is: "partner:contractor"
      except: {senders: [news@example.co.jp]}
    conditions:
      - all:
          - {symbol: keyword, where: [subject, new_text]}
          - not: {symbol: pii.card, min_score: 0.9}
      - pii.my_number
  - name: customers-only
    action: tag
    tag: {subject_prefix: "[customers] "}
    scope: {every_external_recipient_is: [customer, "list:withdrawn"]}
  - name: withdrawn-customer
    action: reject
    scope:
      recipient_is: ["list:withdrawn"]
      except: {recipient_is: customer}
"""


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("lang")
    write(d, "policy.yaml", POLICY)
    write(d, "partners.csv", "domain,name,kind\npartner-logistics.example,パートナー物流,"
                             "contractor\ndesign-office.example,デザイン事務所,supplier\n")
    write(d, "customers.csv", "name,aliases,domains\nさくら商事株式会社,さくら,"
                              "sakura-shoji.example\n")
    write(d, "withdrawn.csv", "email\nito.hanako@example.com\n")
    return d


def eml(tmp: Path, to: str, body: str, subject: str = "ご連絡",
        attachment: tuple[str, str] | None = None) -> Path:
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = "sato@example.co.jp"
    m["To"] = to
    m["Subject"] = subject
    m.set_content(body)
    if attachment is not None:
        m.add_attachment(attachment[1].encode(), maintype="text", subtype="plain",
                         filename=attachment[0])
    path = tmp / f"m{len(list(tmp.glob('*.eml')))}.eml"
    path.write_bytes(m.as_bytes())
    return path


@pytest.fixture
def policy_test(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """`guard policy test MESSAGE --json --explain …`, run in this process (the command's
    own entry point: a new interpreter per call cost seconds)."""
    for name in [k for k in os.environ if k.startswith("GUARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    def run(policy_dir: Path, message: Path, *args: str) -> dict[str, Any]:
        code = main(["policy", "test", str(message), "--policy", str(policy_dir),
                     "--no-history", "--json", "--explain", *args])
        out = capsys.readouterr()
        assert code == 0, out.err
        doc: dict[str, Any] = json.loads(out.out)
        return doc

    return run


def traces(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["rule"]: t for t in doc["explain"]}


def test_a_contractor_gets_confirm_and_the_newsletter_mailbox_is_excepted(
        policy_dir: Path, tmp_path: Path, policy_test: Callable[..., dict[str, Any]]) -> None:
    message = eml(tmp_path, "kato@partner-logistics.example", "社外秘の配送計画です。")
    doc = policy_test(policy_dir, message)
    assert doc["action"] == "confirm"
    assert [(r["rule"], r["symbol"]) for r in doc["reasons"]] == [
        ("contractor-confidential", "keyword")]
    why = traces(doc)["contractor-confidential"]
    assert why["matched"] and why["scope"][1] == {
        "test": "recipient_is", "held": True,
        "why": "kato@partner-logistics.example is a partner of kind contractor"}
    assert [(c["test"], c["held"]) for c in why["conditions"]["children"]] == [
        ("all", True), ("pii.my_number", False)]

    doc = policy_test(policy_dir, message, "--from", "news@example.co.jp")
    assert doc["action"] == "pass" and doc["reasons"] == []
    why = traces(doc)["contractor-confidential"]
    assert not why["matched"] and why["excluded_by"] == {
        "test": "senders", "why": "the sender news@example.co.jp is listed"}


def test_a_supplier_is_not_a_contractor_and_an_attachment_is_not_new_text(
        policy_dir: Path, tmp_path: Path, policy_test: Callable[..., dict[str, Any]]) -> None:
    doc = policy_test(policy_dir, eml(tmp_path, "ito@design-office.example", "社外秘です。"))
    assert doc["action"] == "pass"
    assert traces(doc)["contractor-confidential"]["scope"][1]["held"] is False
    # the keyword only in an attachment: where [subject, new_text] does not see it
    doc = policy_test(policy_dir, eml(tmp_path, "kato@partner-logistics.example",
                                      "計画をお送りします。",
                                      attachment=("plan.txt", "社外秘 配送計画")))
    assert [f["where"] for f in doc["findings"] if f["symbol"] == "keyword"] == [
        "attachment:plan.txt"]
    assert doc["action"] == "pass"
    keyword = traces(doc)["contractor-confidential"]["conditions"]["children"][0]["children"][0]
    assert keyword == {"test": "keyword where subject, new_text", "held": False, "findings": []}


def test_lists_and_customers_in_a_scope(policy_dir: Path, tmp_path: Path,
                                        policy_test: Callable[..., dict[str, Any]]) -> None:
    to_withdrawn = eml(tmp_path, "ito.hanako@example.com", "キャンペーンのお知らせ")
    doc = policy_test(policy_dir, to_withdrawn)
    assert doc["action"] == "reject" and doc["rule"] == "withdrawn-customer"
    why = traces(doc)["withdrawn-customer"]
    assert why["scope"] == [{"test": "recipient_is", "held": True,
                             "why": "ito.hanako@example.com is on the list withdrawn"}]
    # with a customer among the recipients the exception holds; every external
    # recipient is a customer or on the list, so the mail is tagged instead
    doc = policy_test(policy_dir, to_withdrawn, "--to", "ito.hanako@example.com",
                      "--to", "tanaka@sakura-shoji.example")
    assert doc["action"] == "tag"
    assert doc["modifiers"]["tag"]["subject_prefix"] == "[customers] "
    assert traces(doc)["withdrawn-customer"]["excluded_by"] == {
        "test": "recipient_is",
        "why": "tanaka@sakura-shoji.example is a customer (さくら商事株式会社)"}


def test_explain_in_text_says_why_for_every_rule(
        policy_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    message = eml(tmp_path, "kato@partner-logistics.example", "社外秘の配送計画です。")
    assert main(["policy", "test", str(message), "--policy", str(policy_dir),
                 "--no-history", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "rule contractor-confidential (confirm): matches" in out
    assert ("scope recipient_is: yes (kato@partner-logistics.example is a partner of kind "
            "contractor)") in out
    assert "holds  not" in out and "fails  pii.card min_score 0.9" in out
    assert "rule withdrawn-customer (reject): not in scope" in out
