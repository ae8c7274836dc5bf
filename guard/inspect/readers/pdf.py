"""PDF: the text layer of each page through pdfium, pypdf when pdfium cannot open the
file. A PDF with (almost) no text is reported: a scan or an image cannot be read.

A table's cells are separate text objects with wide gaps between them; pdfium joins
them with one generated space, like words. Where such a gap is wider than the text is
high, the space becomes a tab, so a roster's rows read as rows of cells
(guard.inspect.pii.texttables) and not as one sentence."""

from __future__ import annotations

import io
from typing import Any

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
                    t = _columns(textpage) or _bounded_text(textpage, page)
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


_ONE_PASS_MAX_CHARS = 250_000  # a page of ordinary text has a few thousand


def _bounded_text(textpage: Any, page: Any) -> str:
    """textpage.get_text_bounded(), with one pdfium text pass instead of two: pypdfium2
    asks for the length first and then for the text, and pdfium lays out the page's
    text for each (~0.1 ms a page of the bench PDF). Here the buffer is large enough
    for any page (each character adds at most a CR LF and a surrogate pair). When the
    text is not exactly one UTF-16 unit per character (a surrogate pair: pypdfium2 cuts
    such text at pdfium's character count), pypdfium2 reads it as before."""
    import ctypes

    import pypdfium2.raw as pdfium_c

    chars = textpage.count_chars()
    if chars > _ONE_PASS_MAX_CHARS:  # (a hostile page: no buffer four times its text)
        return str(textpage.get_text_bounded())
    left, bottom, right, top = page.get_bbox()
    size = 4 * chars + 4
    buf = (ctypes.c_ushort * size)()
    got = pdfium_c.FPDFText_GetBoundedText(textpage.raw, left, top, right, bottom, buf, size)
    if got <= 0:
        return ""
    if got < size:
        # pdfium writes (and counts) a terminating NUL where there is room; the text
        # itself has none (pdfium leaves out characters without a Unicode value)
        end = got - 1 if buf[got - 1] == 0 else got
        text = ctypes.string_at(buf, 2 * end).decode("utf-16-le", "ignore")
        if len(text) == end:
            return text
    return str(textpage.get_text_bounded())


# A gap between two text objects on one line at least this many times the taller
# neighbouring glyph's height is a column gap (words are ~0.25 em apart, cells more).
_COLUMN_GAP = 1.5
_MAX_GAPS = 5000  # generated spaces measured per page (each costs three pdfium calls)
_SLACK = 2.0  # points a cell may start left of its column (a right-aligned cell starts right)


def _columns(textpage: Any) -> str | None:
    """The page's text with column gaps as tabs, or None when it has none (or pdfium's
    text and char lists do not line up: then the plain text is used)."""
    import pypdfium2.raw as pdfium_c

    n = textpage.count_chars()
    text: str = textpage.get_text_range(0, n)
    if len(text) != n:
        return None
    gaps: dict[int, float] = {}  # index of a gap's generated space -> x of the next cell
    checked = 0
    i = text.find(" ", 1)
    while 0 < i < n - 1 and checked < _MAX_GAPS:
        checked += 1
        if (pdfium_c.FPDFText_IsGenerated(textpage.raw, i) == 1
                and text[i - 1] not in "\r\n" and text[i + 1] not in "\r\n"):
            _, bottom, right, top = textpage.get_charbox(i - 1)
            nleft, nbottom, _, ntop = textpage.get_charbox(i + 1)
            height = max(top - bottom, ntop - nbottom)
            if height > 0 and nleft - right >= _COLUMN_GAP * height:
                gaps[i] = nleft
        i = text.find(" ", i + 1)
    if not gaps:
        return None
    # each line: its text, or its cells with the x where each starts
    lines: list[str | list[tuple[float, str]]] = []
    pos = 0
    for line in text.split("\r\n"):
        end = pos + len(line)
        cuts = [g for g in range(pos, end) if g in gaps] if line.count(" ") else []
        if cuts:
            cells = [(textpage.get_charbox(pos)[0], text[pos:cuts[0]])]
            cells += [(gaps[g], text[g + 1:nxt]) for g, nxt in zip(cuts, [*cuts[1:], end],
                                                                    strict=True)]
            lines.append(cells)
        else:
            lines.append(line)
        pos = end + 2
    return "\r\n".join(_laid_out(lines))


def _laid_out(lines: list[str | list[tuple[float, str]]]) -> list[str]:
    """Rows of cells as tab-separated lines, each cell in its column: a block of
    consecutive rows takes its columns from its fullest row (the last one: a data row,
    whose cells start where the column does; a centred header starts further right), so
    a row with an empty cell keeps the others in their columns."""
    out: list[str] = []
    k = 0
    while k < len(lines):
        line = lines[k]
        if isinstance(line, str):
            out.append(line)
            k += 1
            continue
        block: list[list[tuple[float, str]]] = []
        while k < len(lines) and not isinstance(lines[k], str):
            block.append(lines[k])  # type: ignore[arg-type]
            k += 1
        widest = max(len(r) for r in block)
        starts = [x for x, _ in [r for r in block if len(r) == widest][-1]]
        for row in block:
            if len(row) == widest:
                out.append("\t".join(c for _, c in row))
                continue
            cells = [""] * widest
            col = 0
            for x, cell in row:
                while col + 1 < widest and starts[col + 1] <= x + _SLACK:
                    col += 1
                cells[col] = f"{cells[col]} {cell}" if cells[col] else cell
            out.append("\t".join(cells))
    return out
