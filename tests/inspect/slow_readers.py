"""Readers that misbehave on demand, for the tests of the extraction workers.

An attachment of one of the content types below makes the worker sleep, crash, spin or
allocate; any other attachment is read as usual. In-process pools get the table as
ExtractionPool(readers=READERS); a `guard serve` started by guard_factory(...,
slow_readers=True) gets it through tests/slow_worker/sitecustomize.py. Nothing in guard/
knows about these types.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from guard.inspect import extract
from guard.inspect.readers.extraction import Extraction, Reader
from guard.mail.message import Attachment

# data: b"SECONDS", or b"SECONDS DIR": then DIR/started is written before the sleep
# and DIR/finished after it, so a test can wait for the work to start and tell whether
# it was cut off
SLEEP = "application/x-test-sleep"
CRASH = "application/x-test-crash"  # the worker kills itself with SIGSEGV
ALLOC = "application/x-test-alloc"  # data: MiB to allocate (past RLIMIT_AS)
SPIN = "application/x-test-spin"  # burns CPU until RLIMIT_CPU stops it

MiB = 1024 * 1024


def sleep_data(seconds: float, markers: Path | None = None) -> bytes:
    """The data of a SLEEP attachment; `markers`: the directory for started/finished."""
    return f"{seconds} {markers}".encode() if markers is not None else str(seconds).encode()


def _sleep(data: bytes) -> None:
    seconds, _, markers = data.decode().strip().partition(" ")
    if markers:
        Path(markers, "started").touch()
    time.sleep(float(seconds or "3600"))
    if markers:
        Path(markers, "finished").touch()


@dataclass(frozen=True)
class Misbehaving:
    """`inner`, unless the attachment asks for misbehaviour. (A class, not a closure:
    the table is pickled to the worker processes.)"""

    inner: Reader

    def __call__(self, ex: Extraction, att: Attachment, depth: int) -> None:
        if att.content_type == SLEEP:
            _sleep(att.data)
        elif att.content_type == CRASH:
            os.kill(os.getpid(), signal.SIGSEGV)
        elif att.content_type == SPIN:
            while True:
                pass
        elif att.content_type == ALLOC:
            blob = bytearray(int(att.data) * MiB)
            blob[-1] = 1
        self.inner(ex, att, depth)


def misbehaving(readers: Mapping[str, Reader]) -> dict[str, Reader]:
    return {kind: Misbehaving(reader) for kind, reader in readers.items()}


READERS = misbehaving(extract.READERS)
