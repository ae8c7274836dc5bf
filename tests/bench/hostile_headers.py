"""Hostile header and MIME shapes: what each costs to read, and where it is read.

Not a test. Run:  .venv/bin/python tests/bench/hostile_headers.py [--repeat N] [SHAPE ...]
                  .venv/bin/python tests/bench/hostile_headers.py --inline-vs-pool

For each shape: its size; whether the main process may read it itself
(`message.cheap_to_read`, else a worker reads it under a deadline); the best of N
(default 5) times of `parse_message` (pre-scan, parse or refusal, headers); of
`pipeline.summarize_headers` (on the event loop for every message); and the first
problem found. The `gate:` shapes are the worst this script knows of that still pass
`cheap_to_read`, timed with the text detectors too: that is the most one message can
cost the event loop. `tests/test_hostile_headers.py` sends the hostile ones over SMTP.

`--inline-vs-pool`: an ordinary Japanese message of 1-64 KiB read in this process
(parse and text detectors) against through one extraction worker, 200 times each.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from guard.accept.pipeline import summarize_headers  # noqa: E402
from guard.inspect.context import InspectContext  # noqa: E402
from guard.inspect.isolate import ExtractionPool  # noqa: E402
from guard.inspect.run import content_findings  # noqa: E402
from guard.mail.message import MessageView, parse_message  # noqa: E402
from guard.policy import load_policy  # noqa: E402
from tests.hostile import GATE, HEAD, HOSTILE, plain_message  # noqa: E402

try:
    from guard.mail.message import cheap_to_read
except ImportError:  # a checkout before the limits: messages ≤ 64 KiB were read inline
    def cheap_to_read(raw: bytes) -> bool:
        return len(raw) <= 64 * 1024


def best_of(fn: Callable[[], Any], n: int) -> tuple[float, Any]:
    """The best time of n calls, in ms, and what the last call returned."""
    best, out = float("inf"), None
    for _ in range(n):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3, out


def main(only: list[str], repeat: int) -> None:
    policy = load_policy(ROOT / "policies")
    ctx = InspectContext(internal_domains=frozenset(policy.internal_domains),
                         keywords=tuple(policy.keywords))
    print(f"{'shape':32} {'bytes':>8} {'where':>7} {'parse ms':>9} {'summary ms':>10}"
          f" {'+detect ms':>10}  first problem")
    for name, make in {**HOSTILE, **GATE}.items():
        if only and name not in only:
            continue
        raw = make()
        where = "inline" if cheap_to_read(raw) else "worker"

        def parse(raw: bytes = raw) -> MessageView:
            return parse_message(raw, "alice@example.co.jp", ["buyer@client.example"])

        parse_ms, view = best_of(parse, repeat)
        summary_ms, _ = best_of(lambda raw=raw: summarize_headers(raw), repeat)  # type: ignore[misc]
        detect = ""
        if where == "inline":
            detect = f"{best_of(lambda: content_findings(parse(), ctx), repeat)[0]:.1f}"
        problem = (view.problems or [("", "", "")])[0]
        print(f"{name:32} {len(raw):8d} {where:>7} {parse_ms:9.1f} {summary_ms:10.2f}"
              f" {detect:>10}  {problem[0]} {problem[2][:50]}", flush=True)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def inline_vs_pool(n: int = 200) -> None:
    """What reading an ordinary Japanese message costs the main process itself, against
    handing it to a worker (one worker, the text detectors run there): per message, the
    wall time and this process's CPU time (the pool's is the hand-over alone)."""
    policy = load_policy(ROOT / "policies")
    ctx = InspectContext(internal_domains=frozenset(policy.internal_domains),
                         keywords=tuple(policy.keywords))
    line = "明日の会議は10時からです。資料は共有フォルダにあります。よろしくお願いします。\r\n"
    pool = ExtractionPool(workers=1)
    try:
        await pool.inspect_and_detect(plain_message("warm-up"), "a@x.jp", ["b@y.com"], ctx)
        print(f"{'body':>8} {'inline ms':>10} {'cpu ms':>7} {'pool ms':>8} {'cpu ms':>7}")
        for size in (1024, 4096, 16384, 32768, 65536):
            body = (line * (size // len(line.encode()) + 1)).encode()[:size]
            raw = HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
            c0, t0 = _cpu(), time.perf_counter()
            for _ in range(n):
                content_findings(parse_message(raw, "a@x.jp", ["b@y.com"]), ctx)
            c1, t1 = _cpu(), time.perf_counter()
            for _ in range(n):
                await pool.inspect_and_detect(raw, "a@x.jp", ["b@y.com"], ctx)
            c2, t2 = _cpu(), time.perf_counter()
            print(f"{size:8d} {1e3 * (t1 - t0) / n:10.2f} {1e3 * (c1 - c0) / n:7.2f}"
                  f" {1e3 * (t2 - t1) / n:8.2f} {1e3 * (c2 - c1) / n:7.2f}", flush=True)
    finally:
        await pool.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--inline-vs-pool"]:
        asyncio.run(inline_vs_pool())
        sys.exit(0)
    repeat = 5
    if args[:1] == ["--repeat"]:
        repeat, args = int(args[1]), args[2:]
    main(args, repeat)
