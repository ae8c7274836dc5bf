"""The body's parts and the organisation's own contact data, through `guard policy test
--json` on .eml files shaped like Outlook, Thunderbird and iPhone Mail (issue 16, items
2 and 3): where a finding is (body, body.quoted, body.signature, body.disclaimer), and
that the company's own address, phones and branch offices are not personal data."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

import pytest

from guard.cli.main import main as guard_main
from tests.inspect.fixtures import xlsx

POLICY = """\
version: 1
defaults:
  internal_domains: [example.co.jp]
  company_name: "Example株式会社"
{own}
keywords:
  - {{name: confidential, pattern: "confidential|機密"}}
rules:
  - name: personal-data
    conditions: [{{symbol: pii, min_score: 0.5}}]
    action: confirm
"""

OWN = """\
  own_contacts:
    addresses: ["東京都千代田区丸の内1-2-3 丸の内ビル5F"]
    phones: ["03-1234-5678", "+81 3-1234-5679"]
    postal_codes: ["100-0005"]
lists:
  own_contacts: own_contacts.csv
"""

BRANCHES = [  # 支店名, 〒, 住所, TEL: the company's own offices
    ("札幌支店", "060-0001", "北海道札幌市中央区北一条西2-1", "011-211-0001"),
    ("仙台支店", "980-0001", "宮城県仙台市青葉区中央1-2-3", "022-211-0002"),
    ("新潟支店", "950-0001", "新潟県新潟市中央区東大通1-2-3", "025-211-0003"),
    ("横浜支店", "220-0001", "神奈川県横浜市西区北幸1-2-3", "045-211-0004"),
    ("静岡支店", "420-0001", "静岡県静岡市葵区追手町1-2-3", "054-211-0005"),
    ("名古屋支店", "450-0001", "愛知県名古屋市中村区名駅1-2-3", "052-211-0006"),
    ("金沢支店", "920-0001", "石川県金沢市広岡1-2-3", "076-211-0007"),
    ("大阪支店", "530-0001", "大阪府大阪市北区梅田1-1-1", "06-6211-0008"),
    ("神戸支店", "650-0001", "兵庫県神戸市中央区加納町1-2-3", "078-211-0009"),
    ("広島支店", "730-0001", "広島県広島市中区白島北町1-2-3", "082-211-0010"),
    ("高松支店", "760-0001", "香川県高松市寿町1-2-3", "087-811-0011"),
    ("福岡支店", "810-0001", "福岡県福岡市中央区天神1-2-3", "092-711-0012"),
]

SIGNATURE = """\
山田太郎
Example株式会社 営業部
〒100-0005 東京都千代田区丸の内1-2-3 丸の内ビル5F
TEL 03-1234-5678 / FAX 03-1234-5679
https://example.co.jp
yamada@example.co.jp
"""

DISCLAIMER = """\
This e-mail and any attachments are confidential and intended solely for the
addressee. If you have received this e-mail in error, please notify the sender
and delete it.
"""


def write_policy(root: Path, own: bool) -> Path:
    root.mkdir(exist_ok=True)
    (root / "policy.yaml").write_text(POLICY.format(own=OWN if own else ""), encoding="utf-8")
    if own:
        rows = ["支店名,郵便番号,住所,TEL,FAX"] + [",".join((*b, "")) for b in BRANCHES]
        (root / "own_contacts.csv").write_bytes("\r\n".join(rows).encode("cp932"))
    return root


def eml(body: str, *, to: str = "friend@gmail.com", mailer: str = "",
        attachment: tuple[str, bytes] | None = None,
        sender: str = "山田太郎 <yamada@example.co.jp>") -> bytes:
    msg = EmailMessage(policy=SMTP_POLICY)  # CRLF, as SMTP carries it
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = "Re: 資料"
    if mailer:
        msg["X-Mailer"] = mailer
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment[1], maintype="application",
                           subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                           filename=attachment[0])
    return msg.as_bytes()


@pytest.fixture
def run(tmp_path: Path, policy_test_json: Any) -> Any:
    """`guard policy test --json` in this process: (the verdict document, findings)."""
    def go(data: bytes, *, own: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        policy = write_policy(tmp_path / ("own" if own else "plain"), own)
        doc: dict[str, Any] = policy_test_json(data, policy)
        return doc, doc["findings"]
    return go


def places(findings: list[dict[str, Any]], symbol: str) -> list[str]:
    return [f["where"] for f in findings
            if f["symbol"] == symbol or f["symbol"].startswith(symbol + ".")]


# ---------------------------------------------------------------- quoted text, disclaimers


def test_outlook_reply_quoted_disclaimer_is_not_new_text(run: Any) -> None:
    body = ("Thanks, noted. We will ship on Friday.\n\nTaro\n\n"
            "-----Original Message-----\n"
            "From: John Smith <john@partner.example>\n"
            "Sent: Monday, December 7, 2026 10:00 AM\n"
            "To: Yamada <yamada@example.co.jp>\n"
            "Subject: plan\n\n"
            "Please find the plan below.\n\n" + DISCLAIMER)
    _, findings = run(eml(body, to="john@partner.example", mailer="Microsoft Outlook 16.0"))
    assert places(findings, "keyword") == ["body.disclaimer"]
    kw = next(f for f in findings if f["symbol"] == "keyword")
    assert kw["evidence"]["rule"] == "confidential"
    # the same word in the new text: a finding at `body` as well
    _, findings = run(eml("This is confidential, keep it inside.\n\n" + body,
                          to="john@partner.example"))
    assert sorted(places(findings, "keyword")) == ["body", "body.disclaimer"]


def test_japanese_outlook_header_and_disclaimer(run: Any) -> None:
    body = ("承知しました。\n\n"
            "差出人: 鈴木 <suzuki@partner.example>\n"
            "送信日時: 2026年12月7日 10:00\n"
            "宛先: 山田\n件名: 見積\n\n"
            "見積書を送ります。\n\n"
            "本メールには機密情報が含まれています。誤って受信された場合は削除してください。\n")
    _, findings = run(eml(body, to="suzuki@partner.example"))
    assert places(findings, "keyword") == ["body.disclaimer"]


def test_html_reply_quoted_below_the_outlook_block(run: Any) -> None:
    """An HTML body is read in its text form (no `>` marks there)."""
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = "yamada@example.co.jp"
    msg["To"] = "john@partner.example"
    msg["Subject"] = "RE: plan"
    msg.set_content("Thanks, noted.\n")
    msg.add_alternative(
        "<html><body><div>Thanks, noted.</div><hr><div><b>From:</b> John "
        "&lt;john@partner.example&gt;<br><b>Sent:</b> Monday, December 7, 2026<br>"
        "<b>Subject:</b> plan</div><div>The plan is CONFIDENTIAL.</div></body></html>",
        subtype="html")
    _, findings = run(msg.as_bytes())
    assert places(findings, "keyword") == ["body.quoted"]


def test_thunderbird_wrote_line_and_quotes(run: Any) -> None:
    body = ("On 2026/12/07 10:00, John Smith wrote:\n"
            "> Here is the CONFIDENTIAL price list.\n"
            "> Regards, John\n\n"
            "Received, thank you.\n")
    _, findings = run(eml(body, to="john@partner.example",
                          mailer="Mozilla Thunderbird"))
    assert places(findings, "keyword") == ["body.quoted"]
    # a bottom-posted answer below the quote is new text
    _, findings = run(eml(body + "This part is confidential too.\n", to="john@partner.example"))
    assert sorted(places(findings, "keyword")) == ["body", "body.quoted"]


# ---------------------------------------------------------------- signatures and own data


@pytest.mark.parametrize("own", [True, False], ids=["declared", "undeclared"])
def test_business_signature_to_gmail_is_not_personal_data(run: Any, own: bool) -> None:
    """Declared or not, the signature is the sender's own contact data."""
    body = "鈴木様\n\nお世話になっております。資料を送ります。\nよろしくお願いいたします。\n\n"
    doc, findings = run(eml(body + SIGNATURE), own=own)
    assert places(findings, "pii") == [], findings
    assert doc["action"] == "pass"


@pytest.mark.parametrize("own", [True, False], ids=["declared", "undeclared"])
def test_newsletter_footer_with_company_address(run: Any, own: bool) -> None:
    body = ("Example通信 12月号\n\n今月の新サービスのご案内です。\n"
            "詳しくはウェブサイトをご覧ください。\n\n"
            "━━━━━━━━━━━━━━━━━━━━\n"
            "発行: Example株式会社 広報部\n"
            "〒100-0005 東京都千代田区丸の内1-2-3\n"
            "TEL 03-1234-5678\n"
            "━━━━━━━━━━━━━━━━━━━━\n")
    _, findings = run(eml(body, to="member@gmail.com"), own=own)
    assert places(findings, "pii") == [], findings


def test_own_address_in_new_text_is_discounted_when_declared(run: Any) -> None:
    """Outside the signature only declared data is discounted; evidence says so."""
    body = ("来週の打合せは弊社本社でお願いします。\n"
            "本社: 〒100-0005 東京都千代田区丸の内1-2-3 丸の内ビル5F TEL 03-1234-5678\n"
            "当日の連絡先は 090-1234-5678 (担当 山田) です。\n")
    _, findings = run(eml(body), own=True)
    assert [f["symbol"] for f in findings if f["symbol"].startswith("pii.")] == ["pii.phone"]
    phone = next(f for f in findings if f["symbol"] == "pii.phone")
    assert phone["count"] == 1 and phone["evidence"]["own_discounted"] >= 2
    _, findings = run(eml(body), own=False)
    assert {"pii.address", "pii.records"} <= {f["symbol"] for f in findings}


def branch_table() -> str:
    return "\n".join(["支店名\t〒\t住所\tTEL"] + ["\t".join(b) for b in BRANCHES]) + "\n"


def test_branch_office_table_in_the_body(run: Any) -> None:
    body = "各支店の連絡先一覧です。\n\n" + branch_table() + "\nご確認ください。\n"
    _, findings = run(eml(body), own=True)
    assert places(findings, "pii") == [], findings
    _, findings = run(eml(body), own=False)  # the same table, not declared: records
    records = next(f for f in findings if f["symbol"] == "pii.records")
    assert records["count"] == 12


def test_branch_office_table_in_an_xlsx(run: Any) -> None:
    book = xlsx([["支店名", "郵便番号", "住所", "TEL"], *[list(b) for b in BRANCHES]],
                sheet="支店一覧")
    data = eml("支店一覧を添付します。\n", attachment=("支店一覧.xlsx", book))
    _, findings = run(data, own=True)
    assert places(findings, "pii") == [], findings
    _, findings = run(data, own=False)
    assert "attachment:支店一覧.xlsx" in places(findings, "pii.records")


def test_customer_address_and_phone_in_new_text_still_count(run: Any) -> None:
    body = ("下記のお客様へ配送をお願いします。\n"
            "お届け先: 鈴木一郎様\n"
            "〒150-0001 東京都渋谷区神宮前1-2-3\n"
            "TEL 090-1234-5678\n\n" + SIGNATURE)
    doc, findings = run(eml(body, to="driver@gmail.com"))
    assert set(places(findings, "pii.address")) == {"body"}
    assert set(places(findings, "pii.phone")) == {"body"}
    phone = next(f for f in findings if f["symbol"] == "pii.phone")
    assert phone["count"] == 1  # the signature's numbers are not counted
    assert doc["action"] == "confirm"


def test_customer_address_closing_the_body_still_counts(run: Any) -> None:
    """No signature at all: the last block is the customer's, not the sender's."""
    body = ("下記へ配送をお願いします。\n\n鈴木一郎様\n"
            "〒150-0001 東京都渋谷区神宮前1-2-3\nTEL 090-1234-5678\n")
    doc, findings = run(eml(body, to="driver@gmail.com"))
    assert set(places(findings, "pii.address")) == {"body"}
    assert doc["action"] == "confirm"


def test_card_in_a_signature_is_still_reported(run: Any) -> None:
    body = ("お支払いについて\n\n-- \n山田太郎\nExample株式会社\n"
            "法人カード番号: 4111 1111 1111 1111\nTEL 03-1234-5678\n")
    doc, findings = run(eml(body))
    card = next(f for f in findings if f["symbol"] == "pii.card")
    assert card["where"] == "body.signature" and card["score"] >= 0.9
    assert places(findings, "pii.phone") == []
    assert doc["action"] == "confirm"


def test_iphone_signature(run: Any) -> None:
    body = "了解です。お客様の携帯は 090-8765-4321 です。\n\niPhoneから送信\n"
    _, findings = run(eml(body, mailer="iPhone Mail (20A362)"))
    assert places(findings, "pii.phone") == ["body"]
    _, findings = run(eml("機密の件、了解です\n\niPhoneから送信\n"))
    assert places(findings, "keyword") == ["body"]


# ---------------------------------------------------------------- policy check


def check(root: Path, policy: str, csv: str, capsys: pytest.CaptureFixture[str]) -> str:
    root.mkdir()
    (root / "policy.yaml").write_text(policy, encoding="utf-8")
    (root / "own.csv").write_bytes(csv.encode("cp932"))
    capsys.readouterr()
    assert guard_main(["policy", "check", str(root)]) == 1
    return capsys.readouterr().err


def test_policy_check_reports_bad_own_contacts(run: Any, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    good_csv = ("支店名,郵便番号,住所,TEL\n"
                "大阪支店,530-0001,大阪府大阪市北区梅田1-1-1,06-6211-0008\n")
    err = check(tmp_path / "a", "version: 1\ndefaults:\n  own_contacts:\n"
                "    phones: [\"03-1234\"]\n    addresses: [\"東京都千代田区\"]\n"
                "lists:\n  own_contacts: own.csv\n", good_csv, capsys)
    assert "policy.yaml:4:" in err and "phone or fax number" in err
    assert "policy.yaml:5:" in err and "block number" in err
    err = check(tmp_path / "b", "version: 1\nlists:\n  own_contacts: own.csv\n",
                "支店名,郵便番号,住所\n大阪支店,530-001,大阪府大阪市北区梅田1-1-1\n", capsys)
    assert "own.csv:2:" in err and "postal code of 7 digits" in err, err


def test_staff_list_at_own_domain_is_still_a_people_list(run: Any) -> None:
    """Own domains discount the addresses, not the people named next to them."""
    staff = [["氏名", "メールアドレス"]] + [[f"社員 {i}", f"staff{i}@example.co.jp"]
                                       for i in range(12)]
    data = eml("社員一覧です。\n", attachment=("社員.xlsx", xlsx(staff, sheet="社員")))
    _, findings = run(data)
    people = next(f for f in findings if f["symbol"] == "pii.people_list")
    assert people["count"] == 12
    assert places(findings, "pii.email") == []


def test_an_attachment_named_like_a_signature_is_no_hiding_place(run: Any) -> None:
    rows = "\n".join(f"顧客{i},〒150-00{i:02d} 東京都渋谷区神宮前1-2-{i},090-1234-{i:04d}"
                     for i in range(12))
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = "yamada@example.co.jp"
    msg["To"] = "friend@gmail.com"
    msg["Subject"] = "list"
    msg.set_content("see attached\n")
    msg.add_attachment(rows.encode(), maintype="text", subtype="plain",
                       filename="list.signature")
    _, findings = run(msg.as_bytes())
    assert "attachment:list.signature" in places(findings, "pii.records")


def test_notice_lines_lists_each_line_once_however_many_words_it_holds() -> None:
    from guard.mail.bodyparts import _notice_lines

    text = "\n".join(["密" * 299] * 50 + ["plain", "Confidential and privileged: confidential"])
    assert _notice_lines(text, 10_000) == [*range(50), 51]
    assert _notice_lines(text, 3) == [0, 1, 2]


def test_an_overlong_paragraph_of_notice_lines_is_read_as_before() -> None:
    """Every line of a long quoted paragraph holds a notice word: the paragraph is
    longer than a notice and stays text (skipped whole once, not walked from each line),
    while a notice of its own below it is still found."""
    notice = ("This e-mail is confidential and may be privileged. If you are not the "
              "intended recipient, please notify the sender and delete it.")
    from guard.mail.bodyparts import DISCLAIMER, QUOTED, segment

    body = "\n".join(["> This is confidential."] * 300 + ["", notice, ""])
    parts = segment(body)
    assert [p.part for p in parts if "This is confidential" in p.text] == [QUOTED]
    assert any(p.part == DISCLAIMER and "intended recipient" in p.text for p in parts)
