"""What one extraction may spend: per-attachment limits, the per-message budget, and the
exception a reader raises when a limit is hit.

Attachments are hostile input: an archive that inflates to gigabytes, a workbook with
millions of cells, nesting without end. Every reader checks these limits on what it
actually produces, never on sizes the file declares.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from guard.mail.message import ParseLimits

MiB = 1024 * 1024


@dataclass(frozen=True)
class ExtractLimits:
    """Per attachment unless said otherwise; the defaults suit ordinary office mail with
    room to spare."""

    max_depth: int = 5  # archive / embedded-object / attached-message nesting
    max_files_per_archive: int = 1000
    max_member_bytes: int = 100 * MiB  # decompressed, per archive member
    max_total_bytes: int = 256 * MiB  # decompressed, per message
    max_ratio: float = 100.0  # compression ratio of an archive member ...
    ratio_after_bytes: int = 1 * MiB  # ... checked once this much has been produced
    max_xml_part_bytes: int = 200 * MiB  # one OOXML/ODF XML part, uncompressed
    max_cells: int = 1_000_000  # per workbook / CSV
    # xlsx and CSV: cells read per sheet; later rows are counted and their strings go to
    # the text (guard.inspect.readers.sheetml, csvfile). Above the personal-data scan's
    # 20k cells per table (guard.inspect.run.PII_LIMITS), with room for header search
    # and column sampling.
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
class Budget:
    """What is left of the per-message allowances; shared by all attachments of one
    message (and passed between worker jobs, so it must stay a plain picklable value)."""

    bytes_left: int
    chars_left: int

    @classmethod
    def for_message(cls, limits: ExtractLimits) -> Budget:
        return cls(bytes_left=limits.max_total_bytes, chars_left=limits.max_total_text_chars)


class LimitHit(Exception):
    """A limit ends the attachment: `code` is the problem code ("bomb", "too_large"...)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
