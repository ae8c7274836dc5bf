"""CSV parsing for suppression lists, customers and partner domains."""

from __future__ import annotations

import hmac
from hashlib import sha256

import pytest

import guard.policy.csvread as csvread
from guard.inspect.context import Customer
from guard.mail.digests import address_digest
from guard.policy.csvread import RowError, decode_csv_bytes
from guard.policy.datafiles import (
    parse_address_csv,
    parse_customers_csv,
    parse_domain,
    parse_domains_csv,
)

# ---------------------------------------------------------------- decoding

TEXT = "氏名,メールアドレス\n山田 太郎,yamada@example.co.jp\n"


@pytest.mark.parametrize(
    "data",
    [
        TEXT.encode("utf-8"),
        TEXT.encode("utf-8-sig"),
        TEXT.encode("cp932"),
        TEXT.encode("euc_jp"),
        TEXT.encode("utf-16"),  # with its BOM, as Excel's "Unicode text"
    ],
    ids=["utf-8", "utf-8-bom", "cp932", "euc_jp", "utf-16"],
)
def test_decode_japanese_encodings(data: bytes) -> None:
    assert decode_csv_bytes(data) == TEXT


def test_decode_cp932_only_characters() -> None:
    # NEC special characters (①, ㈱) exist in cp932, not in plain Shift_JIS
    text = "会社,メール\n㈱テスト①,a@example.co.jp\n"
    assert decode_csv_bytes(text.encode("cp932")) == text


def test_decode_euc_jp_that_cp932_also_accepts() -> None:
    # these EUC-JP bytes are valid cp932 too (as half-width katakana): the strict
    # cascade alone would pick cp932 and garble the names
    text = "email,名前\na@example.co.jp,すずき\nb@example.co.jp,スズキ\n"
    assert decode_csv_bytes(text.encode("euc_jp")) == text
    # while real cp932 with half-width katakana (bank-style names) stays cp932, even
    # when its bytes happen to be valid EUC-JP as well
    kana = "email,ﾒﾓ\na@example.co.jp,ｽｽﾞｷ\nb@example.co.jp,ﾔﾏﾀﾞ\n"
    kana.encode("cp932").decode("euc_jp")  # the ambiguity this case is about
    assert decode_csv_bytes(kana.encode("cp932")) == kana


def test_decode_refuses_binary() -> None:
    with pytest.raises(ValueError):
        decode_csv_bytes(b"\x80\x81\xff\xfe\x00garbage\x85\xfd")


# ---------------------------------------------------------------- addresses


def test_japanese_header_in_cp932() -> None:
    data = ("会員番号,氏名,メールアドレス,備考\n"
            "1,山田 太郎,Yamada@Example.CO.JP,退会\n"
            "2,佐藤 花子,sato@例え.jp,\n").encode("cp932")
    result = parse_address_csv(data)
    assert result == ([ "yamada@example.co.jp", "sato@xn--r8jz45g.jp"], [])
    assert result.ok


@pytest.mark.parametrize(
    "header", ["email", "E-mail", "Eメール", "ｅメール", "mail", "メール", "アドレス",
               "Mail Address", "電子メールアドレス"],
)
def test_header_names(header: str) -> None:
    data = f"name,{header},tel\nX,x@example.co.jp,03\n".encode()
    assert parse_address_csv(data).addresses == ["x@example.co.jp"]


def test_header_picks_the_address_column_over_other_at_columns() -> None:
    # the notes column has an "@" too; the header says which column is the address
    data = "メモ,メールアドレス\n@home,a@example.co.jp\n@office,b@example.co.jp\n".encode()
    assert parse_address_csv(data).addresses == ["a@example.co.jp", "b@example.co.jp"]


def test_no_header_one_per_line() -> None:
    data = b"a@example.co.jp\r\nB@EXAMPLE.CO.JP\r\n\r\nc@example.com\r\n"
    assert parse_address_csv(data) == (["a@example.co.jp", "b@example.co.jp", "c@example.com"],
                                       [])


def test_no_header_column_found_by_content() -> None:
    data = "山田,a@example.co.jp,03-1234-5678\n佐藤,b@example.co.jp,\n".encode("cp932")
    assert parse_address_csv(data).addresses == ["a@example.co.jp", "b@example.co.jp"]


def test_unknown_header_is_skipped() -> None:
    data = "会員番号,連絡先\n1,a@example.co.jp\n2,b@example.co.jp\n".encode()
    assert parse_address_csv(data).addresses == ["a@example.co.jp", "b@example.co.jp"]


def test_tab_separated() -> None:
    data = b"name\temail\nX\tx@example.co.jp\n"
    assert parse_address_csv(data).addresses == ["x@example.co.jp"]


def test_duplicates_and_spellings_collapse() -> None:
    data = "email\ntanaka@abc.co.jp\nTanaka@ABC.co.jp\nｔａｎａｋａ＠ａｂｃ.co.jp\n".encode()
    assert parse_address_csv(data).addresses == ["tanaka@abc.co.jp"]


def test_bad_rows_reported_with_line_numbers_and_nothing_applied() -> None:
    data = ("メールアドレス,氏名\n"  # line 1
            "a@example.co.jp,山田\n"  # 2
            "not-an-address,佐藤\n"  # 3
            "\n"  # 4: blank lines are skipped, but still counted
            ",鈴木\n"  # 5: empty address
            '"multi\nline",x\n'  # 6-7: a quoted cell spanning two lines
            "b@@example.co.jp,田中\n").encode("cp932")  # 8
    result = parse_address_csv(data)
    assert not result.ok
    assert result.addresses == []  # all or nothing
    assert [e.line for e in result.errors] == [3, 5, 6, 8]
    assert result.errors[0].text == "not-an-address,佐藤"
    assert "invalid address" in result.errors[0].reason
    assert result.errors[1].reason == "empty address"


def test_bad_first_row_is_an_error_not_a_header() -> None:
    # "tanaka-abc.co.jp" lacks its "@": it must be reported, not skipped as a header
    data = b"tanaka-abc.co.jp\nsato@abc.co.jp\n"
    result = parse_address_csv(data)
    assert [e.line for e in result.errors] == [1]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "no addresses"),
        (b"\n\n", "no addresses"),
        ("メールアドレス\n".encode(), "no addresses"),
        (b"a@example.co.jp\x00\n", "NUL"),
        (b"name,tel\nx,03\n", "no column"),
        (b"\x80\x81\xff\xfe\x85\xfd", "not UTF-8"),
    ],
)
def test_file_level_errors(data: bytes, reason: str) -> None:
    result = parse_address_csv(data)
    assert result.addresses == []
    assert len(result.errors) == 1
    assert result.errors[0].line == 0
    assert reason in result.errors[0].reason


def test_oversized_file_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csvread, "MAX_CSV_BYTES", 10)
    result = parse_address_csv(b"a@example.co.jp\n")
    assert result.addresses == [] and "larger" in result.errors[0].reason


# ---------------------------------------------------------------- digests


def test_address_digest_is_keyed_hmac_of_the_canonical_address() -> None:
    key = b"secret-key"
    d = address_digest(key, "tanaka@abc.co.jp")
    assert len(d) == 32
    assert d == hmac.new(key, b"tanaka@abc.co.jp", sha256).digest()
    assert address_digest(key, "Tanaka@ABC.CO.JP") == d
    assert address_digest(key, " ｔａｎａｋａ＠abc.co.jp ") == d
    assert address_digest(b"other-key", "tanaka@abc.co.jp") != d
    assert address_digest(key, "tanaka@abd.co.jp") != d
    with pytest.raises(ValueError):
        address_digest(key, "not an address")


# ---------------------------------------------------------------- customers


def test_customers_with_japanese_header_in_cp932() -> None:
    data = ("顧客名,別名,ドメイン\n"
            "エー商事株式会社,エー商事;A商事|ＡＳ,a-shoji.co.jp; A-SHOJI.COM\n"
            "ビー物産,,@bee.co.jp\n"
            "例え株式会社,例え,例え.jp\n").encode("cp932")
    result = parse_customers_csv(data)
    assert result.errors == []
    assert result.customers == [
        Customer("エー商事株式会社", ("エー商事", "A商事", "AS"), ("a-shoji.co.jp", "a-shoji.com")),
        Customer("ビー物産", (), ("bee.co.jp",)),
        Customer("例え株式会社", ("例え",), ("xn--r8jz45g.jp",)),
    ]


def test_customers_header_in_any_order() -> None:
    data = b"domains,name\nacme.com,Acme\n"
    assert parse_customers_csv(data).customers == [Customer("Acme", (), ("acme.com",))]


def test_customers_without_header_are_positional() -> None:
    data = "エー商事,エー|A,a-shoji.co.jp\nBee,,bee.co.jp|bee.com\n".encode()
    customers, errors = parse_customers_csv(data)
    assert errors == []
    assert customers == [Customer("エー商事", ("エー", "A"), ("a-shoji.co.jp",)),
                         Customer("Bee", (), ("bee.co.jp", "bee.com"))]


def test_customers_bad_rows() -> None:
    data = (b"name,aliases,domains\n"  # 1
            b"Acme,,acme.com\n"  # 2
            b",alias,x.com\n"  # 3: no name
            b"Bee,,bee\n"  # 4: not a domain
            b"ACME,,acme.net\n"  # 5: duplicate name
            b"Cee,,tanaka@cee.com\n")  # 6: an address in the domain column
    result = parse_customers_csv(data)
    assert result.customers == []
    assert [(e.line, e.reason.split(" ")[0]) for e in result.errors] == [
        (3, "empty"), (4, "'bee'"), (5, "customer"), (6, "'tanaka@cee.com'")]
    assert "line 2" in result.errors[2].reason


def test_customers_header_without_name_column() -> None:
    result = parse_customers_csv(b"aliases,domains\nx,x.com\n")
    assert result.customers == []
    assert result.errors == [RowError(1, "aliases,domains", "the header has no name column")]


# ---------------------------------------------------------------- domains


@pytest.mark.parametrize(
    ("given", "expected"),
    [("Example.CO.JP", "example.co.jp"), ("@partner.com", "partner.com"),
     ("*.partner.com", "partner.com"), ("例え.jp", "xn--r8jz45g.jp"),
     ("ｐａｒｔｎｅｒ．ｃｏｍ", "partner.com"), ("partner.com.", "partner.com")],
)
def test_parse_domain(given: str, expected: str) -> None:
    assert parse_domain(given) == expected


@pytest.mark.parametrize("bad", ["", "localhost", "a@b.com", "exa mple.com", "-x.com",
                                 "x_y.com", "1.2.3.4", "a..b.com"])
def test_parse_domain_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_domain(bad)


def test_domains_csv_with_header_and_without() -> None:
    assert parse_domains_csv("取引先,ドメイン\nP社,Partner.co.jp\nQ社,q.com\n".encode("cp932")) == (
        ["partner.co.jp", "q.com"], [])
    assert parse_domains_csv(b"partner.co.jp\nq.com\nq.com\n").domains == ["partner.co.jp",
                                                                           "q.com"]


def test_domains_csv_bad_row() -> None:
    result = parse_domains_csv(b"domain\npartner.co.jp\nnot a domain\n")
    assert result.domains == []
    assert [e.line for e in result.errors] == [3]
