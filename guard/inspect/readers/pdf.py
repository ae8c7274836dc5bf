"""PDF: the text layer of each page through pdfium, pypdf when pdfium cannot open the
file. A PDF with (almost) no text is reported: a scan or an image cannot be read."""

from __future__ import annotations

import io

from guard.inspect.readers.extraction import Extraction
from guard.mail.message import Attachment


def read(ex: Extraction, att: Attachment, depth: int) -> None:
    import pypdfium2 as pdfium

    try:
        doc = pdfium.PdfDocument(att.data)
    except pdfium.PdfiumError as e:
        if "password" in str(e).lower():
            ex.problem("encrypted", att.where, "password-protected PDF")
            return
        _read_pypdf(ex, att, f"pdfium: {e}")
        return
    try:
        n = len(doc)
        pages = min(n, ex.limits.max_pdf_pages)
        if n > pages:
            ex.problem("too_large", att.where, f"{n} pages; first {pages} read")
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
            if total > ex.limits.max_pdf_chars:
                ex.problem("too_large", att.where,
                           f"PDF text limit {ex.limits.max_pdf_chars} reached")
                break
    finally:
        doc.close()
    _result(ex, att, out, pages)


def _read_pypdf(ex: Extraction, att: Attachment, why: str) -> None:
    import pypdf

    try:
        reader = pypdf.PdfReader(io.BytesIO(att.data))
        if reader.is_encrypted and not reader.decrypt(""):
            ex.problem("encrypted", att.where, "password-protected PDF")
            return
        n = len(reader.pages)
        pages = min(n, ex.limits.max_pdf_pages)
        out = [reader.pages[i].extract_text() or "" for i in range(pages)]
    except Exception as e:
        ex.problem("parse_error", att.where, f"{why}; pypdf: {type(e).__name__}: {e}")
        return
    _result(ex, att, out, pages)


def _result(ex: Extraction, att: Attachment, out: list[str], pages: int) -> None:
    text = "\n".join(out).replace("\r\n", "\n")
    if pages and len(text.strip()) < ex.limits.min_pdf_chars_per_page * pages:
        ex.problem("no_text", att.where, "no text layer (scanned or image-only PDF)")
    ex.text(att.where, text)
