"""guard.inspect.readers.ziparchive: member streams equal zipfile's, with ISA-L and with zlib;
broken members fail like zipfile does; the layout checks."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib

import pytest

from guard.inspect.readers import ziparchive
from guard.inspect.readers.ziparchive import LayoutError, ZipArchive

RNG = random.Random(11)
MEMBERS = {
    "empty.txt": b"",
    "one.txt": b"x",
    "noise.bin": RNG.randbytes(300_000),  # incompressible: deflate stores it in blocks
    "text.xml": ("<w:t>山田 太郎 090-1234-5678</w:t>" * 100_000).encode(),  # ~4 MB, 100:1
}


def make_zip(method: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in MEMBERS.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(params=["isal", "zlib"])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "isal":
        isal_zlib = pytest.importorskip("isal.isal_zlib")
        monkeypatch.setattr(ziparchive, "_inflate", isal_zlib)
    else:
        monkeypatch.setattr(ziparchive, "_inflate", zlib)
    return str(request.param)


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
@pytest.mark.parametrize("step", [1, 4096, 1 << 20, -1])
def test_members_read_like_zipfile(inflater: str, method: int, step: int) -> None:
    with ZipArchive(make_zip(method)) as zf:
        for info in zf.infolist():
            if step == 1 and len(MEMBERS[info.filename]) > 10_000:
                continue  # byte by byte through 4 MB is only slow, not different
            f = zf.open_member(info)
            assert not isinstance(f, zipfile.ZipExtFile)  # the fast reader, not zipfile's
            if step < 0:
                data = f.read()
            else:
                parts = []
                while chunk := f.read(step):
                    assert len(chunk) <= step
                    parts.append(chunk)
                data = b"".join(parts)
            assert data == MEMBERS[info.filename] == zf.read(info)


def _data_offset(data: bytes, info: zipfile.ZipInfo) -> int:
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:
                                                    info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def test_corrupt_member_fails_like_zipfile(inflater: str) -> None:
    data = bytearray(make_zip(zipfile.ZIP_DEFLATED))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("text.xml")
    data[_data_offset(bytes(data), info) + 50] ^= 0xFF
    with ZipArchive(bytes(data)) as zf, pytest.raises((zipfile.BadZipFile, EOFError)):
        zf.open_member(zf.getinfo("text.xml")).read()


def test_wrong_crc_is_bad_zip(inflater: str) -> None:
    data = bytearray(make_zip(zipfile.ZIP_STORED))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("noise.bin")
    data[_data_offset(bytes(data), info) + 1000] ^= 0x01  # stored: only the CRC notices
    with ZipArchive(bytes(data)) as zf, pytest.raises(zipfile.BadZipFile, match="CRC"):
        zf.open_member(zf.getinfo("noise.bin")).read()


def test_truncated_deflate_stream_is_an_error(inflater: str) -> None:
    """A central directory that claims fewer compressed bytes than the stream needs."""
    data = make_zip(zipfile.ZIP_DEFLATED)
    with ZipArchive(data) as zf:
        info = zf.getinfo("text.xml")
        info.compress_size //= 2
        zf._starts  # noqa: B018 (the start was recorded when the archive was opened)
        with pytest.raises((EOFError, zipfile.BadZipFile)):
            zf.open_member(info).read()


def test_local_name_differing_from_the_directory_goes_through_zipfile() -> None:
    data = bytearray(make_zip(zipfile.ZIP_DEFLATED))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("one.txt")
    data[info.header_offset + 30] = ord("X")  # the local header's copy of the name
    with ZipArchive(bytes(data)) as zf:
        with pytest.raises(zipfile.BadZipFile, match="differ"):
            zf.open_member(zf.getinfo("one.txt")).read()
        assert zf.open_member(zf.getinfo("empty.txt")).read() == b""


def test_overlapping_and_truncated_layouts() -> None:
    data = make_zip(zipfile.ZIP_STORED)
    zf = zipfile.ZipFile(io.BytesIO(data))
    a, b = zf.getinfo("one.txt"), zf.getinfo("noise.bin")
    # point b's central directory entry at a's local header: two entries, one span
    cd = data.index(b"PK\x01\x02" + data[zf.start_dir + 4: zf.start_dir + 6], zf.start_dir)
    entries = data[cd:]
    pos = entries.index(b"noise.bin") - 46 + 42
    forged = (data[:cd] + entries[:pos] + struct.pack("<I", a.header_offset)
              + entries[pos + 4:])
    with pytest.raises(LayoutError) as e:
        ZipArchive(forged)
    assert e.value.code in ("bomb", "parse_error")
    with pytest.raises((LayoutError, zipfile.BadZipFile)):
        ZipArchive(data[: b.header_offset + 100] + data[zf.start_dir:])


def test_members_with_the_same_name_each_read_their_own_bytes(inflater: str) -> None:
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("note.txt", "顧客名簿: 山田太郎 090-1234-5678".encode())
            zf.writestr("note.txt", b"harmless")
    with ZipArchive(buf.getvalue()) as zf:
        assert [zf.open_member(i).read() for i in zf.infolist()] == [
            "顧客名簿: 山田太郎 090-1234-5678".encode(), b"harmless"]
