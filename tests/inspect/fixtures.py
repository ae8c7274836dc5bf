"""Test files generated in code (no binary fixtures in the repository).

Where a library can write the format (openpyxl, python-docx, pypdf, zipfile) it is used;
where the test needs bytes a library refuses to write (CP932 zip names without the UTF-8
flag, the encryption flag bit, overlapping entries, an OLE container with an
EncryptionInfo stream, ISO-2022-JP with NEC characters) the bytes are built by hand.
"""

from __future__ import annotations

import base64
import io
import itertools
import struct
import zipfile
import zlib
from dataclasses import dataclass
from email.utils import formatdate
from xml.sax.saxutils import escape

# --- ISO-2022-JP with NEC row-13 characters ------------------------------------------

# JIS X 0208 row 13 (NEC special characters) code points, written out by hand so the
# test does not share the decoder's conversion table: ① = 0x2D21, ㈱ = 0x2D6A, Ⅰ = 0x2D35.
NEC_MARU1 = b"\x2d\x21"
NEC_KABU = b"\x2d\x6a"
NEC_ROMAN1 = b"\x2d\x35"


def jis(text: str) -> bytes:
    """Plain JIS X 0208 text through Python's strict codec (no NEC characters)."""
    return text.encode("iso2022_jp")


def jis_nec(*pairs: bytes) -> bytes:
    return b"\x1b$B" + b"".join(pairs) + b"\x1b(B"


# --- mail ------------------------------------------------------------------------------

def headers(subject: bytes | str = "test", to: str = "bob@example.com",
            extra: str = "") -> bytes:
    if isinstance(subject, str):
        subject = subject.encode()
    return (
        b"From: Alice <alice@example.jp>\r\n"
        + f"To: {to}\r\nDate: {formatdate()}\r\nMessage-ID: <t@example.jp>\r\n".encode()
        + b"Subject: " + subject + b"\r\nMIME-Version: 1.0\r\n" + extra.encode()
    )


def single_part(body: bytes, content_type: str, cte: str = "8bit",
                subject: bytes | str = "test") -> bytes:
    return (headers(subject) + f"Content-Type: {content_type}\r\n"
            f"Content-Transfer-Encoding: {cte}\r\n\r\n".encode() + body + b"\r\n")


@dataclass
class Part:
    content_type: str
    body: bytes
    cte: str = "base64"
    disposition: bytes = b""  # raw Content-Disposition value, may hold 8-bit bytes

    def render(self) -> bytes:
        out = f"Content-Type: {self.content_type}\r\nContent-Transfer-Encoding: {self.cte}\r\n"
        raw = out.encode()
        if self.disposition:
            raw += b"Content-Disposition: " + self.disposition + b"\r\n"
        raw += b"\r\n"
        if self.cte == "base64":
            raw += base64.encodebytes(self.body).replace(b"\n", b"\r\n")
        else:
            raw += self.body + b"\r\n"
        return raw


def multipart(parts: list[Part], subject: bytes | str = "test", boundary: str = "==b0==",
              close: bool = True, to: str = "bob@example.com") -> bytes:
    out = headers(subject, to=to,
                  extra=f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n') + b"\r\n"
    for p in parts:
        out += f"--{boundary}\r\n".encode() + p.render()
    if close:
        out += f"--{boundary}--\r\n".encode()
    return out


def attachment(name: str, data: bytes, content_type: str = "application/octet-stream") -> Part:
    disp = f'attachment; filename="{name}"'.encode()
    return Part(content_type, data, "base64", disp)


def nested_multipart(depth: int) -> bytes:
    """multipart/mixed nested `depth` levels deep, each level with its own boundary."""
    out = headers("deep", extra='Content-Type: multipart/mixed; boundary="b0"\r\n') + b"\r\n"
    for i in range(1, depth):
        out += f'--b{i - 1}\r\nContent-Type: multipart/mixed; boundary="b{i}"\r\n\r\n'.encode()
    out += f"--b{depth - 1}\r\nContent-Type: text/plain\r\n\r\ninnermost\r\n".encode()
    for i in reversed(range(depth)):
        out += f"--b{i}--\r\n".encode()
    return out


# --- zip -------------------------------------------------------------------------------

@dataclass
class RawEntry:
    name: bytes  # raw name bytes as stored
    data: bytes  # stored as-is (method 0) unless deflate
    flags: int = 0  # general purpose bits: 0x1 encrypted, 0x800 UTF-8 names
    deflate: bool = False


def raw_zip(entries: list[RawEntry], overlap_second_with_first: bool = False) -> bytes:
    """A zip written byte by byte, so tests control flags and names exactly."""
    out = bytearray()
    central = bytearray()
    offsets: list[int] = []
    for e in entries:
        payload = zlib.compress(e.data)[2:-4] if e.deflate else e.data
        method = 8 if e.deflate else 0
        crc = zlib.crc32(e.data)
        offsets.append(len(out))
        local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, e.flags, method, 0, 0x21,
                            crc, len(payload), len(e.data), len(e.name), 0)
        out += local + e.name + payload
    for e, off in zip(entries, offsets, strict=True):
        payload = zlib.compress(e.data)[2:-4] if e.deflate else e.data
        method = 8 if e.deflate else 0
        if overlap_second_with_first and off == offsets[-1] and len(entries) > 1:
            off = offsets[0]  # both central entries point at the same local data
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, e.flags,
                               method, 0, 0x21, zlib.crc32(e.data), len(payload),
                               len(e.data), len(e.name), 0, 0, 0, 0, 0, off) + e.name
    cd_offset = len(out)
    out += central
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                       len(central), cd_offset, 0)
    return bytes(out)


def std_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def zero_bomb(total_mb: int = 200) -> bytes:
    """One member of `total_mb` MB of zeros, written streaming (about 1000:1)."""
    buf = io.BytesIO()
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
            zf.open("zeros.csv", "w", force_zip64=True) as f:
        for _ in range(total_mb):
            f.write(chunk)
    return buf.getvalue()


# --- office ----------------------------------------------------------------------------

def xlsx(rows: list[list[object]], sheet: str = "名簿") -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def big_xlsx(n_rows: int) -> bytes:
    """A customer list written with openpyxl's write-only mode (fast, inline strings)."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("顧客")
    ws.append(["氏名", "フリガナ", "郵便番号", "住所", "電話", "メール", "生年月日"])
    for i in range(n_rows):
        ws.append([f"山田 太郎{i}", "ヤマダ タロウ", f"100-{i % 10000:04d}",
                   f"東京都千代田区丸の内{i % 9 + 1}-{i % 30 + 1}-{i % 20 + 1}",
                   f"090-{i % 10000:04d}-{(i * 7) % 10000:04d}", f"user{i}@example.jp",
                   f"19{50 + i % 50}-0{i % 9 + 1}-1{i % 9}"])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def docx(paragraphs: list[str], table: list[list[str]] | None = None,
         header_text: str = "") -> bytes:
    from docx import Document

    d = Document()
    for p in paragraphs:
        d.add_paragraph(p)
    if table:
        t = d.add_table(rows=len(table), cols=len(table[0]))
        for i, row in enumerate(table):
            for j, cell in enumerate(row):
                t.cell(i, j).text = cell
    if header_text:
        d.sections[0].header.paragraphs[0].text = header_text
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def word_like_document(paragraphs: int, seed: int = 0, texts: list[str] | None = None) -> bytes:
    """A word/document.xml shaped like Word's own output (python-docx writes a much
    plainer one): rsid attributes, paragraph and run properties on every run, tab stops
    (`<w:tabs><w:tab …/>`, which are not tabs), tabs, page and line breaks, empty and
    self-closed paragraphs, tracked deletions, tables with cell properties, self-closed
    and nested cells, entities and a raw '>'. Random but reproducible from `seed`."""
    import random

    rng = random.Random(seed)
    words = texts or ["山田 太郎様", "（東京都千代田区1-2-3）", "090-1234-5678", "A&amp;B",
                      "a > b", "ﾃｽﾄ", "顧客一覧", "R&amp;D 部", "&lt;社外秘&gt;", " "]

    def rsid() -> str:
        return f"{rng.randrange(16**8):08X}"

    def run() -> str:
        kind = rng.random()
        props = ('<w:rPr><w:rFonts w:ascii="ＭＳ 明朝" w:eastAsia="ＭＳ 明朝" w:hint="eastAsia"/>'
                 '<w:sz w:val="21"/></w:rPr>') if rng.random() < 0.8 else ""
        if kind < 0.06:
            return f"<w:r>{props}<w:tab/></w:r>"
        if kind < 0.09:
            return ('<w:r><w:br w:type="page"/></w:r>' if rng.random() < .5
                    else "<w:r><w:cr/></w:r>")
        if kind < 0.11:
            return (f'<w:del w:id="1" w:author="x"><w:r><w:delText>{rng.choice(words)}'
                    "</w:delText></w:r></w:del>")
        if kind < 0.13:
            return "<w:r><w:t/></w:r>"
        space = ' xml:space="preserve"' if rng.random() < 0.5 else ""
        return f'<w:r w:rsidRPr="{rsid()}">{props}<w:t{space}>{rng.choice(words)}</w:t></w:r>'

    def paragraph(depth: int) -> str:
        kind = rng.random()
        if kind < 0.04:
            return "<w:p/>"
        if kind < 0.07:
            return f'<w:p w:rsidR="{rsid()}" w:rsidRDefault="{rsid()}"/>'
        ppr = ('<w:pPr><w:tabs><w:tab w:val="left" w:pos="840"/></w:tabs>'
               '<w:rPr><w:rFonts w:hint="eastAsia"/></w:rPr></w:pPr>') if rng.random() < 0.5 else ""
        runs = "".join(run() for _ in range(rng.randint(0, 5)))
        return f'<w:p w:rsidR="{rsid()}" w:rsidRDefault="{rsid()}">{ppr}{runs}</w:p>'

    def table(depth: int) -> str:
        rows = []
        for _ in range(rng.randint(1, 3)):
            cells = []
            for _ in range(rng.randint(1, 4)):
                if rng.random() < 0.1:
                    cells.append("<w:tc/>")
                    continue
                inner = "".join(paragraph(depth + 1) for _ in range(rng.randint(1, 2)))
                if depth < 2 and rng.random() < 0.15:
                    inner += table(depth + 1) + "<w:p/>"
                cells.append('<w:tc><w:tcPr><w:tcW w:w="2000" w:type="dxa"/></w:tcPr>'
                             f"{inner}</w:tc>")
            rows.append(f'<w:tr w:rsidR="{rsid()}"><w:trPr/>{"".join(cells)}</w:tr>')
        return ('<w:tbl><w:tblPr><w:tblW w:w="0" w:type="auto"/></w:tblPr>'
                f'{"".join(rows)}</w:tbl>')

    body = "".join(table(0) if rng.random() < 0.08 else paragraph(0)
                   for _ in range(paragraphs))
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n'
            f'<w:document xmlns:w="{_W}" xmlns:wp="urn:x"><w:body>{body}'
            '<w:sectPr><w:pgSz w:w="11906" w:h="16838"/></w:sectPr></w:body></w:document>'
            ).encode()


def add_zip_member(container: bytes, name: str, data: bytes) -> bytes:
    buf = io.BytesIO(container)
    with zipfile.ZipFile(buf, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, data)
    return buf.getvalue()


_P = "http://schemas.openxmlformats.org/presentationml/2006/main"
_A = "http://schemas.openxmlformats.org/drawingml/2006/main"


def pptx(slides: list[str], notes: list[str] | None = None) -> bytes:
    """The parts of a .pptx the extractor reads (python-pptx is not a dependency)."""
    members: dict[str, bytes] = {
        "[Content_Types].xml": b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
        "ppt/presentation.xml": f'<p:presentation xmlns:p="{_P}"/>'.encode(),
    }
    for i, text in enumerate(slides, 1):
        members[f"ppt/slides/slide{i}.xml"] = (
            f'<?xml version="1.0" encoding="UTF-8"?><p:sld xmlns:p="{_P}" xmlns:a="{_A}">'
            f"<p:cSld><p:spTree><p:sp><p:txBody><a:p><a:r><a:t>{text}</a:t></a:r></a:p>"
            f"</p:txBody></p:sp></p:spTree></p:cSld></p:sld>").encode()
    for i, text in enumerate(notes or [], 1):
        members[f"ppt/notesSlides/notesSlide{i}.xml"] = (
            f'<p:notes xmlns:p="{_P}" xmlns:a="{_A}"><a:p><a:r><a:t>{text}</a:t></a:r>'
            f"</a:p></p:notes>").encode()
    return std_zip(members)


# --- PDF -------------------------------------------------------------------------------


def pdf_file(objs: list[bytes], header: bytes = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n") -> bytes:
    """Objects 1..n (1 the catalog) written as a PDF with its xref table and trailer."""
    out = bytearray(header)
    offsets = []
    for num, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objs) + 1, xref)
    return bytes(out)

def pdf(pages: list[list[str]]) -> bytes:
    """A small valid PDF with Helvetica text lines, xref offsets computed."""
    objs: list[bytes] = []
    n_pages = len(pages)
    # 1 catalog, 2 pages, 3 font, then per page: page object and content stream
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n_pages))
    objs.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objs.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, lines in enumerate(pages):
        ops = ["BT", "/F1 12 Tf", "72 720 Td", "14 TL"]
        for line in lines:
            esc = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({esc}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                    f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>"
                    .encode())
        objs.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    return pdf_file(objs)


def pdf_table(rows: list[list[str]], xs: list[int], y0: int = 720, dy: int = 18) -> bytes:
    """A one-page PDF laid out as a table, as Excel or Word export it: each cell its own
    text object at its column's x, in a Japanese CID font (HeiseiKakuGo-W5, UniJIS-UCS2-H,
    not embedded: pdfium maps it to Unicode from the CMap). Empty cells are left out."""
    ops = ["BT", "/F1 10 Tf"]
    for i, row in enumerate(rows):
        for x, cell in zip(xs, row, strict=False):
            if cell:
                ops.append(f"1 0 0 1 {x} {y0 - dy * i} Tm <{cell.encode('utf-16-be').hex()}> Tj")
    ops.append("ET")
    stream = "\n".join(ops).encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type0 /BaseFont /HeiseiKakuGo-W5 /Encoding /UniJIS-UCS2-H"
        b" /DescendantFonts [<< /Type /Font /Subtype /CIDFontType0 /BaseFont /HeiseiKakuGo-W5"
        b" /CIDSystemInfo << /Registry (Adobe) /Ordering (Japan1) /Supplement 2 >>"
        b" /DW 1000 /W [1 631 500] >>] >>",  # half-width Latin and digits: 500
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    return pdf_file(objs)


def encrypted_pdf(lines: list[str], password: str = "secret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(pdf([lines]))).pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password=password + "-owner",
                   algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


# --- OLE (compound file) ---------------------------------------------------------------

def ole_file(streams: dict[str, bytes]) -> bytes:
    """A minimal version-3 compound file holding the given streams at the root.

    Every stream is padded to >= 4096 bytes so it lives in regular sectors (no mini
    stream needed). Enough for olefile to list the streams, which is all the extractor
    needs to recognise an encrypted OOXML package (EncryptionInfo + EncryptedPackage).
    """
    sector = 512
    free, end, fatsect, nostream = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
    names = list(streams)
    assert len(names) <= 3
    bodies = [streams[n].ljust(4096, b"\x00") for n in names]
    bodies = [b.ljust(-(-len(b) // sector) * sector, b"\x00") for b in bodies]
    fat: list[int] = [fatsect, end]  # sector 0 = FAT, sector 1 = directory
    starts: list[int] = []
    for b in bodies:
        count = len(b) // sector
        start = len(fat)
        starts.append(start)
        fat.extend(start + k + 1 for k in range(count - 1))
        fat.append(end)
    assert len(fat) <= sector // 4
    fat.extend([free] * (sector // 4 - len(fat)))

    def direntry(name: str, kind: int, child: int, right: int, start: int, size: int) -> bytes:
        encoded = name.encode("utf-16-le") + b"\x00\x00" if name else b""
        return (encoded.ljust(64, b"\x00") + struct.pack("<HBB", len(encoded), kind, 1)
                + struct.pack("<III", nostream, right, child) + bytes(16) + bytes(4)
                + bytes(16) + struct.pack("<IQ", start, size))

    entries = [direntry("Root Entry", 5, 1 if names else nostream, nostream, end, 0)]
    for i, name in enumerate(names):
        right = i + 2 if i + 1 < len(names) else nostream  # a right-leaning chain
        entries.append(direntry(name, 2, nostream, right, starts[i],
                                max(len(streams[name]), 4096)))
    while len(entries) < 4:
        entries.append(bytes(128))
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16)
              + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + bytes(6)
              + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, end, 0, end, 0)
              + struct.pack("<I", 0) + struct.pack("<I", free) * 108)
    assert len(header) == 512
    return (header + struct.pack(f"<{sector // 4}I", *fat) + b"".join(entries)
            + b"".join(bodies))


CfbTree = dict[str, "bytes | CfbTree"]


def cfb(tree: CfbTree) -> bytes:
    """A version-3 compound file ([MS-CFB]) with storages (dict values) and streams
    (bytes): streams under 4096 bytes live in the mini stream, as Office writes them.
    Each storage's children are one right-leaning chain of the directory tree, which
    readers accept (they look entries up by walking the tree)."""
    sector, mini = 512, 64
    free, end, fatsect, nostream = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF

    entries: list[list] = []  # [name, kind, child, right, data]

    def add(name: str, node: bytes | CfbTree) -> int:
        idx = len(entries)
        if isinstance(node, dict):
            entries.append([name, 1 if idx else 5, nostream, nostream, b""])
            kids = [add(k, v) for k, v in node.items()]
            for a, b in itertools.pairwise(kids):
                entries[a][3] = b
            entries[idx][2] = kids[0] if kids else nostream
        else:
            entries.append([name, 2, nostream, nostream, node])
        return idx

    add("Root Entry", tree)
    fat: list[int] = []
    body = bytearray()

    def chain(data: bytes) -> int:
        """Put data in regular sectors; return the first sector."""
        if not data:
            return end
        first = len(fat)
        n = -(-len(data) // sector)
        fat.extend(first + k + 1 for k in range(n - 1))
        fat.append(end)
        body.extend(data.ljust(n * sector, b"\x00"))
        return first

    ministream = bytearray()
    minifat: list[int] = []
    starts: dict[int, int] = {}
    for i, (_name, kind, _c, _r, data) in enumerate(entries):
        if kind == 2 and 0 < len(data) < 4096:
            first = len(minifat)
            n = -(-len(data) // mini)
            minifat.extend(first + k + 1 for k in range(n - 1))
            minifat.append(end)
            ministream.extend(data.ljust(n * mini, b"\x00"))
            starts[i] = first
    for i, (_name, kind, _c, _r, data) in enumerate(entries):
        if kind == 2 and len(data) >= 4096:
            starts[i] = chain(data)
    starts[0] = chain(bytes(ministream))
    minifat_bytes = struct.pack(f"<{len(minifat)}I", *minifat) if minifat else b""
    minifat_start = chain(minifat_bytes.ljust(-(-len(minifat_bytes) // sector) * sector,
                                              b"\xff"))

    def direntry(name: str, kind: int, child: int, right: int, start: int, size: int) -> bytes:
        encoded = name.encode("utf-16-le") + b"\x00\x00"
        return (encoded.ljust(64, b"\x00") + struct.pack("<HBB", len(encoded), kind, 1)
                + struct.pack("<III", nostream, right, child) + bytes(16) + bytes(4)
                + bytes(16) + struct.pack("<IQ", start if size or kind == 5 else end, size))

    dir_bytes = b"".join(
        direntry(name, kind, child, right, starts.get(i, end),
                 len(ministream) if i == 0 else len(data))
        for i, (name, kind, child, right, data) in enumerate(entries))
    dir_bytes = dir_bytes.ljust(-(-len(dir_bytes) // sector) * sector, b"\x00")
    dir_start = chain(dir_bytes)
    # the FAT itself goes last; sectors of it are marked FATSECT
    n_fat = 1
    while len(fat) + n_fat > n_fat * (sector // 4):
        n_fat += 1
    fat_start = len(fat)
    fat.extend([fatsect] * n_fat)
    assert n_fat <= 109
    fat.extend([free] * (n_fat * (sector // 4) - len(fat)))
    difat = list(range(fat_start, fat_start + n_fat)) + [free] * (109 - n_fat)
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16)
              + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + bytes(6)
              + struct.pack("<IIIIIIIII", 0, n_fat, dir_start, 0, 4096, minifat_start,
                            -(-len(minifat_bytes) // sector), end, 0)
              + struct.pack("<109I", *difat))
    assert len(header) == 512
    return header + bytes(body) + struct.pack(f"<{len(fat)}I", *fat)


def cfb_stream(data: bytes, name: str) -> bytes:
    """One stream of a compound file (to take a built file apart in tests)."""
    import olefile

    return bytes(olefile.OleFileIO(io.BytesIO(data)).openstream(name).read())


def word97_doc(pieces: list[tuple[str, bool]], *, encrypted: bool = False,
               table: str = "1Table", extra: CfbTree | None = None) -> bytes:
    """A Word 97 .doc laid out by [MS-DOC]: a FIB naming the table stream (`table`),
    whose Clx (one Prc to skip, then the piece table) maps the text to pieces of the
    WordDocument stream, each UTF-16LE or, when its flag is True, "compressed" cp1252.
    A table row ends, as in Word, with a cell-style mark (\\x07) whose paragraph has
    sprmPFTtp: write it as \\x1d here. Its paragraph properties are a PAPX in one FKP
    page (the first row's PAPX also has a sprmTDefTable in front, as Word writes)."""
    fib = bytearray(32 + 2 + 28 + 2 + 88 + 2 + 93 * 8)
    flags = (0x0200 if table == "1Table" else 0) | (0x0100 if encrypted else 0)
    struct.pack_into("<HHH", fib, 0, 0xA5EC, 0x00C1, 0)
    struct.pack_into("<H", fib, 0x0A, flags)
    struct.pack_into("<H", fib, 0x20, 14)
    struct.pack_into("<H", fib, 0x22 + 28, 22)
    fclcb = 0x22 + 28 + 2 + 88
    struct.pack_into("<H", fib, fclcb, 93)
    word = bytearray(fib.ljust(1024, b"\x00"))
    cps, pcds, marks = [0], b"", []  # marks: (start, end) of each row's end mark
    text_start = len(word)
    for text, compressed in pieces:
        at = len(word)
        width = 1 if compressed else 2
        marks += [(at + width * k, at + width * (k + 1)) for k, ch in enumerate(text)
                  if ch == "\x1d"]
        text = text.replace("\x1d", "\x07")
        word += text.encode("cp1252" if compressed else "utf-16-le")
        fc = (at * 2) | 0x40000000 if compressed else at
        cps.append(cps[-1] + len(text))
        pcds += struct.pack("<HIH", 0, fc, 0)
    text_end = len(word)
    # the FKP page: runs cut at every row end; the row ends' runs carry a TTP PAPX
    word += bytes(-len(word) % 512)
    pn = len(word) // 512
    row_ends = {e for _, e in marks}
    bounds = sorted({text_start, text_end, *(b for m in marks for b in m)})
    runs = list(itertools.pairwise(bounds))
    page = bytearray(512)
    page[511] = len(runs)
    struct.pack_into(f"<{len(bounds)}I", page, 0, *bounds)
    papx_first = bytes([6, 0, 0]) + b"\x08\xd6\x03\x00\xaa\xbb" + b"\x17\x24\x01"
    papx = bytes([3, 0, 0]) + b"\x17\x24\x01"
    place = 510
    for i, (a, b) in enumerate(runs):
        if (a, b) in marks:
            blob = papx_first if i == min(k for k, r in enumerate(runs) if r[1] in row_ends) \
                else papx
            place = (place - len(blob)) & ~1
            page[place:place + len(blob)] = blob
            page[4 * len(bounds) + 13 * i] = place // 2
    assert 4 * len(bounds) + 13 * len(runs) <= place
    word += page
    plc = struct.pack(f"<{len(cps)}I", *cps) + pcds
    clx = b"\x01" + struct.pack("<H", 2) + b"\x00\x00" + b"\x02" + struct.pack("<I", len(plc)) + plc
    bte = struct.pack("<III", text_start, text_end, pn)
    table_stream = bytes(256) + clx + bte
    struct.pack_into("<II", word, fclcb + 2 + 33 * 8, 256, len(clx))
    struct.pack_into("<II", word, fclcb + 2 + 13 * 8, 256 + len(clx), len(bte))
    return cfb({"WordDocument": bytes(word), table: table_stream,
                "\x05SummaryInformation": bytes(64), **(extra or {})})


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


def outlook_msg(subject: str, body: str, attachments: list[tuple[str, bytes | CfbTree]],
                *, codepage: int | None = None, string8: bool = False,
                top: bool = True) -> CfbTree:
    """An Outlook item as [MS-OXMSG] lays it out: property streams __substg1.0_PPPPTTTT
    (UTF-16, or 8-bit in `codepage` when `string8`), the fixed-size properties stream
    with the code page, one storage per attachment: by value (bytes) or an attached
    message (a tree from this function with top=False)."""
    def prop(pid: int, text: str) -> tuple[str, bytes]:
        if string8:
            return f"__substg1.0_{pid:04X}001E", text.encode(f"cp{codepage}") + b"\x00"
        return f"__substg1.0_{pid:04X}001F", _utf16(text)

    props = bytes(32 if top else 24)
    if codepage:
        props += struct.pack("<IIiI", (0x3FFD << 16) | 0x0003, 2, codepage, 0)
    tree: CfbTree = {"__properties_version1.0": props}
    tree.update([prop(0x0037, subject), prop(0x1000, body)])
    tree["__recip_version1.0_#00000000"] = {
        "__substg1.0_3001001F": _utf16("山田 太郎"),
        "__substg1.0_39FE001F": _utf16("yamada@example.com"),
        "__properties_version1.0": bytes(8)}
    for i, (name, content) in enumerate(attachments):
        # PR_ATTACH_METHOD (0x3705, PT_LONG): 1 by value, 5 an attached message, 6 OLE
        method = 1 if isinstance(content, bytes) else (
            5 if "__properties_version1.0" in content else 6)
        a: CfbTree = {"__substg1.0_3707001F": _utf16(name), "__properties_version1.0":
                      bytes(8) + struct.pack("<IIiI", (0x3705 << 16) | 0x0003, 2, method, 0)}
        if isinstance(content, bytes):
            a["__substg1.0_37010102"] = content
        else:
            a["__substg1.0_3701000D"] = content
        tree[f"__attach_version1.0_#{i:08X}"] = a
    return tree


_ODF_NS = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
           'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
           'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"')


def _odf(mimetype: str, body: str) -> bytes:
    content = (f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {_ODF_NS} '
               f'office:version="1.2"><office:body>{body}</office:body>'
               f"</office:document-content>")
    manifest = ('<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest='
                '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"><manifest:file-entry '
                f'manifest:full-path="/" manifest:media-type="{mimetype}"/></manifest:manifest>')
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("mimetype", mimetype)  # first and stored, as ODF requires
        zf.writestr("content.xml", content)
        zf.writestr("META-INF/manifest.xml", manifest)
    return buf.getvalue()


def ods(rows: list[list[str]], sheet: str = "名簿") -> bytes:
    cells = "".join(
        "<table:table-row>" + "".join(
            f'<table:table-cell office:value-type="string"><text:p>{c}</text:p>'
            "</table:table-cell>" for c in row) + "</table:table-row>" for row in rows)
    return _odf("application/vnd.oasis.opendocument.spreadsheet",
                f'<office:spreadsheet><table:table table:name="{sheet}">{cells}'
                "</table:table></office:spreadsheet>")


def odt(paragraphs: list[str]) -> bytes:
    body = "".join(f"<text:p>{p}</text:p>" for p in paragraphs)
    return _odf("application/vnd.oasis.opendocument.text", f"<office:text>{body}</office:text>")


# --- xlsx laid out as Excel writes it ----------------------------------------------------

XLSX_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
XLSX_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def raw_xlsx(sheet_data: str, strings: list[str] | None = None, *, sst_xml: str | None = None,
             sheet_xml: str | None = None, styles: str | None = None) -> bytes:
    """An xlsx laid out as Excel writes it (shared strings), from raw XML: openpyxl
    3.1 writes inline strings only."""
    members = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats'
            '.org/package/2006/content-types"><Default Extension="rels" ContentType='
            '"application/vnd.openxmlformats-package.relationships+xml"/><Default Extension='
            '"xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.'
            'main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application'
            '/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override '
            'PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.sharedStrings+xml"/></Types>'),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
            'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="'
            f'{XLSX_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>'),
        "xl/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{XLSX_NS}" '
            f'xmlns:r="{XLSX_REL}">'
            '<sheets><sheet name="顧客" sheetId="1" r:id="rId1"/></sheets></workbook>'),
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
            'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="'
            f'{XLSX_REL}/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="'
            f'{XLSX_REL}/sharedStrings" Target="sharedStrings.xml"/><Relationship Id="rId3" Type="'
            f'{XLSX_REL}/styles" Target="styles.xml"/></Relationships>'),
        "xl/worksheets/sheet1.xml": sheet_xml if sheet_xml is not None else (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n'
            f'<worksheet xmlns="{XLSX_NS}" '
            f'xmlns:r="{XLSX_REL}"><dimension ref="A1"/><sheetData>{sheet_data}</sheetData>'
            '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" '
            'footer="0.3"/></worksheet>'),
        "xl/sharedStrings.xml": sst_xml if sst_xml is not None else (
            f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{XLSX_NS}">'
            + "".join(s if s.startswith("<si>") else f"<si><t>{escape(s)}</t></si>"
                      for s in strings or []) + "</sst>"),
        "xl/styles.xml": styles or (
            f'<styleSheet xmlns="{XLSX_NS}"><numFmts count="1"><numFmt numFmtId="164" '
            'formatCode="yyyy/m/d"/></numFmts><cellXfs count="3"><xf numFmtId="0"/>'
            '<xf numFmtId="164"/><xf numFmtId="31"/></cellXfs></styleSheet>'),
    }
    return std_zip({k: v.encode() for k, v in members.items()})
