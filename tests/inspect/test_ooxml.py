"""The sampling xlsx reader (guard.inspect.readers.sheetml) and the fast docx/pptx text
reader (guard.inspect.readers.wordml), through extract(), against calamine and the
defusedxml walk they replace."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import pytest

from guard.inspect.extract import ExtractLimits, extract
from guard.inspect.isolate.wire import pack as _pack
from guard.inspect.isolate.wire import unpack as _unpack
from guard.inspect.pii.detect import scan
from guard.inspect.readers import cellvalues, ooxml, sharedstrings, sheetml, wordml
from guard.inspect.readers.cellvalues import cell_str
from guard.inspect.readers.extraction import trim_row
from guard.inspect.readers.wordml import xml_text
from guard.inspect.run import PII_LIMITS
from guard.mail.message import Attachment, Table
from tests.inspect import fixtures as fx
from tests.inspect.fixtures import raw_xlsx

NS = fx.XLSX_NS
REL = fx.XLSX_REL
HEADER = ["氏名", "電話", "メール", "住所"]


def att(name: str, data: bytes) -> Attachment:
    return Attachment(filename=name, content_type="", data=data, where=f"attachment:{name}")


def codes(ex: object) -> list[str]:
    return [p[0] for p in ex.problems]  # type: ignore[attr-defined]


def text_of(ex: object) -> str:
    return "\n".join(t.text for t in ex.texts)  # type: ignore[attr-defined]


def calamine_rows(data: bytes) -> list[list[str]]:
    """What extract() read before the sampling reader: every row through calamine."""
    import python_calamine

    wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    rows = []
    for name in wb.sheet_names:
        for row in wb.get_sheet_by_name(name).iter_rows():
            cells = trim_row([v.strip() if type(v) is str else cell_str(v) for v in row])
            if cells:
                rows.append(cells)
    return rows


def people_rows(n: int, start: int = 0) -> tuple[str, list[str]]:
    """sheetData rows (shared strings) for a header and n people."""
    strings = list(HEADER)
    rows = ['<row r="1">' + "".join(f'<c r="{c}1" t="s"><v>{i}</v></c>'
                                    for i, c in enumerate("ABCD")) + "</row>"]
    for i in range(start, start + n):
        base = len(strings)
        strings += [f"山田 太郎{i}", f"user{i}@example.jp", f"東京都千代田区{i % 9 + 1}-1"]
        r = i - start + 2
        rows.append(f'<row r="{r}"><c r="A{r}" t="s"><v>{base}</v></c>'
                    f'<c r="B{r}"><v>90{i % 100000000:08d}</v></c>'
                    f'<c r="C{r}" t="s"><v>{base + 1}</v></c>'
                    f'<c r="D{r}" t="s"><v>{base + 2}</v></c></row>')
    return "".join(rows), strings


# --- xlsx: values ---------------------------------------------------------------------

def test_openpyxl_inline_strings_numbers_dates_equal_calamine() -> None:
    from openpyxl import Workbook
    from openpyxl.cell.rich_text import CellRichText, TextBlock
    from openpyxl.cell.text import InlineFont

    wb = Workbook()
    ws = wb.active
    ws.title = "名簿"
    ws.append(["氏名", "電話", "生年月日", "時刻", "日時", "会員", "式", "数", "小数"])
    ws.append(["山田 &amp; <太郎>", 9012345678, dt.date(1985, 3, 12), dt.time(10, 30),
               dt.datetime(2020, 1, 2, 3, 4, 5), True, '=A2&"x"', 12, 1.5])
    ws.append([CellRichText(["社外", TextBlock(InlineFont(b=True), "秘"), " 資料"]),
               "あ\nい", dt.timedelta(hours=30), None, "=1/0", "  余白  ", "_x000D_", -3,
               0.1])
    ws["B6"] = "離れた行"
    buf = io.BytesIO()
    wb.save(buf)
    data = buf.getvalue()
    ex = extract(att("名簿.xlsx", data))
    assert ex.problems == []
    rows = ex.tables[0].rows
    assert rows == calamine_rows(data)
    assert rows[1][:3] == ["山田 &amp; <太郎>", "9012345678", "1985-03-12"]  # phone: no ".0"
    assert rows[2][0] == "社外秘 資料"  # rich-text runs joined
    assert rows[3] == ["", "離れた行"]
    assert ex.tables[0].more_rows == 0
    assert "社外秘 資料" in text_of(ex)


def test_shared_strings_rich_text_phonetic_entities_equal_calamine() -> None:
    strings = [
        "氏名", "電話", "メモ",
        '<si><t>山田 太郎</t><rPh sb="0" eb="2"><t>ヤマダ</t></rPh><phoneticPr fontId="1"/></si>',
        "<si><r><t>社外</t></r><r><rPr><b/><sz val=\"11\"/></rPr><t xml:space=\"preserve\">秘 "
        "</t></r><r><t>資料</t></r></si>",
        "<si><t>R&amp;D &#12354;&#x3042; &lt;tag&gt; 改行_x000D_あり</t></si>",
        "<si><t/></si>",
    ]
    sheet = ('<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c>'
             '<c r="C1" t="s"><v>2</v></c></row>'
             # cells without r=, numbers (a phone typed as a number), a date style
             '<row><c t="s"><v>3</v></c><c s="0"><v>9012345678</v></c><c t="s"><v>4</v></c>'
             '<c s="1"><v>31118</v></c></row>'
             '<row r="4"><c r="A4" t="s"><v>5</v></c><c r="B4" t="b"><v>1</v></c>'
             '<c r="C4" t="e"><v>#N/A</v></c><c r="D4" t="s"><v>6</v></c></row>'
             '<row r="5" spans="1:4"><c r="A5" s="2"/><c r="C5" t="str"><f>A1</f><v>式の値</v>'
             "</c></row>")
    data = raw_xlsx(sheet, strings)
    ex = extract(att("a.xlsx", data))
    assert ex.problems == []
    rows = ex.tables[0].rows
    assert rows == [
        ["氏名", "電話", "メモ"],
        ["山田 太郎", "9012345678", "社外秘 資料", "1985-03-12"],
        ["R&D ああ <tag> 改行\rあり", "TRUE"],
        ["", "", "式の値"],
    ]
    assert rows == calamine_rows(data)


def test_japanese_era_date_format_is_a_date() -> None:
    # built-in format 31 (yyyy年m月d日 in a Japanese Excel); calamine reads a number
    data = raw_xlsx('<row r="1"><c r="A1" s="2"><v>31118</v></c></row>', [])
    assert extract(att("a.xlsx", data)).tables[0].rows == [["1985-03-12"]]


def test_number_format_kinds() -> None:
    kind = cellvalues.number_format_kind
    assert kind("yyyy/m/d") == kind("[$-411]ggge\"年\"m\"月\"d\"日\"") == "date"
    assert kind("[h]:mm:ss") == "duration"
    assert kind('"$"#,##0_);[Red]("$"#,##0)') == kind("0.00") == kind("#,##0*y") == ""


# --- xlsx: sampling -----------------------------------------------------------------------

def test_100k_row_sheet_has_its_true_row_count() -> None:
    sheet, strings = people_rows(100_000)
    ex = extract(att("名簿.xlsx", raw_xlsx(sheet, strings)))
    assert ex.problems == []
    table = ex.tables[0]
    cells = sum(len(r) for r in table.rows)
    assert cells <= ExtractLimits().sheet_sample_cells
    assert len(table.rows) + table.more_rows == 100_001  # header + every person
    findings = {f.symbol: f for f in scan([], ex.tables, PII_LIMITS)}
    assert findings["pii.people_list"].count == 100_000
    assert findings["pii.people_list"].evidence["rows"] == 100_000
    assert findings["pii.email"].evidence["truncated"] is True  # values were sampled
    # the text of the rows after the sample is there (for keywords and customer names)
    assert "user99999@example.jp" in text_of(ex)
    assert "山田 太郎99999" in text_of(ex)


def test_sampled_rows_equal_calamine_and_isolate_keeps_the_count() -> None:
    sheet, strings = people_rows(9000)
    data = raw_xlsx(sheet, strings)
    table = extract(att("a.xlsx", data)).tables[0]
    full = calamine_rows(data)
    assert table.rows == full[: len(table.rows)]
    assert len(table.rows) + table.more_rows == len(full)
    back = _unpack(_pack(extract(att("a.xlsx", data)))).tables[0]
    assert back.more_rows == table.more_rows and back.rows == table.rows


def test_inline_string_sheet_counts_and_reads_text_after_the_sample() -> None:
    data = fx.big_xlsx(5000)  # openpyxl write-only: inline strings, no shared strings
    ex = extract(att("顧客.xlsx", data), ExtractLimits(sheet_sample_cells=2000))
    assert ex.problems == []
    table = ex.tables[0]
    assert len(table.rows) + table.more_rows == 5001
    assert table.rows == calamine_rows(data)[: len(table.rows)]
    assert "user4999@example.jp" in text_of(ex)


@pytest.mark.parametrize("quote", ['"', "'"])
def test_formula_strings_after_the_sample_are_text_in_either_quoting(quote: str) -> None:
    rows = [f'<row r="{r}"><c r="A{r}"><v>{r}</v></c></row>' for r in range(1, 50)]
    rows.append(f'<row r="50"><c r="A50" t={quote}str{quote}><f>A1</f><v>式の値 社外秘</v></c>'
                "</row>")
    ex = extract(att("a.xlsx", raw_xlsx("".join(rows), [])), ExtractLimits(sheet_sample_cells=10))
    assert ex.problems == []
    assert ex.tables[0].more_rows == 40
    assert "式の値 社外秘" in text_of(ex)


def test_personal_data_only_after_the_sample() -> None:
    """Documented limit: values after the sample are not scanned by the personal-data
    detectors (they read 20k cells of a table at most); their text still reaches the
    keyword and customer detectors, and the findings say "truncated"."""
    strings = ["品番", "品名", "部品"]
    rows = ['<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>']
    for r in range(2, 15_002):
        rows.append(f'<row r="{r}"><c r="A{r}"><v>{r}</v></c><c r="B{r}" t="s"><v>2</v></c>'
                    "</row>")
    strings.append("社外秘 マイナンバー 123456789018 taro@example.jp")
    rows.append(f'<row r="15002"><c r="A15002" t="s"><v>{len(strings) - 1}</v></c></row>')
    ex = extract(att("部品.xlsx", raw_xlsx("".join(rows), strings)))
    assert ex.problems == []
    assert ex.tables[0].more_rows > 0
    assert "社外秘 マイナンバー 123456789018 taro@example.jp" in text_of(ex)
    symbols = {f.symbol for f in scan([], ex.tables, PII_LIMITS)}
    assert "pii.my_number" not in symbols and "pii.email" not in symbols


def test_cell_limit_of_the_workbook_still_applies() -> None:
    sheet, strings = people_rows(50)
    ex = extract(att("a.xlsx", raw_xlsx(sheet, strings)), ExtractLimits(max_cells=40))
    assert codes(ex) == ["too_large"]
    assert sum(len(r) for r in ex.tables[0].rows) <= 40


# --- xlsx: refused, broken, unusual --------------------------------------------------------

BOMB_DTD = ('<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
            '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;">]>')


def test_entity_bomb_in_sheet_or_shared_strings_is_refused() -> None:
    sheet = (f'<?xml version="1.0"?>{BOMB_DTD}<worksheet xmlns="{NS}"><sheetData>'
             '<row r="1"><c r="A1" t="inlineStr"><is><t>&lol3;</t></is></c></row>'
             "</sheetData></worksheet>")
    ex = extract(att("a.xlsx", raw_xlsx("", [], sheet_xml=sheet)))
    assert codes(ex) == ["parse_error"] and "DTD" in ex.problems[0][2]
    assert "lol" not in text_of(ex)
    sst = f'<?xml version="1.0"?>{BOMB_DTD}<sst xmlns="{NS}"><si><t>&lol3;</t></si></sst>'
    ex = extract(att("a.xlsx", raw_xlsx('<row r="1"><c r="A1" t="s"><v>0</v></c></row>',
                                        sst_xml=sst)))
    assert codes(ex) == ["parse_error"]
    assert "lol" not in text_of(ex)


def test_undeclared_entity_is_a_parse_error() -> None:
    ex = extract(att("a.xlsx", raw_xlsx('<row r="1"><c r="A1" t="s"><v>0</v></c></row>',
                                        ["<si><t>&nbsp;x</t></si>"])))
    assert codes(ex) == ["parse_error"]


@pytest.mark.parametrize("sample", [25_000, 3])  # cut inside the sample, or in the count
def test_truncated_sheet_is_a_parse_error(sample: int) -> None:
    sheet, strings = people_rows(20)
    xml = (f'<?xml version="1.0"?><worksheet xmlns="{NS}"><sheetData>{sheet}'
           "</sheetData></worksheet>")
    cut = xml[: xml.index('<row r="15">') + 20]
    ex = extract(att("a.xlsx", raw_xlsx("", strings, sheet_xml=cut)),
                 ExtractLimits(sheet_sample_cells=sample))
    assert codes(ex) == ["parse_error"]


def test_bad_shared_string_index_and_corrupt_zip() -> None:
    ex = extract(att("a.xlsx", raw_xlsx('<row r="1"><c r="A1" t="s"><v>7</v></c></row>',
                                        ["x"])))
    assert codes(ex) == ["parse_error"]
    data = bytearray(raw_xlsx(*people_rows(300)))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("xl/worksheets/sheet1.xml")
    pos = info.header_offset + 30 + len(info.filename) + len(info.extra) + 100
    data[pos] ^= 0xFF  # flips a bit of the deflate stream: inflate or CRC error
    ex = extract(att("a.xlsx", bytes(data)))
    assert "parse_error" in codes(ex)


def test_namespace_prefixed_sheet_falls_back_to_calamine() -> None:
    sheet = (f'<x:worksheet xmlns:x="{NS}"><x:sheetData><x:row r="1"><x:c r="A1" t="s">'
             "<x:v>0</x:v></x:c><x:c r=\"B1\"><x:v>5</x:v></x:c></x:row></x:sheetData>"
             "</x:worksheet>")
    data = raw_xlsx("", ["山田"], sheet_xml=sheet)
    with pytest.raises(ooxml.Unsupported):
        sheetml.read_sheet(iter([sheet.encode()]), ["山田"], [], False, 100, None)
    ex = extract(att("a.xlsx", data))
    assert ex.problems == []
    assert ex.tables[0].rows == [["山田", "5"]]


def test_cell_comments_are_read_and_scanned_for_personal_data() -> None:
    """A note on a cell ("担当 山田 090-…") is text neither cell reader sees: it gets its
    own `where`, so the personal-data scan reads it (the workbook's text is skipped
    there in favour of its table)."""
    import openpyxl
    from openpyxl.comments import Comment

    from guard.inspect.context import InspectContext, KeywordRule
    from guard.inspect.run import text_findings
    from guard.mail.message import MessageView

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["商品", "数量"])
    ws.append(["部品A", 3])
    ws["A2"].comment = Comment("担当 山田 太郎 携帯 090-1234-5678 社外秘", "佐藤")
    buf = io.BytesIO()
    wb.save(buf)
    ex = extract(att("在庫.xlsx", buf.getvalue()))
    assert ex.problems == []
    assert [(t.where, t.text) for t in ex.texts if t.where.endswith("/comments")] == [
        ("attachment:在庫.xlsx/comments", "担当 山田 太郎 携帯 090-1234-5678 社外秘")]
    view = MessageView(mail_from="a@example.co.jp", rcpt_tos=[], texts=ex.texts,
                       tables=ex.tables)
    ctx = InspectContext(keywords=(KeywordRule("社外秘", "社外秘", ("attachment",)),))
    found = {f.symbol: f for f in text_findings(view, ctx)}
    assert found["pii.phone"].where == "attachment:在庫.xlsx/comments"
    assert "keyword" in found


def test_threaded_comments_and_text_boxes_also_after_a_calamine_fallback() -> None:
    sheet = (f'<x:worksheet xmlns:x="{NS}"><x:sheetData><x:row r="1"><x:c r="A1" t="s">'
             "<x:v>0</x:v></x:c></x:row></x:sheetData></x:worksheet>")
    data = raw_xlsx("", ["山田"], sheet_xml=sheet)  # read by calamine (prefixed sheet)
    threaded = ('<ThreadedComments xmlns="http://schemas.microsoft.com/office/spreadsheetml/'
                '2018/threadedcomments"><threadedComment ref="A1" id="{1}"><text>'
                "顧客 佐藤 花子様の件</text></threadedComment></ThreadedComments>").encode()
    drawing = (f'<xdr:wsDr xmlns:xdr="urn:xdr" xmlns:a="{fx._A}"><xdr:sp><xdr:txBody><a:p>'
               "<a:r><a:t>マイナンバー</a:t></a:r><a:br/><a:r><a:t>別紙参照</a:t></a:r>"
               "</a:p></xdr:txBody></xdr:sp></xdr:wsDr>").encode()
    data = fx.add_zip_member(data, "xl/threadedComments/threadedComment1.xml", threaded)
    data = fx.add_zip_member(data, "xl/drawings/drawing1.xml", drawing)
    ex = extract(att("a.xlsx", data))
    assert ex.problems == [] and ex.tables[0].rows == [["山田"]]
    notes = [t.text for t in ex.texts if t.where == "attachment:a.xlsx/comments"]
    assert notes == ["顧客 佐藤 花子様の件\nマイナンバー\n別紙参照\n"]


def test_a_broken_notes_part_is_one_problem_and_the_rest_is_read() -> None:
    bad = b'<!DOCTYPE x [<!ENTITY a "b">]><comments>&a;</comments>'
    data = fx.add_zip_member(raw_xlsx("", ["山田"]), "xl/comments1.xml", bad)
    data = fx.add_zip_member(data, "xl/comments2.xml", (
        f'<comments xmlns="{NS}"><commentList><comment ref="A1"><text><t>二つ目のメモ</t>'
        "</text></comment></commentList></comments>").encode())
    data = fx.add_zip_member(data, "xl/embeddings/Microsoft_Word_Document.docx",
                             fx.docx(["埋め込み文書の本文"]))
    ex = extract(att("a.xlsx", data))
    assert [(c, w) for c, w, _ in ex.problems] == [
        ("parse_error", "attachment:a.xlsx/xl/comments1.xml")]
    assert "二つ目のメモ" in text_of(ex)
    assert ex.inner_names == [("attachment:a.xlsx/xl/embeddings/Microsoft_Word_Document.docx",
                               "xl/embeddings/Microsoft_Word_Document.docx")]


def test_comments_under_any_name_are_found_through_the_relationships() -> None:
    rels = (f'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId9" Type="{REL}/comments" Target="../notes/memo.xml"/>'
            "</Relationships>").encode()
    data = fx.add_zip_member(raw_xlsx("", ["山田"]), "xl/worksheets/_rels/sheet1.xml.rels", rels)
    data = fx.add_zip_member(data, "xl/notes/memo.xml", (
        f'<comments xmlns="{NS}"><commentList><comment ref="A1"><text><r><t>携帯 090-1234-5678'
        "</t></r></text></comment></commentList></comments>").encode())
    ex = extract(att("a.xlsx", data))
    assert ex.problems == []
    assert [t.text for t in ex.texts if t.where == "attachment:a.xlsx/comments"] == [
        "携帯 090-1234-5678"]


def test_a_broken_relationships_file_is_one_problem() -> None:
    sheet = '<row r="1"><c r="A1" t="s"><v>0</v></c></row>'
    data = fx.add_zip_member(raw_xlsx(sheet, ["山田"]), "xl/worksheets/_rels/sheet1.xml.rels",
                             b"<Relationships><Relationship")
    data = fx.add_zip_member(data, "xl/comments1.xml", (
        f'<comments xmlns="{NS}"><commentList><comment ref="A1"><text><t>メモ</t></text>'
        "</comment></commentList></comments>").encode())
    ex = extract(att("a.xlsx", data))
    assert [(c, w) for c, w, _ in ex.problems] == [
        ("parse_error", "attachment:a.xlsx/xl/worksheets/_rels/sheet1.xml.rels")]
    assert ex.tables[0].rows == [["山田"]] and "メモ" in text_of(ex)


def test_a_broken_docx_part_is_one_problem_and_the_rest_is_read() -> None:
    data = fx.add_zip_member(fx.docx(["本文は読める 03-1234-5678"]), "word/header9.xml",
                             b"<w:hdr><w:p>broken")
    ex = extract(att("a.docx", data))
    assert [(c, w) for c, w, _ in ex.problems] == [
        ("parse_error", "attachment:a.docx/word/header9.xml")]
    assert "本文は読める 03-1234-5678" in text_of(ex)


def test_cdata_falls_back_to_calamine() -> None:
    sheet = ('<row r="1"><c r="A1" t="inlineStr"><is><t><![CDATA[a<b]]></t></is></c></row>')
    data = raw_xlsx(sheet, [])
    ex = extract(att("a.xlsx", data))
    assert ex.problems == []
    assert ex.tables[0].rows == calamine_rows(data) == [["a<b"]]


# --- docx / pptx ---------------------------------------------------------------------------

def _docx_with_everything() -> bytes:
    import docx

    d = docx.Document()
    d.add_paragraph("社員の皆様へ &amp; <テスト> R&D")
    p = d.add_paragraph("タブ\tの後")
    p.add_run().add_break()
    p.add_run("改行後")
    d.add_paragraph().add_run("太字").bold = True
    t = d.add_table(rows=2, cols=3)
    for i, row in enumerate(t.rows):
        for j, cell in enumerate(row.cells):
            cell.text = f"セル{i}{j}"
    t.rows[1].cells[2].add_paragraph("二段落目")
    t.rows[0].cells[0].add_table(rows=1, cols=2).rows[0].cells[0].text = "入れ子"
    d.add_paragraph("")
    d.add_page_break()
    d.add_paragraph("最後 03-1234-5678")
    d.sections[0].header.paragraphs[0].text = "社外秘"
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


@pytest.mark.parametrize("chunk", [4 * 1024 * 1024, 700, 97])
def test_docx_text_equals_the_full_parser(chunk: int) -> None:
    zf = zipfile.ZipFile(io.BytesIO(_docx_with_everything()))
    for name in ("word/document.xml", "word/header1.xml"):
        fast = wordml.word_text(ooxml.read_chunks(zf.open(name), chunk), "w")
        assert fast == xml_text(zf.open(name))
    pptx = zipfile.ZipFile(io.BytesIO(fx.pptx(["スライド1", "A &amp; B"], notes=["メモ"])))
    for name in pptx.namelist():
        if name.startswith(("ppt/slides/slide", "ppt/notesSlides/")) and name.endswith(".xml"):
            assert (wordml.word_text(ooxml.read_chunks(pptx.open(name), chunk), "a")
                    == xml_text(pptx.open(name)))


_NO_GT = ["山田 太郎様", "（東京都千代田区1-2-3）", "090-1234-5678", "A&amp;B", "顧客一覧", " "]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("texts", [None, _NO_GT], ids=["raw-gt", "escaped"])
def test_word_like_documents_equal_the_full_parser(seed: int, texts: list[str] | None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Word's own shape (rsids, run properties, tab stops that are not tabs, breaks,
    empty and self-closed paragraphs, deletions, nested and self-closed cells), read in
    pieces of every size: the same text as the defusedxml walk, through both patterns."""
    full_pieces = []
    real_full = wordml._word_full
    monkeypatch.setattr(wordml, "_word_full",
                        lambda *args: full_pieces.append(1) or real_full(*args))
    xml = fx.word_like_document(400, seed, texts)
    expected = xml_text(io.BytesIO(xml))
    pieces = 0
    for chunk in (4 * 1024 * 1024, 2000, 333, 97):
        chunks = list(ooxml.read_chunks(io.BytesIO(xml), chunk))
        pieces += len(chunks)
        assert wordml.word_text(iter(chunks), "w") == expected, chunk
    assert "\t" in expected and "山田 太郎様" in expected
    assert 0 < len(full_pieces) < pieces  # some pieces took the fast pattern, some not


def test_a_small_straddling_piece_does_not_send_the_next_back_to_the_fast_pattern(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A part with tabs in every piece: after the first piece needed _FULL, the others go
    there directly, though each chunk leaves a small piece (the paragraph across the
    chunk boundary) that has none."""
    fast_calls = []
    real_fast = wordml._FAST

    class Counting:
        def findall(self, *args: object) -> list[bytes]:
            fast_calls.append(1)
            return real_fast.findall(*args)  # type: ignore[arg-type]

    xml = fx.word_like_document(3000, 1)
    chunks = list(ooxml.read_chunks(io.BytesIO(xml), 256 * 1024))
    assert len(chunks) >= 4
    expected = wordml.word_text(iter(chunks), "w")
    monkeypatch.setattr(wordml, "_FAST", Counting())
    assert wordml.word_text(iter(chunks), "w") == expected == xml_text(io.BytesIO(xml))
    assert len(fast_calls) == 1


_TRICKY = {
    # '>' and '/' in attribute values must not end a run tag early (hidden text)
    "slash-gt in a run's attribute": ('<w:p><w:r><w:t x:y="/>">マイナンバー 1234 5678 9018'
                                      "</w:t></w:r></w:p>"),
    "gt in a run's attribute": '<w:p><w:r><w:t w:x=">">秘密</w:t></w:r></w:p>',
    "slash-gt in a paragraph's attribute": '<w:p x:y="a/>b"><w:r><w:t>本文</w:t></w:r></w:p>',
    "quotes in attributes": """<w:p><w:r><w:t x:y='"/>'>一</w:t><w:tab x:y='>'/></w:r></w:p>""",
    # end tags may have spaces before '>'
    "spaced end tags": ("<w:p><w:r><w:t>1234</w:t></w:r></w:p ><w:p><w:r><w:t>5678</w:t></w:r>"
                        "</w:p><w:tbl><w:tr><w:tc><w:p><w:r><w:t>a</w:t></w:r></w:p></w:tc >"
                        "<w:tc><w:p/></w:tc></w:tr ></w:tbl><w:p><w:r><w:t>後</w:t></w:r></w:p>"),
    "spaced tab and break": "<w:p><w:r><w:t>氏名</w:t><w:tab /><w:t>電話</w:t><w:br /></w:r></w:p>",
    "tab with only a namespace": '<w:p><w:r><w:t>a</w:t><w:tab xmlns:q="urn:q"/></w:r></w:p>',
    "tab stops are not tabs": ('<w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="840"/></w:tabs>'
                               "</w:pPr><w:r><w:t>x</w:t></w:r></w:p>"),
    "raw CR at a paragraph end": ("<w:p><w:r><w:t>a\r</w:t></w:r></w:p>"
                                  "<w:p><w:r><w:t>b</w:t></w:r></w:p>"),
    "element names that only start like a cell": ("<w:p><w:r><w:t>a</w:t></w:r></w:p><w:tc-x/>"
                                                  "<w:p><w:r><w:t>b</w:t></w:r></w:p>"),
    "text right after a self-closed cell": ("<w:tbl><w:tr><w:tc/>x<w:tc><w:p><w:r><w:t>c</w:t>"
                                            "</w:r></w:p></w:tc></w:tr></w:tbl><w:p><w:r><w:t>d"
                                            "</w:t></w:r></w:p>"),
}


@pytest.mark.parametrize("chunk", [1 << 20, 7])
@pytest.mark.parametrize("case", sorted(_TRICKY))
def test_tricky_but_well_formed_xml_reads_like_the_full_parser(case: str, chunk: int) -> None:
    xml = (f'<w:document xmlns:w="{fx._W}" xmlns:x="urn:x"><w:body>{_TRICKY[case]}'
           "</w:body></w:document>").encode()
    expected = xml_text(io.BytesIO(xml))
    assert wordml.word_text(ooxml.read_chunks(io.BytesIO(xml), chunk), "w") == expected
    if "hidden" in case or "attribute" in case:
        assert expected.strip()


@pytest.mark.parametrize("declaration", [
    f'xmlns:q="{fx._W[:-4]}&#109;ain"',  # the Word namespace written with a reference
    f'xmlns:é="{fx._W}"',  # a prefix that is not ASCII
    f'xmlns="{fx._W}"',  # the default namespace
])
def test_text_under_another_name_for_the_word_namespace_is_read(declaration: str) -> None:
    prefix = "é:" if "é" in declaration else "q:" if "xmlns:q" in declaration else ""
    xml = (f'<w:document xmlns:w="{fx._W}"><w:body><{prefix}p {declaration}><{prefix}r>'
           f"<{prefix}t>隠した本文</{prefix}t></{prefix}r></{prefix}p></w:body></w:document>"
           ).encode()
    assert xml_text(io.BytesIO(xml)) == "隠した本文\n"
    with pytest.raises(ooxml.Unsupported):  # → extract() reads it with the full parser
        wordml.word_text([xml], "w")
    data = fx.std_zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": xml})
    assert text_of(extract(att("a.docx", data))) == "隠した本文\n"


def test_pieces_never_cut_inside_a_paragraph_end() -> None:
    """_ranges (the docx reader) and _units (the sheet reader): whatever the chunks, the
    pieces put together are the input, and every piece but the last ends at a cut."""
    import random

    rng = random.Random(7)
    for _ in range(3000):
        data = b"".join(rng.choice([b"ab", b"</p>", b"x", b"</", b"p>", b"<"])
                        for _ in range(rng.randint(0, 40)))
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 9))))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        pieces = [b[s:e] for b, s, e in ooxml.unit_ranges(iter(chunks), b"</p>", 1 << 20)]
        assert b"".join(pieces) == data
        assert list(ooxml.units(iter(chunks), b"</p>", 1 << 20)) == pieces
        assert all(p.endswith(b"</p>") for p in pieces[:-1])
        ends = {sum(map(len, pieces[:k + 1])) for k in range(len(pieces))}
        assert not any(i < e < i + 4 for e in ends for i in range(len(data))
                       if data.startswith(b"</p>", i))


def test_plain_paragraphs_take_the_fast_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wordml, "_word_full", lambda *args: pytest.fail("full"))
    xml = (f'<w:document xmlns:w="{fx._W}"><w:body>'
           + '<w:p w:rsidR="1"><w:r><w:rPr><w:b/></w:rPr><w:t xml:space="preserve">本文 '
           '</w:t></w:r><w:r><w:t>A&amp;B</w:t></w:r></w:p><w:p><w:pPr><w:tabs>'
           '<w:tab w:val="left" w:pos="840"/></w:tabs></w:pPr><w:r><w:t>二行目</w:t></w:r>'
           "</w:p></w:body></w:document>").encode()
    assert wordml.word_text([xml], "w") == xml_text(io.BytesIO(xml)) == "本文 A&B\n二行目\n"


def test_text_limit_cuts_a_long_document_once() -> None:
    """The character cap applies across the pieces of a part: the text stops at the cap
    exactly, with one too_large problem."""
    paragraphs = "".join(f"<w:p><w:r><w:t>第{i}段落 山田 太郎</w:t></w:r></w:p>"
                         for i in range(40_000))
    xml = (f'<w:document xmlns:w="{fx._W}"><w:body>{paragraphs}</w:body></w:document>')
    data = fx.std_zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": xml.encode()})
    full = extract(att("長い.docx", data))
    assert full.problems == [] and len(text_of(full)) > 500_000
    cut = extract(att("長い.docx", data), ExtractLimits(max_text_chars=300_000))
    assert codes(cut) == ["too_large"]
    assert sum(len(t.text) for t in cut.texts) == 300_000
    assert text_of(full).startswith(text_of(cut))


def test_slide_line_break_separates_words() -> None:
    slide = (f'<p:sld xmlns:p="{fx._P}" xmlns:a="{fx._A}"><p:cSld><p:spTree><p:sp>'
             "<p:txBody><a:p><a:r><a:t>山田 太郎</a:t></a:r><a:br/><a:r><a:t>03-1234-5678"
             "</a:t></a:r></a:p></p:txBody></p:sp></p:spTree></p:cSld></p:sld>").encode()
    data = fx.std_zip({"[Content_Types].xml": b"<Types/>", "ppt/slides/slide1.xml": slide,
                       "ppt/presentation.xml": f'<p:presentation xmlns:p="{fx._P}"/>'.encode()})
    ex = extract(att("営業.pptx", data))
    assert ex.problems == [] and text_of(ex) == "山田 太郎\n03-1234-5678\n"
    assert wordml.word_text([slide], "a") == xml_text(io.BytesIO(slide))


def test_docx_through_extract() -> None:
    ex = extract(att("連絡先.docx", _docx_with_everything()))
    assert ex.problems == []
    text = text_of(ex)
    assert "社員の皆様へ &amp; <テスト> R&D\n" in text
    assert "セル10\tセル11\tセル12 二段落目\n" in text
    assert "社外秘" in text


def test_docx_entities_japanese_and_refusals() -> None:
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"

    def doc(body: str, prolog: str = '<?xml version="1.0" encoding="UTF-8"?>') -> bytes:
        xml = f'{prolog}<w:document xmlns:w="{w}"><w:body>{body}</w:body></w:document>'
        return fx.std_zip({"[Content_Types].xml": b"<Types/>",
                           "word/document.xml": xml.encode()})

    ok = extract(att("a.docx", doc("<w:p><w:r><w:t>A&amp;B &#12354;&#x3044; 顧客</w:t></w:r>"
                                   "</w:p>")))
    assert ok.problems == [] and text_of(ok) == "A&B あい 顧客\n"
    bad = extract(att("a.docx", doc("<w:p><w:r><w:t>&lol;</w:t></w:r></w:p>")))
    assert codes(bad) == ["parse_error"]
    cut = extract(att("a.docx", doc("<w:p><w:r><w:t>途中</w:t></w:r></w:p>")[:0]
                      or fx.std_zip({"[Content_Types].xml": b"<Types/>",
                                     "word/document.xml": doc_xml_truncated(w)})))
    assert codes(cut) == ["parse_error"]
    ascii_ = extract(att("a.docx", doc("<w:p><w:r><w:t>x</w:t></w:r></w:p>",
                                       '<?xml version="1.0" encoding="US-ASCII"?>')))
    assert ascii_.problems == [] and text_of(ascii_) == "x\n"  # read by the full parser


def doc_xml_truncated(w: str) -> bytes:
    return (f'<?xml version="1.0"?><w:document xmlns:w="{w}"><w:body><w:p><w:r><w:t>途中'
            "</w:t></w:r></w:p><w:p><w:r><w:t>ここで").encode()


def test_table_more_rows_count_in_people_list() -> None:
    rows = [HEADER, *[[f"山田 {i}", "090-1234-5678", f"u{i}@example.jp", "東京都千代田区1-1"]
                      for i in range(5)]]
    found = {f.symbol: f for f in scan([], [Table("attachment:a.xlsx", rows, 995)], PII_LIMITS)}
    assert found["pii.people_list"].count == 1000
    assert found["pii.people_list"].evidence["rows"] == 1000


def test_formatted_empty_rows_after_the_sample_are_not_counted() -> None:
    sheet, strings = people_rows(30)
    empty = "".join(f'<row r="{r}" s="2" customFormat="1"><c r="A{r}" s="1"/><c r="B{r}" s="1"/>'
                    f'</row><row r="{r + 100}" spans="1:4"/>' for r in range(40, 60))
    ex = extract(att("a.xlsx", raw_xlsx(sheet + empty, strings)),
                 ExtractLimits(sheet_sample_cells=20))
    table = ex.tables[0]
    assert ex.problems == [] and len(table.rows) + table.more_rows == 31


# --- xlsx: shared strings read on demand, sample cuts ---------------------------------------

SPECIAL = [
    '<si><t>山田 太郎</t><rPh sb="0" eb="2"><t>ヤマダ</t></rPh><phoneticPr fontId="1"/></si>',
    "<si><r><t>社外</t></r><r><rPr><b/></rPr><t xml:space=\"preserve\">秘 </t></r></si>",
    "<si><t>R&amp;D &#12354; 改行_x000D_あり</t></si>",
    "<si><t/></si>",
]


def _sst_xml(strings: list[str]) -> bytes:
    items = "".join(s if s.startswith("<si") else f"<si><t>{s}</t></si>" for s in strings)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\r\n<sst xmlns="{NS}" count="{len(strings)}"'
            f' uniqueCount="{len(strings)}">{items}</sst>').encode()


@pytest.mark.parametrize("special_at", [None, 10, 60_000])
def test_shared_strings_on_demand_equal_the_full_parse(special_at: int | None) -> None:
    """2.5 MB of strings (more than one parsing step): the strings a sheet asks for,
    in any order, and the text of the others, whether the part after the parsed steps
    has the plain layout (one replace) or rich text, phonetic readings and entities."""
    strings = [f"顧客{i:06d} user{i}@example.jp" for i in range(70_000)]
    if special_at is not None:
        strings[special_at: special_at + len(SPECIAL)] = SPECIAL
    data = _sst_xml(strings)
    full = sharedstrings.shared_strings(data)
    assert len(full) == len(strings)
    lazy = sharedstrings.SharedStrings(data)
    used = {0, 3, 69_999, 5}  # the last one makes it parse every step
    assert [lazy[i] for i in sorted(used)] == [full[i] for i in sorted(used)]
    expect = "\n".join(s for i, s in enumerate(full) if i not in used)
    assert sharedstrings.SharedStrings(data).unused_text(used) == expect
    only_first = sharedstrings.SharedStrings(data)
    assert only_first[1] == full[1]  # one step parsed, the rest read as text
    assert only_first.unused_text({1}) == "\n".join(full[:1] + full[2:])
    with pytest.raises(IndexError):
        only_first[70_000]


@pytest.mark.parametrize("sample", [4, 19, 20, 21, 4 * 1000 + 2, 25_000])
def test_sample_cut_anywhere_equals_calamine(sample: int) -> None:
    sheet, strings = people_rows(9000)
    data = raw_xlsx(sheet, strings)
    ex = extract(att("a.xlsx", data), ExtractLimits(sheet_sample_cells=sample))
    table = ex.tables[0]
    full = calamine_rows(data)
    assert ex.problems == []
    assert table.rows == full[: len(table.rows)]
    assert sum(len(r) for r in table.rows) <= sample
    assert len(table.rows) + table.more_rows == len(full)
    text = text_of(ex)
    for name in ("山田 太郎0", "山田 太郎4500", "山田 太郎8999"):
        assert text.count(name + "\n") + text.count(name + "\t") == 1  # once, not twice


def test_a_row_that_does_not_fit_the_sample_keeps_its_text() -> None:
    strings = ["氏名", "電話", "山田 太郎", "090-1111-2222", "佐藤 花子", "080-3333-4444",
               "鈴木 一郎", "070-5555-6666"]
    rows = "".join(f'<row r="{r + 1}"><c r="A{r + 1}" t="s"><v>{2 * r}</v></c>'
                   f'<c r="B{r + 1}" t="s"><v>{2 * r + 1}</v></c></row>' for r in range(4))
    ex = extract(att("a.xlsx", raw_xlsx(rows, strings)), ExtractLimits(sheet_sample_cells=5))
    table = ex.tables[0]
    assert table.rows == [["氏名", "電話"], ["山田 太郎", "090-1111-2222"]]
    assert table.more_rows == 2
    text = text_of(ex)
    for value in strings[4:]:  # the row cut at the budget and the one after it
        assert text.count(value) == 1


def test_shared_strings_broken_after_the_sample_fall_back_once() -> None:
    """A layout the fast reader does not handle, far into the shared strings, is only
    seen when the text of the rest is read: the workbook then goes to calamine, and its
    table is recorded once."""
    sheet, strings = people_rows(200)
    strings += [f"未使用{i}" for i in range(60_000)]
    strings[50_000] = "<si><r><rPr><b/></rPr></r></si>"  # a run without text
    ex = extract(att("a.xlsx", raw_xlsx(sheet, strings)), ExtractLimits(sheet_sample_cells=50))
    assert ex.problems == []
    assert len(ex.tables) == 1 and len(ex.tables[0].rows) == 201  # calamine: every row
