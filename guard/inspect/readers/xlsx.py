"""Workbooks in zip packages: Excel (.xlsx, .xlsm, .xlsb) and OpenDocument spreadsheets
(.ods).

xlsx/xlsm go through the fast sampling reader (guard.inspect.readers.sheetml): per sheet,
the first `sheet_sample_cells` cells are table rows and the other rows are counted; what
it does not handle, and xlsb and ods, go to calamine (guard.inspect.readers.calamine),
which reads every cell. Then the text outside the cells (comments, drawings, charts) and
the objects embedded in the workbook.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from guard.inspect.readers import calamine
from guard.inspect.readers.cellvalues import styles
from guard.inspect.readers.extraction import Extraction
from guard.inspect.readers.limits import MiB
from guard.inspect.readers.ooxml import PKG_REL, R_NS, S_NS, Unsupported, read_chunks
from guard.inspect.readers.package import embeddings, num_key, part_text
from guard.inspect.readers.sharedstrings import SharedStrings
from guard.inspect.readers.sheetml import SheetResult, read_sheet
from guard.inspect.readers.ziparchive import ZipArchive
from guard.mail.message import Attachment

log = logging.getLogger(__name__)


def read_workbook(ex: Extraction, zf: ZipArchive, att: Attachment, depth: int) -> None:
    if "xl/workbook.xml" in zf.namelist():
        try:
            _xlsx(ex, zf, att)
            _workbook_notes(ex, zf, att)
            embeddings(ex, zf, att, depth)
            return
        except Unsupported as e:
            # not an error: calamine reads the whole workbook instead (slower)
            log.debug("%s: calamine instead of the sampling reader (%s)", att.where, e)
    # calamine reads the zip itself, so first make sure the XML parts really inflate
    # within limits (declared sizes can lie); this costs one extra inflate pass.
    for info in zf.infolist():
        if info.filename.endswith((".xml", ".bin")) and not info.is_dir():
            with ex.member_stream(zf, info, ratio=False,
                                  cap=ex.limits.max_xml_part_bytes) as f:
                while f.read(1 * MiB):
                    pass
    calamine.read_workbook(ex, att)
    _workbook_notes(ex, zf, att)
    embeddings(ex, zf, att, depth)


def _xlsx(ex: Extraction, zf: ZipArchive, att: Attachment) -> None:
    """xlsx/xlsm through guard.inspect.readers.sheetml: per sheet, the first
    `sheet_sample_cells` cells are read as table rows, the other rows are counted
    (Table.more_rows) and their strings added to the text. Output is added only
    once the whole workbook was read, so a fallback to calamine never doubles it."""
    where = att.where
    lim = ex.limits
    names = set(zf.namelist())

    def part(name: str) -> bytes:
        return ex.member_bytes(zf, zf.getinfo(name), ratio=False, cap=lim.max_xml_part_bytes)

    rels = "xl/_rels/workbook.xml.rels"
    if rels not in names:
        raise Unsupported("no workbook relationships")
    book = workbook_parts(part("xl/workbook.xml"), part(rels), names)
    sst = SharedStrings(part(book.shared_strings)) if book.shared_strings else None
    kinds = styles(part(book.styles)).kinds if book.styles else []
    sheets = book.sheets
    problems: list[str] = []
    if len(sheets) > lim.max_sheets:
        problems.append(f"{len(sheets)} sheets; first {lim.max_sheets} read")
        sheets = sheets[: lim.max_sheets]
    used: set[int] = set()
    results: list[SheetResult] = []
    cells = ex.cells
    for name, path in sheets:
        budget = min(lim.sheet_sample_cells, lim.max_cells - cells)
        if budget <= 0:
            problems.append(f"cell limit {lim.max_cells} reached in sheet {name!r}")
            break
        with ex.member_stream(zf, zf.getinfo(path), ratio=False,
                              cap=lim.max_xml_part_bytes) as f:
            res = read_sheet(read_chunks(f, 1 * MiB), sst or [], kinds, book.is_1904,
                             budget, used)
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
    ex.cells = cells
    for detail in problems:
        ex.problem("too_large", where, detail)
    for res in results:
        ex.table(where, res.rows, res.more_rows)
    ex.text(where, "\n\n".join(t for t in texts if t))


# --- the workbook's parts ---------------------------------------------------------------------

@dataclass
class WorkbookParts:
    """What xl/workbook.xml and its relationships name."""

    sheets: list[tuple[str, str]]  # (name, zip member)
    shared_strings: str | None
    styles: str | None
    is_1904: bool


def _resolve(base: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(posixpath.dirname(base), target))


def workbook_parts(workbook_xml: bytes, rels_xml: bytes, names: set[str]) -> WorkbookParts:
    """The worksheets in order, the shared strings and styles parts, the date system.
    Raises Unsupported for what calamine should read instead."""
    from defusedxml.ElementTree import fromstring

    wb = fromstring(workbook_xml, forbid_dtd=True)
    rels = fromstring(rels_xml, forbid_dtd=True)
    if not wb.tag.startswith("{") or wb.tag[1: wb.tag.index("}")] not in S_NS:
        raise Unsupported("workbook namespace")
    ns = wb.tag[: wb.tag.index("}") + 1]
    targets: dict[str, tuple[str, str]] = {}
    by_type: dict[str, str] = {}
    for r in rels.iter(PKG_REL):
        rtype = (r.get("Type") or "").rsplit("/", 1)[-1]
        if r.get("TargetMode") == "External":
            continue
        path = _resolve("xl/workbook.xml", r.get("Target") or "")
        targets[r.get("Id") or ""] = (rtype, path)
        by_type.setdefault(rtype, path)
    sheets = []
    for sheet in wb.iter(f"{ns}sheet"):
        rid = next((sheet.get(f"{{{u}}}id") for u in R_NS if sheet.get(f"{{{u}}}id")), None)
        rtype, path = targets.get(rid or "", ("", ""))
        if rtype in ("chartsheet", "dialogsheet", "macrosheet"):
            continue  # no cells (calamine skips them too)
        if rtype != "worksheet" or path not in names:
            raise Unsupported(f"sheet {sheet.get('name')!r}: no worksheet part")
        sheets.append((sheet.get("name") or "", path))
    pr = wb.find(f"{ns}workbookPr")
    is_1904 = pr is not None and (pr.get("date1904") or "").lower() in ("1", "true")
    sst = by_type.get("sharedStrings")
    sty = by_type.get("styles")
    return WorkbookParts(sheets, sst if sst in names else None,
                         sty if sty in names else None, is_1904)


# --- text outside the cells ------------------------------------------------------------------

def _workbook_notes(ex: Extraction, zf: ZipArchive, att: Attachment) -> None:
    """Text outside the cells, which neither cell reader sees: cell comments (legacy
    and threaded) and the text of drawings and charts, found through the parts'
    relationships (and by their usual names). Their own `where` (".../comments"),
    so the personal-data scan reads them as text: the workbook's own text is
    skipped there (its table is scanned instead)."""
    from defusedxml.ElementTree import fromstring

    cap = ex.limits.max_xml_part_bytes

    def rels(name: str) -> list[Any] | None:
        return ex.one_part(f"{att.where}/{name}", lambda: list(fromstring(
            ex.member_bytes(zf, zf.getinfo(name), ratio=False, cap=cap))))

    def comment(name: str) -> str:
        with ex.member_stream(zf, zf.getinfo(name), ratio=False, cap=cap) as f:
            return _comment_text(f)

    def read_comment(name: str) -> str:
        return ex.one_part(f"{att.where}/{name}", lambda: comment(name)) or ""

    comments, drawings = _workbook_note_parts(set(zf.namelist()), rels)
    texts = [read_comment(name) for name in sorted(comments, key=num_key)]
    for name in sorted(drawings, key=num_key):
        texts.extend(part_text(ex, zf, zf.getinfo(name), att.where, "a"))
    ex.text(f"{att.where}/comments", "\n".join(t for t in texts if t.strip()))


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
