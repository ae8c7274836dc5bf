"""DATA unstuffed and checked block by block gives what the whole message gives.

guard.smtp.data cuts the received bytes between blocks where no CRLF, "<CRLF>." or end
marker can straddle the cut; a wrong cut would unstuff a dot too few or too many, or
miss a bare CR, a NUL or a long line (the smuggling checks). Here the reader gets
messages full of dots, CRs, LFs and NULs in blocks of every size, and must give what
the plain whole-message reference below gives: the same bytes, the same refusal, the
same bytes left for the next command.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from guard.smtp.data import DataTooLarge, read_data

LINE_LIMIT = 1001  # aiosmtpd's, as the sessions use it


def reference(wire: bytes, size_limit: int) -> tuple[object, bytes]:
    """(unstuffed data and its problem, or "too large" / None, bytes after the marker)."""
    buf = b"\r\n" + wire
    end = buf.find(b"\r\n.\r\n")
    if end < 0:
        return None, b""
    rest, stuffed = buf[end + 5:], buf[:end + 2]
    if size_limit and len(stuffed) - 2 > size_limit:
        return "too large", rest
    data = stuffed.replace(b"\r\n.", b"\r\n")[2:]
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        problem = "bare"
    elif b"\x00" in data:
        problem = "nul"
    elif max(map(len, data.split(b"\n"))) > LINE_LIMIT - 1:
        problem = "long"
    else:
        problem = ""
    return (data, problem), rest


class BlockReader(asyncio.StreamReader):
    """Gives the data in the blocks it was cut into, one block per read (as a socket
    does), never merging them."""

    def __init__(self, blocks: list[bytes]) -> None:
        super().__init__()
        self._blocks = blocks

    async def read(self, n: int = -1) -> bytes:
        if not self._buffer and self._blocks:
            self.feed_data(self._blocks.pop(0))
        if not self._buffer and not self.at_eof():
            self.feed_eof()
        return await super().read(n)

    async def rest(self) -> bytes:
        for block in self._blocks:
            self.feed_data(block)
        self._blocks = []
        if not self.at_eof():
            self.feed_eof()
        return await super().read()


async def read_in_blocks(wire: bytes, sizes: list[int], size_limit: int) -> tuple[object, bytes]:
    blocks, at, i = [], 0, 0
    while at < len(wire):
        n = sizes[i % len(sizes)]
        blocks.append(wire[at:at + n])
        at, i = at + n, i + 1
    reader = BlockReader(blocks)
    try:
        body = await read_data(reader, size_limit, 60.0, lambda: None, LINE_LIMIT)
    except DataTooLarge:
        return "too large", await reader.rest()
    if body is None:
        return None, b""
    problem = ("bare" if body.bare_newline else "nul" if body.nul
               else "long" if body.long_line else "")
    return (body.data, problem), await reader.rest()


def message(rnd: random.Random) -> bytes:
    kind = rnd.randrange(3)
    if kind == 0:  # noise made of the characters that matter
        alphabet = rnd.choice([b"\r\n.a", b"\r\n..\r\nx", b"\r\n.\x00b", b"ab\r\n", b".\r\n\n\r"])
        body = bytes(rnd.choice(alphabet) for _ in range(rnd.choice([0, 3, 40, 3000])))
    elif kind == 1:  # lines around the line limit, some starting with dots
        body = b"\r\n".join(b"." * rnd.randint(0, 3) + b"y" * rnd.choice([0, 5, 998, 999, 1000])
                            for _ in range(rnd.randint(1, 30)))
    else:  # one long line without a CR (bare LFs only, or none)
        body = rnd.choice([b"z", b"z\n"]) * rnd.randint(1, 40_000)
    ends = [b"\r\n.\r\n", b".\r\n", b"\r\n.\r\nMAIL FROM:<a@b.example>\r\n", b"\r\n.\r", b""]
    return body + rnd.choice(ends)


@pytest.mark.parametrize("seed", range(4))
def test_blocks_of_every_size_give_what_the_whole_message_gives(seed: int) -> None:
    rnd = random.Random(seed)

    async def go() -> None:
        for _ in range(150):
            wire = message(rnd)
            sizes = [rnd.choice([1, 2, 3, 4, 5, 7, 64, 1000, 70_000]) for _ in range(5)]
            size_limit = rnd.choice([0, 10, 1000, 30_000])
            assert await read_in_blocks(wire, sizes, size_limit) == reference(wire, size_limit), \
                (wire[:80], sizes, size_limit)

    asyncio.run(go())
