"""Where the 10 MB decision's time goes, stage by stage, in one process.

Not a test. Run:  .venv/bin/python tests/bench/decision_breakdown.py [--rounds N]

Builds stall_bench's 10 MB customer-list message (175,000 rows) and times, with the
example policy's context: parse_message (MIME + base64), extract_message (parse and
extraction together), the personal-data scan (tables and the texts not tabled), keywords
and customer names. Then the same message through ExtractionPool (one worker): the
parse job, the extract-and-detect job and the total.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from guard.accept.decide import Inspector
from guard.inspect.customers import detect_customer_mismatch
from guard.inspect.extract import extract_message
from guard.inspect.isolate import ExtractionPool
from guard.inspect.keywords import detect_keywords
from guard.inspect.pii.detect import scan
from guard.inspect.run import PII_LIMITS
from guard.mail.message import parse_message
from guard.policy import load_policy
from tests.bench.bench_extract import make_csv, make_xlsx
from tests.bench.stall_bench import XLSX, message

ROOT = Path(__file__).resolve().parents[2]
FROM, TO = "sato@example.co.jp", ["buyer@new-client.example"]


def in_process(raw: bytes, ctx: Any) -> None:
    t0 = time.perf_counter()
    parse_message(raw, FROM, TO)
    t1 = time.perf_counter()
    view = extract_message(raw, FROM, TO)
    t2 = time.perf_counter()
    tabled = {t.where for t in view.tables}
    scan([t for t in view.texts if t.where not in tabled], view.tables, PII_LIMITS)
    t3 = time.perf_counter()
    detect_keywords(view, ctx)
    t4 = time.perf_counter()
    detect_customer_mismatch(view, ctx)
    t5 = time.perf_counter()
    chars = sum(len(t.text) for t in view.texts)
    print(f"in-process: parse {t1 - t0:.2f} s, parse+extract {t2 - t1:.2f} s, personal data "
          f"{t3 - t2:.2f} s, keywords {t4 - t3:.2f} s, customers {t5 - t4:.2f} s "
          f"({chars:,} characters)")


async def through_pool(raw: bytes, ctx: Any, rounds: int) -> None:
    pool = ExtractionPool(workers=1, niceness=0)
    jobs: list[str] = []
    call = pool._call

    async def timed(job: tuple[Any, ...], seconds: float) -> Any:
        start = time.perf_counter()
        try:
            return await call(job, seconds)
        finally:
            jobs.append(f"{job[0]} {time.perf_counter() - start:.2f} s")

    pool._call = timed  # type: ignore[method-assign]
    try:
        await pool.inspect_and_detect(message("warm", "w.csv", "text/csv", make_csv(100)),
                                      FROM, TO, ctx)
        for _ in range(rounds):
            jobs.clear()
            start = time.perf_counter()
            await pool.inspect_and_detect(raw, FROM, TO, ctx)
            print(f"through the pool: {time.perf_counter() - start:.2f} s ({', '.join(jobs)})")
    finally:
        await pool.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    raw = message("10MB xlsx", "顧客.xlsx", XLSX, make_xlsx(175_000, seed=9))
    print(f"message: {len(raw) / 1e6:.1f} MB")
    ctx = Inspector(None, b"k" * 32).static_context(load_policy(ROOT / "policies"), FROM)
    for _ in range(args.rounds):
        in_process(raw, ctx)
    asyncio.run(through_pool(raw, ctx, args.rounds))


if __name__ == "__main__":
    main()
