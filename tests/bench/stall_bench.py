"""Inspection under load, through the real SMTP listener.

Not a test. Run:  .venv/bin/python tests/bench/stall_bench.py [--quick]

1. Decision time: messages with a 4 MB (70k rows) and a ~10 MB (175k rows) xlsx customer
   list to a new outside domain; time from the final dot to the reply (inspection in the
   workers + commit). Target ≤ 2 s for 10 MB.
2. Listener responsiveness (reliability G74): three 30 MB messages (csv/xlsx attachments)
   sent at once while a probe opens a connection every 200 ms and times EHLO → 250.
   Target: every EHLO answered within 1 s (issue 18: within 100 ms). `--rounds N` runs
   this N times on one guard and reports p50/p99/max per round and over all probes;
   `--skip-decisions` leaves out part 1.
Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.bench_extract import make_csv, make_xlsx  # noqa: E402
from tests.conftest import Sink, free_port, wait_port  # noqa: E402

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def message(subject: str, filename: str, ctype: str, payload: bytes) -> bytes:
    b64 = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return (f"From: sato@example.co.jp\r\nTo: buyer@new-client.example\r\n"
            f"Subject: {subject}\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            f"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nlist attached\r\n"
            f'--b1\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: base64\r\n'
            f'Content-Disposition: attachment; filename="{filename}"\r\n\r\n'
            ).encode() + b64 + b"--b1--\r\n"


def _reply(f) -> str:
    lines = []
    while True:
        line = f.readline().decode()
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return "".join(lines)


def send_timed(port: int, data: bytes) -> tuple[float, str]:
    """Send one message; seconds from the final dot to the reply, and the reply."""
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    f = s.makefile("rb")
    _reply(f)
    for cmd in (b"EHLO bench.localhost", b"MAIL FROM:<sato@example.co.jp>",
                b"RCPT TO:<buyer@new-client.example>", b"DATA"):
        s.sendall(cmd + b"\r\n")
        _reply(f)
    s.sendall(data)
    time.sleep(0.2)  # let the body drain into the guard before the clock starts
    t0 = time.perf_counter()
    s.sendall(b".\r\n")
    reply = _reply(f)
    took = time.perf_counter() - t0
    s.sendall(b"QUIT\r\n")
    s.close()
    return took, reply.strip()


def ehlo_probe(port: int, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                f = s.makefile("rb")
                _reply(f)
                s.sendall(b"EHLO probe.localhost\r\n")
                _reply(f)
                out.append(time.perf_counter() - t0)
                s.sendall(b"QUIT\r\n")
        except OSError:
            out.append(float("inf"))
        stop.wait(0.2)


def _verdict_ms(log: Path, reply: str) -> float:
    """The guard's own 'verdict … in N ms' line for the queue id in the reply: the
    inspection and policy part of the decision (the rest is SMTP, hand-offs, commit)."""
    qid = reply.rsplit(" ", 1)[-1].strip()
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if f"[{qid}]" in line and " verdict " in line:
            return float(line.rsplit(" in ", 1)[1].split()[0])
    return float("nan")


def _big_round(port: int, msgs: list[bytes]) -> tuple[list[float], list[tuple[float, str]]]:
    """The three big messages at once while the probe times EHLO every 200 ms."""
    stop = threading.Event()
    probes: list[float] = []
    prober = threading.Thread(target=ehlo_probe, args=(port, stop, probes))
    big: list[tuple[float, str]] = []
    senders = [threading.Thread(target=lambda m=m: big.append(send_timed(port, m)))
               for m in msgs]
    prober.start()
    time.sleep(0.5)
    for t in senders:
        t.start()
    for t in senders:
        t.join(300)
    stop.set()
    prober.join(30)
    return probes, big


def _ehlo_stats(probes: list[float]) -> dict[str, object]:
    finite = sorted(p for p in probes if p != float("inf"))
    p99 = finite[min(len(finite) - 1, int(0.99 * len(finite)))] if finite else None
    return {"ehlo_probes": len(probes),
            "ehlo_p50_s": round(statistics.median(finite), 4) if finite else None,
            "ehlo_p99_s": round(p99, 4) if p99 is not None else None,
            "ehlo_max_s": round(max(probes), 3) if probes else None,
            "ehlo_failed": len(probes) - len(finite)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller files (about a third)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--repeat", type=int, default=3,
                    help="decisions per xlsx size (median and max are reported)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="rounds of the three big messages with the EHLO probe")
    ap.add_argument("--skip-decisions", action="store_true", help="only part 2")
    args = ap.parse_args()
    scale = 3 if args.quick else 1

    tmp = Path(tempfile.mkdtemp(prefix="guard-stall-"))
    sink = Sink().start()
    port, web = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env.update({
        "GUARD_SMTP_LISTEN": f"127.0.0.1:{port}", "GUARD_SMTP_MODE": "trusted",
        "GUARD_TRUSTED_NETWORKS": "127.0.0.0/8", "GUARD_UPSTREAM": sink.url,
        "GUARD_WEB_LISTEN": f"127.0.0.1:{web}", "GUARD_BASE_URL": f"http://127.0.0.1:{web}",
        "GUARD_DATABASE_URL": f"sqlite:///{tmp / 'guard.db'}",
        "GUARD_SECRET_FILE": str(tmp / "secret"), "GUARD_POLICY": str(ROOT / "policies"),
        "GUARD_SMTP__MAX_MESSAGE_SIZE": str(60 * 1024 * 1024), "GUARD_LOG_LEVEL": "INFO"})
    guard = subprocess.Popen([sys.executable, "-m", "guard.cli", "serve"], cwd=tmp, env=env,
                             stdout=subprocess.DEVNULL, stderr=open(tmp / "guard.log", "wb"))
    results: dict[str, object] = {}
    try:
        wait_port(port, 30)
        print(f"guard log: {tmp / 'guard.log'}", flush=True)
        print("building attachments …", flush=True)
        xlsx4 = make_xlsx(70_000 // scale) if not args.skip_decisions else b""
        xlsx10 = make_xlsx(175_000 // scale, seed=9) if not args.skip_decisions else b""
        big_csv = make_csv(250_000 // scale)
        big_xlsx = make_xlsx(200_000 // scale)
        # warm the worker pool
        send_timed(port, message("warm", "w.csv", "text/csv", make_csv(100)))

        for label, xlsx in (() if args.skip_decisions else (("4MB", xlsx4), ("10MB", xlsx10))):
            times, inspect_ms = [], []
            for _ in range(max(1, args.repeat)):
                took, reply = send_timed(port, message(f"{label} xlsx", "顧客.xlsx", XLSX, xlsx))
                times.append(took)
                inspect_ms.append(_verdict_ms(tmp / "guard.log", reply))
            results[f"xlsx_{label}_mb"] = round(len(xlsx) / 1e6, 1)
            results[f"xlsx_{label}_decision_s"] = [round(t, 2) for t in times]
            results[f"xlsx_{label}_inspection_s"] = [round(ms / 1000, 2) for ms in inspect_ms]
            results[f"xlsx_{label}_reply"] = reply[:60]
            print(f"decision for a {len(xlsx) / 1e6:.1f} MB xlsx ({reply[:40]}): median "
                  f"{statistics.median(times):.2f} s, max {max(times):.2f} s over {len(times)}"
                  f" {[round(t, 2) for t in times]}; of which inspection and policy "
                  f"{[round(ms / 1000, 2) for ms in inspect_ms]} s (the guard's log)")

        msgs = [message("big csv 1", "a.csv", "text/csv", big_csv),
                message("big csv 2", "b.csv", "text/csv", big_csv),
                message("big xlsx", "c.xlsx", XLSX, big_xlsx)]
        sizes = [round(len(m) / 1e6, 1) for m in msgs]
        every: list[float] = []
        for rnd in range(max(1, args.rounds)):
            probes, big = _big_round(port, msgs)
            every += probes
            results[f"round_{rnd + 1}"] = {
                "big_decisions_s": [round(t, 2) for t, _ in big],
                "big_replies": [r[:40] for _, r in big], **_ehlo_stats(probes)}
            print(f"round {rnd + 1}: three messages of {sizes} MB: decided in "
                  f"{[round(t, 1) for t, _ in big]} s {[r[:12] for _, r in big]}")
            st = _ehlo_stats(probes)
            print(f"  EHLO while they were received and inspected: {st['ehlo_probes']} probes,"
                  f" p50 {st['ehlo_p50_s']} s, p99 {st['ehlo_p99_s']} s, max "
                  f"{st['ehlo_max_s']} s (target < 0.1 s), failed {st['ehlo_failed']}")
        results["big_messages_mb"] = sizes
        results["big_decisions_s"] = [round(t, 2) for t, _ in big]  # the last round's
        results.update(_ehlo_stats(every))
        if args.rounds > 1:
            st = _ehlo_stats(every)
            print(f"all {args.rounds} rounds: {st['ehlo_probes']} probes, p50 {st['ehlo_p50_s']}"
                  f" s, p99 {st['ehlo_p99_s']} s, max {st['ehlo_max_s']} s, "
                  f"failed {st['ehlo_failed']}")
    finally:
        guard.send_signal(signal.SIGTERM)
        try:
            guard.wait(30)
        except subprocess.TimeoutExpired:
            guard.kill()
        sink.stop()
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
