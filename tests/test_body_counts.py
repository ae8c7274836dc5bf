"""What the personal-data scan counts across the body's parts, through `guard policy test
--json` (issue 16 review): a signature hides only the sender's own block, a body split
into parts is still counted as one body by `where: body`, and `guard policy check`
catches conditions that cannot mean what they say."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

import pytest

from guard.cli.main import main as guard_main

POLICY = """\
version: 1
defaults:
  internal_domains: [example.co.jp]
  company_name: "Example株式会社"
rules:
  - name: many-records
    conditions: [{symbol: pii.records, min_count: 10}]
    action: confirm
  - name: many-phones
    conditions: [{symbol: pii.phone, min_count: 10}]
    action: confirm
"""

FAMILY = "佐藤 鈴木 高橋 田中 伊藤 渡辺 山本 中村 小林 加藤 吉田 山田 佐々木 山口 松本".split()


def people(n: int, start: int = 0) -> list[str]:
    """n lines of a person's name, mobile number and home address."""
    return [f"{FAMILY[(start + i) % len(FAMILY)]} 花子 090-{1000 + start + i:04d}-{5678:04d} "
            f"東京都新宿区西新宿{start + i + 1}-2-3" for i in range(n)]


def eml(body: str, to: str = "friend@gmail.com") -> bytes:
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = "山田太郎 <yamada@example.co.jp>"
    msg["To"] = to
    msg["Subject"] = "名簿"
    msg.set_content(body)
    return msg.as_bytes()


@pytest.fixture
def run(tmp_path: Path, policy_test_json: Any) -> Any:
    """`guard policy test --json` in this process: (verdict document, findings)."""
    (tmp_path / "policy.yaml").write_text(POLICY, encoding="utf-8")

    def go(body: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        doc: dict[str, Any] = policy_test_json(eml(body), tmp_path / "policy.yaml")
        return doc, doc["findings"]
    return go


def count(findings: list[dict[str, Any]], symbol: str, where: str) -> int:
    return sum(f["count"] for f in findings if f["symbol"] == symbol and f["where"] == where)


# ---------------------------------------------------------------- 1. the signature

INTRO = "お世話になっております。山田です。\n名簿をお送りします。\n\n"


def test_a_people_list_in_the_plain_body_is_confirmed(run: Any) -> None:
    doc, findings = run(INTRO + "\n".join(people(12)) + "\n")
    assert doc["action"] == "confirm"
    assert count(findings, "pii.records", "body") == 12


def test_a_people_list_after_a_dash_line_is_no_signature(run: Any) -> None:
    # 12 people after "-- ": a list, not one person's block (it passed as a signature)
    doc, findings = run(INTRO + "-- \n" + "\n".join(people(12)) + "\n")
    assert doc["action"] == "confirm", findings
    assert count(findings, "pii.records", "body.signature") \
        + count(findings, "pii.records", "body") == 12


def test_thirty_lines_after_a_dash_line_are_not_a_signature(run: Any) -> None:
    doc, findings = run(INTRO + "-- \n" + "\n".join(people(15) + people(15, 15)) + "\n")
    assert doc["action"] == "confirm"
    assert count(findings, "pii.records", "body") == 30


def test_a_team_block_in_the_signature_counts(run: Any) -> None:
    # four people's mobiles in a "signature": not the sender's own block
    team = ["営業部 連絡先", *people(4)]
    _, findings = run(INTRO + "よろしくお願いします。\n\n-- \n" + "\n".join(team) + "\n")
    assert count(findings, "pii.records", "body.signature") == 4
    assert count(findings, "pii.phone", "body.signature") == 4


def test_one_persons_signature_is_still_not_personal_data(run: Any) -> None:
    sig = ("山田太郎\nExample株式会社 営業部\n〒100-0005 東京都千代田区丸の内1-2-3\n"
           "TEL 03-1234-5678 / 携帯 090-1111-2222\nyamada@example.co.jp\n")
    doc, findings = run(INTRO + "よろしくお願いします。\n\n-- \n" + sig)
    assert doc["action"] == "pass"
    assert [f for f in findings if f["symbol"].startswith("pii.")] == [], findings


# ---------------------------------------------------------------- 3. guard policy check

CHECKED = """\
version: 1
defaults:
  internal_domains: [example.co.jp]
rules:
  - name: unless-approved
    conditions:
      - not: {symbol: aproved}
    action: confirm
  - name: typo-places
    conditions:
      - {symbol: keyword, where: bdy}
      - {symbol: pii, where: body, except_where: [quoted]}
      - {symbol: pii, where: [new_text, attachment:名簿.xlsx, header:to, body.all]}
    action: confirm
"""


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_check_rejects_negated_unknown_symbols_and_unknown_places(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        lang: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy.yaml").write_text(CHECKED, encoding="utf-8")
    capsys.readouterr()
    rc = guard_main(["policy", "check", "policy.yaml", "--lang", lang])
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc != 0, text
    lines = [ln for ln in text.splitlines() if ln.startswith("policy.yaml:")]
    if lang == "en":
        assert any(ln.startswith("policy.yaml:7:") and "holds for every message" in ln
                   and "warning" not in ln for ln in lines), text
        assert any(ln.startswith("policy.yaml:11:") and "unknown place 'bdy'" in ln
                   and "did you mean body?" in ln for ln in lines), text
        assert any(ln.startswith("policy.yaml:12:") and "unknown place 'quoted'" in ln
                   and "did you mean body.quoted?" in ln for ln in lines), text
    else:
        assert any("すべてのメール" in ln for ln in lines), text
        assert sum("場所" in ln for ln in lines) == 2, text
    assert not any(":13:" in ln for ln in lines), text  # known places pass


# ---------------------------------------------------------------- 2. the whole body

SPLIT_POLICY = """\
version: 1
defaults:
  internal_domains: [example.co.jp]
keywords:
  - {name: secret, pattern: "極秘|社外秘|部外秘|confidential"}
rules:
  - name: %s
    conditions: [%s]
    action: confirm
"""

REPLY_HEADER = ("\n-----Original Message-----\nFrom: 佐藤 <sato@partner.example>\n"
                "Sent: Monday, December 7, 2026 10:00 AM\nSubject: 名簿\n\n")


@pytest.fixture
def split_run(tmp_path: Path, policy_test_json: Any) -> Any:
    """`guard policy test --json` with a one-rule policy: the verdict document."""
    def go(condition: str, body: str) -> dict[str, Any]:
        (tmp_path / "policy.yaml").write_text(SPLIT_POLICY % ("r", condition),
                                              encoding="utf-8")
        doc: dict[str, Any] = policy_test_json(eml(body), "policy.yaml")
        return doc
    return go


SPLIT_LIST = INTRO + "\n".join(people(6)) + "\n" + REPLY_HEADER + "\n".join(people(6, 6))


@pytest.mark.parametrize("condition", [
    "{symbol: pii.records, min_count: 10}",
    "{symbol: pii.records, min_count: 10, where: body}",
    "{symbol: pii.phone, min_count: 10, where: body.all}",
])
def test_a_list_split_by_a_reply_header_is_counted_whole(split_run: Any,
                                                         condition: str) -> None:
    doc = split_run(condition, SPLIT_LIST)
    assert doc["action"] == "confirm", doc["findings"]
    whole = [f for f in doc["findings"] if f["where"] == "body.all"]
    assert {f["symbol"]: f["count"] for f in whole}["pii.records"] == 12
    # one reason for the rule: the whole body's count, not the parts' as well
    assert [(r["symbol"], r["where"]) for r in doc["reasons"]] == [
        (condition.split(",")[0].split(": ")[1], "body.all")]
    assert "whole body" in doc["reasons"][0]["reason_en"]


@pytest.mark.parametrize("condition", [
    "{symbol: pii.records, min_count: 10, where: new_text}",
    "{symbol: pii.records, min_count: 10, except_where: body.quoted}",
    "{symbol: pii.records, min_count: 10, where: body, except_where: [body.signature]}",
    "{symbol: pii.records, min_count: 10, where: body.quoted}",
])
def test_the_whole_body_is_not_a_part(split_run: Any, condition: str) -> None:
    assert split_run(condition, SPLIT_LIST)["action"] == "pass"


def test_no_whole_body_finding_when_a_part_has_the_count(split_run: Any) -> None:
    # the same six people quoted back: the body's count is six, as at each part
    body = INTRO + "\n".join(people(6)) + "\n" + REPLY_HEADER + "\n".join(people(6))
    doc = split_run("{symbol: pii.records, min_count: 6}", body)
    assert doc["action"] == "confirm"
    assert not [f for f in doc["findings"] if f["where"] == "body.all"]
    assert split_run("{symbol: pii.records, min_count: 7}", body)["action"] == "pass"


def test_keywords_split_by_a_reply_header_are_counted_whole(split_run: Any) -> None:
    body = "極秘と社外秘の資料です。\n" + REPLY_HEADER + "部外秘です。confidential\n"
    cond = "{symbol: keyword, evidence: {rule: [secret]}, min_count: 4, where: body}"
    doc = split_run(cond, body)
    assert doc["action"] == "confirm", doc["findings"]
    assert [(r["where"], r["count"]) for r in doc["reasons"]] == [("body.all", 4)]
    cond = "{symbol: keyword, evidence: {rule: [secret]}, min_count: 4, where: new_text}"
    assert split_run(cond, body)["action"] == "pass"
