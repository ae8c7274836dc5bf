"""What the OOXML and ODF package readers share: the text of one XML part, embedded
objects, and the order of numbered parts (slide2 before slide10)."""

from __future__ import annotations

import logging
import posixpath
import re
import zipfile

from guard.inspect.readers.extraction import Extraction
from guard.inspect.readers.ooxml import Unsupported, read_chunks
from guard.inspect.readers.wordml import word_texts, xml_text
from guard.inspect.readers.ziparchive import ZipArchive
from guard.mail.message import Attachment

log = logging.getLogger(__name__)


def part_text(ex: Extraction, zf: ZipArchive, info: zipfile.ZipInfo, where: str,
              kind: str) -> list[str]:
    """The text of one XML part: the fast run reader (guard.inspect.readers.wordml) for
    WordprocessingML ("w") and DrawingML ("a"), the defusedxml walk for what it does
    not handle (and for ODF, kind ""). A broken part is a problem of its own: the other
    parts are still read."""
    cap = ex.limits.max_xml_part_bytes

    def read() -> list[str]:
        if kind:
            try:
                with ex.member_stream(zf, info, ratio=False, cap=cap) as f:
                    return word_texts(read_chunks(f), kind)
            except Unsupported as e:
                log.debug("%s %s: full XML parser (%s)", where, info.filename, e)
        with ex.member_stream(zf, info, ratio=False, cap=cap) as f:
            return [xml_text(f)]

    return ex.one_part(f"{where}/{info.filename}", read) or []


def embeddings(ex: Extraction, zf: ZipArchive, att: Attachment, depth: int) -> None:
    """Embedded objects (an xlsx inside a docx...) are extracted like attachments."""
    for info in zf.infolist():
        if info.is_dir() or "/embeddings/" not in f"/{info.filename}":
            continue
        member_where = f"{att.where}/{info.filename}"
        ex.inner_name(member_where, info.filename)
        if depth + 1 > ex.limits.max_depth:
            ex.problem("too_deep", member_where, "embedded object too deep")
            continue
        data = ex.member_bytes(zf, info)
        ex.run(Attachment(filename=posixpath.basename(info.filename), content_type="",
                          data=data, where=member_where), depth + 1)


def num_key(name: str) -> tuple[str, int, str]:
    """Sort key of a numbered part: slide2.xml before slide10.xml."""
    m = re.search(r"(\d+)\.xml$", name)
    return (name[: m.start()] if m else name, int(m.group(1)) if m else 0, name)
