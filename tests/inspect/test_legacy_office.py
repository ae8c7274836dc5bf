"""Word 97–2003 .doc (guard/inspect/worddoc.py) and Outlook .msg (guard/inspect/msgfile.py)
through extract(): files built by the [MS-DOC]/[MS-OXMSG]/[MS-CFB] layouts here, and a
.doc written by LibreOffice when it is installed (CI installs it)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from guard.inspect.extract import ExtractLimits, extract
from guard.inspect.pii import scan
from guard.inspect.run import PII_LIMITS
from guard.message import Attachment
from tests.inspect import fixtures as fx


def att(name: str, data: bytes) -> Attachment:
    return Attachment(filename=name, content_type="", data=data, where=f"attachment:{name}")


def codes(ex: object) -> list[str]:
    return [p[0] for p in ex.problems]  # type: ignore[attr-defined]


def texts(ex: object) -> list[tuple[str, str]]:
    return [(t.where, t.text) for t in ex.texts]  # type: ignore[attr-defined]


# --- .doc ----------------------------------------------------------------------------

def test_doc_pieces_fields_and_table_marks() -> None:
    data = fx.word97_doc([
        ("社員名簿\r山田 太郎\x07090-1234-5678\x07\x07\r", False),  # UTF-16 piece
        ("Link: \x13 HYPERLINK \"http://x.example\" \x14example\x15 done\x0bnext\r", True),
        ("\x13 A \x13 B \x14inner\x15 C \x14outer\x15\x0c最後\r", False),
    ])
    ex = extract(att("名簿.doc", data))
    assert ex.problems == []
    assert texts(ex) == [("attachment:名簿.doc",
                          "社員名簿\n山田 太郎\t090-1234-5678\t\t\n"
                          "Link: example done\nnext\nouter\n最後\n")]
    assert "pii.phone" in {f.symbol for f in scan(ex.texts, [], PII_LIMITS)}


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
    source = fx.docx(["社員の皆様へ 山田 太郎 090-1234-5678", "最後 03-1234-5678 R&D 部"],
                     table=[["氏名", "電話"], ["佐藤 花子", "080-1111-2222"]],
                     header_text="社外秘")
    (tmp_path / "in.docx").write_bytes(source)
    subprocess.run([soffice, "--headless", f"-env:UserInstallation=file://{tmp_path}/lo",
                    "--convert-to", "doc", "--outdir", str(tmp_path), str(tmp_path / "in.docx")],
                   check=True, capture_output=True, timeout=120)
    doc = extract(att("in.doc", (tmp_path / "in.doc").read_bytes()))
    docx = extract(att("in.docx", source))
    assert doc.problems == [] and docx.problems == []
    words = lambda ex: sorted("".join(t for _, t in texts(ex)).split())  # noqa: E731
    assert words(doc) == words(docx)
    found = {f.symbol: f.count for f in scan(doc.texts, [], PII_LIMITS)}
    assert found == {f.symbol: f.count for f in scan(docx.texts, [], PII_LIMITS)}
    assert found["pii.phone"] == 3


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


def test_msg_html_body_when_there_is_no_plain_one() -> None:
    tree = fx.outlook_msg("件名", "", [])
    del tree["__substg1.0_1000001F"]
    tree["__substg1.0_10130102"] = ('<html><head><meta charset="shift_jis"><style>p{}</style>'
                                    "</head><body><p>本文 03-1234-5678</p></body></html>"
                                    ).encode("cp932")
    ex = extract(att("a.msg", fx.cfb(tree)))
    assert ex.problems == []
    assert [t for _, t in texts(ex)][1].strip() == "本文 03-1234-5678"


def test_msg_ole_objects_and_nesting_past_the_limit_are_reported() -> None:
    item = fx.outlook_msg("三", "本文", [], top=False)
    for _ in range(6):
        item = fx.outlook_msg("入れ子", "本文", [("次", item)], top=False)
    tree = fx.outlook_msg("外", "本文", [("深い", item), ("図", {"CONTENTS": b"\x00" * 10})])
    ex = extract(att("a.msg", fx.cfb(tree)))
    assert sorted(codes(ex)) == ["too_deep", "unknown_binary"]
    assert ex.texts[0].text == "外"


def test_broken_msg_is_a_parse_error() -> None:
    ex = extract(att("a.msg", fx.cfb({"__substg1.0_0037001F": b"\x00\xd8"})))  # lone surrogate
    assert ex.problems == [] or codes(ex) == ["parse_error"]
    data = fx.cfb(fx.outlook_msg("件名", "本文", []))
    cut = extract(att("cut.msg", data[: len(data) // 2]))
    assert codes(cut) == ["parse_error"]


def test_cfb_builder_matches_olefile() -> None:
    import olefile

    tree = {"a": b"x" * 5000, "s": {"t": b"small", "u": {"v": b""}}}
    ole = olefile.OleFileIO(io.BytesIO(fx.cfb(tree)))
    assert sorted(ole.listdir(streams=True, storages=True)) == [
        ["a"], ["s"], ["s", "t"], ["s", "u"], ["s", "u", "v"]]
    assert ole.openstream("a").read() == b"x" * 5000
    assert ole.openstream(["s", "t"]).read() == b"small"
