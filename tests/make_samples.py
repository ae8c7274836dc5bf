"""Write the sample messages in policies/samples/: one per rule of the example policy,
and the office-mail corpus of tests/make_corpus.py (CORPUS).

    .venv/bin/python -m tests.make_samples policies/samples

Each sample is a real message (ISO-2022-JP, xlsx, docx, pdf, encrypted zip made here)
and `tests/test_policy_samples.py` checks that `guard policy test` gives each one the
action and rule listed in SAMPLES.
"""

from __future__ import annotations

import sys
import zlib
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

from tests.inspect.fixtures import RawEntry, cfb, outlook_msg, pdf, raw_zip
from tests.inspect.fixtures import docx as _docx
from tests.inspect.fixtures import xlsx as _xlsx
from tests.make_corpus import build as build_corpus
from tests.make_corpus import stable_zip

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PEOPLE = [["氏名", "住所", "電話番号", "メールアドレス", "生年月日"]] + [
    [f"佐藤 花子{i}", f"大阪府大阪市北区梅田{i}-1-1", f"06-6123-{4500 + i}",
     f"hanako{i}@example.org", f"1985/04/{i + 1:02d}"] for i in range(15)]

# file name → (expected action, expected winning rule)
SAMPLES: dict[str, tuple[str, str]] = {
    "01-first-time-domain-iso2022jp.eml": ("delay", "first-time-domain"),
    "02-people-list-xlsx-external.eml": ("approve", "personal-data-external"),
    "03-my-number-external.eml": ("reject", "my-number-external"),
    "04-withdrawn-member.eml": ("approve", "suppressed-recipient"),
    "05-confidential-docx.eml": ("approve", "confidential-keyword"),
    "06-ppap-encrypted-zip.eml": ("confirm", "uninspectable-attachment"),
    "07-customer-mismatch-pdf.eml": ("confirm", "customer-mismatch"),
    "08-many-visible-recipients.eml": ("bcc", "many-visible-recipients"),
    "09-lookalike-partner.eml": ("confirm", "lookalike-recipient"),
    "10-people-list-internal.eml": ("tag", "internal-personal-data-mark"),
    "11-several-organisations.eml": ("confirm", "several-organisations"),
    "12-forwarded-outlook-item.eml": ("approve", "personal-data-external"),
}


def _msg(to: str, subject: str, body: str, charset: str = "utf-8") -> EmailMessage:
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = "sato@example.co.jp"
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = "Mon, 23 Nov 2026 10:00:00 +0900"
    # a stable id (str hash() changes with every interpreter)
    m["Message-ID"] = f"<sample-{zlib.crc32(subject.encode()) % 10**8}@example.co.jp>"
    m.set_content(body, charset=charset)
    return m


def xlsx(rows: list[list[object]]) -> bytes:
    return stable_zip(_xlsx(rows))


def docx(paragraphs: list[str]) -> bytes:
    return stable_zip(_docx(paragraphs))


def _bytes(m: EmailMessage) -> bytes:
    """The message with fixed multipart boundaries (the library draws random ones)."""
    for i, part in enumerate(p for p in m.walk() if p.is_multipart()):
        part.set_boundary(f"==sample-{zlib.crc32(str(m['subject']).encode()):08x}-{i}==")
    return m.as_bytes()


def build() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    # written byte by byte, as Japanese mail clients send it: ISO-2022-JP body, the
    # subject as an RFC 2047 B-encoded word
    subject = Header("お見積りのご依頼", "iso-2022-jp").encode()
    out["01-first-time-domain-iso2022jp.eml"] = (
        "From: sato@example.co.jp\r\nTo: tanaka@new-customer.example\r\n"
        f"Subject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0900\r\n"
        "Message-ID: <sample-iso2022jp@example.co.jp>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=ISO-2022-JP\r\n"
        "Content-Transfer-Encoding: 7bit\r\n\r\n").encode("ascii") + (
        "新規のお客様へのご挨拶です。\r\nよろしくお願いいたします。\r\n").encode("iso-2022-jp")

    m = _msg("tantou@partner-logistics.example", "配送先リスト", "配送先の一覧です。")
    m.add_attachment(xlsx(PEOPLE), maintype="application", subtype=XLSX.split("/")[1],
                     filename="配送先一覧.xlsx")
    out["02-people-list-xlsx-external.eml"] = _bytes(m)

    m = _msg("tantou@payroll-service.example", "手続き書類",
             "従業員のマイナンバー（個人番号）: 1234 5678 9018 をお送りします。")
    out["03-my-number-external.eml"] = _bytes(m)

    m = _msg("ito.hanako@example.com", "会員様限定セールのご案内", "会員の皆様へ。")
    out["04-withdrawn-member.eml"] = _bytes(m)

    m = _msg("tantou@design-office.example", "企画資料", "資料を添付します。")
    m.add_attachment(docx(["【社外秘】新製品の販促計画", "発売日は未定です。"]),
                     maintype="application", subtype=DOCX.split("/")[1], filename="企画書.docx")
    out["05-confidential-docx.eml"] = _bytes(m)

    m = _msg("tantou@partner-logistics.example", "資料送付", "パスワードは別メールで送ります。")
    ppap = raw_zip([RawEntry("見積書.xlsx".encode("cp932"), b"x" * 200, flags=0x1)])
    m.add_attachment(ppap,
                     maintype="application", subtype="zip", filename="資料.zip")
    out["06-ppap-encrypted-zip.eml"] = _bytes(m)

    m = _msg("kobayashi@midori-kogyo.example", "ご提案書", "ご提案書をお送りします。")
    m.add_attachment(pdf([["Proposal for Sakura Shoji", "Draft for review"]]),
                     maintype="application",
                     subtype="pdf", filename="proposal.pdf")
    out["07-customer-mismatch-pdf.eml"] = _bytes(m)

    to = ", ".join(f"staff{i}@partner-logistics.example" for i in range(6))
    m = _msg(to, "年末のご挨拶", "本年もお世話になりました。")
    out["08-many-visible-recipients.eml"] = _bytes(m)

    m = _msg("tantou@partner-logistlcs.example", "配送のご相談", "来週の配送について。")
    out["09-lookalike-partner.eml"] = _bytes(m)

    m = _msg("watanabe@example.co.jp", "社内: 名簿", "名簿です。")
    m.add_attachment(xlsx(PEOPLE), maintype="application", subtype=XLSX.split("/")[1],
                     filename="名簿.xlsx")
    out["10-people-list-internal.eml"] = _bytes(m)

    m = _msg("a@partner-logistics.example, b@payroll-service.example, "
             "c@design-office.example", "打ち合わせ日程", "3社合同の打ち合わせについて。")
    out["11-several-organisations.eml"] = _bytes(m)

    # Outlook's "forward as attachment": the customer list is inside the attached item
    item = cfb(outlook_msg("配送先リスト", "配送先の一覧です。",
                           [("配送先一覧.xlsx", xlsx(PEOPLE))], codepage=932))
    m = _msg("tantou@partner-logistics.example", "転送: 配送先リスト", "先日のメールを転送します。")
    m.add_attachment(item, maintype="application", subtype="vnd.ms-outlook",
                     filename="配送先リスト.msg")
    out["12-forwarded-outlook-item.eml"] = _bytes(m)
    return out


def main(folder: str) -> None:
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    for name, data in {**build(), **build_corpus()}.items():
        (d / name).write_bytes(data)
        print(d / name)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "policies/samples")
