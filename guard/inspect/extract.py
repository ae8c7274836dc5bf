"""Attachment text extraction, one format at a time (docs: pii-and-extraction.md §2, §6).

`extract()` is pure and synchronous and never raises: anything it cannot read becomes a
problem entry so the policy can hold the message (fail closed). It is meant to run in a
worker process (guard.inspect.isolate): C extensions (pdfium, calamine) cannot be
interrupted from Python, so wall-clock and memory limits are enforced around it.

Format is decided by magic bytes first, then by extension / content type, because the
declared type is sender-controlled and often wrong ("application/octet-stream").
"""

from __future__ import annotations

import csv
import io
import logging
import posixpath
import re
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from guard.inspect.readers import msgfile, ooxml, worddoc
from guard.inspect.readers.ziparchive import LayoutError, ZipArchive, member_name
from guard.mail.message import (
    Attachment,
    MessageView,
    ParseLimits,
    Problem,
    Table,
    TextChunk,
    html_to_text,
    parse_into,
    parse_message,
    split_pieces,
)
from guard.mail.textdecode import decode_auto, decode_declared

MiB = 1024 * 1024
_T = TypeVar("_T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractLimits:
    """Defaults from pii-and-extraction.md §6."""

    max_depth: int = 5  # archive / embedded-object / attached-message nesting
    max_files_per_archive: int = 1000
    max_member_bytes: int = 100 * MiB  # decompressed, per archive member
    max_total_bytes: int = 256 * MiB  # decompressed, per message
    max_ratio: float = 100.0  # compression ratio of an archive member ...
    ratio_after_bytes: int = 1 * MiB  # ... checked once this much has been produced
    max_xml_part_bytes: int = 200 * MiB  # one OOXML/ODF XML part, uncompressed
    max_cells: int = 1_000_000  # per workbook / CSV
    # xlsx: cells read per sheet; later rows are counted and their strings go to the
    # text (guard.inspect.readers.ooxml). Above the personal-data scan's 20k cells per table
    # (guard.inspect.run.PII_LIMITS), with room for header search and column sampling.
    sheet_sample_cells: int = 25_000
    max_sheets: int = 100
    max_pdf_pages: int = 1000
    max_pdf_chars: int = 10_000_000
    min_pdf_chars_per_page: int = 20  # below: image-only (scanned) PDF
    max_text_chars: int = 20_000_000  # per attachment
    max_total_text_chars: int = 50_000_000  # per message
    detect_sample_bytes: int = 256 * 1024
    parse_limits: ParseLimits = field(default_factory=ParseLimits)  # message and .eml


@dataclass
class Extracted:
    texts: list[TextChunk] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    inner_names: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Budget:
    """What is left of the per-message allowances; shared by all attachments of one
    message (and passed between worker jobs, so it must stay a plain picklable value)."""

    bytes_left: int
    chars_left: int

    @classmethod
    def for_message(cls, limits: ExtractLimits) -> Budget:
        return cls(bytes_left=limits.max_total_bytes, chars_left=limits.max_total_text_chars)


class _LimitHit(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


# --- format detection --------------------------------------------------------------

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00",
                b"MM\x00*", b"BM")
_OTHER_ARCHIVES = {
    b"7z\xbc\xaf\x27\x1c": "7z archive",
    b"Rar!\x1a\x07": "RAR archive",
    b"\x1f\x8b": "gzip data",
    b"BZh": "bzip2 data",
    b"\xfd7zXZ\x00": "xz data",
    b"MSCF": "CAB archive",
}
_EML_HEAD_RE = re.compile(
    rb"\A(?:(?:received|return-path|from|date|message-id|mime-version|subject|to|cc|"
    rb"delivered-to|dkim-signature|reply-to|x-[a-z0-9-]+)[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*"
    rb"\r?\n){2}", re.I)
_TEXT_EXTS = {".txt", ".text", ".log", ".md", ".json", ".xml", ".ini", ".cfg", ".conf",
              ".yaml", ".yml", ".sql", ".vcf", ".ics", ".rtf"}
_CONTROL_RE = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")


# S/MIME and PGP/MIME: an encrypted body is uninspectable; a detached signature holds
# no user content (flagging it would hold every signed message).
_ENCRYPTED_TYPES = {"application/pkcs7-mime", "application/x-pkcs7-mime",
                    "application/pgp-encrypted"}
_ENCRYPTED_EXTS = {".p7m", ".pgp", ".gpg"}
_SIGNATURE_TYPES = {"application/pkcs7-signature", "application/x-pkcs7-signature",
                    "application/pgp-signature"}


def _ext(name: str) -> str:
    return posixpath.splitext(name.lower())[1]


def _looks_text(sample: bytes) -> bool:
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    if b"\x00" in sample:
        return False
    return len(_CONTROL_RE.findall(sample)) <= len(sample) // 100


def detect_kind(att: Attachment) -> str:
    """One of: zip, pdf, ole, encrypted, signature, eml, csv, tsv, html, text, image,
    other-archive, binary."""
    data = att.data
    head = data[:16]
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "zip"
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if head.startswith(_OLE_MAGIC):
        return "ole"
    for magic in _OTHER_ARCHIVES:
        if head.startswith(magic):
            return "other-archive"
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    ext = _ext(att.filename)
    ctype = att.content_type.lower()
    if (ctype in _ENCRYPTED_TYPES or ext in _ENCRYPTED_EXTS
            or data.lstrip()[:27] == b"-----BEGIN PGP MESSAGE-----"):
        return "encrypted"
    if ctype in _SIGNATURE_TYPES or ext in (".p7s", ".sig"):
        return "signature"
    if ext == ".eml" or ctype == "message/rfc822" or _EML_HEAD_RE.match(data[:8192]):
        return "eml"
    if ext == ".csv" or ctype in ("text/csv", "application/csv"):
        return "csv"
    if ext == ".tsv" or ctype == "text/tab-separated-values":
        return "tsv"
    if ext in (".html", ".htm") or ctype == "text/html":
        return "html"
    if ext in _TEXT_EXTS or ctype.startswith("text/") or _looks_text(data[:8192]):
        return "text"
    if ctype.startswith(("image/", "audio/", "video/")):
        return "image"
    return "binary"


# --- the extractor -------------------------------------------------------------------

class _Extractor:
    def __init__(self, limits: ExtractLimits, budget: Budget) -> None:
        self.limits = limits
        self.budget = budget
        self.out = Extracted()
        self.chars = 0  # this attachment's text so far
        self.cells = 0

    # -- outputs --

    def problem(self, code: str, where: str, detail: str) -> None:
        self.out.problems.append((code, where, detail[:300]))

    def text(self, where: str, text: str | list[str]) -> None:
        """Add a text (or consecutive pieces of one) within the character limits."""
        pieces = [text] if isinstance(text, str) else text
        cap = max(min(self.limits.max_text_chars - self.chars, self.budget.chars_left), 0)
        total = sum(map(len, pieces))
        if total > cap:
            self.problem("too_large", where, f"text truncated at {cap} characters")
            kept, left = [], cap
            for piece in pieces:
                if left <= 0:
                    break
                kept.append(piece[:left])
                left -= len(kept[-1])
            pieces, total = kept, cap
        if total:
            self.chars += total
            self.budget.chars_left -= total
            self.out.texts.extend(TextChunk(where, t) for t in split_pieces(pieces))

    def table(self, where: str, rows: list[list[str]], more_rows: int = 0) -> None:
        if rows:
            self.out.tables.append(Table(where, rows, more_rows))

    # -- dispatch --

    def run(self, att: Attachment, depth: int) -> None:
        where = att.where
        if depth > self.limits.max_depth:
            self.problem("too_deep", where, f"nesting depth > {self.limits.max_depth}")
            return
        try:
            kind = detect_kind(att)
            if kind == "zip":
                self._zip_container(att, depth)
            elif kind == "pdf":
                self._pdf(att)
            elif kind == "ole":
                self._ole(att, depth)
            elif kind == "eml":
                self._eml(att, depth)
            elif kind in ("csv", "tsv"):
                self._csv(att, kind)
            elif kind == "html":
                self.text(where, html_to_text(self._decode(att)))
            elif kind == "text":
                self.text(where, self._decode(att))
            elif kind == "encrypted":
                self.problem("encrypted", where, "S/MIME or PGP encrypted content")
            elif kind == "other-archive":
                self.problem("unknown_binary", where, _OTHER_ARCHIVES[
                    next(m for m in _OTHER_ARCHIVES if att.data.startswith(m))] +
                    " not inspectable")
            elif kind == "binary":
                self.problem("unknown_binary", where,
                             f"{att.content_type or 'unknown type'}, {len(att.data)} bytes")
            # images: no text layer and OCR is out of scope; not flagged (logos, photos)
            # signatures: no user content
        except _LimitHit as e:
            self.problem(e.code, where, e.detail)
        except RecursionError:
            self.problem("too_deep", where, "recursion limit")
        except MemoryError:
            self.problem("too_large", where, "memory limit reached")
        except Exception as e:  # extraction must never raise; unreadable means hold
            self.problem("parse_error", where, f"{type(e).__name__}: {e}")

    def _decode(self, att: Attachment) -> str:
        cap = self.limits.max_text_chars
        if att.charset:
            return decode_declared(att.data, att.charset)[:cap]
        return decode_auto(att.data, max_chars=cap,
                           sample_bytes=self.limits.detect_sample_bytes)

    # -- zip: archives and OOXML/ODF containers --

    def _open_zip(self, att: Attachment) -> ZipArchive:
        try:
            return ZipArchive(att.data)
        except LayoutError as e:
            raise _LimitHit(e.code, e.detail) from None

    def _zip_container(self, att: Attachment, depth: int) -> None:
        try:
            zf = self._open_zip(att)
        except zipfile.BadZipFile as e:
            self.problem("parse_error", att.where, f"bad zip: {e}")
            return
        with zf:
            names = set(zf.namelist())
            if "word/document.xml" in names:
                self._ooxml_text(zf, att, depth, _docx_parts(names))
            elif "ppt/presentation.xml" in names:
                self._ooxml_text(zf, att, depth, _pptx_parts(names))
            elif "xl/workbook.xml" in names or "xl/workbook.bin" in names:
                self._workbook(zf, att, depth)
            elif "mimetype" in names and "content.xml" in names:
                mimetype = self._member_bytes(zf, zf.getinfo("mimetype"), att.where,
                                              ratio=False, cap=256)
                if b"spreadsheet" in mimetype:
                    self._workbook(zf, att, depth)
                else:
                    self._ooxml_text(zf, att, depth, ["content.xml"])
            else:
                self._archive(zf, att, depth)

    def _member_stream(self, zf: ZipArchive, info: zipfile.ZipInfo, where: str,
                       ratio: bool, cap: int | None = None) -> IO[bytes]:
        limit = self.limits.max_member_bytes if cap is None else cap
        return _BoundedReader(zf.open_member(info), info, where, self, limit, ratio)

    def _member_bytes(self, zf: ZipArchive, info: zipfile.ZipInfo, where: str,
                      ratio: bool = True, cap: int | None = None) -> bytes:
        with self._member_stream(zf, info, where, ratio, cap) as f:
            return f.read()

    def _archive(self, zf: ZipArchive, att: Attachment, depth: int) -> None:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > self.limits.max_files_per_archive:
            self.problem("too_many_parts", att.where,
                         f"{len(infos)} files > {self.limits.max_files_per_archive}")
            infos = infos[: self.limits.max_files_per_archive]
        encrypted = 0
        members: list[tuple[zipfile.ZipInfo, str]] = []
        for info in infos:
            name = member_name(info)
            member_where = f"{att.where}/{name}"
            self.out.inner_names.append((member_where, name))
            if info.flag_bits & 0x1 or info.compress_type == 99:  # ZipCrypto / WinZip AES
                encrypted += 1
            else:
                members.append((info, name))
        if encrypted:
            self.problem("encrypted", att.where, f"{encrypted} encrypted member(s)")
        for info, name in members:
            member_where = f"{att.where}/{name}"
            if depth + 1 > self.limits.max_depth:
                self.problem("too_deep", member_where,
                             f"nesting depth > {self.limits.max_depth}")
                continue
            try:
                data = self._member_bytes(zf, info, member_where)
            except _LimitHit as e:
                self.problem(e.code, member_where, e.detail)
                if e.code == "bomb":
                    return  # the rest of a bomb archive is not worth reading
                continue
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError,
                    EOFError, ValueError) as e:
                self.problem("parse_error", member_where, f"{type(e).__name__}: {e}")
                continue
            self.run(Attachment(filename=posixpath.basename(name), content_type="",
                                data=data, where=member_where), depth + 1)

    def _ooxml_text(self, zf: ZipArchive, att: Attachment, depth: int,
                    parts: list[str]) -> None:
        chunks: list[str] = []
        for name in parts:
            kind = "w" if name.startswith("word/") else "a" if name.startswith("ppt/") else ""
            chunks.extend(self._part_text(zf, zf.getinfo(name), att.where, kind))
        self.text(att.where, chunks)
        self._embeddings(zf, att, depth)

    def _part_text(self, zf: ZipArchive, info: zipfile.ZipInfo, where: str,
                   kind: str) -> list[str]:
        """The text of one XML part: the fast run reader (guard.inspect.readers.ooxml) for
        WordprocessingML ("w") and DrawingML ("a"), the defusedxml walk for what it does
        not handle (and for ODF). A broken part is a problem of its own: the other
        parts are still read."""

        def read() -> list[str]:
            if kind:
                try:
                    with self._member_stream(zf, info, where, ratio=False,
                                             cap=self.limits.max_xml_part_bytes) as f:
                        return ooxml.word_texts(ooxml.read_chunks(f), kind)
                except ooxml.Unsupported as e:
                    log.debug("%s %s: full XML parser (%s)", where, info.filename, e)
            with self._member_stream(zf, info, where, ratio=False,
                                     cap=self.limits.max_xml_part_bytes) as f:
                return [_xml_text(f)]

        return self._one_part(f"{where}/{info.filename}", read) or []

    def _one_part(self, where: str, read: Callable[[], _T]) -> _T | None:
        """read(), or None with a parse_error problem at `where` when the part is
        broken; limits (bombs, memory) still end the whole attachment."""
        try:
            return read()
        except (_LimitHit, MemoryError, RecursionError):
            raise
        except Exception as e:
            self.problem("parse_error", where, f"{type(e).__name__}: {e}")
            return None

    def _embeddings(self, zf: ZipArchive, att: Attachment, depth: int) -> None:
        """Embedded objects (an xlsx inside a docx...) are extracted like attachments."""
        for info in zf.infolist():
            if info.is_dir() or "/embeddings/" not in f"/{info.filename}":
                continue
            member_where = f"{att.where}/{info.filename}"
            self.out.inner_names.append((member_where, info.filename))
            if depth + 1 > self.limits.max_depth:
                self.problem("too_deep", member_where, "embedded object too deep")
                continue
            data = self._member_bytes(zf, info, member_where)
            self.run(Attachment(filename=posixpath.basename(info.filename), content_type="",
                                data=data, where=member_where), depth + 1)

    # -- spreadsheets --

    def _workbook(self, zf: ZipArchive, att: Attachment, depth: int) -> None:
        if "xl/workbook.xml" in zf.namelist():
            try:
                self._xlsx(zf, att)
                self._workbook_notes(zf, att)
                self._embeddings(zf, att, depth)
                return
            except ooxml.Unsupported as e:
                # not an error: calamine reads the whole workbook instead (slower)
                log.debug("%s: calamine instead of the sampling reader (%s)", att.where, e)
        # calamine reads the zip itself, so first make sure the XML parts really inflate
        # within limits (declared sizes can lie); this costs one extra inflate pass.
        for info in zf.infolist():
            if info.filename.endswith((".xml", ".bin")) and not info.is_dir():
                with self._member_stream(zf, info, att.where, ratio=False,
                                         cap=self.limits.max_xml_part_bytes) as f:
                    while f.read(1 * MiB):
                        pass
        self._calamine(att)
        self._workbook_notes(zf, att)
        self._embeddings(zf, att, depth)

    def _workbook_notes(self, zf: ZipArchive, att: Attachment) -> None:
        """Text outside the cells, which neither cell reader sees: cell comments (legacy
        and threaded) and the text of drawings and charts, found through the parts'
        relationships (and by their usual names). Their own `where` (".../comments"),
        so the personal-data scan reads them as text: the workbook's own text is
        skipped there (its table is scanned instead)."""
        from defusedxml.ElementTree import fromstring

        cap = self.limits.max_xml_part_bytes

        def rels(name: str) -> list[Any] | None:
            return self._one_part(f"{att.where}/{name}", lambda: list(fromstring(
                self._member_bytes(zf, zf.getinfo(name), att.where, ratio=False, cap=cap))))

        def comment(name: str) -> str:
            with self._member_stream(zf, zf.getinfo(name), att.where, ratio=False,
                                     cap=cap) as f:
                return _comment_text(f)

        comments, drawings = _workbook_note_parts(set(zf.namelist()), rels)
        texts = [self._one_part(f"{att.where}/{name}", lambda name=name: comment(name)) or ""
                 for name in sorted(comments, key=_num_key)]
        for name in sorted(drawings, key=_num_key):
            texts.extend(self._part_text(zf, zf.getinfo(name), att.where, "a"))
        self.text(f"{att.where}/comments", "\n".join(t for t in texts if t.strip()))

    def _xlsx(self, zf: ZipArchive, att: Attachment) -> None:
        """xlsx/xlsm through guard.inspect.readers.ooxml: per sheet, the first
        `sheet_sample_cells` cells are read as table rows, the other rows are counted
        (Table.more_rows) and their strings added to the text. Output is added only
        once the whole workbook was read, so a fallback to calamine never doubles it."""
        where = att.where
        lim = self.limits
        names = set(zf.namelist())

        def part(name: str) -> bytes:
            return self._member_bytes(zf, zf.getinfo(name), where, ratio=False,
                                      cap=lim.max_xml_part_bytes)

        rels = "xl/_rels/workbook.xml.rels"
        if rels not in names:
            raise ooxml.Unsupported("no workbook relationships")
        book = ooxml.workbook_parts(part("xl/workbook.xml"), part(rels), names)
        sst = ooxml.SharedStrings(part(book.shared_strings)) if book.shared_strings else None
        kinds = ooxml.styles(part(book.styles)).kinds if book.styles else []
        sheets = book.sheets
        problems: list[str] = []
        if len(sheets) > lim.max_sheets:
            problems.append(f"{len(sheets)} sheets; first {lim.max_sheets} read")
            sheets = sheets[: lim.max_sheets]
        used: set[int] = set()
        results: list[ooxml.SheetResult] = []
        cells = self.cells
        for name, path in sheets:
            budget = min(lim.sheet_sample_cells, lim.max_cells - cells)
            if budget <= 0:
                problems.append(f"cell limit {lim.max_cells} reached in sheet {name!r}")
                break
            with self._member_stream(zf, zf.getinfo(path), where, ratio=False,
                                     cap=lim.max_xml_part_bytes) as f:
                res = ooxml.read_sheet(ooxml.read_chunks(f, 1 * MiB), sst or [], kinds,
                                       book.is_1904, budget, used)
            cells += res.cells
            results.append(res)
            if res.more_rows and budget < lim.sheet_sample_cells:
                # the sample was cut by the workbook's cell limit, not by the sample size
                problems.append(f"cell limit {lim.max_cells} reached in sheet {name!r}")
                break
        # all read (the shared strings' text too, which can still fail): now the outputs
        texts: list[str] = []
        for res in results:
            texts.append("\n".join("\t".join(r) for r in res.rows))
            texts.extend(res.tail_texts)
        if sst is not None and any(res.more_rows or res.tail_texts for res in results):
            # rows after a sample: every text cell of the workbook is a shared string,
            # so the ones the sampled rows did not use carry the rest of the text
            texts.append(sst.unused_text(used))
        self.cells = cells
        for detail in problems:
            self.problem("too_large", where, detail)
        for res in results:
            self.table(where, res.rows, res.more_rows)
        self.text(where, "\n\n".join(t for t in texts if t))

    def _calamine(self, att: Attachment) -> None:
        import python_calamine

        try:
            wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(att.data))
        except python_calamine.PasswordError:
            self.problem("encrypted", att.where, "password-protected workbook")
            return
        names = list(wb.sheet_names)
        if len(names) > self.limits.max_sheets:
            self.problem("too_large", att.where,
                         f"{len(names)} sheets; first {self.limits.max_sheets} read")
            names = names[: self.limits.max_sheets]
        texts: list[str] = []
        for name in names:
            rows: list[list[str]] = []
            try:
                sheet = wb.get_sheet_by_name(name)
            except python_calamine.CalamineError as e:
                self.problem("parse_error", f"{att.where}", f"sheet {name!r}: {e}")
                continue
            truncated = False
            for row in sheet.iter_rows():
                # str cells inline: this loop runs once per cell (a million of them)
                cells = _trim_row([v.strip() if type(v) is str else _cell_str(v) for v in row])
                if not cells:
                    continue
                self.cells += len(cells)
                if self.cells > self.limits.max_cells:
                    truncated = True
                    break
                rows.append(cells)
            self.table(att.where, rows)
            texts.append("\n".join("\t".join(r) for r in rows))
            if truncated:
                self.problem("too_large", att.where,
                             f"cell limit {self.limits.max_cells} reached in sheet {name!r}")
                break
        self.text(att.where, "\n\n".join(t for t in texts if t))

    def _csv(self, att: Attachment, kind: str) -> None:
        text = self._decode(att)
        self.text(att.where, text)
        first = text[:4096].split("\n", 1)[0]
        delimiter = "\t" if kind == "tsv" or first.count("\t") > first.count(",") else ","
        rows: list[list[str]] = []
        try:
            for row in csv.reader(io.StringIO(text), delimiter=delimiter):
                cells = _trim_row([c.strip() for c in row])
                if not cells:
                    continue
                self.cells += len(cells)
                if self.cells > self.limits.max_cells:
                    self.problem("too_large", att.where,
                                 f"cell limit {self.limits.max_cells} reached")
                    break
                rows.append(cells)
        except csv.Error as e:
            self.problem("parse_error", att.where, f"csv: {e}")
        self.table(att.where, rows)

    # -- PDF --

    def _pdf(self, att: Attachment) -> None:
        import pypdfium2 as pdfium

        try:
            doc = pdfium.PdfDocument(att.data)
        except pdfium.PdfiumError as e:
            if "password" in str(e).lower():
                self.problem("encrypted", att.where, "password-protected PDF")
                return
            self._pdf_pypdf(att, f"pdfium: {e}")
            return
        try:
            n = len(doc)
            pages = min(n, self.limits.max_pdf_pages)
            if n > pages:
                self.problem("too_large", att.where, f"{n} pages; first {pages} read")
            out: list[str] = []
            total = 0
            for i in range(pages):
                page = doc[i]
                try:
                    textpage = page.get_textpage()
                    try:
                        t = textpage.get_text_bounded()
                    finally:
                        textpage.close()
                finally:
                    page.close()
                out.append(t)
                total += len(t)
                if total > self.limits.max_pdf_chars:
                    self.problem("too_large", att.where,
                                 f"PDF text limit {self.limits.max_pdf_chars} reached")
                    break
        finally:
            doc.close()
        self._pdf_result(att, out, pages)

    def _pdf_pypdf(self, att: Attachment, why: str) -> None:
        import pypdf

        try:
            reader = pypdf.PdfReader(io.BytesIO(att.data))
            if reader.is_encrypted and not reader.decrypt(""):
                self.problem("encrypted", att.where, "password-protected PDF")
                return
            n = len(reader.pages)
            pages = min(n, self.limits.max_pdf_pages)
            out = [reader.pages[i].extract_text() or "" for i in range(pages)]
        except Exception as e:
            self.problem("parse_error", att.where, f"{why}; pypdf: {type(e).__name__}: {e}")
            return
        self._pdf_result(att, out, pages)

    def _pdf_result(self, att: Attachment, out: list[str], pages: int) -> None:
        text = "\n".join(out).replace("\r\n", "\n")
        if pages and len(text.strip()) < self.limits.min_pdf_chars_per_page * pages:
            self.problem("no_text", att.where, "no text layer (scanned or image-only PDF)")
        self.text(att.where, text)

    # -- OLE: legacy Office and encrypted OOXML --

    def _ole(self, att: Attachment, depth: int) -> None:
        import olefile

        # "incorrect" defects raise (olefile only logs them by default): a broken sector
        # chain must not read as a shorter stream, nor a self-referencing one as a huge one
        ole = olefile.OleFileIO(io.BytesIO(att.data), raise_defects=olefile.DEFECT_INCORRECT)
        try:
            paths = ole.listdir(streams=True, storages=False)
            # streams never share sectors: together they fit in the file
            if sum(ole.get_size(p) for p in paths) > len(att.data):
                self.problem("parse_error", att.where,
                             "compound file whose streams are larger than the file")
                return
            streams = {"/".join(p) for p in paths}
            if "EncryptionInfo" in streams or "EncryptedPackage" in streams:
                self.problem("encrypted", att.where, "password-protected Office document")
            elif "Workbook" in streams or "Book" in streams:
                self._calamine(att)
            elif "WordDocument" in streams:
                self._doc(ole, streams, att, depth)
            elif "PowerPoint Document" in streams:
                self.problem("unknown_binary", att.where, "legacy PowerPoint .ppt not inspected")
            elif any(s.startswith("__substg1.0_") for s in streams):
                self._msg(ole, att, depth)
            else:
                self.problem("unknown_binary", att.where, "OLE compound file")
        finally:
            ole.close()

    def _ole_stream(self, ole: Any, name: str | list[str]) -> bytes:
        return self._charged(bytes(ole.openstream(name).read()))

    def _charged(self, data: bytes) -> bytes:
        """Bytes taken out of a container count against the message's allowance, like
        inflated zip members."""
        self.budget.bytes_left -= len(data)
        if self.budget.bytes_left < 0:
            raise _LimitHit("bomb", f"message inflates past {self.limits.max_total_bytes} "
                            "bytes")
        return data

    def _doc(self, ole: Any, streams: set[str], att: Attachment, depth: int) -> None:
        """Word 97–2003 through its piece table (guard.inspect.readers.worddoc), and the files
        embedded in it (ObjectPool)."""
        try:
            doc = worddoc.doc_text(
                lambda name: self._ole_stream(ole, name) if name in streams
                else None, self.limits.max_text_chars)
        except worddoc.DocEncrypted as e:
            self.problem("encrypted", att.where, str(e))
            return
        except worddoc.DocError as e:
            self.problem("parse_error", att.where, f"Word .doc: {e}")
            return
        if doc.truncated:
            self.problem("too_large", att.where,
                         f"text truncated at {self.limits.max_text_chars} characters")
        self.text(att.where, doc.text)
        self._object_pool(ole, streams, att, depth)

    def _object_pool(self, ole: Any, streams: set[str], att: Attachment, depth: int) -> None:
        """Objects embedded in a .doc ([MS-DOC] 2.1.5 ObjectPool): a whole file
        ("Package": an xlsx or docx) or a packaged file (Ole10Native) is read like an
        attachment; other objects (an Excel 97 sheet as OLE streams) are reported."""
        objects: dict[str, set[str]] = {}
        for s in streams:
            parts = s.split("/")
            if len(parts) >= 3 and parts[0] == "ObjectPool":
                objects.setdefault(parts[1], set()).add("/".join(parts[2:]))
        for obj, names in sorted(objects.items()):
            where = f"{att.where}/ObjectPool/{obj}"
            if "Package" in names:
                data = self._ole_stream(ole, ["ObjectPool", obj, "Package"])
                self.out.inner_names.append((where, obj))
                self.run(Attachment(filename=obj, content_type="", data=data, where=where),
                         depth + 1)
            elif "\x01Ole10Native" in names:
                raw = self._ole_stream(ole, ["ObjectPool", obj, "\x01Ole10Native"])
                name, data = _ole10_native(raw)
                self.out.inner_names.append((f"{where}/{name}", name))
                self.run(Attachment(filename=name, content_type="", data=data,
                                    where=f"{where}/{name}"), depth + 1)
            elif names & {"Workbook", "Book", "WordDocument", "PowerPoint Document",
                          "CONTENTS", "Contents"}:
                self.problem("unknown_binary", where, "embedded Office object not inspected")

    def _msg(self, ole: Any, att: Attachment, depth: int) -> None:
        """An Outlook item (guard.inspect.readers.msgfile): its subject and body as text, its
        attachments like any others, attached items inside it too."""
        try:
            msg = msgfile.read_msg(ole, self.limits.parse_limits.max_parts,
                                   self.limits.max_depth - depth)
        except msgfile.MsgError as e:
            self.problem("parse_error", att.where, f"Outlook .msg: {e}")
            return
        self._msg_parts(msg, att.where, depth)

    def _msg_parts(self, msg: msgfile.MsgMessage, where: str, depth: int) -> None:
        if msg.subject:
            self.text(where, msg.subject)
        body = msg.body or (html_to_text(msg.html) if msg.html else "")
        if body:
            self.text(where, body)
        for code, detail in msg.problems:
            self.problem(code, where, detail)
        for a in msg.attachments:
            inner = f"{where}/{a.name}"
            if a.name:
                self.out.inner_names.append((inner, a.name))  # names are checked too
            if a.problem is not None:
                self.problem(a.problem[0], inner, a.problem[1])
            elif a.message is not None:
                self._msg_parts(a.message, inner, depth + 1)
            elif a.data is not None:
                self.run(Attachment(filename=a.name, content_type="",
                                    data=self._charged(a.data), where=inner), depth + 1)

    # -- attached messages --

    def _eml(self, att: Attachment, depth: int) -> None:
        view = MessageView(mail_from="", rcpt_tos=[])
        parse_into(att.data, view, self.limits.parse_limits, prefix=att.where)
        for chunk in view.texts:
            self.text(chunk.where, chunk.text)
        self.out.problems.extend(view.problems)
        for inner in view.attachments:
            self.out.inner_names.append((inner.where, inner.filename))
            self.run(inner, depth + 1)


# --- helpers ---------------------------------------------------------------------------

class _BoundedReader(io.RawIOBase):
    """A zip member stream that stops at byte limits and, for archive members, at a
    compression ratio — enforced on bytes actually produced, since declared sizes lie."""

    def __init__(self, raw: IO[bytes], info: zipfile.ZipInfo, where: str,
                 ex: _Extractor, limit: int, ratio: bool) -> None:
        super().__init__()
        self._raw = raw
        self._where = where
        self._ex = ex
        self._limit = limit
        self._ratio = ratio
        self._compressed = max(info.compress_size, 1)
        self.produced = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        """At most 1 MiB per call (the limits are checked per step), passed through
        without the copy RawIOBase.read would make."""
        if n is None or n < 0:
            return self.readall()
        chunk = self._raw.read(min(n, 1 * MiB))
        self._count(len(chunk))
        return chunk

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)

    def _count(self, n: int) -> None:
        self.produced += n
        lim = self._ex.limits
        if self.produced > self._limit:
            raise _LimitHit("bomb", f"member inflates past {self._limit} bytes")
        self._ex.budget.bytes_left -= n
        if self._ex.budget.bytes_left < 0:
            raise _LimitHit("bomb", f"message inflates past {lim.max_total_bytes} bytes")
        if (self._ratio and self.produced > lim.ratio_after_bytes
                and self.produced / self._compressed > lim.max_ratio):
            raise _LimitHit("bomb", f"compression ratio > {lim.max_ratio:g}:1")

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(1 * MiB):
            parts.append(chunk)
        return b"".join(parts)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
_ODF_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TEXT_TAGS = {_W + "t", _A + "t", _W + "delText"}
_PARA_TAGS = {_W + "p", _A + "p", _ODF_TEXT + "p", _ODF_TEXT + "h"}


def _xml_text(stream: IO[bytes]) -> str:
    """Text of one OOXML/ODF part: w:t / a:t runs, tabs and breaks as whitespace, a
    newline per paragraph, table rows as tab-separated lines (so header rows such as
    "氏名\t電話" stay recognisable). defusedxml with forbid_dtd: parts never carry a
    DOCTYPE, and refusing one stops entity-expansion bombs."""
    from defusedxml.ElementTree import iterparse

    out: list[str] = []
    in_cell = 0
    for event, elem in iterparse(stream, events=("start", "end"), forbid_dtd=True):
        tag = elem.tag
        if event == "start":
            if tag == _W + "tc":
                in_cell += 1
            continue
        if tag in _TEXT_TAGS:
            out.append(elem.text or "")
        elif tag == _W + "tab" and _W + "pos" not in elem.attrib:  # (else a tab stop)
            out.append("\t")
        elif tag in (_W + "br", _W + "cr", _A + "br"):  # a:br: a line break in a slide
            out.append("\n")
        elif tag == _W + "tc":
            in_cell -= 1
            if out and out[-1] == " ":
                out.pop()
            out.append("\t")
        elif tag == _W + "tr":
            if out and out[-1] == "\t":
                out.pop()
            out.append("\n")
            elem.clear()
        elif tag in _PARA_TAGS:
            if tag.startswith(_ODF_TEXT):
                out.append("".join(elem.itertext()))
            out.append(" " if in_cell else "\n")
            elem.clear()  # keep memory flat on big documents
    return "".join(out)


_NOTE_RELS = {"comments": "comments", "threadedComment": "comments",
              "drawing": "drawings", "chart": "drawings"}


def _workbook_note_parts(names: set[str], rels: Callable[[str], list[Any] | None]
                         ) -> tuple[set[str], set[str]]:
    """(comment parts, drawing and chart parts) of a workbook: the targets of the
    relationships of those types in every xl/ relationships file (`rels(name)`: its
    Relationship elements, None when it cannot be read), and the parts with the names
    Excel and openpyxl give them."""
    found: dict[str, set[str]] = {"comments": set(), "drawings": set()}
    for name in names:
        if re.fullmatch(r"xl/(?:[^/]+/)?(?:comments?|threadedComment)[^/]*\.xml", name,
                        re.IGNORECASE):
            found["comments"].add(name)
        elif re.fullmatch(r"xl/(?:drawings|charts)/[^/]+\.xml", name):
            found["drawings"].add(name)
        if not (name.startswith("xl/") and name.endswith(".rels")):
            continue
        folder = posixpath.dirname(posixpath.dirname(name))  # xl/worksheets/_rels/… → xl/worksheets
        for rel in rels(name) or ():
            kind = _NOTE_RELS.get(rel.get("Type", "").rsplit("/", 1)[-1])
            target = rel.get("Target", "")
            if kind is None or not target or rel.get("TargetMode") == "External":
                continue
            path = posixpath.normpath(target.lstrip("/") if target.startswith("/")
                                      else posixpath.join(folder, target))
            if path in names:
                found[kind].add(path)
    return found["comments"], found["drawings"]


def _comment_text(stream: IO[bytes]) -> str:
    """One line per cell comment: the text runs (`t`) of a legacy comment or the `text`
    of a threaded one, whatever the namespace."""
    from defusedxml.ElementTree import iterparse

    out: list[str] = []
    line: list[str] = []
    for _event, elem in iterparse(stream, events=("end",), forbid_dtd=True):
        local = elem.tag.rpartition("}")[2]
        if local == "t" or (local == "text" and not len(elem)):
            line.append(elem.text or "")
        elif local in ("comment", "threadedComment"):
            out.append("".join(line).replace("\n", " "))
            line = []
            elem.clear()
    return "\n".join(out)


def _ole10_native(raw: bytes) -> tuple[str, bytes]:
    """(file name, bytes) of a packaged file: u32 size, u16 type, then the label, the
    source path, two u32, the temporary path (NUL-terminated, ANSI) and the data."""
    try:
        pos = 6
        label_end = raw.index(b"\x00", pos)
        label = raw[pos:label_end].decode("cp932", "replace")
        pos = raw.index(b"\x00", label_end + 1) + 1 + 8  # source path, two u32
        pos = raw.index(b"\x00", pos) + 1  # temporary path
        size = struct.unpack_from("<I", raw, pos)[0]
        data = raw[pos + 4:pos + 4 + size]
        if len(data) == size:
            return (label.replace("/", "_").replace("\\", "_") or "object"), data
    except (ValueError, struct.error):
        pass
    return "object", raw


def _num_key(name: str) -> tuple[str, int, str]:
    m = re.search(r"(\d+)\.xml$", name)
    return (name[: m.start()] if m else name, int(m.group(1)) if m else 0, name)


def _docx_parts(names: set[str]) -> list[str]:
    extra = sorted(n for n in names if re.fullmatch(
        r"word/(header\d*|footer\d*|footnotes|endnotes|comments)\.xml", n))
    return ["word/document.xml", *extra]


def _pptx_parts(names: set[str]) -> list[str]:
    slides = sorted((n for n in names if re.fullmatch(r"ppt/slides/slide\d+\.xml", n)),
                    key=_num_key)
    notes = sorted((n for n in names if re.fullmatch(r"ppt/notesSlides/notesSlide\d+\.xml", n)),
                   key=_num_key)
    comments = sorted(n for n in names if re.fullmatch(r"ppt/comments/[^/]+\.xml", n))
    return [*slides, *notes, *comments]


_cell_str = ooxml.cell_str  # one definition for calamine's values and the fast reader


def _trim_row(cells: list[str]) -> list[str]:
    while cells and not cells[-1]:
        cells.pop()
    return cells


# --- public API ------------------------------------------------------------------------

def extract(
    attachment: Attachment,
    limits: ExtractLimits = ExtractLimits(),
    *,
    budget: Budget | None = None,
    depth: int = 0,
) -> Extracted:
    """Texts, tables, problems and inner file names of one attachment. Never raises."""
    ex = _Extractor(limits, budget if budget is not None else Budget.for_message(limits))
    try:
        ex.run(attachment, depth)
    except Exception as e:  # belt and braces: run() records its own failures
        ex.problem("parse_error", attachment.where, f"{type(e).__name__}: {e}")
    return ex.out


def merge_extracted(view: MessageView, extracted: Extracted) -> None:
    view.texts.extend(extracted.texts)
    view.tables.extend(extracted.tables)
    view.problems.extend(extracted.problems)
    view.inner_names.extend(extracted.inner_names)


def extract_message(
    raw: bytes,
    mail_from: str,
    rcpt_tos: list[str],
    limits: ExtractLimits = ExtractLimits(),
) -> MessageView:
    """Parse and extract everything in this process (tests, CLI tools). The relay uses
    guard.inspect.isolate.ExtractionPool, which does the same work in a worker.
    `limits.parse_limits` applies to the message itself and to attached messages."""
    view = parse_message(raw, mail_from, rcpt_tos, limits.parse_limits)
    budget = Budget.for_message(limits)
    for att in view.attachments:
        merge_extracted(view, extract(att, limits, budget=budget))
    return view
