"""Word 97–2003 .doc (guard/inspect/readers/worddoc.py) and Outlook .msg
(guard/inspect/readers/msgfile.py) through extract(): files built by the
[MS-DOC]/[MS-OXMSG]/[MS-CFB] layouts here, and a
.doc written by LibreOffice when it is installed (CI installs it)."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from guard.inspect.extract import ExtractLimits, extract
from guard.inspect.pii.detect import scan
from guard.inspect.run import PII_LIMITS
from guard.mail.message import Attachment
from tests.inspect import fixtures as fx


def att(name: str, data: bytes) -> Attachment:
    return Attachment(filename=name, content_type="", data=data, where=f"attachment:{name}")


def codes(ex: object) -> list[str]:
    return [p[0] for p in ex.problems]  # type: ignore[attr-defined]


def texts(ex: object) -> list[tuple[str, str]]:
    return [(t.where, t.text) for t in ex.texts]  # type: ignore[attr-defined]


# --- .doc ----------------------------------------------------------------------------

def test_doc_pieces_fields_and_table_rows() -> None:
    """Rows end with a cell-style mark whose paragraph has sprmPFTtp (written \\x1d in
    the fixture): a row becomes one line, as in a .docx."""
    data = fx.word97_doc([
        ("社員名簿\r氏名\x07電話\x07\x1d山田 太郎\x07090-1234-5678\x07\x1d", False),
        ("Link: \x13 HYPERLINK \"http://x.example\" \x14example\x15 done\x0bnext\r", True),
        ("\x13 A \x13 B \x14inner\x15 C \x14outer\x15\x0c空\x07\x07\x1d最後\r", False),
    ])
    ex = extract(att("名簿.doc", data))
    assert ex.problems == []
    assert texts(ex) == [("attachment:名簿.doc",
                          "社員名簿\n氏名\t電話\n山田 太郎\t090-1234-5678\n"
                          "Link: example done\nnext\nouter\n空\t\n最後\n")]
    found = {f.symbol: f.count for f in scan(ex.texts, [], PII_LIMITS)}
    assert found["pii.phone"] == 1


def test_doc_with_its_table_stream_named_0table() -> None:
    ex = extract(att("a.doc", fx.word97_doc([("本文 03-1234-5678\r", False)], table="0Table")))
    assert ex.problems == [] and texts(ex) == [("attachment:a.doc", "本文 03-1234-5678\n")]


def test_fields_deeply_nested_or_never_closed() -> None:
    deep = "\x13" * 100_000 + "code" + "\x14\x15" * 100_000  # linear, not quadratic
    ex = extract(att("a.doc", fx.word97_doc([("前" + deep + "後\r", False)])))
    assert texts(ex) == [("attachment:a.doc", "前後\n")]
    # a field never closed, stray marks: nothing is thrown away, the marks go
    ex = extract(att("b.doc", fx.word97_doc([("前文\x13\r山田 太郎 090-1234-5678\r", False)])))
    assert texts(ex) == [("attachment:b.doc", "前文\n山田 太郎 090-1234-5678\n")]
    ex = extract(att("c.doc", fx.word97_doc([("a\x14b\x15c\r", True)])))
    assert texts(ex) == [("attachment:c.doc", "abc\n")]


def test_doc_text_cap_is_reported_even_when_fields_shrink_the_text() -> None:
    code = "\x13 " + "x" * 200 + " \x14結果\x15"
    data = fx.word97_doc([(code + " 090-1234-5678\r", False)])
    ex = extract(att("a.doc", data), ExtractLimits(max_text_chars=150))
    assert codes(ex) == ["too_large"]


def test_doc_text_cap() -> None:
    data = fx.word97_doc([("あ" * 5000 + "\r", False), ("b" * 5000, True)])
    ex = extract(att("a.doc", data), ExtractLimits(max_text_chars=6000))
    assert codes(ex) == ["too_large"]
    assert sum(len(t) for _, t in texts(ex)) == 6000


def test_encrypted_doc_is_reported_as_encrypted() -> None:
    data = fx.word97_doc([("秘密\r", False)], encrypted=True)
    ex = extract(att("給与.doc", data))
    assert codes(ex) == ["encrypted"] and ex.texts == []


@pytest.mark.parametrize("streams", [
    {"WordDocument": b"x" * 100},  # no FIB
    {"WordDocument": fx.cfb_stream(fx.word97_doc([("a\r", False)]), "WordDocument")},
])
def test_broken_doc_is_a_parse_error(streams: dict[str, bytes]) -> None:
    # (the second has its FIB but not the table stream the FIB names)
    ex = extract(att("old.doc", fx.cfb(streams)))
    assert codes(ex) == ["parse_error"]


def test_doc_piece_past_the_stream_is_a_parse_error() -> None:
    data = bytearray(fx.word97_doc([("abc\r", False)]))
    word = fx.cfb_stream(bytes(data), "WordDocument")
    table = fx.cfb_stream(bytes(data), "1Table")
    ex = extract(att("a.doc", fx.cfb({"WordDocument": word[:1030], "1Table": table})))
    assert codes(ex) == ["parse_error"]


def test_other_ole_file_is_unknown_binary() -> None:
    ex = extract(att("thing.bin", fx.cfb({"Contents": b"x" * 100})))
    assert codes(ex) == ["unknown_binary"]


def _soffice() -> str | None:
    found = shutil.which("soffice")
    if found is None and os.environ.get("GUARD_REQUIRE_SOFFICE") == "1":
        pytest.fail("soffice (LibreOffice) is required here (GUARD_REQUIRE_SOFFICE=1)")
    return found


def test_doc_written_by_libreoffice_reads_like_its_docx(tmp_path: Path) -> None:
    soffice = _soffice()
    if soffice is None:
        pytest.skip("LibreOffice is not installed (Debian: libreoffice-writer-nogui)")
    source = fx.docx(["社員の皆様へ 山田 太郎 090-1234-5678", "リンク付き R&D 部\tタブ"],
                     table=[["氏名", "電話", "メール"], ["佐藤 花子", "", "hanako@example.org"],
                            ["鈴木 一郎", "080-1111-2222", ""]],
                     header_text="社外秘")
    (tmp_path / "in.docx").write_bytes(source)
    subprocess.run([soffice, "--headless", f"-env:UserInstallation=file://{tmp_path}/lo",
                    "--convert-to", "doc", "--outdir", str(tmp_path), str(tmp_path / "in.docx")],
                   check=True, capture_output=True, timeout=120)
    doc = extract(att("in.doc", (tmp_path / "in.doc").read_bytes()))
    docx = extract(att("in.docx", source))
    assert doc.problems == [] and docx.problems == []
    # the same lines: paragraphs, a tab, table rows with their empty cells, the header
    assert texts(doc)[0][1].rstrip("\n") == texts(docx)[0][1].rstrip("\n")
    found = {f.symbol: f.count for f in scan(doc.texts, [], PII_LIMITS)}
    assert found == {f.symbol: f.count for f in scan(docx.texts, [], PII_LIMITS)}
    assert found["pii.phone"] == 2


def test_files_embedded_in_a_doc_are_read() -> None:
    people = fx.xlsx([["氏名", "電話番号", "メールアドレス"]] + [
        [f"山田 太郎{i}", f"090-1234-{5600 + i}", f"taro{i}@example.org"] for i in range(12)])
    native = (struct.pack("<IH", 0, 2) + "名簿.csv".encode("cp932") + b"\x00C:\\x\x00"
              + bytes(8) + b"C:\\tmp\\x\x00" + struct.pack("<I", 9) + b"a,b\r\n1,2\r\n")
    pool = {"ObjectPool": {"_1001": {"Package": people, "\x01CompObj": bytes(8)},
                           "_1002": {"\x01Ole10Native": native},
                           "_1003": {"Workbook": bytes(600)}}}
    ex = extract(att("報告.doc", fx.word97_doc([("本文\r", False)], extra=pool)))
    assert [(c, w) for c, w, _ in ex.problems] == [
        ("unknown_binary", "attachment:報告.doc/ObjectPool/_1003")]
    assert [t.where for t in ex.tables] == ["attachment:報告.doc/ObjectPool/_1001",
                                            "attachment:報告.doc/ObjectPool/_1002/名簿.csv"]
    found = {f.symbol: f for f in scan([], ex.tables, PII_LIMITS)}
    assert found["pii.people_list"].count == 12


# --- .msg ----------------------------------------------------------------------------

PEOPLE_CSV = ("氏名,電話番号,メールアドレス\r\n" + "".join(
    f"山田 太郎{i},090-1234-{5600 + i},taro{i}@example.org\r\n" for i in range(12))
              ).encode("cp932")


def forwarded() -> bytes:
    inner = fx.outlook_msg("社内秘: 候補者", "マイナンバー（個人番号） 1234 5678 9018 です。",
                           [("履歴書.doc", fx.word97_doc([("佐藤 花子\r", False)]))],
                           codepage=932, string8=True, top=False)
    return fx.cfb(fx.outlook_msg("転送: 顧客一覧", "一覧を送ります。",
                                 [("顧客.csv", PEOPLE_CSV), ("元のメール", inner)],
                                 codepage=932))


def test_msg_subject_body_attachments_and_an_attached_item() -> None:
    ex = extract(att("転送.msg", forwarded()))
    assert ex.problems == []
    assert texts(ex) == [
        ("attachment:転送.msg", "転送: 顧客一覧"),
        ("attachment:転送.msg", "一覧を送ります。"),
        ("attachment:転送.msg/顧客.csv", PEOPLE_CSV.decode("cp932")),
        ("attachment:転送.msg/元のメール", "社内秘: 候補者"),  # 8-bit, code page 932
        ("attachment:転送.msg/元のメール", "マイナンバー（個人番号） 1234 5678 9018 です。"),
        ("attachment:転送.msg/元のメール/履歴書.doc", "佐藤 花子\n"),
    ]
    assert [w for w, _ in ex.inner_names] == [
        "attachment:転送.msg/顧客.csv", "attachment:転送.msg/元のメール",
        "attachment:転送.msg/元のメール/履歴書.doc"]
    found = {f.symbol: f for f in scan([t for t in ex.texts if "csv" not in t.where],
                                       ex.tables, PII_LIMITS)}
    assert found["pii.people_list"].where == "attachment:転送.msg/顧客.csv"
    assert found["pii.people_list"].count == 12
    assert found["pii.my_number"].where == "attachment:転送.msg/元のメール"


def test_msg_html_body_in_its_own_charset_or_the_internet_code_page() -> None:
    html = ("<html><head><style>p{}</style></head><body><p>本文 山田 太郎 03-1234-5678</p>"
            "</body></html>")
    for body, internet in [
            (html.replace("<head>", '<head><meta charset="shift_jis">').encode("cp932"), None),
            (html.encode("iso-2022-jp"), 50220),  # Outlook: 0x3FFD 932, 0x3FDE 50220
            (html.encode("utf-8"), 65001)]:
        tree = fx.outlook_msg("件名", "", [], codepage=932)
        del tree["__substg1.0_1000001F"]
        tree["__substg1.0_10130102"] = body
        if internet:
            tree["__properties_version1.0"] += struct.pack("<IIiI", (0x3FDE << 16) | 3, 2,
                                                           internet, 0)
        ex = extract(att("a.msg", fx.cfb(tree)))
        assert ex.problems == []
        assert [t for _, t in texts(ex)][1].strip() == "本文 山田 太郎 03-1234-5678"


def test_msg_with_a_body_only_in_rtf_is_reported() -> None:
    tree = fx.outlook_msg("件名", "", [])
    del tree["__substg1.0_1000001F"]
    tree["__substg1.0_10090102"] = b"LZFu compressed RTF"
    ex = extract(att("a.msg", fx.cfb(tree)))
    assert codes(ex) == ["unknown_binary"] and texts(ex) == [("attachment:a.msg", "件名")]


def test_msg_ole_objects_and_nesting_past_the_limit_are_reported_and_named() -> None:
    item = fx.outlook_msg("三", "本文", [], top=False)
    for _ in range(6):
        item = fx.outlook_msg("入れ子", "本文", [("次", item)], top=False)
    tree = fx.outlook_msg("外", "本文", [("深い", item), ("図.xlsx", {"CONTENTS": bytes(10)})])
    ex = extract(att("a.msg", fx.cfb(tree)))
    assert sorted(codes(ex)) == ["too_deep", "unknown_binary"]
    assert ex.texts[0].text == "外"
    # names are checked (keywords, file types) even when the content is not read
    assert ("attachment:a.msg/図.xlsx", "図.xlsx") in ex.inner_names


def _entry(data: bytes, path: list[str]) -> int:
    """The offset of a directory entry of a compound file built by fx.cfb."""
    import olefile

    sid = olefile.OleFileIO(io.BytesIO(data))._find(path)
    first_dir_sector = struct.unpack_from("<I", data, 0x30)[0]
    return (first_dir_sector + 1) * 512 + 128 * sid  # (v3: one directory chain, in order)


def test_broken_truncated_or_overlapping_compound_files_are_parse_errors() -> None:
    big = b"a,b\r\n" * 2000  # regular sectors
    data = fx.cfb(fx.outlook_msg("件名", "本文", [("x.csv", big)]))
    assert codes(extract(att("half.msg", data[: len(data) // 2]))) == ["parse_error"]
    # a sector chain that ends too early: not a shorter stream
    entry = _entry(data, ["__attach_version1.0_#00000000", "__substg1.0_37010102"])
    start = struct.unpack_from("<I", data, entry + 116)[0]
    fat = (struct.unpack_from("<I", data, 0x4C)[0] + 1) * 512
    cut = bytearray(data)
    struct.pack_into("<I", cut, fat + 4 * start, 0xFFFFFFFE)
    assert codes(extract(att("cut.msg", bytes(cut)))) == ["parse_error"]
    # other streams pointed at the same sectors: more stream than file
    tree = fx.outlook_msg("件名", "本文", [("x.csv", big)] + [(f"{i}.csv", b"z") for i in range(5)])
    shared = bytearray(fx.cfb(tree))
    source = _entry(bytes(shared), ["__attach_version1.0_#00000000", "__substg1.0_37010102"])
    for i in range(1, 6):
        at = _entry(bytes(shared), [f"__attach_version1.0_#{i:08X}", "__substg1.0_37010102"])
        shared[at + 116:at + 128] = shared[source + 116:source + 128]
    ex = extract(att("shared.msg", bytes(shared)))
    assert codes(ex) == ["parse_error"] and ex.tables == []


def test_cfb_builder_matches_olefile() -> None:
    import olefile

    tree = {"a": b"x" * 5000, "s": {"t": b"small", "u": {"v": b""}}}
    ole = olefile.OleFileIO(io.BytesIO(fx.cfb(tree)))
    assert sorted(ole.listdir(streams=True, storages=True)) == [
        ["a"], ["s"], ["s", "t"], ["s", "u"], ["s", "u", "v"]]
    assert ole.openstream("a").read() == b"x" * 5000
    assert ole.openstream(["s", "t"]).read() == b"small"
