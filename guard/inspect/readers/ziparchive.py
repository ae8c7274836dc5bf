"""Zip archives held in memory: layout checks, and member streams that inflate fast.

zipfile reads a member through Python-level buffering (ZipExtFile: small compressed
reads, a CRC update per read); for OOXML parts that is the largest single cost after
the XML itself. `ZipArchive.open_member` inflates stored and deflated members straight
from the archive's bytes, in 64 KiB input steps (so a bomb never inflates more than the
caller asks for), with ISA-L's inflate and CRC-32 when python-isal is installed (the
`fast` extra: 1.4x zlib's inflate and 3x its CRC-32 on these machines,
docs/benchmarks.md), zlib otherwise. Size and CRC are checked at the end like zipfile
does; anything else (encrypted, bzip2, lzma, deflate64) opens through zipfile.
"""

from __future__ import annotations

import io
import itertools
import struct
import zipfile
import zlib
from types import ModuleType
from typing import IO, cast

_inflate: ModuleType
try:
    from isal import isal_zlib as _inflate
except ImportError:  # optional: the `fast` extra
    _inflate = zlib

_STEP = 64 * 1024  # compressed bytes per inflate call: bounds the unconsumed-tail copies


class LayoutError(Exception):
    """A member's local header is missing or truncated (code "parse_error"), or members
    overlap (code "bomb")."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class ZipArchive(zipfile.ZipFile):
    """A zip in memory whose members do not overlap (checked on open)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self._data = memoryview(data)
        # by local header offset: names can repeat, and each entry has its own data
        self._starts: dict[int, int] = {}
        self._check_layout()

    def _check_layout(self) -> None:
        """Reject overlapping entries (the "quoted overlap" non-recursive bomb; CPython's
        own check, gh-109858, is missing from 3.11.7) and remember where each member's
        data starts."""
        data = self._data
        spans: list[tuple[int, int, str]] = []
        for info in self.infolist():
            off = info.header_offset
            header = bytes(data[off: off + 30])
            if len(header) < 30 or header[:4] != b"PK\x03\x04":
                raise LayoutError("parse_error", f"bad local header for {info.filename!r}")
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            start = off + 30 + name_len + extra_len
            end = start + info.compress_size
            if end > len(data):
                raise LayoutError("parse_error", f"truncated member {info.filename!r}")
            if bytes(data[off + 30: off + 30 + name_len]) == _raw_name(info):
                self._starts[off] = start  # else zipfile.open reports it
            spans.append((off, end, info.filename))
        spans.sort()
        for (_, end, name), (next_off, _, _) in itertools.pairwise(spans):
            if end > next_off:
                raise LayoutError("bomb", f"overlapping zip entries at {name!r}")

    def open_member(self, info: zipfile.ZipInfo) -> IO[bytes]:
        start = self._starts.get(info.header_offset)
        if (start is None or info.flag_bits & 0x61  # encrypted, patched, strong encryption
                or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)):
            return self.open(info)
        reader = _MemberReader(self._data[start: start + info.compress_size], info)
        return cast(IO[bytes], reader)  # a RawIOBase is a binary file object


def member_name(info: zipfile.ZipInfo) -> str:
    """Member names without the UTF-8 flag (bit 11) are CP932 when Windows made the zip
    ("Send to → Compressed folder"); zipfile decoded them as cp437, so undo that. The
    inspection and the review page both read names through here."""
    if info.flag_bits & 0x800:
        return info.filename
    raw = info.orig_filename.encode("cp437", errors="replace")
    if raw.isascii():
        return info.filename
    for codec in ("utf-8", "cp932"):  # macOS Archive Utility writes UTF-8 without the flag
        try:
            return raw.decode(codec).replace("\x00", "")
        except UnicodeDecodeError:
            continue
    return info.filename


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    return info.orig_filename.encode(encoding, errors="replace")


class _MemberReader(io.RawIOBase):
    """One member's bytes; read(n) returns at most n bytes (and at least one until the
    end), like ZipExtFile."""

    def __init__(self, packed: memoryview, info: zipfile.ZipInfo) -> None:
        super().__init__()
        self._packed = packed
        self._pos = 0
        self._info = info
        self._stored = info.compress_type == zipfile.ZIP_STORED
        self._inflater = None if self._stored else _inflate.decompressobj(-15)
        # compressed input the inflater has not consumed yet
        self._tail: bytes | memoryview = b""
        self._crc = 0
        self._size = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            return self.readall()
        while n and not self._done:
            out = self._next(n)
            if out:
                self._crc = _inflate.crc32(out, self._crc)
                self._size += len(out)
            if self._done:
                self._verify()
            if out:
                return out
        return b""

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(1 << 20):
            parts.append(chunk)
        return b"".join(parts)

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        out = self.read(len(b))
        b[: len(out)] = out
        return len(out)

    def _next(self, n: int) -> bytes:
        packed = self._packed
        if self._stored:
            out = bytes(packed[self._pos: self._pos + n])
            self._pos += len(out)
            self._done = self._pos >= len(packed)
            return out
        d = self._inflater
        assert d is not None
        if not self._tail and self._pos < len(packed):
            self._tail = packed[self._pos: self._pos + _STEP]
            self._pos += len(self._tail)
        try:
            # (with no input left this drains what the inflater holds: ISA-L takes all
            # its input at once and keeps output beyond max_length buffered)
            out = d.decompress(self._tail, n)
        except _inflate.error as e:
            raise zipfile.BadZipFile(f"bad deflate data in {self._info.filename!r}: {e}") \
                from None
        self._tail = d.unconsumed_tail
        # the end of the stream, or of the member's bytes with nothing more to give
        # (like zipfile, which does not insist on the final block: size and CRC decide)
        self._done = d.eof or not (out or self._tail or self._pos < len(packed))
        return out

    def _verify(self) -> None:
        """At the end: size and CRC as the central directory says (zipfile's check)."""
        info = self._info
        if self._size != info.file_size or self._crc != info.CRC:
            raise zipfile.BadZipFile(f"Bad CRC-32 or size for file {info.filename!r}")
