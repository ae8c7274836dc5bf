"""extract(): per-format text/table extraction, archives, bombs, encryption."""

from __future__ import annotations

import os
import time

import pytest

from guard.inspect.extract import Extracted, ExtractLimits, detect_kind, extract, extract_message
from guard.mail.message import Attachment
from tests.inspect import fixtures as fx

HEADER = ["氏名", "電話", "メール", "住所"]
ROWS = [["山田 太郎", "090-1234-5678", "taro@example.jp", "東京都千代田区1-1"],
        ["佐藤 花子", "080-2222-3333", "hanako@example.jp", "大阪府大阪市北区2-2"]]


def att(name: str, data: bytes, content_type: str = "application/octet-stream",
        charset: str = "") -> Attachment:
    return Attachment(filename=name, content_type=content_type, data=data,
                      where=f"attachment:{name}", charset=charset)


def text_of(ex: Extracted) -> str:
    return "\n".join(t.text for t in ex.texts)


def codes(ex: Extracted) -> list[str]:
    return [p[0] for p in ex.problems]


# --- office and PDF --------------------------------------------------------------------

def test_xlsx_table_and_text() -> None:
    data = fx.xlsx([HEADER, *ROWS, ["鈴木 一郎", 9012345678, "ichiro@example.jp", None]])
    ex = extract(att("顧客.xlsx", data))
    assert ex.problems == []
    assert len(ex.tables) == 1
    table = ex.tables[0]
    assert table.where == "attachment:顧客.xlsx"
    assert table.rows[0] == HEADER
    assert table.rows[1] == ROWS[0]
    assert table.rows[3] == ["鈴木 一郎", "9012345678", "ichiro@example.jp"]  # no ".0"
    assert "hanako@example.jp" in text_of(ex)


def test_xlsx_detected_by_magic_despite_wrong_name() -> None:
    data = fx.xlsx([HEADER, *ROWS])
    ex = extract(att("report.dat", data))
    assert ex.tables and ex.tables[0].rows[0] == HEADER


def test_cell_limit_reports_truncation() -> None:
    data = fx.xlsx([HEADER, *ROWS * 10])
    ex = extract(att("a.xlsx", data), ExtractLimits(max_cells=10))
    assert "too_large" in codes(ex)
    assert sum(len(r) for r in ex.tables[0].rows) <= 10


def test_ods_and_odt() -> None:
    ex = extract(att("名簿.ods", fx.ods([HEADER, *ROWS])))
    assert ex.problems == []
    assert ex.tables[0].rows == [HEADER, *ROWS]
    ex = extract(att("memo.odt", fx.odt(["社外秘の連絡", "電話 03-1234-5678"])))
    assert ex.problems == []
    assert text_of(ex) == "社外秘の連絡\n電話 03-1234-5678\n"


def test_docx_paragraphs_table_and_header() -> None:
    data = fx.docx(["社員の皆様へ", "連絡先は下表の通りです。"], table=[HEADER, ROWS[0]],
                   header_text="社外秘")
    ex = extract(att("連絡先.docx", data))
    assert ex.problems == []
    text = text_of(ex)
    for needle in ("社員の皆様へ", "連絡先は下表の通りです。", "090-1234-5678", "社外秘"):
        assert needle in text
    assert "氏名\t電話\tメール\t住所" in text  # table cells stay separated


def test_docx_with_embedded_workbook_is_extracted_recursively() -> None:
    inner = fx.xlsx([HEADER, *ROWS])
    data = fx.add_zip_member(fx.docx(["本文"]), "word/embeddings/Microsoft_Excel_Worksheet.xlsx",
                             inner)
    ex = extract(att("a.docx", data))
    assert ex.tables and ex.tables[0].rows[0] == HEADER
    assert ex.tables[0].where == "attachment:a.docx/word/embeddings/Microsoft_Excel_Worksheet.xlsx"


def test_docx_with_dtd_is_refused() -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
            b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
            b"<w:body><w:p><w:r><w:t>&lol2;</w:t></w:r></w:p></w:body></w:document>")
    data = fx.std_zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": bomb})
    ex = extract(att("evil.docx", data))
    assert codes(ex) == ["parse_error"]
    assert "lol" not in text_of(ex)


def test_pptx_slides_and_notes_in_order() -> None:
    data = fx.pptx([f"スライド{i}" for i in range(1, 12)], notes=["発表者メモ 03-1111-2222"])
    ex = extract(att("deck.pptx", data))
    text = text_of(ex)
    assert text.index("スライド2\n") < text.index("スライド10")  # numeric, not lexical
    assert "発表者メモ 03-1111-2222" in text


def test_pdf_text() -> None:
    data = fx.pdf([["Customer list", "Tel 090-1234-5678 taro@example.jp"], ["page two"]])
    ex = extract(att("list.pdf", data))
    assert ex.problems == []
    assert "090-1234-5678" in text_of(ex) and "page two" in text_of(ex)


@pytest.mark.parametrize("pages", [
    [["Customer list", "Tel 090-1234-5678 taro@example.jp"], ["page two"]],
    [[], ["only the second page"]],  # an empty page: pdfium writes only the NUL
    [["(a) \\ b", "x" * 3000]],  # one long line
])
def test_pdf_page_text_in_one_pdfium_pass_equals_pypdfium2(pages: list[list[str]]) -> None:
    import pypdfium2 as pdfium

    from guard.inspect.readers.pdf import _bounded_text

    doc = pdfium.PdfDocument(fx.pdf(pages))
    try:
        for i in range(len(doc)):
            page = doc[i]
            textpage = page.get_textpage()
            assert _bounded_text(textpage, page) == textpage.get_text_bounded()
            textpage.close()
            page.close()
    finally:
        doc.close()


def test_pdf_page_with_very_many_characters_is_read_by_pypdfium2(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from guard.inspect.readers import pdf

    data = fx.pdf([["Customer list", "Tel 090-1234-5678 taro@example.jp"]])
    expected = extract(att("a.pdf", data))
    monkeypatch.setattr(pdf, "_ONE_PASS_MAX_CHARS", 10)
    assert extract(att("a.pdf", data)) == expected
    assert "090-1234-5678" in text_of(expected)


def test_encrypted_pdf() -> None:
    ex = extract(att("secret.pdf", fx.encrypted_pdf(["secret 090-1234-5678"])))
    assert codes(ex) == ["encrypted"]
    assert "090" not in text_of(ex)


def test_pdf_without_text_layer_is_flagged() -> None:
    ex = extract(att("scan.pdf", fx.pdf([[], []])))
    assert codes(ex) == ["no_text"]


def test_broken_pdf_is_a_parse_error() -> None:
    ex = extract(att("broken.pdf", b"%PDF-1.4\n garbage that is not a pdf"))
    assert codes(ex) == ["parse_error"]


def test_encrypted_ooxml_ole_container() -> None:
    data = fx.ole_file({"EncryptionInfo": b"\x04\x00\x04\x00\x40\x00\x00\x00" + b"x" * 64,
                        "EncryptedPackage": os.urandom(5000)})
    ex = extract(att("給与.xlsx", data))
    assert codes(ex) == ["encrypted"]


# --- text and CSV encodings ------------------------------------------------------------

CSV_TEXT = "氏名,電話,住所\r\n山田太郎,090-1234-5678,東京都千代田区丸の内1-1\r\n" \
           "髙橋①子,080-9999-0000,大阪府～北区\r\n"


@pytest.mark.parametrize(("codec", "expected_name"), [
    ("cp932", "髙橋①子"), ("utf-8", "髙橋①子"), ("utf-8-sig", "髙橋①子"),
])
def test_csv_encodings(codec: str, expected_name: str) -> None:
    ex = extract(att("list.csv", CSV_TEXT.encode(codec)))
    assert ex.problems == []
    assert ex.tables[0].rows[0] == ["氏名", "電話", "住所"]
    assert ex.tables[0].rows[2][0] == expected_name
    assert "\ufeff" not in ex.tables[0].rows[0][0]


def test_csv_euc_jp_short_sample() -> None:
    # charset-normalizer calls short EUC-JP Korean or Chinese; the cascade must not
    ex = extract(att("a.csv", "氏名,住所\n山田,東京\n".encode("euc_jp")))
    assert ex.tables[0].rows == [["氏名", "住所"], ["山田", "東京"]]


def test_large_cp932_csv_sample_cut_mid_character() -> None:
    data = ("山田太郎,東京都千代田区,090-1234-5678\n" * 20000).encode("cp932")
    ex = extract(att("big.csv", data), ExtractLimits(detect_sample_bytes=64 * 1024 + 1))
    assert ex.tables[0].rows[-1] == ["山田太郎", "東京都千代田区", "090-1234-5678"]


def _csv_rows(data: bytes, sample: int) -> tuple[int, int, list[tuple[str, str, str]]]:
    ex = extract(att("big.csv", data), ExtractLimits(sheet_sample_cells=sample))
    table = ex.tables[0]
    return len(table.rows), table.more_rows, ex.problems


def test_a_big_csv_is_sampled_and_its_other_rows_counted() -> None:
    """The first sheet_sample_cells cells are rows, the rest counted: lines of only
    delimiters and spaces are not rows, a quoted cell may hold a line break, and an
    error after the sample is the same problem a full read gives. The text has all."""
    rows = ["氏名,住所,電話"] + [f"山田{i},東京都千代田区{i},090-1234-{i:04d}"
                              for i in range(3000)]
    plain = "\r\n".join([*rows[:1500], ",,", " , ,", "", *rows[1500:]]) + "\r\n"
    assert _csv_rows(plain.encode("cp932"), 30) == (10, 2991, [])
    assert _csv_rows(plain.encode("cp932"), 10**6) == (3001, 0, [])
    quoted = plain.replace("山田2999,", '"山田\r\n2999",')
    assert _csv_rows(quoted.encode("cp932"), 30) == (10, 2991, [])
    broken = plain.replace("山田2999,", "山田\r2999,")
    full = _csv_rows(broken.encode("cp932"), 10**6)
    assert full[2] and full[2][0][0] == "parse_error"
    sampled = _csv_rows(broken.encode("cp932"), 30)
    assert sampled[0] + sampled[1] == full[0] and sampled[2] == full[2]
    ex = extract(att("big.csv", plain.encode("cp932")), ExtractLimits(sheet_sample_cells=30))
    assert "090-1234-2999" in text_of(ex)
    # a sample cut by the cell limit, not by its size, is reported as for sheets
    ex = extract(att("big.csv", plain.encode("cp932")),
                 ExtractLimits(sheet_sample_cells=30, max_cells=21))
    assert len(ex.tables[0].rows) == 7 and ex.tables[0].more_rows == 2994
    assert [p[0] for p in ex.problems] == ["too_large"]


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_rows_counted_without_the_csv_reader_equal_its_count(delimiter: str) -> None:
    """The count after the sample (no quotes, no bare CR: a row is a line) equals what
    the csv reader gives, for lines of any mix of values, delimiters and whitespace."""
    import csv
    import io
    import random

    from guard.inspect.readers.csvfile import _count_rows

    rng = random.Random(5)
    pieces = ["\n", "\r\n", delimiter, " ", "\t", "\u3000", "\x0b", "\x1f", "\x85", "\xa0",
              "山田", "a", ";", "\n\n"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 15)))
        fast = _count_rows(text, 0, None, delimiter)
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        assert fast == (sum(any(c.strip() for c in row) for row in reader), ""), repr(text)


def test_a_tsv_line_of_many_tabs_is_counted_not_backtracked() -> None:
    """A tab is whitespace and the TSV's delimiter: 60 empty columns before a value once
    cost 2^60 tries. Run in a thread, so that a regression fails here, not hangs."""
    import threading

    from guard.inspect.readers.csvfile import _count_rows

    text = "a\tb\n" + "\t" * 60 + "x\n" + "\t" * 60 + "\n" + "\t" * 5000 + "y\n"
    out: list[tuple[int, str]] = []
    worker = threading.Thread(target=lambda: out.append(_count_rows(text, 0, None, "\t")),
                              daemon=True)
    worker.start()
    worker.join(30)  # a hang detector, not a timing target: the count takes microseconds
    assert out == [(3, "")]


def test_tsv_and_iso2022jp_text() -> None:
    ex = extract(att("a.tsv", "氏名\t電話\n山田\t090-1111-2222\n".encode("cp932")))
    assert ex.tables[0].rows[1] == ["山田", "090-1111-2222"]
    jis = fx.jis("メモ ") + fx.jis_nec(fx.NEC_MARU1) + b"\n"
    ex = extract(att("memo.txt", jis, "text/plain"))
    assert text_of(ex) == "メモ ①\n"


def test_declared_charset_hint_for_text_attachment() -> None:
    ex = extract(att("memo.txt", "café résumé".encode("latin-1"), "text/plain", "iso-8859-1"))
    assert text_of(ex) == "café résumé"


# --- zip archives ----------------------------------------------------------------------

def test_zip_nested_with_cp932_names() -> None:
    inner = fx.raw_zip([fx.RawEntry("名簿.csv".encode("cp932"), CSV_TEXT.encode("cp932"),
                                    deflate=True)])
    outer = fx.raw_zip([
        fx.RawEntry("資料/内側.zip".encode("cp932"), inner),
        fx.RawEntry(b"readme.txt", b"hello zip"),
        fx.RawEntry("utf8名.txt".encode(), "UTF-8 の名前".encode(), flags=0x800),
    ])
    ex = extract(att("送付.zip", outer))
    assert ex.problems == []
    names = [n for _w, n in ex.inner_names]
    assert names == ["資料/内側.zip", "readme.txt", "utf8名.txt", "名簿.csv"]
    csv_where = "attachment:送付.zip/資料/内側.zip/名簿.csv"
    assert (csv_where, "名簿.csv") in ex.inner_names
    assert [t.where for t in ex.tables] == [csv_where]
    assert ex.tables[0].rows[2][0] == "髙橋①子"
    assert "hello zip" in text_of(ex) and "UTF-8 の名前" in text_of(ex)


def test_encrypted_zip_lists_names() -> None:
    data = fx.raw_zip([
        fx.RawEntry("顧客名簿.xlsx".encode("cp932"), os.urandom(200), flags=0x1),
        fx.RawEntry("パスワード.txt".encode("cp932"), os.urandom(50), flags=0x1),
        fx.RawEntry(b"open.txt", b"visible text"),
    ])
    ex = extract(att("PPAP.zip", data))
    assert codes(ex) == ["encrypted"]
    assert ex.problems[0][1] == "attachment:PPAP.zip"
    assert [n for _w, n in ex.inner_names] == ["顧客名簿.xlsx", "パスワード.txt", "open.txt"]
    assert "visible text" in text_of(ex)


def test_zip_bomb_stops_while_streaming() -> None:
    data = fx.zero_bomb(200)
    assert len(data) < 2_000_000
    start = time.perf_counter()
    ex = extract(att("bomb.zip", data))
    assert time.perf_counter() - start < 2.0
    assert codes(ex) == ["bomb"]
    assert "ratio" in ex.problems[0][2]


def test_member_size_limit_applies_to_incompressible_data() -> None:
    data = fx.std_zip({"a.bin": os.urandom(300_000)})
    ex = extract(att("a.zip", data), ExtractLimits(max_member_bytes=100_000))
    assert codes(ex) == ["bomb"]


def test_total_decompressed_budget_is_shared() -> None:
    data = fx.std_zip({f"m{i}.bin": os.urandom(60_000) for i in range(5)})
    ex = extract(att("a.zip", data), ExtractLimits(max_total_bytes=150_000))
    assert "bomb" in codes(ex)


def test_overlapping_entries_are_rejected() -> None:
    data = fx.raw_zip([fx.RawEntry(b"a.txt", b"A" * 100), fx.RawEntry(b"b.txt", b"B" * 100)],
                      overlap_second_with_first=True)
    ex = extract(att("overlap.zip", data))
    assert codes(ex) == ["bomb"]
    assert "overlapping" in ex.problems[0][2]


def test_archive_depth_limit() -> None:
    data = fx.std_zip({"deep.txt": b"bottom"})
    for i in range(7):
        data = fx.std_zip({f"level{i}.zip": data})
    ex = extract(att("deep.zip", data))
    assert "too_deep" in codes(ex)
    assert "bottom" not in text_of(ex)


def test_too_many_files_in_archive() -> None:
    data = fx.std_zip({f"f{i}.txt": b"x" for i in range(30)})
    ex = extract(att("many.zip", data), ExtractLimits(max_files_per_archive=10))
    assert "too_many_parts" in codes(ex)
    assert len(ex.inner_names) == 10


# --- attached messages and other types -------------------------------------------------

def test_eml_attachment_is_parsed_recursively() -> None:
    inner = fx.multipart([
        fx.Part("text/plain; charset=iso-2022-jp",
                fx.jis("転送します ") + fx.jis_nec(fx.NEC_KABU), "7bit"),
        fx.attachment("名簿.csv", CSV_TEXT.encode("cp932"), "text/csv"),
    ], subject="=?UTF-8?B?6Lui6YCB?=")
    ex = extract(att("fwd.eml", inner))
    assert ex.problems == []
    text = text_of(ex)
    assert "転送" in text and "転送します ㈱" in text
    assert ("attachment:fwd.eml/名簿.csv", "名簿.csv") in ex.inner_names
    assert ex.tables[0].where == "attachment:fwd.eml/名簿.csv"


def test_unknown_binary_and_images() -> None:
    ex = extract(att("blob.bin", b"\x00\x01\x02\x03" * 1000))
    assert codes(ex) == ["unknown_binary"]
    ex = extract(att("a.7z", b"7z\xbc\xaf\x27\x1c" + b"\x00" * 100))
    assert codes(ex) == ["unknown_binary"] and "7z" in ex.problems[0][2]
    ex = extract(att("logo.png", b"\x89PNG\r\n\x1a\n" + os.urandom(100), "image/png"))
    assert ex.problems == [] and ex.texts == []


def test_smime_and_pgp() -> None:
    armored = b"-----BEGIN PGP MESSAGE-----\n\nhQEMA...\n-----END PGP MESSAGE-----\n"
    assert codes(extract(att("encrypted.asc", armored))) == ["encrypted"]
    assert codes(extract(att("smime.p7m", os.urandom(300), "application/pkcs7-mime"))) == [
        "encrypted"]
    signed = extract(att("smime.p7s", os.urandom(300), "application/pkcs7-signature"))
    assert signed.problems == [] and signed.texts == []


def test_detect_kind_prefers_magic() -> None:
    assert detect_kind(att("x.csv", fx.pdf([["a"]]))) == "pdf"
    assert detect_kind(att("x.txt", fx.std_zip({"a": b"b"}))) == "zip"
    assert detect_kind(att("noext", b"From: a@b.c\r\nSubject: x\r\n\r\nbody")) == "eml"


def test_extract_never_raises_on_garbage() -> None:
    for data in (b"", b"PK\x03\x04garbage", b"PK\x05\x06" + b"\x00" * 18, fx.pdf([["x"]])[:50],
                 b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100):
        ex = extract(att("x.bin", data))
        assert isinstance(ex, Extracted)


def test_extract_message_end_to_end() -> None:
    raw = fx.multipart([
        fx.Part("text/plain; charset=shift_jis", "添付をご確認ください①".encode("cp932"), "8bit"),
        fx.attachment("顧客.xlsx", fx.xlsx([HEADER, *ROWS])),
        fx.attachment("PPAP.zip", fx.raw_zip([fx.RawEntry(b"list.csv", b"x", flags=1)])),
    ])
    view = extract_message(raw, "alice@example.jp", ["bob@example.com"])
    assert any(t.where == "body" and "①" in t.text for t in view.texts)
    assert view.tables[0].where == "attachment:顧客.xlsx"
    assert view.problems == [("encrypted", "attachment:PPAP.zip", "1 encrypted member(s)")]
    assert view.inner_names == [("attachment:PPAP.zip/list.csv", "list.csv")]
