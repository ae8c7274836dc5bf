"""A people list is a people list wherever it is: pasted into the body (tabs or aligned
columns), a Word table (.docx, .doc), a PDF roster. And what is not one (an invoice's
line items, a branch list, prose, a signature) stays not one. evidence.lines on
pii.records and pii.people_list."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from email.header import Header
from pathlib import Path
from typing import Any

import pytest

from guard.inspect.extract import extract
from guard.inspect.pii import texttables
from guard.inspect.pii.detect import scan
from guard.inspect.pii.texttables import find_tables
from guard.inspect.run import PII_LIMITS
from guard.mail.message import Attachment, Table, parse_message
from tests.conftest import PASS_ALL, ROOT
from tests.inspect import fixtures as fx


@dataclass(frozen=True)
class Chunk:
    where: str
    text: str


ROWS = [
    ["山田 太郎", "100-0001", "東京都千代田区千代田1-1", "090-1234-5678"],
    ["佐藤 花子", "150-0002", "東京都渋谷区渋谷2-2-2", "080-2345-6789"],
    ["鈴木 一郎", "530-0001", "大阪府大阪市北区梅田3-3-3", ""],
    ["高橋 次郎", "460-0008", "愛知県名古屋市中区栄4-4-4", "070-3456-7890"],
]
HEADER = ["氏名", "〒", "住所", "携帯"]
GREETING = "お疲れ様です。営業部の田中です。\n名簿をお送りします。\n\n"
CLOSING = "\nよろしくお願いいたします。\n"


def tab_pasted() -> str:
    """What Excel puts on the clipboard: cells separated by tabs, an empty cell kept."""
    lines = ["\t".join(HEADER)] + ["\t".join(r) for r in ROWS]
    return GREETING + "\n".join(lines) + "\n" + CLOSING


def aligned() -> str:
    """Columns aligned by hand with full-width spaces (and a full-width space inside each
    name), as people type a list into a mail."""
    def cell(text: str, width: int) -> str:
        shown = sum(2 if ord(c) > 0x2000 else 1 for c in text)
        return text + "\u3000" * ((width - shown + 1) // 2)

    def line(row: list[str]) -> str:
        return "".join(cell(c, w) for c, w in zip(row, (12, 12, 34, 14), strict=True))

    body = [line(HEADER)] + [line([r[0].replace(" ", "\u3000"), *r[1:]]) for r in ROWS]
    return GREETING + "\n".join(x.rstrip("\u3000") for x in body) + "\n" + CLOSING


def people(findings: list[Any]) -> Any:
    found = [f for f in findings if f.symbol == "pii.people_list"]
    return found[0] if found else None


def test_tab_pasted_rows_in_the_body_are_a_people_list() -> None:
    f = people(scan([Chunk("body", tab_pasted())], [], PII_LIMITS))
    assert f is not None and f.count == 4 and f.where == "body"
    assert f.evidence["columns"] == HEADER
    # non-empty lines of the body: greeting 2, header 1, rows 4, closing 1
    assert f.evidence["lines"] == 8


def test_aligned_columns_with_full_width_spaces_are_a_people_list() -> None:
    findings = scan([Chunk("body", aligned())], [], PII_LIMITS)
    f = people(findings)
    assert f is not None and f.count == 4
    records = next(r for r in findings if r.symbol == "pii.records")
    # the name column makes each row a record of name + address + phone/postal code
    assert records.count == 4 and records.evidence["lines"] == 8
    assert any("name" in combo for combo in records.evidence["kinds"])


def test_a_quoted_pasted_list_is_still_a_list() -> None:
    quoted = "\n".join("> " + line for line in tab_pasted().splitlines())
    f = people(scan([Chunk("body.quoted", quoted)], [], PII_LIMITS))
    assert f is not None and f.count == 4


@pytest.mark.parametrize("text", [
    # an invoice's line items: no personal-data header at all
    "品名\t数量\t単価\t金額\nA4用紙\t10\t500\t5,000\nトナー\t2\t8,000\t16,000\n"
    "ファイル\t5\t300\t1,500\n小計\t\t\t22,500\n",
    # the company's branch list: addresses and phones, but no person column
    "支店名\t〒\t住所\t電話\n本社\t100-0001\t東京都千代田区千代田1-1\t03-1234-5678\n"
    "大阪支店\t530-0001\t大阪府大阪市北区梅田3-3-3\t06-1234-5678\n"
    "名古屋支店\t460-0008\t愛知県名古屋市中区栄4-4-4\t052-123-4567\n",
    # a signature
    "--\n株式会社サンプル物流  営業部\n山田 太郎  (Taro Yamada)\n"
    "〒100-0001  東京都千代田区千代田1-1\nTEL  03-1234-5678   携帯  090-1234-5678\n"
    "Mail  yamada@example.co.jp\n",
    # prose that names the columns in a sentence
    "氏名と住所と電話番号を、次の週までにご提出ください。  住所  は変更があれば\n"
    "お知らせください。\n",
])
def test_what_is_not_a_people_list(text: str) -> None:
    assert people(scan([Chunk("body", text)], [], PII_LIMITS)) is None


def test_a_spreadsheet_and_its_text_copy_count_once() -> None:
    rows = [HEADER, *ROWS]
    text = "\n".join("\t".join(r) for r in rows)
    f = people(scan([Chunk("attachment:a.xlsx", text)],
                    [Table("attachment:a.xlsx", rows)], PII_LIMITS))
    assert f is not None and f.count == 4 and f.evidence["tables"] == 1
    assert f.evidence["lines"] == 4  # the table's data rows, not its text copy too


class _Counted:
    """A stand-in for texttables' per-line regex and header classifier that counts
    calls: the work find_tables does, counted instead of timed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lines = 0
        self.classified = 0
        quote, classify = texttables._QUOTE, texttables.classify_header
        outer = self

        class Quote:
            def sub(self, *args: Any, **kwargs: Any) -> str:
                outer.lines += 1
                return quote.sub(*args, **kwargs)

        def classify_header(cell: str) -> Any:
            outer.classified += 1
            return classify(cell)

        monkeypatch.setattr(texttables, "_QUOTE", Quote())
        monkeypatch.setattr(texttables, "classify_header", classify_header)


def test_finding_tables_is_linear_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """200,000 pasted rows: one pass that stops at the cell budget (each line read once,
    only the header classified); 5,000 small tables: each line read once, plus the blank
    line that ends a table read again as a possible header."""
    row = "\t".join(ROWS[0])
    text = "\t".join(HEADER) + "\n" + "\n".join(row.replace("太郎", f"太郎{i}")
                                              for i in range(200_000))
    work = _Counted(monkeypatch)
    found = find_tables(text, max_cells=100_000)
    assert len(found) == 1 and 100_000 <= sum(map(len, found[0].rows)) < 100_010
    assert work.lines <= 100_000 // len(ROWS[0]) + 2, work.lines
    assert work.classified == len(HEADER)
    # many small tables, a header every third line
    few = "\n\n".join(["\t".join(HEADER) + "\n" + row] * 5_000)
    work = _Counted(monkeypatch)
    assert len(find_tables(few, max_cells=1_000_000)) == 5_000
    lines = few.count("\n") + 1
    assert work.lines <= lines + 5_000, (work.lines, lines)
    assert work.classified == 5_000 * len(HEADER)


def test_lines_without_a_column_gap_are_skipped_in_one_search(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a line with a gap (tab, two spaces, a full-width space) can be a header: a
    roster written as sentences is not read line by line, and a table after it, or in a
    quoted reply, is found at its line."""
    prose = "".join(f"山田 太郎{i}様の連絡先は 090-1234-{i % 10000:04d} です。\n"
                    for i in range(50_000))
    table = "\n".join("\t".join(r) for r in [HEADER, *ROWS])
    text = prose + "> " + table.replace("\n", "\n> ") + "\n\n" + prose + table
    work = _Counted(monkeypatch)
    found = find_tables(text, max_cells=100_000)
    assert [t.first_line for t in found] == [50_000, 100_000 + len(ROWS) + 2]
    assert all(t.rows == [HEADER, *ROWS] for t in found)
    assert work.lines <= 2 * (len(ROWS) + 2), work.lines


def test_a_word_97_table_is_a_people_list() -> None:
    rows = "".join("\x07".join(r) + "\x07\x1d" for r in [HEADER, *ROWS])
    data = fx.word97_doc([("社員名簿\r" + rows + "以上\r", False)])
    ex = extract(Attachment("名簿.doc", "application/msword", data, "attachment:名簿.doc"))
    f = people(scan(ex.texts, ex.tables, PII_LIMITS))
    assert f is not None and f.count == 4 and f.where == "attachment:名簿.doc"


def test_a_pdf_roster_keeps_its_columns_when_a_cell_is_empty() -> None:
    rows = [["社員名簿"], ["氏名", "住所", "電話番号", "メール"],
            ["山田 太郎", "", "090-1234-5678", "a@example.jp"],
            ["佐藤 花子", "東京都渋谷区渋谷2-2-2", "", "b@example.jp"],
            ["鈴木 一郎", "大阪府大阪市北区梅田3-3-3", "070-3456-7890", "c@example.jp"],
            [], ["以上、よろしく お願いします。"]]
    data = fx.pdf_table(rows, [72, 150, 320, 420])
    ex = extract(Attachment("名簿.pdf", "application/pdf", data, "attachment:名簿.pdf"))
    [text] = [t.text for t in ex.texts]
    assert "山田 太郎\t\t090-1234-5678\ta@example.jp\n" in text
    assert "\n以上、よろしく お願いします。" in text  # prose keeps its spaces
    f = people(scan(ex.texts, ex.tables, PII_LIMITS))
    assert f is not None and f.count == 3
    assert f.evidence["classes"] == ["address", "email", "name", "phone"]


def test_an_excel_range_pasted_into_an_html_mail_is_a_people_list() -> None:
    """Outlook sends a pasted range as an HTML table, a line break at every tag."""
    cells = "".join(
        "\n <tr height=18>\n" + "".join(f"  <td class=xl65\n  width=80>{c}</td>\n" for c in r)
        + " </tr>" for r in [HEADER, *ROWS])
    html = (f"<html><body><p>名簿です</p>\n<table border=0 cellpadding=0>{cells}\n</table>"
            "<p>以上</p></body></html>")
    raw = ("From: a@example.co.jp\r\nTo: b@client.example\r\nSubject: x\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html)
    view = parse_message(raw.encode(), "a@example.co.jp", ["b@client.example"])
    f = people(scan(view.texts, view.tables, PII_LIMITS))
    assert f is not None and (f.where, f.count) == ("body", 4)
    # sent as multipart/alternative, the plain form (tabs) and the HTML form are one
    # table and the same lines
    plain = "名簿です\n" + "\n".join("\t".join(r) for r in [HEADER, *ROWS]) + "\n以上\n"
    alternative = ("From: a@example.co.jp\r\nTo: b@client.example\r\nSubject: x\r\n"
                   'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="a"\r\n'
                   "\r\n--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + plain
                   + "\r\n--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html
                   + "\r\n--a--\r\n")
    view = parse_message(alternative.encode(), "a@example.co.jp", ["b@client.example"])
    assert len([t for t in view.texts if t.where == "body"]) == 2
    f = people(scan(view.texts, view.tables, PII_LIMITS))
    assert f is not None and (f.count, f.evidence["tables"], f.evidence["lines"]) == (4, 1, 7)


# --- through `guard policy test --json` ------------------------------------------------

def _eml(body: str = "", attachment: tuple[str, bytes, str] | None = None,
         charset: str = "utf-8") -> bytes:
    subject = Header("名簿の件", "utf-8").encode()
    head = (f"From: tanaka@example.co.jp\r\nTo: partner@client.example\r\n"
            f"Subject: {subject}\r\nMessage-ID: <1@example.co.jp>\r\nMIME-Version: 1.0\r\n")
    if attachment is None:
        return (head + f"Content-Type: text/plain; charset={charset}\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + body.encode(charset)
    name, data, ctype = attachment
    part = fx.attachment(name, data, ctype)
    text = fx.Part("text/plain; charset=utf-8", body.encode() or b"x", "8bit")
    return (head + 'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n').encode() + b"".join(
        b"--b1\r\n" + p.render() for p in (text, part)) + b"--b1--\r\n"


def policy_test(tmp_path: Path, eml: bytes) -> dict[str, Any]:
    path = tmp_path / "m.eml"
    path.write_bytes(eml)
    r = subprocess.run([sys.executable, "-m", "guard.cli", "policy", "test", str(path),
                        "--json", "--policy", str(PASS_ALL), "--no-history"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def finding(doc: dict[str, Any], symbol: str) -> dict[str, Any] | None:
    return next((f for f in doc["findings"] if f["symbol"] == symbol), None)


DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


CASES: dict[str, tuple[bytes, str]] = {
    "body-tabs": (_eml(tab_pasted()), "body"),
    # a business system's export, mailed as Shift_JIS (CP932) text with CRLF lines
    "body-cp932": (_eml(tab_pasted().replace("\n", "\r\n"), charset="cp932"), "body"),
    "docx-table": (_eml("名簿を添付します", ("名簿.docx", fx.docx(["社員名簿"], [HEADER, *ROWS]),
                                             DOCX)), "attachment:名簿.docx"),
    "pdf-roster": (_eml("名簿を添付します", ("名簿.pdf", fx.pdf_table(
        [["社員名簿"], HEADER, *ROWS], [72, 150, 220, 420]), "application/pdf")),
                   "attachment:名簿.pdf"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_policy_test_reports_the_people_list(tmp_path: Path, case: str) -> None:
    eml, where = CASES[case]
    doc = policy_test(tmp_path, eml)
    f = finding(doc, "pii.people_list")
    assert f is not None, [x["symbol"] for x in doc["findings"]]
    assert (f["where"], f["count"], f["evidence"]["rows"]) == (where, 4, 4)
    assert "name" in f["evidence"]["classes"]
    assert f["evidence"]["lines"] >= 4
    records = finding(doc, "pii.records")
    assert records is not None and records["evidence"]["lines"] == f["evidence"]["lines"]


def test_policy_test_invoice_pdf_and_branch_list_are_not_people_lists(tmp_path: Path) -> None:
    invoice = fx.pdf_table([["請求書"], ["品名", "数量", "単価", "金額"],
                            ["A4用紙", "10", "500", "5,000"], ["トナー", "2", "8,000", "16,000"],
                            ["ファイル", "5", "300", "1,500"]], [72, 250, 320, 400])
    branches = ("弊社の拠点一覧です。\n\n支店名\t〒\t住所\t電話\n"
                "本社\t100-0001\t東京都千代田区千代田1-1\t03-1234-5678\n"
                "大阪支店\t530-0001\t大阪府大阪市北区梅田3-3-3\t06-1234-5678\n"
                "名古屋支店\t460-0008\t愛知県名古屋市中区栄4-4-4\t052-123-4567\n")
    doc = policy_test(tmp_path, _eml(branches, ("請求書.pdf", invoice, "application/pdf")))
    assert finding(doc, "pii.people_list") is None
