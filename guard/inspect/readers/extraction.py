"""One attachment's extraction in progress: what every reader writes to and draws from.

A reader gets an `Extraction` and adds texts, tables, problems and inner file names to
it. The character and byte limits are enforced here, once, for every format: text
beyond the allowance is cut (and said so), bytes taken out of a container (a zip member,
an OLE stream) count against the message's budget, and zip members are read through a
stream that stops at a byte limit and a compression ratio.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TypeVar, cast

from guard.inspect.readers.limits import Budget, ExtractLimits, LimitHit, MiB
from guard.inspect.readers.ziparchive import ZipArchive
from guard.mail.message import Attachment, Problem, Table, TextChunk, split_pieces
from guard.mail.textdecode import decode_auto, decode_declared

_T = TypeVar("_T")


@dataclass
class Extracted:
    """What extraction found in one attachment (and everything nested in it)."""

    texts: list[TextChunk] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    inner_names: list[tuple[str, str]] = field(default_factory=list)


class Extraction:
    """Outputs and allowances of one attachment's extraction. `run(att, depth)` reads a
    nested attachment (an archive member, an embedded object) with the same reader table
    and the same allowances."""

    def __init__(self, limits: ExtractLimits, budget: Budget,
                 run: Callable[[Extraction, Attachment, int], None]) -> None:
        self.limits = limits
        self.budget = budget
        self.out = Extracted()
        self.chars = 0  # this attachment's text so far
        self.cells = 0
        self._run = run

    def run(self, att: Attachment, depth: int) -> None:
        self._run(self, att, depth)

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

    def inner_name(self, where: str, name: str) -> None:
        """A file name inside the attachment: names are checked like attachment names."""
        self.out.inner_names.append((where, name))

    # -- inputs --

    def decode(self, att: Attachment) -> str:
        """A text attachment as str: its declared charset, else detected."""
        cap = self.limits.max_text_chars
        if att.charset:
            return decode_declared(att.data, att.charset)[:cap]
        return decode_auto(att.data, max_chars=cap,
                           sample_bytes=self.limits.detect_sample_bytes)

    def charged(self, data: bytes) -> bytes:
        """Bytes taken out of a container count against the message's allowance, like
        inflated zip members."""
        self.budget.bytes_left -= len(data)
        if self.budget.bytes_left < 0:
            raise LimitHit("bomb", f"message inflates past {self.limits.max_total_bytes} "
                           "bytes")
        return data

    def member_stream(self, zf: ZipArchive, info: zipfile.ZipInfo, ratio: bool,
                      cap: int | None = None) -> IO[bytes]:
        """A zip member, inflated within `cap` bytes (default: max_member_bytes) and the
        message's budget, and, with `ratio`, within the compression ratio."""
        limit = self.limits.max_member_bytes if cap is None else cap
        reader = _BoundedReader(zf.open_member(info), info, self, limit, ratio)
        return cast(IO[bytes], reader)  # a RawIOBase is a binary file object

    def member_bytes(self, zf: ZipArchive, info: zipfile.ZipInfo, ratio: bool = True,
                     cap: int | None = None) -> bytes:
        with self.member_stream(zf, info, ratio, cap) as f:
            return f.read()

    def one_part(self, where: str, read: Callable[[], _T]) -> _T | None:
        """read(), or None with a parse_error problem at `where` when the part is
        broken; limits (bombs, memory) still end the whole attachment."""
        try:
            return read()
        except (LimitHit, MemoryError, RecursionError):
            raise
        except Exception as e:
            self.problem("parse_error", where, f"{type(e).__name__}: {e}")
            return None


def trim_row(cells: list[str]) -> list[str]:
    """A table row without its trailing empty cells."""
    while cells and not cells[-1]:
        cells.pop()
    return cells


class _BoundedReader(io.RawIOBase):
    """A zip member stream that stops at byte limits and, for archive members, at a
    compression ratio — enforced on bytes actually produced, since declared sizes lie."""

    def __init__(self, raw: IO[bytes], info: zipfile.ZipInfo, ex: Extraction, limit: int,
                 ratio: bool) -> None:
        super().__init__()
        self._raw = raw
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
            raise LimitHit("bomb", f"member inflates past {self._limit} bytes")
        self._ex.budget.bytes_left -= n
        if self._ex.budget.bytes_left < 0:
            raise LimitHit("bomb", f"message inflates past {lim.max_total_bytes} bytes")
        if (self._ratio and self.produced > lim.ratio_after_bytes
                and self.produced / self._compressed > lim.max_ratio):
            raise LimitHit("bomb", f"compression ratio > {lim.max_ratio:g}:1")

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


# What the dispatcher (guard.inspect.extract) calls: read `att` at nesting `depth` into
# the extraction. A reader never raises for bad input: it adds a problem, or raises
# LimitHit, which ends the attachment with that problem.
Reader = Callable[[Extraction, Attachment, int], None]
# A reader of one kind of zip package (docx, xlsx, a plain archive...), given the
# package already opened.
PackageReader = Callable[[Extraction, ZipArchive, Attachment, int], None]
