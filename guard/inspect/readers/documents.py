"""Text documents in zip packages: Word (.docx, .docm), PowerPoint (.pptx) and
OpenDocument text and presentations (.odt, .odp).

Every part that holds text the sender typed: for docx the body, headers, footers,
footnotes, endnotes and comments; for pptx the slides, their notes and comments, in
slide order; for ODF content.xml. Then the objects embedded in the document.
"""

from __future__ import annotations

import re

from guard.inspect.readers.extraction import Extraction
from guard.inspect.readers.package import embeddings, num_key, part_text
from guard.inspect.readers.ziparchive import ZipArchive
from guard.mail.message import Attachment


def read_docx(ex: Extraction, zf: ZipArchive, att: Attachment, depth: int) -> None:
    _read_parts(ex, zf, att, depth, _docx_parts(set(zf.namelist())))


def read_pptx(ex: Extraction, zf: ZipArchive, att: Attachment, depth: int) -> None:
    _read_parts(ex, zf, att, depth, _pptx_parts(set(zf.namelist())))


def read_odf_text(ex: Extraction, zf: ZipArchive, att: Attachment, depth: int) -> None:
    _read_parts(ex, zf, att, depth, ["content.xml"])


def _read_parts(ex: Extraction, zf: ZipArchive, att: Attachment, depth: int,
                parts: list[str]) -> None:
    chunks: list[str] = []
    for name in parts:
        kind = "w" if name.startswith("word/") else "a" if name.startswith("ppt/") else ""
        chunks.extend(part_text(ex, zf, zf.getinfo(name), att.where, kind))
    ex.text(att.where, chunks)
    embeddings(ex, zf, att, depth)


def _docx_parts(names: set[str]) -> list[str]:
    extra = sorted(n for n in names if re.fullmatch(
        r"word/(header\d*|footer\d*|footnotes|endnotes|comments)\.xml", n))
    return ["word/document.xml", *extra]


def _pptx_parts(names: set[str]) -> list[str]:
    slides = sorted((n for n in names if re.fullmatch(r"ppt/slides/slide\d+\.xml", n)),
                    key=num_key)
    notes = sorted((n for n in names if re.fullmatch(r"ppt/notesSlides/notesSlide\d+\.xml", n)),
                   key=num_key)
    comments = sorted(n for n in names if re.fullmatch(r"ppt/comments/[^/]+\.xml", n))
    return [*slides, *notes, *comments]
