"""Personal-data detectors: true positives, true negatives, counting and evidence."""

from __future__ import annotations

import json
import random
import time
import unicodedata
from dataclasses import dataclass
from datetime import date

import pytest

from guard.inspect.finding import Finding
from guard.inspect.pii.checkdigits import is_valid_card, is_valid_my_number, my_number_check_digit
from guard.inspect.pii.context_words import classify_header
from guard.inspect.pii.dates import era_year_to_gregorian
from guard.inspect.pii.detect import PiiLimits, scan, scan_tables, scan_texts, value_key
from guard.mail.nfkc import NFKC_SAFE_RANGES, normalize

LIMITS = PiiLimits(today=date(2026, 11, 1))
HOLD_MY_NUMBER = 0.85  # where the example policy acts
HOLD_CARD = 0.9

MY_NUMBER = "621498320257"  # a published example of a valid My Number


@dataclass(frozen=True)
class Chunk:
    where: str
    text: str


@dataclass(frozen=True)
class Tab:
    where: str
    rows: list[list[str]]


def texts(*text: str, limits: PiiLimits = LIMITS) -> dict[str, Finding]:
    found = scan_texts([Chunk("body", t) for t in text], limits)
    symbols = [f.symbol for f in found]
    assert len(symbols) == len(set(symbols)), "one finding per symbol per where"
    return {f.symbol: f for f in found}


def tables(*rows: list[list[str]], limits: PiiLimits = LIMITS) -> dict[str, Finding]:
    found = scan_tables([Tab("attachment:list.xlsx", r) for r in rows], limits)
    return {f.symbol: f for f in found}


def my_number_from(base: str) -> str:
    return base + str(my_number_check_digit(base))


def invalid_my_number_from(base: str) -> str:
    return base + str((my_number_check_digit(base) + 1) % 10)


# ---------------------------------------------------------------------------
# My Number
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"マイナンバー：{MY_NUMBER}",
        "個人番号 6214-9832-0257 をご確認ください",
        "my number: 6214 9832 0257",
        "ﾏｲﾅﾝﾊﾞｰ ６２１４　９８３２　０２５７",  # half-width kana, full-width digits
    ],
)
def test_my_number_with_context_reaches_hold_level(text: str) -> None:
    f = texts(text)["pii.my_number"]
    assert f.score >= HOLD_MY_NUMBER
    assert f.count == 1
    assert f.evidence["samples"] == ["**** **** 0257"]
    assert f.evidence["context"]
    assert f.reason_ja == "マイナンバー（個人番号）1件"
    assert f.reason_en == "1 My Number (individual number) value"


def test_my_number_computed_check_digits_are_found_and_counted() -> None:
    numbers = [my_number_from(b) for b in ("12345678901", "98765432109", "31415926535")]
    assert all(is_valid_my_number(n) for n in numbers)
    f = texts("\n".join(f"個人番号 {n}" for n in numbers))["pii.my_number"]
    assert f.count == 3
    assert f.reason_en == "3 My Number (individual number) values"


def test_my_number_without_context_is_not_reported() -> None:
    assert "pii.my_number" not in texts(f"お問い合わせの件 {MY_NUMBER} です")


def test_invalid_check_digit_without_context_is_nothing() -> None:
    bad = invalid_my_number_from("62149832025")
    assert not is_valid_my_number(bad)
    assert texts(f"番号 {bad}") == {}


def test_invalid_check_digit_with_context_is_a_warning_not_a_hold() -> None:
    bad = invalid_my_number_from("62149832025")
    f = texts(f"マイナンバー {bad}")["pii.my_number"]
    assert 0.5 <= f.score < HOLD_MY_NUMBER
    assert f.evidence["kinds"] == ["check_digit_invalid"]


def test_list_of_checksum_valid_numbers_without_labels() -> None:
    rng = random.Random(3)
    numbers = [my_number_from(f"{rng.randrange(10**10, 10**11)}") for _ in range(4)]
    f = texts("\n".join(f"{i}. {n}" for i, n in enumerate(numbers)))["pii.my_number"]
    assert f.count == 4
    assert 0.5 <= f.score < HOLD_MY_NUMBER
    # One number that fails the check means it is a list of something else.
    mixed = [*numbers, invalid_my_number_from("11111111112")]
    assert "pii.my_number" not in texts("\n".join(mixed))


def test_card_digits_are_not_read_as_my_number() -> None:
    found = texts("マイナンバーではありません カード 4111 1111 1111 1111")
    assert "pii.my_number" not in found
    assert "pii.card" in found


# ---------------------------------------------------------------------------
# corporate number
# ---------------------------------------------------------------------------


def test_corporate_number_is_labelled_with_a_low_score() -> None:
    found = texts("法人番号 5835678256246\n登録番号 T7010705000725")
    f = found["pii.corporate_number"]
    assert f.count == 2
    assert 0.5 <= f.score < HOLD_MY_NUMBER
    assert "pii.my_number" not in found and "pii.card" not in found
    assert f.reason_ja == "法人番号2件"


def test_corporate_number_needs_valid_check_and_context() -> None:
    assert "pii.corporate_number" not in texts("法人番号 6835678256246")  # bad check
    assert "pii.corporate_number" not in texts("番号 5835678256246")  # no context
    # JAN codes are 13 digits and pass mod 9 one time in nine.
    assert "pii.corporate_number" not in texts("JANコード 5835678256246")


# ---------------------------------------------------------------------------
# cards
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "カード番号 4111-1111-1111-1111 有効期限 12/28",
        "クレジット: 2223 0000 4840 0011",  # 2-series Mastercard
        "JCB 3530111333300000",
        "Amex card 3782 822463 10005",  # 15 digits, 4-6-5
        "ｶｰﾄﾞ番号 ４１１１１１１１１１１１１１１１",
    ],
)
def test_card_with_context_reaches_hold_level(text: str) -> None:
    f = texts(text)["pii.card"]
    assert f.score >= HOLD_CARD
    assert f.count == 1
    assert f.evidence["kinds"][0] in {"visa", "mastercard", "jcb", "amex"}


def test_card_sample_is_masked() -> None:
    f = texts("カード番号 4111-1111-1111-1111")["pii.card"]
    assert f.evidence["samples"] == ["4111 **** **** 1111"]


def test_luhn_valid_invoice_number_does_not_reach_hold() -> None:
    number = "4929876543210986"  # 16 digits, Visa IIN, passes Luhn
    assert is_valid_card(number) == "visa"
    for text in (
        f"請求書番号 {number}",
        f"注文番号：{number}",
        f"Invoice no. {number}",
        f"Order No {number}",
    ):
        f = texts(text).get("pii.card")
        assert f is None, text
    # Even with no words at all, a bare Luhn pass stays below the hold level.
    bare = texts(f"{number}").get("pii.card")
    assert bare is not None and bare.score < HOLD_CARD


def test_nearest_label_wins_when_a_window_holds_both() -> None:
    text = "カード番号 4111-1111-1111-1111 有効期限 12/28\n注文番号 4929876543210986"
    f = texts(text)["pii.card"]
    assert f.count == 1
    assert f.score >= HOLD_CARD
    assert "negative_context" not in f.evidence


def test_label_on_the_next_line_belongs_to_the_next_value() -> None:
    found = texts("法人番号 5835678256246\nJANコード 4901234567894\n携帯 090-1234-5678")
    assert found["pii.corporate_number"].count == 1
    assert "negative_context" not in found["pii.corporate_number"].evidence


def test_negative_words_count_only_as_the_values_label() -> None:
    # 見積 (quotation) in the sentence before is prose, not the number's label.
    text = "見積書を添付いたしますので、ご確認のほどよろしくお願いいたします。\n090 5094 6949 まで"
    f = texts(text)["pii.phone"]
    assert "negative_context" not in f.evidence
    assert "pii.phone" not in texts("見積番号 090 5094 6949")


def test_card_failing_luhn_or_glued_to_letters_is_nothing() -> None:
    assert texts("カード番号 4111 1111 1111 1112") == {}
    assert "pii.card" not in texts("カード番号 INV4111111111111111")


# ---------------------------------------------------------------------------
# phones
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("03-1234-5678", "fixed"),
        ("090-1234-5678", "mobile"),
        ("09012345678", "mobile"),
        ("０９０１２３４５６７８", "mobile"),
        ("090ー1234ー5678", "mobile"),  # IME long-vowel mark between digits
        ("TEL 0312345678", "fixed"),
        ("(03)1234-5678", "fixed"),
        ("03(1234)5678", "fixed"),
        ("050-1234-5678", "ip"),
        ("フリーダイヤル 0120-123-456", "toll_free"),
        ("ナビダイヤル 0570-064-555", "navi_dial"),
        ("+81 90-1234-5678", "mobile"),
    ],
)
def test_phone_formats(text: str, kind: str) -> None:
    f = texts(f"連絡は {text} まで")["pii.phone"]
    assert f.count == 1
    assert f.evidence["kinds"] == [kind]
    assert f.reason_en == "1 phone number"


def test_phone_same_number_in_other_formats_counts_once() -> None:
    f = texts("090-1234-5678 / 09012345678 / ０９０（１２３４）５６７８ / +81-90-1234-5678")[
        "pii.phone"
    ]
    assert f.count == 1


def test_same_value_five_times_is_counted_once() -> None:
    f = texts("携帯 090-1234-5678\n" * 5)["pii.phone"]
    assert f.count == 1
    assert f.reason_ja == "電話番号1件"


def test_invalid_or_unformatted_fixed_numbers_without_context() -> None:
    assert "pii.phone" not in texts("0001234567 と 0012345678")  # not valid numbers
    # A bare 10-digit fixed-line number could be anything; with a label it is a phone.
    assert "pii.phone" not in texts("受付 0312345678")
    assert "pii.phone" in texts("電話 0312345678")


def test_phone_sample_is_masked() -> None:
    f = texts("携帯 090-1234-5678")["pii.phone"]
    assert f.evidence["samples"] == ["090-****-5678"]


# ---------------------------------------------------------------------------
# postal codes and addresses
# ---------------------------------------------------------------------------


def test_postal_code_needs_a_mark_or_context() -> None:
    assert texts("〒123-4567")["pii.postal_code"].count == 1
    assert texts("〒1234567")["pii.postal_code"].count == 1
    assert texts("郵便番号 123-4567")["pii.postal_code"].count == 1
    assert "pii.postal_code" not in texts("部品 123-4567 を発注")
    assert "pii.postal_code" not in texts("1234567")


@pytest.mark.parametrize(
    ("text", "sample"),
    [
        ("東京都千代田区千代田1-1", "東京都千代田区…"),
        ("大阪府大阪市北区梅田1丁目2番3号", "大阪府大阪市…"),
        ("北海道札幌市中央区北1条西2丁目", "北海道札幌市…"),
        ("神奈川県横浜市西区みなとみらい2-3-1", "神奈川県横浜市…"),
        ("住所：千代田区丸の内1-1-1", "千代田区…"),
    ],
)
def test_address(text: str, sample: str) -> None:
    f = texts(text)["pii.address"]
    assert f.count == 1
    assert f.evidence["samples"] == [sample]
    assert f.score >= 0.5


def test_address_with_postal_code_scores_higher() -> None:
    plain = texts("東京都千代田区千代田1-1")["pii.address"].score
    with_postal = texts("〒100-0001 東京都千代田区千代田1-1")["pii.address"].score
    assert with_postal > plain


def test_place_names_are_not_addresses() -> None:
    assert "pii.address" not in texts("東京都千代田区にある本社で会議")
    assert "pii.address" not in texts("千代田区1-1")  # no prefecture, no 住所 label


# ---------------------------------------------------------------------------
# dates of birth
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "year", "kind"),
    [
        ("生年月日：令和元年5月1日", "2019", "era"),
        ("生年月日 昭和58年1月2日", "1983", "era"),
        ("生年月日 S58.1.2", "1983", "era"),
        ("誕生日：H3.4.5", "1991", "era"),
        ("生年月日：平成3年", "1991", "era"),
        ("DOB: 1985/04/12", "1985", "western"),
        ("Date of birth 12/04/1985", "1985", "western"),
        ("1985年4月12日生まれ", "1985", "western"),
    ],
)
def test_birth_dates(text: str, year: str, kind: str) -> None:
    f = texts(text)["pii.birth_date"]
    assert f.count == 1
    assert f.evidence["samples"] == [f"{year}-**-**"]
    assert f.evidence["kinds"] == [kind]


def test_full_date_scores_higher_than_year_only() -> None:
    full = texts("生年月日：平成3年4月5日")["pii.birth_date"].score
    year_only = texts("生年月日：平成3年")["pii.birth_date"].score
    assert full >= 0.8 > year_only >= 0.5


@pytest.mark.parametrize(
    "text",
    [
        "生年月日 昭和64年1月8日",  # 昭和 ended on 1月7日
        "生年月日 平成31年5月1日",  # 令和 began that day
        "生年月日 1985/02/30",  # no such day
        "生年月日 2030/01/01",  # not born yet
        "会議は 1985/04/12 に開催",  # a date without a birth-date word
        "納期 令和元年5月1日",
    ],
)
def test_not_birth_dates(text: str) -> None:
    assert "pii.birth_date" not in texts(text)


def test_same_birth_date_in_two_notations_counts_once() -> None:
    f = texts("生年月日：昭和58年1月2日（S58.1.2）、誕生日 1983/01/02")["pii.birth_date"]
    assert f.count == 1


def test_era_arithmetic() -> None:
    assert era_year_to_gregorian("平成", 3) == 1991
    assert era_year_to_gregorian("令和", 1) == 2019
    assert era_year_to_gregorian("S", 58) == 1983
    assert era_year_to_gregorian("昭和", 65) is None
    assert era_year_to_gregorian("平成", 0) is None


# ---------------------------------------------------------------------------
# e-mail addresses
# ---------------------------------------------------------------------------


def test_email_addresses_are_counted_distinct() -> None:
    f = texts("a@example.com, B@Example.com, b@example.com, ｃ＠ｅｘａｍｐｌｅ．ｃｏｍ")[
        "pii.email"
    ]
    assert f.count == 3
    assert f.evidence["samples"] == ["a***@example.com", "B***@Example.com", "c***@example.com"]


def test_quoted_reply_header_addresses_are_not_counted() -> None:
    text = (
        "ご確認ください。\n\n> From: boss@example.com\n> 差出人: 山田 <y@example.jp>\n"
        "x@example.org"
    )
    f = texts(text)["pii.email"]
    assert f.count == 1
    assert f.evidence["samples"] == ["x***@example.org"]


# ---------------------------------------------------------------------------
# tables: people lists
# ---------------------------------------------------------------------------


def people_rows(n: int) -> list[list[str]]:
    header = ["No", "氏名", "ﾌﾘｶﾞﾅ", "ﾒｰﾙｱﾄﾞﾚｽ", "携帯電話", "住所", "備考"]
    rows = [header]
    for i in range(n):
        rows.append(
            [
                str(i + 1),
                f"山田 {i}郎",
                "ヤマダ",
                f"user{i}@example.co.jp",
                f"090-{1000 + i:04d}-{5000 + i:04d}",
                f"東京都港区芝公園{i + 1}-2-3",
                "",
            ]
        )
    return rows


def test_people_list_with_12_rows() -> None:
    found = tables(people_rows(12))
    f = found["pii.people_list"]
    assert f.count == 12
    assert f.evidence["rows"] == 12
    assert f.evidence["columns"] == ["氏名", "フリガナ", "メールアドレス", "携帯電話", "住所"]
    assert set(f.evidence["classes"]) == {"name", "email", "phone", "address"}
    assert f.reason_en == "people list (address, email, name, phone), 12 rows"
    assert f.reason_ja.endswith("12行")
    assert found["pii.records"].count == 12
    assert found["pii.phone"].count == 12
    assert found["pii.email"].count == 12


def test_phone_numbers_stored_as_excel_numbers_are_phones() -> None:
    """A phone column typed as numbers loses its leading 0 (openpyxl writes ints, the
    reader gives "9012345678"); under a phone header it is still a phone number."""
    import io

    import openpyxl

    from guard.inspect.extract import extract
    from guard.mail.message import Attachment

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["氏名", "電話番号", "メール"])
    for i in range(12):
        ws.append([f"山田 太郎{i}", 9012340000 + i, f"user{i}@example.jp"])
    ws.append(["佐藤 花子", 312345678, "sato@example.jp"])  # 03-1234-5678
    ws.append(["鈴木 一郎", 12345, "suzuki@example.jp"])  # not a phone number
    buf = io.BytesIO()
    wb.save(buf)
    ex = extract(Attachment("名簿.xlsx", "", buf.getvalue(), "attachment:名簿.xlsx"))
    assert ex.tables[0].rows[1][1] == "9012340000"
    found = {f.symbol: f for f in scan_tables(ex.tables, LIMITS)}
    assert found["pii.phone"].count == 13
    assert found["pii.people_list"].count == 14


@pytest.mark.parametrize(
    ("cell", "cls"),
    [
        ("ﾒｰﾙｱﾄﾞﾚｽ", "email"),
        ("メールアドレス", "email"),
        ("Ｅメール", "email"),
        ("メ－ルアドレス", "email"),
        ("E-Mail", "email"),
        ("電話番号", "phone"),
        ("ＴＥＬ", "phone"),
        ("携帯", "phone"),
        ("氏名", "name"),
        ("ﾌﾘｶﾞﾅ", "name"),
        ("姓", "name"),
        ("Full Name", "name"),
        ("生年月日", "birth_date"),
        ("Date of Birth", "birth_date"),
        ("〒", "address"),
        ("住所", "address"),
        ("性別", "sensitive"),
        ("マイナンバー", "id"),
        ("会社名", None),
        ("Company Name", None),
        ("商品名", None),
        ("Hotel", None),
        ("Page", None),
        ("数量", None),
    ],
)
def test_header_classes(cell: str, cls: str | None) -> None:
    assert classify_header(cell) == cls


def test_table_without_personal_headers_is_nothing() -> None:
    rows = [["商品名", "数量", "単価", "金額"]] + [
        [f"部品{i}", str(i), "1200", str(1200 * i)] for i in range(20)
    ]
    assert tables(rows) == {}


def test_one_class_is_not_a_people_list() -> None:
    rows = [["氏名", "部署", "内線"]] + [[f"社員{i}", "営業", f"{i:04d}"] for i in range(20)]
    assert "pii.people_list" not in tables(rows)


def test_too_few_rows_is_not_a_people_list() -> None:
    assert "pii.people_list" not in tables(people_rows(2))
    assert tables(people_rows(3))["pii.people_list"].count == 3


def test_header_below_title_rows_and_values_that_do_not_fit() -> None:
    rows = [["顧客一覧（2026年11月）"], [], *people_rows(10)]
    assert tables(rows)["pii.people_list"].count == 10
    # The e-mail column holds no addresses: it does not count as an e-mail column,
    # and name + nothing else is not a people list.
    bad = [["氏名", "メール"]] + [[f"山田{i}", "送信済み"] for i in range(10)]
    assert "pii.people_list" not in tables(bad)


def test_column_header_is_context_for_its_cells_only() -> None:
    rows = [["氏名", "マイナンバー", "注文番号"], ["山田太郎", MY_NUMBER, "4929876543210986"]]
    found = tables(rows)
    assert found["pii.my_number"].score >= HOLD_MY_NUMBER
    assert "pii.card" not in found  # its header is 注文番号
    assert found["pii.records"].count == 1  # name + My Number


def test_previous_cells_header_is_not_context() -> None:
    other = my_number_from("12345678901")  # passes the check, but is an employee number
    rows = [["マイナンバー", "社員番号"], [MY_NUMBER, other]]
    assert tables(rows)["pii.my_number"].count == 1


def test_typed_cells_and_mixed_cells_give_the_same_values() -> None:
    clean = [["氏名", "電話", "生年月日"], ["山田", "090-1234-5678", "1985/04/12"]]
    mixed = [["氏名", "電話", "生年月日"], ["山田", "090-1234-5678（携帯）", "1985/04/12 生"]]
    a, b = tables(clean), tables(mixed)
    for symbol in ("pii.phone", "pii.birth_date", "pii.records"):
        assert a[symbol].count == b[symbol].count == 1, symbol
    assert a["pii.phone"].score == b["pii.phone"].score


def test_long_table_counts_all_rows_but_scans_the_first_cells() -> None:
    limits = PiiLimits(today=date(2026, 11, 1), max_scan_cells=7 * 6)  # header + 5 rows
    found = tables(people_rows(12), limits=limits)
    assert found["pii.people_list"].count == 12
    assert found["pii.phone"].count == 5
    assert found["pii.phone"].evidence["truncated"] is True


def test_excel_float_cells() -> None:
    rows = [["氏名", "電話", "メール"]] + [
        [f"山田{i}", 9012345670.0 + i, f"u{i}@example.com"] for i in range(5)
    ]
    found = scan_tables([Tab("attachment:a.xlsx", rows)], LIMITS)  # type: ignore[arg-type]
    assert {f.symbol for f in found} >= {"pii.people_list", "pii.email"}


# ---------------------------------------------------------------------------
# records, aggregation, evidence
# ---------------------------------------------------------------------------


def test_records_need_two_kinds_on_one_line() -> None:
    f = texts(
        "山田 090-1234-5678 yamada@example.com\n"
        "佐藤 080-2345-6789 sato@example.com\n"
        "090-1234-5678 yamada@example.com\n"  # the same record again
    )["pii.records"]
    assert f.count == 2
    assert f.evidence["kinds"] == {"email+phone": 2}
    # A signature: phone and e-mail on separate lines is not a record.
    assert "pii.records" not in texts("山田太郎\nTEL 090-1234-5678\nyamada@example.com")


def test_values_far_apart_on_one_line_are_not_a_record() -> None:
    line = "090-1234-5678" + " あ" * 150 + " yamada@example.com"
    assert "pii.records" not in texts(line)


def test_findings_are_per_where_and_merged_within_one() -> None:
    found = scan_texts(
        [
            Chunk("body", "携帯 090-1234-5678"),
            Chunk("body", "携帯 090-1234-5678 / 080-2345-6789"),
            Chunk("attachment:a.txt", "携帯 090-1234-5678"),
        ],
        LIMITS,
    )
    by_where = {(f.where, f.symbol): f.count for f in found}
    assert by_where == {("body", "pii.phone"): 2, ("attachment:a.txt", "pii.phone"): 1}


def test_scan_counts_texts_and_tables_together() -> None:
    found = scan(
        [Chunk("attachment:a.xlsx", "携帯 090-1234-5678")],
        [Tab("attachment:a.xlsx", [["携帯"], ["090-1234-5678"], ["080-2345-6789"]])],
        LIMITS,
    )
    phones = [f for f in found if f.symbol == "pii.phone"]
    assert len(phones) == 1 and phones[0].count == 2


def test_spreadsheet_as_table_and_as_text_counts_once() -> None:
    # The extractor hands a sheet over both as a Table and as tab-separated text.
    rows = people_rows(12)
    text = "\n".join("\t".join(r) for r in rows)
    found = scan([Chunk("attachment:list.xlsx", text)], [Tab("attachment:list.xlsx", rows)],
                 LIMITS)
    by_symbol = {f.symbol: f for f in found}
    assert len(by_symbol) == len(found)
    assert by_symbol["pii.phone"].count == 12
    assert by_symbol["pii.email"].count == 12
    assert by_symbol["pii.records"].count == 12
    assert by_symbol["pii.people_list"].count == 12


def test_ignore_values_drop_the_senders_own_numbers() -> None:
    own = frozenset({value_key("03-1234-5678")})
    limits = PiiLimits(today=date(2026, 11, 1), ignore_values=own)
    found = texts("TEL 03-1234-5678 / 携帯 090-1234-5678", limits=limits)
    assert found["pii.phone"].count == 1
    assert value_key("+81 3-1234-5678") == value_key("０３－１２３４－５６７８")


def test_evidence_never_holds_full_values() -> None:
    values = [MY_NUMBER, "4111111111111111", "09012345678", "yamada@example.com", "1983-01-02"]
    text = (
        f"マイナンバー {MY_NUMBER}\nカード番号 4111 1111 1111 1111\n携帯 090-1234-5678\n"
        "メール yamada@example.com\n生年月日 1983/01/02\n〒100-0001 東京都千代田区千代田1-1"
    )
    found = scan_texts([Chunk("body", text)], LIMITS)
    assert {f.symbol for f in found} >= {
        "pii.my_number", "pii.card", "pii.phone", "pii.email", "pii.birth_date",
        "pii.address", "pii.postal_code",
    }
    dumped = json.dumps([f.to_json() for f in found], ensure_ascii=False)
    digits_only = "".join(c for c in dumped if c.isdigit())
    for v in values:
        assert v not in dumped
        if v.isdigit():
            assert v not in digits_only
    assert "千代田1-1" not in dumped


def test_truncation_is_reported() -> None:
    limits = PiiLimits(today=date(2026, 11, 1), max_chars=100)
    found = texts("携帯 090-1234-5678 " + "x" * 200 + " 080-2345-6789", limits=limits)
    assert found["pii.phone"].count == 1
    assert found["pii.phone"].evidence["truncated"] is True


def _roster(n: int, start: int = 0) -> str:
    """n lines of a dense roster: a phone and an e-mail address on each."""
    return "".join(f"顧客{i} 携帯 090-{1000 + i // 9000:04d}-{1000 + i % 9000:04d} "
                   f"mail user{i}@example.jp\n" for i in range(start, start + n))


def test_a_text_is_value_scanned_up_to_its_budget() -> None:
    """Past max_scan_values candidates only My Numbers and cards with their context
    words are read; the findings say the scan was truncated, and records/counts are of
    the part read (a dense 900,000-value roster took 20 s before)."""
    limits = PiiLimits(today=date(2026, 11, 1), max_scan_values=40)
    tail = (f"マイナンバー {MY_NUMBER} です。\n" + _roster(30, 100)
            + "カード番号 4111-1111-1111-1111 有効期限 12/28\n" + _roster(30, 200)
            + "携帯 080-9999-1234 (no context word for a strong kind)\n")
    found = texts(_roster(30) + tail, limits=limits)
    assert found["pii.phone"].count == 20  # the 40th candidate ends line 20
    assert found["pii.email"].count == 20
    assert found["pii.phone"].evidence["truncated"] is True
    assert found["pii.records"].count == 20
    assert found["pii.my_number"].score >= HOLD_MY_NUMBER
    assert found["pii.card"].score >= HOLD_CARD
    # the same text within the budget: everything counted, nothing truncated
    whole = texts(_roster(30) + tail)
    assert whole["pii.phone"].count == 91 and "truncated" not in whole["pii.phone"].evidence
    assert whole["pii.my_number"].score == found["pii.my_number"].score


def test_the_value_budget_is_per_where_across_chunks() -> None:
    limits = PiiLimits(today=date(2026, 11, 1), max_scan_values=40)
    found = texts(_roster(15), _roster(15, 15), _roster(15, 30), limits=limits)
    assert found["pii.phone"].count == 20
    assert found["pii.phone"].evidence["truncated"] is True
    # a strong value in a chunk after the budget ran out is still found
    found = texts(_roster(30), f"個人番号: {MY_NUMBER}\n", limits=limits)
    assert found["pii.my_number"].score >= HOLD_MY_NUMBER


_VALUE_PIECES = ("携帯 090-1234-5678", "user@example.jp", "a@b", "東京都港区芝公園4-2-8",
                 "〒105-0011", "0312345678", "1234567", "(03)1234-5678", "ViſA", "\u212aey",
                 "本日は晴れ。", "TEL", "京都府京都市", "道", "x" * 40, "１２３４５６７８９０")


def test_candidates_counted_only_when_a_cut_may_come(monkeypatch: pytest.MonkeyPatch) -> None:
    """The value budget is counted per text only when the text might reach it
    (detect._values_at_most bounds the count from below the real one): the same findings
    as counting every text, for budgets that cut in the first, a later or no text."""
    from guard.inspect.pii import detect

    rng = random.Random(11)
    cases = []
    for _ in range(150):
        chunks = [Chunk(rng.choice(("body", "body", "attachment:a.txt")), "\n".join(
            " ".join(rng.choice(_VALUE_PIECES) for _ in range(rng.randint(0, 6)))
            for _ in range(rng.randint(0, 30)))) for _ in range(rng.randint(1, 5))]
        cases.append((chunks, PiiLimits(today=date(2026, 11, 1),
                                        max_scan_values=rng.choice((0, 1, 5, 20, 80, 10**6)))))
    quick = [scan_texts(chunks, limits) for chunks, limits in cases]
    with monkeypatch.context() as m:
        m.setattr(detect, "_values_at_most", lambda text: 10**9)  # count every text
        assert quick == [scan_texts(chunks, limits) for chunks, limits in cases]
    assert any(f.evidence.get("truncated") for found in quick for f in found)
    # the bound holds where each of its terms is all there is
    for text in ("ViſA ſku " * 50, "a@b.jp " * 50, "東京都港区1 " * 50, "0312345678 " * 50,
                 "(03)1234-5678 " * 50, "〒1050011 " * 50, "1234-567 " * 50,
                 *(c.text for chunks, _ in cases for c in chunks)):
        assert detect._value_cut(text, 10**9)[1] <= detect._values_at_most(text)


def test_lines_evidence_counts_the_distinct_lines_of_every_text_at_its_place() -> None:
    """The lines are keyed only when a finding asks (detect._WhereAcc.line_keys): the
    count is still every distinct line (white space collapsed) of the texts at that
    place, and of all the body's parts at body.all."""
    rng = random.Random(5)
    pieces = ["山田 太郎 090-1234-5678 taro@example.jp", "東京都港区芝公園4-2-8 03-1234-5678",
              "佐藤  花子\t06-6123-4567\thanako@example.org", "", "  ", "本日は晴れ。", "a  b",
              "a b", "ａ　ｂ"]
    checked = 0
    for _ in range(200):
        chunks = [Chunk(rng.choice(("body", "body.quoted")), "\r\n".join(
            rng.choice(pieces) for _ in range(rng.randint(0, 20)))) for _ in range(3)]
        found = scan_texts(chunks, PiiLimits(today=date(2026, 11, 1)))

        def lines(*wheres: str, chunks: list[Chunk] = chunks) -> int:
            return len({" ".join(line.split()) for c in chunks if c.where in wheres
                        for line in c.text.splitlines()} - {""})
        for f in found:
            if f.symbol == "pii.records":
                want = lines("body", "body.quoted") if f.where == "body.all" else lines(f.where)
                assert f.evidence["lines"] == want
                checked += 1
    assert checked > 100


def test_plain_text_has_no_findings() -> None:
    text = (
        "いつもお世話になっております。来週の打ち合わせは11月12日（水）14:00からです。"
        "見積金額は1,234,567円、数量120個、資料は3ページです。Version 2.10.3 を使います。"
        "Meeting on 2026-11-12 at 10:30, room 401, budget 12,500 USD.\n"
    )
    assert texts(text * 50) == {}


def test_one_megabyte_of_mixed_text_finishes() -> None:
    rng = random.Random(7)
    filler = "本日はお忙しいところありがとうございました。The quarterly report is attached. "
    parts = []
    size = 0
    phones = set()
    while size < 1_000_000:
        parts.append(filler * 10)
        phone = f"090-{rng.randrange(1000, 10000)}-{rng.randrange(1000, 10000)}"
        phones.add(phone)
        parts.append(f"携帯 {phone} / 注文番号 4929876543210986 / 2026年11月12日\n")
        size += len(parts[-2]) + len(parts[-1])
    start = time.process_time()
    found = texts("".join(parts))
    elapsed = time.process_time() - start
    assert found["pii.phone"].count == len(phones)
    assert "pii.card" not in found
    assert elapsed < 5  # sanity only; the benchmark measures speed


# ---------------------------------------------------------------------------
# normalisation
# ---------------------------------------------------------------------------


def test_every_nfkc_safe_character_is_stable_and_non_combining() -> None:
    # Second halves of canonical two-character decompositions: the characters that
    # can compose with the character before them.
    second_halves = set()
    for code in range(0x110000):
        parts = unicodedata.decomposition(chr(code)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            second_halves.add(int(parts[1], 16))
    assert 0x3099 in second_halves  # the kana voiced sound mark (か + ゛ = が)
    for low, high in NFKC_SAFE_RANGES:
        for code in range(ord(low), ord(high) + 1):
            c = chr(code)
            assert unicodedata.normalize("NFKC", c) == c, hex(code)
            assert unicodedata.combining(c) == 0, hex(code)
            assert code not in second_halves, hex(code)


def test_partial_normalisation_equals_full_nfkc() -> None:
    rng = random.Random(11)
    alphabet = (
        "abcXYZ019 -\n" "あかさがぱ" "アカガヴー・" "漢字東京都" "、。「」"  # safe
        "０１９ＡＺａｚ－（）：＠　" "ｱｶﾞﾊﾟｰﾒﾙ" "\u3099\u309a\u0301\u0308"  # changed / combining
        "①㈱℡ﬁ²" "가각\u1100\u1161\u11a8" "é" "ヿゟ"
        "，．！？［］＝／＿＆<=>\u0338"  # replaced in bulk; = + U+0338 composes to ≠
    )
    for _ in range(4000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))
        assert normalize(text) == unicodedata.normalize("NFKC", text), repr(text)


def test_normalisation_examples() -> None:
    assert normalize("ﾏｲﾅﾝﾊﾞｰ：０９０－１２３４") == "マイナンバー:090-1234"
    assert normalize("か\u3099") == "が"
    assert normalize("℡ 03") == "TEL 03"
    assert normalize("plain ascii") == "plain ascii"


def test_candidate_spans_without_the_match_wrapper_equal_finditer() -> None:
    from guard.inspect.pii import candidates

    assert candidates._FAST_SPANS  # the installed google-re2 has the fast path
    text = ("〒100-0001 東京都千代田区千代田1-1 山田 太郎 090-1234-5678 (03)1234-5678 "
            "taro@example.jp 生年月日 昭和50年1月2日 住所 大阪市北区1-2 電話 0312345678\n"
            "order 4111111111111111 x@y.z ") * 50
    buf = text.encode()
    fast = list(candidates.byte_spans(buf, fast=True))
    assert len(fast) > 400
    assert fast == list(candidates.byte_spans(buf, fast=False))
    assert list(candidates.byte_spans(b"", fast=True)) == []


# Pieces whose readings depend on the characters around a run: letters and code
# punctuation glued to it, T before a corporate number, 〒, a digit two characters away.
_RUN_PIECES = [
    "0123456789", "090-1234-5678", "03 1234 5678", "+81 90 1234 5678", "123-4567",
    "〒1234567", "〒 100-0001", "9234567890123", "123456789018", "4111 1111 1111 1111",
    "2024 1234 5678 9012", "0123456789 0123456789", "T", "x", "-", "_", "#", "/", " ",
    "1", "1 ", "\n", "\x1f", "電話", "郵便番号", "マイナンバー", "東京都千代田区丸の内1-1-1",
    "xT", "1 123-4567", "a 123-4567", "T9234567890123",
]


def test_a_runs_readings_are_read_once_with_the_same_result() -> None:
    """numbers.RunReader (each distinct run between the same neighbours read once)
    gives the candidates digit_run_candidates gives at every run of random texts."""
    from guard.inspect.pii.candidates import RUN_K, candidate_kind, char_spans
    from guard.inspect.pii.numbers import RunReader, digit_run_candidates

    rng = random.Random(18)
    runs = 0
    for _ in range(1000):
        pool = rng.sample(_RUN_PIECES, rng.randrange(2, 10))  # (values repeat)
        text = "".join(rng.choice(pool) for _ in range(rng.randrange(1, 60)))
        reader = RunReader(text)
        for start, end in char_spans(text):
            if candidate_kind(text[start:end]) != RUN_K:
                continue
            if text[start] == "〒":
                start += 2 if text[start + 1] == " " else 1
            runs += 1
            assert reader.candidates(start, end) == digit_run_candidates(text, start, end)
    assert runs > 3000


def test_candidates_without_context_are_scored_once_with_the_same_result(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """scan._score_candidate keeps the best reading of candidates without context words
    by their shared readings: the same hits as scoring each one."""
    from guard.inspect.pii import scan as scan_mod
    from guard.inspect.pii.hits import ScanSettings

    settings = ScanSettings(today=date(2026, 11, 1))
    rng = random.Random(7)
    cases = [("0123456789 " * 40 + "電話 0312345678\n" + "090-1234-5678\n" * 5
              + "123456789018 " * 4)]
    cases += ["".join(rng.choice(_RUN_PIECES) for _ in range(rng.randrange(1, 80)))
              for _ in range(300)]
    fast = [scan_mod.scan_normalized(normalize(t), settings) for t in cases]
    context = scan_mod._Scan.context
    with monkeypatch.context() as m:
        # a word no detector knows: the context is never empty, nothing kept
        m.setattr(scan_mod._Scan, "context",
                  lambda self, s, e: {"(no word)": 10**6, **context(self, s, e)})
        slow = [scan_mod.scan_normalized(normalize(t), settings) for t in cases]
    assert fast == slow
    assert sum(map(len, fast)) > 500


def test_cell_text_skips_the_passes_that_change_nothing() -> None:
    """tables.cell_text normalises only non-ASCII text and replaces line breaks only in
    text that is not printable: the same as both passes on random cells."""
    import re

    from guard.inspect.pii.tables import cell_text

    breaks = re.compile(r"[\r\n\x1f\x0b\x0c\u2028\u2029\x85]+")
    alphabet = ("ab 09-@.\t\r\n\x1f\x0b\x0c\x85\u2028\u2029\u3000\xa0"
                "ｱｲｶﾞ１２（）：山田か\u3099Ⅻ\ufb01 ")
    rng = random.Random(5)
    cells: list[object] = [None, 1.0, 2.5, 9012345678.0, True, -0.0, float("inf"), 10**20]
    cells += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
              for _ in range(20_000)]
    for cell in cells:
        value: object = cell
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        text = value if isinstance(value, str) else str(value) if value is not None else ""
        assert cell_text(cell) == breaks.sub(" ", normalize(text)).strip(), repr(cell)


def test_the_value_cut_on_bytes_is_the_cut_on_characters() -> None:
    """detect._value_cut counts on the UTF-8 bytes and turns only the cut into a
    character offset: the same as counting over char_spans on random texts."""
    from guard.inspect.pii import detect
    from guard.inspect.pii.candidates import WORD_K, candidate_kind, char_spans

    def reference(text: str, max_values: int) -> tuple[int | None, int]:
        if max_values <= 0:
            return 0, 0
        seen = 0
        for start, end in char_spans(text):
            if candidate_kind(text[start:end]) != WORD_K:
                seen += 1
                if seen >= max_values:
                    cut = text.find("\n", end)
                    return (None if cut < 0 else cut + 1), seen
        return None, seen

    rng = random.Random(11)
    pieces = [*_RUN_PIECES, "ａ１２３", "\u3000", "😀", "é", "x@example.jp", "\n"]
    cut = 0
    for _ in range(1500):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 40)))
        for max_values in (0, 1, 2, 5, 1000):
            got = detect._value_cut(text, max_values)
            assert got == reference(text, max_values), (text, max_values)
            cut += got[0] not in (None, 0)
    assert cut > 500
