#!/usr/bin/env python3
"""CPU of the guard's main process per message, in parts (issue 18): paired A/B medians
of process time in one process, so a machine loaded by others blurs them little.

    .venv/bin/python tests/bench/main_cpu_bench.py delivery   # pipelined vs one by one
    .venv/bin/python tests/bench/main_cpu_bench.py store      # direct DBAPI vs SQLAlchemy
    .venv/bin/python tests/bench/main_cpu_bench.py wire       # wire_form's CRLF check
    .venv/bin/python tests/bench/main_cpu_bench.py serve BASE_SRC NEW_SRC [SIZE SESSIONS N ROUNDS]

`delivery`: one relay/client.Upstream session to Postfix's smtp-sink (which offers
PIPELINING), 4 KiB messages, with and without PIPELINING used (the extension hidden
from the session). `store`: a batch of 5 messages stored (queue.insert_message and the
writer's flush), their recipients' delivery results, and queue.transition's
compare-and-set, with the writer's direct plans and with SQLAlchemy's execution.
`wire`: relay/wire.wire_form against the three counts and replace it had before.
`serve`: `guard serve` from two source trees (e.g. a `git archive` of main in BASE_SRC)
alternating, smtp-source → guard → smtp-sink as relay_bench.py, CPU ms per message of
the main process, the SMTP front and the whole tree (extraction workers included).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SMTP_SINK = shutil.which("smtp-sink", path="/usr/sbin:/usr/bin") or "/usr/sbin/smtp-sink"


def _paired(runs: dict[str, Callable[[], float]], rounds: int) -> None:
    got: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            got[k].append(runs[k]())
    for k, v in got.items():
        print(f"  {k:34} median {statistics.median(v):8.1f} us  {[round(x) for x in v]}")


def delivery(n: int = 500, rounds: int = 6) -> None:
    import uvloop

    from guard.config import UpstreamSettings
    from guard.relay.client import Upstream

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cmd = [SMTP_SINK, "-c", f"127.0.0.1:{port}", "100"]
    if os.geteuid() == 0:
        cmd[1:1] = ["-u", "nobody"]
    sink = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    body = (b"From: <a@example.co.jp>\r\nTo: <b@example.co.jp>\r\nSubject: x\r\n\r\n"
            + (b"x" * 76 + b"\r\n") * 52)

    async def run(pipelined: bool) -> float:
        up = Upstream(UpstreamSettings(url=f"smtp://127.0.0.1:{port}"), "guard.localhost")
        smtp = await up.connect()
        if not pipelined:
            smtp.esmtp_extensions.pop("pipelining", None)
        t0 = time.process_time()
        for _ in range(n):
            out = await up.send(smtp, "sender@example.co.jp", ["rcpt@example.co.jp"], body)
            assert out[0].outcome == "delivered", out
        spent = time.process_time() - t0
        smtp.close()
        return spent / n * 1e6

    try:
        time.sleep(0.5)
        print(f"delivery of a 4 KiB message to smtp-sink, client CPU ({n} per round):")
        _paired({"one command at a time": lambda: uvloop.run(run(False)),
                 "pipelined": lambda: uvloop.run(run(True))}, rounds)
    finally:
        sink.kill()
        sink.wait()


def store(rounds: int = 6) -> None:
    from sqlalchemy import create_engine

    from guard.store import delivery as dl
    from guard.store import queue as q
    from guard.store import writer
    from guard.store.schema import metadata

    tmp = Path(tempfile.mkdtemp(prefix="main-cpu-"))
    engine = create_engine(f"sqlite:///{tmp / 'x.db'}")
    metadata.create_all(engine)
    conn = engine.connect()
    plan = writer._write_plan
    batch = 5

    def new(i: int) -> q.NewMessage:
        return q.NewMessage(
            id=f"id{i}", state="queued", mail_from="a@example.co.jp", sender="a@example.co.jp",
            rcpt_tos=["b@example.co.jp"], data=b"x" * 4096, trace_header=b"Received: x\r\n",
            client_ip="127.0.0.1", helo="h", listener="trusted", subject="s",
            verdict={"action": "pass", "reasons": []}, actor="smtp:a",
            audit_detail={"size": 4096})

    async def fill() -> None:
        with conn.begin():
            ic = writer._InlineConnection(conn)
            for i in range(2000):
                await q.insert_message(ic, 1.0, new(i))  # type: ignore[arg-type]
            ic.flush()
    asyncio.run(fill())

    def timed(direct: bool, op: Callable[[Any, int], Awaitable[Any]]) -> float:
        writer._write_plan = plan if direct else (lambda *a: None)  # type: ignore[assignment]

        async def run() -> float:
            per: list[float] = []
            for r in range(200):
                tx = conn.begin()
                ic = writer._InlineConnection(conn)
                t0 = time.process_time()
                for i in range(batch):
                    await op(ic, r * batch + i)
                ic.flush()
                per.append((time.process_time() - t0) / batch * 1e6)
                tx.rollback()
            return statistics.median(per)
        try:
            return asyncio.run(run())
        finally:
            writer._write_plan = plan  # type: ignore[assignment]

    async def insert(ic: Any, i: int) -> None:
        await q.insert_message(ic, 2.0, new(10_000 + i))

    async def results(ic: Any, i: int) -> None:
        r = [dl.RecipientResult(0, "b@example.co.jp", 250, "2.0.0 ok", "delivered")]
        await dl._set_recipients(ic, 3.0, f"id{i % 2000}", r, ["delivered"])

    async def cas(ic: Any, i: int) -> None:
        await q.transition(ic, 3.0, f"id{i % 2000}", from_states=dl.ACTIVE_STATES,
                           to_state="delivered", actor="relay:x", action="delivered",
                           detail={"attempt": 1}, known_state="queued",
                           values={"attempts": dl._ATTEMPTS_PLUS_ONE, "next_attempt_at": 5.0,
                                   "lease_owner": None, "lease_until": None})

    for name, op in (("insert_message + flush", insert), ("recipients' results", results),
                     ("transition (CAS + audit row)", cas)):
        print(f"{name}, per message (batches of {batch}):")
        _paired({"SQLAlchemy": lambda op=op: timed(False, op),
                 "direct": lambda op=op: timed(True, op)}, rounds)
    conn.close()
    engine.dispose()
    shutil.rmtree(tmp, ignore_errors=True)


def wire(rounds: int = 9) -> None:
    """relay/wire.wire_form against its former self (three counts, then the replace)."""
    import base64

    from aiosmtplib.protocol import normalize_message_line_endings

    from guard.relay.wire import wire_form

    def counts(data: bytes) -> bytes:
        crlf = data.count(b"\r\n")
        if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
            data = normalize_message_line_endings(data)
        if data[:1] == b".":
            data = b"." + data
        data = data.replace(b"\r\n.", b"\r\n..")
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        return data + b".\r\n"

    head = b"Received: from x by y; date\r\nFrom: <a@example.co.jp>\r\nSubject: x\r\n\r\n"
    b64 = base64.encodebytes(os.urandom(75_000)).replace(b"\n", b"\r\n")
    msgs = {"100 KiB base64": head + b64, "4 KiB": head + (b"x" * 76 + b"\r\n") * 52,
            "100 KiB text, dots": head + b"Hello. A line of text. Another one.\r\n" * 2800,
            "100 KiB lines of 4": head + b"a.\r\n" * 25_000}
    for name, data in msgs.items():
        assert wire_form(data) == counts(data)
        n = max(20, 2_000_000 // len(data))

        def timed(f: Callable[[bytes], bytes], data: bytes = data, n: int = n) -> float:
            t0 = time.process_time()
            for _ in range(n):
                f(data)
            return (time.process_time() - t0) / n * 1e6
        print(f"wire_form, {name}, CPU per message:")
        _paired({"three counts + replace": lambda: timed(counts),
                 "one split + regex": lambda: timed(wire_form)}, rounds)


def serve(base: str, new: str, size: int = 4096, sessions: int = 10, count: int = 2000,
          rounds: int = 6) -> None:
    sys.path.insert(0, str(HERE))
    import relay_bench as rb

    def cpu(pid: int) -> float:
        st = rb._stat(pid)
        return sum(int(x) for x in st[11:13]) / os.sysconf("SC_CLK_TCK") if st else 0.0

    def one(src: str) -> dict[str, float]:
        os.environ["PYTHONPATH"] = src
        tmp = Path(tempfile.mkdtemp(prefix="main-cpu-"))
        sink = rb.Sink(tmp)
        relay = rb.start_relay("c", tmp, sink.port, False, src + "/policies")
        try:
            warm = rb.run_probe(relay.port, size, 20, 30)
            sink.wait_for(len(warm.eod), 30)
            pid = relay.proc.pid
            front = [k for k in rb.descendants(pid)
                     if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]
            procs = {"main": [pid], "front": front}
            before = {k: sum(cpu(p) for p in v) for k, v in procs.items()}
            tree0 = rb.proc_cpu(pid, tree=True)
            start = sink.count
            wall, _, _ = rb.run_source(relay.port, sessions, count, size, False, 600, tmp)
            sink.wait_for(start + count, 120)
            r = {k: (sum(cpu(p) for p in v) - before[k]) / count * 1e3
                 for k, v in procs.items()}
            r["tree"] = (rb.proc_cpu(pid, tree=True) - tree0) / count * 1e3
            r["msg/s"] = count / wall
            return r
        finally:
            rb.stop_relay(relay)
            sink.close()
            shutil.rmtree(tmp, ignore_errors=True)

    res: dict[str, list[dict[str, float]]] = {"base": [], "new": []}
    for i in range(rounds):
        order = [("base", base), ("new", new)]
        for name, src in (order if i % 2 == 0 else order[::-1]):
            r = one(src)
            res[name].append(r)
            print(f"{name} {i}: " + "  ".join(f"{k} {v:.3f}" for k, v in r.items())
                  + f"  load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"{size // 1024} KiB x {sessions}, medians of {rounds} paired rounds "
          "(CPU ms per message; msg/s at smtp-source):")
    for k in ("main", "front", "tree", "msg/s"):
        b = statistics.median(x[k] for x in res["base"])
        n = statistics.median(x[k] for x in res["new"])
        print(f"  {k:6} {b:8.3f} -> {n:8.3f}  ({(n - b) / b:+.1%})")


def main() -> int:
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "delivery":
        delivery()
    elif what == "store":
        store()
    elif what == "wire":
        wire()
    elif what == "serve" and len(sys.argv) >= 4:
        serve(sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:8]))
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
