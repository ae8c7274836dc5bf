"""ExtractionPool: work happens in killable worker processes; the caller always gets a view.

Pools built with readers=slow_readers.READERS (tests/inspect/slow_readers.py): an
attachment of type SLEEP sleeps (and says when it started and finished), CRASH
segfaults, SPIN spins, ALLOC allocates past RLIMIT_AS.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from guard.inspect.isolate import ExtractionPool
from tests.inspect import fixtures as fx
from tests.inspect import slow_readers
from tests.inspect.slow_readers import ALLOC, CRASH, SLEEP, SPIN, sleep_data

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def pool() -> AsyncIterator[ExtractionPool]:
    p = ExtractionPool(workers=2, per_attachment_timeout=1.5, per_message_timeout=4.0,
                       memory_limit_mb=1024, readers=slow_readers.READERS)
    try:
        yield p
    finally:
        await p.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def customer_mail() -> bytes:
    return fx.multipart([
        fx.Part("text/plain; charset=iso-2022-jp",
                fx.jis("名簿を送ります") + fx.jis_nec(fx.NEC_MARU1), "7bit"),
        fx.attachment("顧客.xlsx", fx.xlsx([["氏名", "電話"], ["山田", "090-1234-5678"]])),
    ], subject="=?UTF-8?B?5ZCN57C/?=")


async def test_normal_message(pool: ExtractionPool) -> None:
    view = await pool.inspect_message(customer_mail(), "a@example.jp", ["b@example.com"])
    assert view.problems == []
    assert view.subject == "名簿"
    assert view.rcpt_tos == ["b@example.com"]
    assert any(t.where == "body" and t.text.strip() == "名簿を送ります①" for t in view.texts)
    assert view.tables[0].rows == [["氏名", "電話"], ["山田", "090-1234-5678"]]
    assert all(pid != os.getpid() for pid in pool.pids())  # the work ran elsewhere


async def test_hanging_extraction_times_out_and_worker_is_killed(
        pool: ExtractionPool, tmp_path: Path) -> None:
    raw = fx.multipart([
        fx.attachment("first.csv", "氏名,電話\n山田,090-1111-2222\n".encode()),
        fx.attachment("hang.bin", sleep_data(30, tmp_path), SLEEP),
        fx.attachment("after.csv", "氏名\n佐藤\n".encode()),
    ])
    await pool.inspect_message(customer_mail(), "a@x", ["b@y"])  # start a worker
    before = set(pool.pids())
    view = await pool.inspect_message(raw, "a@x", ["b@y"])
    # the pool's deadline ended the job, not the job's end: the 30 s of work were cut
    # off (no wall-clock bound here: a loaded machine only makes everything slower)
    assert not (tmp_path / "finished").exists()
    assert [p[:2] for p in view.problems] == [("timeout", "attachment:hang.bin")]
    # the attachments around the hung one were still extracted
    assert [t.where for t in view.tables] == ["attachment:first.csv", "attachment:after.csv"]
    killed = before - set(pool.pids())
    assert killed and not any(_alive(pid) for pid in killed)
    # the pool recovered
    again = await pool.inspect_message(customer_mail(), "a@x", ["b@y"])
    assert again.problems == [] and again.tables


async def test_message_deadline_covers_all_attachments(tmp_path: Path) -> None:
    pool = ExtractionPool(workers=1, per_attachment_timeout=10, per_message_timeout=1.5,
                          readers=slow_readers.READERS)
    markers = [tmp_path / f"s{i}" for i in range(3)]
    for m in markers:
        m.mkdir()
    try:
        raw = fx.multipart([fx.attachment(f"s{i}.bin", sleep_data(30, m), SLEEP)
                            for i, m in enumerate(markers)])
        view = await pool.inspect_message(raw, "a@x", ["b@y"])
        assert [p[:2] for p in view.problems] == [
            ("timeout", "attachment:s0.bin"), ("timeout", "attachment:s1.bin"),
            ("timeout", "attachment:s2.bin")]
        # by the pool's clock: the first job (if the deadline left it any time) was cut
        # off at the message deadline, and the later ones were never started
        assert not any((m / "finished").exists() for m in markers)
        assert not any((m / "started").exists() for m in markers[1:])
        assert [p[2] for p in view.problems[1:]] == [
            "message deadline reached before this step"] * 2
    finally:
        await pool.close()


async def test_crashing_worker_is_reported_and_replaced(pool: ExtractionPool) -> None:
    raw = fx.multipart([fx.attachment("boom.bin", b"", CRASH)])
    view = await pool.inspect_message(raw, "a@x", ["b@y"])
    assert len(view.problems) == 1
    code, where, detail = view.problems[0]
    assert (code, where) == ("worker_died", "attachment:boom.bin")
    assert "SIGSEGV" in detail
    again = await pool.inspect_message(customer_mail(), "a@x", ["b@y"])
    assert again.problems == [] and again.tables


async def test_cpu_limit_stops_a_spinning_worker() -> None:
    # the backstop for a worker the parent cannot kill: RLIMIT_CPU (SIGXCPU needs no GIL)
    # timeouts far beyond the one CPU second: on a busy machine (parallel tests) that
    # second takes many more in wall time, and the CPU limit must still be what acts
    pool = ExtractionPool(workers=1, per_attachment_timeout=90, per_message_timeout=90,
                          cpu_seconds_per_job=1, readers=slow_readers.READERS)
    try:
        raw = fx.multipart([fx.attachment("spin.bin", b"", SPIN)])
        start = time.monotonic()
        view = await pool.inspect_message(raw, "a@x", ["b@y"])
        assert time.monotonic() - start < 60  # the limit, not the timeouts (SIGXCPU below)
        assert [p[:2] for p in view.problems] == [("worker_died", "attachment:spin.bin")]
        assert "SIGXCPU" in view.problems[0][2]
        again = await pool.inspect_message(customer_mail(), "a@x", ["b@y"])
        assert again.problems == []
    finally:
        await pool.close()


async def test_memory_limit_applies_in_worker(pool: ExtractionPool) -> None:
    raw = fx.multipart([fx.attachment("big.bin", b"2048", ALLOC)])
    view = await pool.inspect_message(raw, "a@x", ["b@y"])
    assert [p[:2] for p in view.problems] == [("too_large", "attachment:big.bin")]
    again = await pool.inspect_message(customer_mail(), "a@x", ["b@y"])
    assert again.problems == []


async def test_the_default_readers_know_no_test_types() -> None:
    pool = ExtractionPool(workers=1, per_attachment_timeout=5)
    try:
        raw = fx.multipart([fx.attachment("hang.bin", b"30", SLEEP)])
        start = time.monotonic()
        view = await pool.inspect_message(raw, "a@x", ["b@y"])
        assert time.monotonic() - start < 4
        assert view.problems == []
        # an ordinary (text-looking) attachment, extracted as such
        assert [(t.where, t.text) for t in view.texts[1:]] == [("attachment:hang.bin", "30")]
    finally:
        await pool.close()


async def test_event_loop_stays_responsive_during_30mb_inspection() -> None:
    pool = ExtractionPool(workers=1)
    try:
        await _responsive(pool)
    finally:
        await pool.close()


async def _responsive(pool: ExtractionPool) -> None:
    # a 100k-row table (its transfer and unpacking once froze the loop), a 7 MB text
    # body and a 10 MB binary: ~ 31 MB of mail after base64
    rows = "".join(f"山田{i},090-{i % 10000:04d}-0000,東京都千代田区{i}\n" for i in range(100_000))
    raw = fx.multipart([
        fx.Part("text/plain; charset=utf-8", ("本文 " * 1_000_000).encode(), "base64"),
        fx.attachment("list.csv", rows.encode("cp932"), "text/csv"),
        fx.attachment("photo.jpg", b"\xff\xd8\xff" + os.urandom(11_000_000), "image/jpeg"),
    ])
    assert len(raw) > 30_000_000
    await pool.inspect_message(customer_mail(), "a@x", ["b@y"])  # workers warm
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.05)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    start = time.monotonic()
    view = await pool.inspect_message(raw, "a@x", ["b@y"])
    elapsed = time.monotonic() - start
    stop.set()
    await task
    assert view.tables and view.tables[0].rows[0][0] == "山田0"
    assert elapsed > 0.3 and len(gaps) >= 5  # the ticker ran during the work
    print(f"30 MB inspection {elapsed:.2f} s, max loop gap {max(gaps) * 1000:.0f} ms")
    assert max(gaps) < 0.25, f"event loop stalled for {max(gaps):.3f} s"


async def test_close_stops_workers() -> None:
    pool = ExtractionPool(workers=2)
    await asyncio.gather(*(pool.inspect_message(customer_mail(), "a@x", ["b@y"])
                           for _ in range(3)))
    pids = pool.pids()
    assert pids
    await pool.close()
    assert not any(_alive(pid) for pid in pids)


async def test_pool_result_equals_in_process_result(pool: ExtractionPool) -> None:
    from guard.inspect.extract import extract_message

    rows = [["氏名", "電話", "備考"]] + [[f"山田{i}", f"090-0000-{i:04d}", "a\tb"]
                                       for i in range(5000)]
    csv_text = "\n".join(",".join(r) for r in rows) + "\n"
    raw = fx.multipart([
        fx.Part("text/plain; charset=utf-8", ("本文です\n" * 300_000).encode(), "base64"),
        fx.attachment("big.csv", csv_text.encode("cp932"), "text/csv"),
        fx.attachment("顧客.xlsx", fx.xlsx([["氏名", "電話"], ["山田", 9012345678]])),
        fx.attachment("a.zip", fx.raw_zip([fx.RawEntry(b"x.csv", b"1", flags=1)])),
    ])
    local = extract_message(raw, "a@x", ["b@y"])
    remote = await pool.inspect_message(raw, "a@x", ["b@y"])
    assert len(local.texts) > 3  # the long body was split into chunks
    assert remote == local


async def test_killed_workers_free_their_slot_for_waiting_messages() -> None:
    # one worker, three messages that each hang it: the 2nd and 3rd must not wait forever
    # for a worker that was killed
    pool = ExtractionPool(workers=1, per_attachment_timeout=0.5, per_message_timeout=30,
                          readers=slow_readers.READERS)
    try:
        raw = fx.multipart([fx.attachment("hang.bin", b"30", SLEEP)])
        views = await asyncio.wait_for(asyncio.gather(
            *(pool.inspect_message(raw, "a@x", [f"b{i}@y"]) for i in range(3))), 20)
        assert [[p[0] for p in v.problems] for v in views] == [["timeout"]] * 3
        assert [v.rcpt_tos for v in views] == [["b0@y"], ["b1@y"], ["b2@y"]]
    finally:
        await pool.close()


async def test_close_during_inspection_still_returns_a_view(tmp_path: Path) -> None:
    pool = ExtractionPool(workers=1, per_attachment_timeout=30, readers=slow_readers.READERS)
    raw = fx.multipart([fx.attachment("hang.bin", sleep_data(30, tmp_path), SLEEP)])
    task = asyncio.create_task(pool.inspect_message(raw, "a@x", ["b@y"]))
    for _ in range(400):  # until the hanging extract job is running (the reader says so)
        if (tmp_path / "started").exists():
            break
        await asyncio.sleep(0.05)
    await pool.close()
    view = await asyncio.wait_for(task, 10)
    assert [p[:2] for p in view.problems] == [("worker_died", "attachment:hang.bin")]
    after = await pool.inspect_message(raw, "a@x", ["b@y"])  # closed: fails closed
    assert [p[0] for p in after.problems] == ["worker_died"]


def test_production_code_carries_no_test_hooks() -> None:
    """Slow, crashing and greedy workers come from tests/inspect/slow_readers.py: nothing
    in guard/ looks for a test environment variable or a test content type."""
    import re

    import guard

    root = Path(guard.__file__).parent
    hooks = re.compile(r"GUARD_TEST|x-(?:guard-)?test-")
    offenders = [str(p.relative_to(root)) for p in sorted(root.rglob("*.py"))
                 if hooks.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
