"""Attachment text extraction: which reader reads which attachment, within which limits.

`extract()` is pure and synchronous and never raises: anything it cannot read becomes a
problem entry so the policy can hold the message (fail closed). It is meant to run in a
worker process (guard.inspect.isolate): C extensions (pdfium, calamine) cannot be
interrupted from Python, so wall-clock and memory limits are enforced around it.

The format is decided by magic bytes first, then by extension / content type, because
the declared type is sender-controlled and often wrong ("application/octet-stream").
Containers are decided by what they hold: a zip by its member names (docx, pptx, xlsx,
ods, odt, or a plain archive), an OLE compound file by its streams (xls, doc, msg).
The readers themselves, and how to add one, are in guard.inspect.readers.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Mapping
from functools import partial

from guard.inspect.readers import archive, calamine, csvfile, documents, eml, pdf, plaintext
from guard.inspect.readers import xlsx as xlsx_reader
from guard.inspect.readers.extraction import Extracted, Extraction, PackageReader, Reader
from guard.inspect.readers.limits import Budget, ExtractLimits, LimitHit
from guard.inspect.readers.msgfile import read_msg_file
from guard.inspect.readers.worddoc import read_doc
from guard.inspect.readers.ziparchive import LayoutError, ZipArchive
from guard.mail.message import Attachment, MessageView, parse_message

__all__ = ["READERS", "Budget", "ExtractLimits", "Extracted", "detect_kind", "extract",
           "extract_message", "merge_extracted"]


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


# --- zip packages: the format by the member names --------------------------------------

def _package_reader(ex: Extraction, zf: ZipArchive) -> PackageReader:
    names = set(zf.namelist())
    if "word/document.xml" in names:
        return documents.read_docx
    if "ppt/presentation.xml" in names:
        return documents.read_pptx
    if "xl/workbook.xml" in names or "xl/workbook.bin" in names:
        return xlsx_reader.read_workbook
    if "mimetype" in names and "content.xml" in names:  # OpenDocument
        mimetype = ex.member_bytes(zf, zf.getinfo("mimetype"), ratio=False, cap=256)
        if b"spreadsheet" in mimetype:
            return xlsx_reader.read_workbook
        return documents.read_odf_text
    return archive.read


def _read_zip(ex: Extraction, att: Attachment, depth: int) -> None:
    try:
        zf = ZipArchive(att.data)
    except LayoutError as e:
        raise LimitHit(e.code, e.detail) from None
    except zipfile.BadZipFile as e:
        ex.problem("parse_error", att.where, f"bad zip: {e}")
        return
    with zf:
        _package_reader(ex, zf)(ex, zf, att, depth)


# --- OLE compound files: the format by the streams --------------------------------------

def _read_ole(ex: Extraction, att: Attachment, depth: int) -> None:
    import olefile

    # "incorrect" defects raise (olefile only logs them by default): a broken sector
    # chain must not read as a shorter stream, nor a self-referencing one as a huge one
    ole = olefile.OleFileIO(io.BytesIO(att.data), raise_defects=olefile.DEFECT_INCORRECT)
    try:
        paths = ole.listdir(streams=True, storages=False)
        # streams never share sectors: together they fit in the file
        if sum(ole.get_size(p) for p in paths) > len(att.data):
            ex.problem("parse_error", att.where,
                       "compound file whose streams are larger than the file")
            return
        streams = {"/".join(p) for p in paths}
        if "EncryptionInfo" in streams or "EncryptedPackage" in streams:
            ex.problem("encrypted", att.where, "password-protected Office document")
        elif "Workbook" in streams or "Book" in streams:
            calamine.read_workbook(ex, att)
        elif "WordDocument" in streams:
            read_doc(ex, ole, streams, att, depth)
        elif "PowerPoint Document" in streams:
            ex.problem("unknown_binary", att.where, "legacy PowerPoint .ppt not inspected")
        elif any(s.startswith("__substg1.0_") for s in streams):
            read_msg_file(ex, ole, att, depth)
        else:
            ex.problem("unknown_binary", att.where, "OLE compound file")
    finally:
        ole.close()


# --- what cannot be read ------------------------------------------------------------------

def _encrypted(ex: Extraction, att: Attachment, depth: int) -> None:
    ex.problem("encrypted", att.where, "S/MIME or PGP encrypted content")


def _other_archive(ex: Extraction, att: Attachment, depth: int) -> None:
    name = next(n for m, n in _OTHER_ARCHIVES.items() if att.data.startswith(m))
    ex.problem("unknown_binary", att.where, name + " not inspectable")


def _binary(ex: Extraction, att: Attachment, depth: int) -> None:
    ex.problem("unknown_binary", att.where,
               f"{att.content_type or 'unknown type'}, {len(att.data)} bytes")


def _nothing(ex: Extraction, att: Attachment, depth: int) -> None:
    """Images (no text layer; OCR is out of scope; logos and photos are not flagged)
    and signatures (no user content)."""


# --- the dispatcher ---------------------------------------------------------------------

# The reader for each kind detect_kind() gives.
READERS: Mapping[str, Reader] = {
    "zip": _read_zip,
    "pdf": pdf.read,
    "ole": _read_ole,
    "eml": eml.read,
    "csv": csvfile.read_csv,
    "tsv": csvfile.read_tsv,
    "html": plaintext.read_html,
    "text": plaintext.read_text,
    "encrypted": _encrypted,
    "other-archive": _other_archive,
    "binary": _binary,
    "image": _nothing,
    "signature": _nothing,
}


def _run(readers: Mapping[str, Reader], ex: Extraction, att: Attachment, depth: int) -> None:
    """Read one attachment (or nested file) with the reader for its kind; whatever goes
    wrong becomes a problem at its `where`."""
    where = att.where
    if depth > ex.limits.max_depth:
        ex.problem("too_deep", where, f"nesting depth > {ex.limits.max_depth}")
        return
    try:
        readers[detect_kind(att)](ex, att, depth)
    except LimitHit as e:
        ex.problem(e.code, where, e.detail)
    except RecursionError:
        ex.problem("too_deep", where, "recursion limit")
    except MemoryError:
        ex.problem("too_large", where, "memory limit reached")
    except Exception as e:  # extraction must never raise; unreadable means hold
        ex.problem("parse_error", where, f"{type(e).__name__}: {e}")


# --- public API ------------------------------------------------------------------------

DEFAULT_LIMITS = ExtractLimits()

def extract(
    attachment: Attachment,
    limits: ExtractLimits = DEFAULT_LIMITS,
    *,
    budget: Budget | None = None,
    depth: int = 0,
    readers: Mapping[str, Reader] | None = None,
) -> Extracted:
    """Texts, tables, problems and inner file names of one attachment. Never raises.
    `readers`: the reader for each kind (default READERS)."""
    ex = Extraction(limits, budget if budget is not None else Budget.for_message(limits),
                    partial(_run, READERS if readers is None else readers))
    try:
        ex.run(attachment, depth)
    except Exception as e:  # belt and braces: _run() records its own failures
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
    limits: ExtractLimits = DEFAULT_LIMITS,
) -> MessageView:
    """Parse and extract everything in this process (tests, CLI tools). The relay uses
    guard.inspect.isolate.ExtractionPool, which does the same work in a worker.
    `limits.parse_limits` applies to the message itself and to attached messages."""
    view = parse_message(raw, mail_from, rcpt_tos, limits.parse_limits)
    budget = Budget.for_message(limits)
    for att in view.attachments:
        merge_extracted(view, extract(att, limits, budget=budget))
    return view
