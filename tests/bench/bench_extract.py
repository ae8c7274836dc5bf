"""Inspection throughput: attachment extraction and the personal-data scan, MIME parsing.

Not a test. Run:  .venv/bin/python tests/bench/bench_extract.py [--quick] [--full]

Generates Japanese customer-list style files in memory (xlsx / docx / pdf / csv, about
5-10 MB each) and prints, per format, MB/s of input for guard.inspect.extract.extract()
alone and for extract + the text detectors the extraction worker runs on each attachment
(guard.inspect.run.text_findings: personal data, keywords, customer names, with the
example policy's context) — "inspected" as the guard inspects a real message. Medians of
--repeat runs. Then times a ~10 MB xlsx end to end through ExtractionPool (worker
process, pipe transfer and the detectors included) and parse_message() on large messages.
--full also runs tests/bench/stall_bench.py (a real `guard serve` on 127.0.0.1): the
10 MB xlsx decision time through SMTP and EHLO latency while three ~30 MB messages are
inspected. GUARD_BENCH_ROOT=/path/to/other/checkout measures that checkout's guard code
with this script (for a before/after in one run).

--against /path/to/old/checkout: a paired before/after in ONE process, which a shared
machine needs (two runs minutes apart differ by more than most changes): the old
checkout's guard package is loaded beside this one as `guard_before`, and each round
runs extract() (and, with --scan, extract + the detectors) once with each, alternating
which goes first; medians of CPU time, and whether the two gave the same texts,
tables, problems and findings. (An old checkout without a venv: `git archive COMMIT |
tar -x -C DIR`.)

The xlsx and docx are written as raw OOXML (shared strings, like Excel writes them)
because openpyxl / python-docx take minutes to write files this size.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import random
import statistics
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

sys.path.insert(0, os.environ.get("GUARD_BENCH_ROOT") or str(Path(__file__).resolve().parents[2]))

from guard.accept.decide import Inspector
from guard.inspect.extract import extract
from guard.inspect.isolate import ExtractionPool
from guard.inspect.run import text_findings
from guard.mail.message import Attachment, MessageView, parse_message
from guard.policy import load_policy
from tests.inspect.fixtures import pdf_file, raw_xlsx, word_like_document

ROOT = Path(sys.path[0])

SEI = ["山田", "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "中村", "小林", "加藤"]
MEI = ["太郎", "花子", "一郎", "美咲", "健太", "陽子", "翔", "さくら", "大輔", "由美"]
PREF = ["東京都千代田区", "大阪府大阪市北区", "愛知県名古屋市中区", "福岡県福岡市博多区"]
HEADER = ["氏名", "フリガナ", "郵便番号", "住所", "電話", "メール", "生年月日"]


def person(rng: random.Random, i: int) -> list[str]:
    return [
        f"{rng.choice(SEI)} {rng.choice(MEI)}",
        "ヤマダ タロウ",
        f"{rng.randint(100, 999)}-{rng.randint(0, 9999):04d}",
        f"{rng.choice(PREF)}{rng.randint(1, 9)}-{rng.randint(1, 30)}-{rng.randint(1, 20)}",
        f"090-{rng.randint(0, 9999):04d}-{rng.randint(0, 9999):04d}",
        f"user{i}.{rng.randint(0, 99999)}@example.jp",
        f"19{rng.randint(40, 99)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    ]


def _col(n: int) -> str:
    s = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


def make_xlsx(n_rows: int, seed: int = 1) -> bytes:
    """A customer list with shared strings, laid out as Excel writes it."""
    rng = random.Random(seed)
    strings: dict[str, int] = {}
    rows_xml: list[str] = []
    for r, row in enumerate([HEADER] + [person(rng, i) for i in range(n_rows)], 1):
        cells = []
        for c, value in enumerate(row):
            idx = strings.setdefault(value, len(strings))
            cells.append(f'<c r="{_col(c)}{r}" t="s"><v>{idx}</v></c>')
        rows_xml.append(f'<row r="{r}">{"".join(cells)}</row>')
    return raw_xlsx("".join(rows_xml), list(strings))


def make_docx(n_paragraphs: int, seed: int = 2) -> bytes:
    rng = random.Random(seed)
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    paras = []
    for i in range(n_paragraphs):
        p = person(rng, i)
        text = f"{p[0]}様（{p[3]}）の連絡先は {p[4]}、メールは {p[5]} です。生年月日 {p[6]}。"
        paras.append(f"<w:p><w:r><w:t>{escape(text)}</w:t></w:r></w:p>")
    doc = (f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{w}"><w:body>'
           + "".join(paras) + "</w:body></w:document>")
    return _zip({"[Content_Types].xml": "<Types/>", "word/document.xml": doc})


def make_word_docx(n_paragraphs: int, seed: int = 6) -> bytes:
    """The same people as make_docx, in Word's own shape (rsids, run properties, tab
    stops, tabs, breaks, tables, deletions: tests.inspect.fixtures.word_like_document)."""
    rng = random.Random(seed)
    texts = [escape(v) for i in range(20_000) for v in person(rng, i)]
    doc = word_like_document(n_paragraphs, seed, texts)
    return _zip({"[Content_Types].xml": "<Types/>", "word/document.xml": doc.decode()})


def make_pdf(pages: int, lines_per_page: int = 60, seed: int = 3) -> bytes:
    # Helvetica has no Japanese glyphs: the PDF carries romanised records
    rng = random.Random(seed)
    objs: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for pg in range(pages):
        ops = ["BT", "/F1 9 Tf", "36 760 Td", "12 TL"]
        for i in range(lines_per_page):
            n = pg * lines_per_page + i
            ops.append(f"(Customer {n}: Yamada Taro, 090-{rng.randint(0, 9999):04d}-"
                       f"{rng.randint(0, 9999):04d}, user{n}@example.jp, Tokyo "
                       f"{rng.randint(1, 9)}-{rng.randint(1, 30)}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        page_num = len(objs) + 1
        kids.append(f"{page_num} 0 R")
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
                    f"<< /Font << /F1 3 0 R >> >> /Contents {page_num + 1} 0 R >>".encode())
        objs.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objs[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objs[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {pages} >>".encode()
    return pdf_file(objs, b"%PDF-1.4\n")


def make_csv(n_rows: int, seed: int = 4) -> bytes:
    rng = random.Random(seed)
    lines = [",".join(HEADER)] + [",".join(person(rng, i)) for i in range(n_rows)]
    return ("\r\n".join(lines) + "\r\n").encode("cp932")


def _zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in members.items():
            zf.writestr(name, text.encode())
    return buf.getvalue()


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    seconds, _cpu, result = timed_cpu(fn, repeat)
    return seconds, result


def timed_cpu(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Median wall-clock and CPU seconds (this process) of `repeat` runs, and a result.
    CPU time is the steadier figure on a shared machine: other load stretches wall time."""
    times, cpus = [], []
    result: object = None
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(times), statistics.median(cpus), result


def static_context() -> object:
    """The example policy's context, as the guard builds it for a message from FROM."""
    return Inspector(None, b"k" * 32).static_context(load_policy(ROOT / "policies"),
                                                     "sato@example.co.jp")


def inspect_attachment(att: Attachment, ctx: object) -> tuple[object, list[object]]:
    """What the extraction worker does with one attachment: extract, then the detectors."""
    ex = extract(att)
    part = MessageView(mail_from="", rcpt_tos=["buyer@new-client.example"],
                       texts=ex.texts, tables=ex.tables, inner_names=ex.inner_names)
    return ex, text_findings(part, ctx)  # type: ignore[arg-type]


def bench_formats(quick: bool, repeat: int, only: set[str] | None = None) -> dict[str, float]:
    scale = 0.25 if quick else 1.0
    print("Generating files ...", flush=True)
    makers = {
        "xlsx": ("customers.xlsx", lambda: make_xlsx(int(90_000 * scale))),
        "docx": ("staff.docx", lambda: make_docx(int(180_000 * scale))),
        "docx-w": ("word.docx", lambda: make_word_docx(int(25_000 * scale))),
        "pdf": ("list.pdf", lambda: make_pdf(int(900 * scale))),
        "csv": ("customers.csv", lambda: make_csv(int(90_000 * scale))),
    }
    ctx = static_context()
    print("MB/s of input file; wall = median wall-clock, cpu = median CPU time of this "
          "process;\n'+scan' = extract + the detectors (personal data, keywords, customers)")
    print(f"{'format':<6} {'input MB':>8} {'extract s':>9} {'wall MB/s':>9} {'cpu MB/s':>8} "
          f"{'+scan s':>8} {'wall MB/s':>9} {'cpu MB/s':>8} {'XML MB':>6} {'text chars':>11} "
          f"{'rows':>7} {'findings':>8}  problems")
    out: dict[str, float] = {}
    for kind, (name, make) in makers.items():
        if only and kind not in only:
            continue
        data = make()
        att = Attachment(filename=name, content_type="", data=data, where=f"attachment:{name}")
        seconds, cpu, ex = timed_cpu(lambda att=att: extract(att), repeat)
        both, both_cpu, (_, findings) = timed_cpu(  # type: ignore[misc]
            lambda att=att: inspect_attachment(att, ctx), repeat)
        chars = sum(len(t.text) for t in ex.texts)  # type: ignore[attr-defined]
        # rows read + rows counted after a sampled sheet (Table.more_rows)
        rows = sum(len(t.rows) + t.more_rows for t in ex.tables)  # type: ignore[attr-defined]
        mb = len(data) / 1e6
        xml = ""
        if data[:2] == b"PK":  # what the reader goes through: MB inflated
            members = zipfile.ZipFile(io.BytesIO(data)).infolist()
            xml = f"{sum(i.file_size for i in members) / 1e6:.1f}"
        print(f"{kind:<6} {mb:>8.2f} {seconds:>9.3f} {mb / seconds:>9.1f} {mb / cpu:>8.1f} "
              f"{both:>8.3f} {mb / both:>9.1f} {mb / both_cpu:>8.1f} {xml:>6} {chars:>11,} "
              f"{rows:>7,} {len(findings):>8}  {ex.problems}",  # type: ignore[attr-defined]
              flush=True)
        out[kind] = mb / both
    return out


async def bench_pool(quick: bool, repeat: int) -> None:
    data = make_xlsx(int(170_000 * (0.25 if quick else 1.0)), seed=9)  # ~10 MB
    mb = len(data) / 1e6
    att = Attachment(filename="big.xlsx", content_type="", data=data,
                     where="attachment:big.xlsx")
    seconds, ex = timed(lambda: extract(att), 1)
    cells = sum(len(r) for t in ex.tables for r in t.rows)  # type: ignore[attr-defined]
    rows = sum(len(t.rows) + t.more_rows for t in ex.tables)  # type: ignore[attr-defined]
    print(f"\n{mb:.1f} MB xlsx ({rows:,} rows, {cells:,} cells read): extract() in-process "
          f"{seconds:.2f} s = {mb / seconds:.1f} MB/s, problems={ex.problems}")
    raw = (b"From: a@example.jp\r\nTo: b@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
           b"Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
           b'\r\nContent-Disposition: attachment; filename="big.xlsx"\r\n'
           b"Content-Transfer-Encoding: base64\r\n\r\n"
           + base64.encodebytes(data).replace(b"\n", b"\r\n") + b"--b--\r\n")
    pool = ExtractionPool(workers=1, niceness=0)  # raw speed, not scheduling policy
    ctx = static_context()
    times = []
    try:
        await pool.inspect_message(raw[:2000] + b"\r\n--b--\r\n", "a", ["b"])  # warm up
        cpus = []
        for _ in range(repeat):
            start, cpu = time.perf_counter(), time.process_time() + _cpu_of(pool.pids())
            view, findings = await pool.inspect_and_detect(
                raw, "sato@example.co.jp", ["buyer@new-client.example"], ctx)  # type: ignore[arg-type]
            times.append(time.perf_counter() - start)
            cpus.append(time.process_time() + _cpu_of(pool.pids()) - cpu)
    finally:
        await pool.close()
    print(f"{mb:.1f} MB xlsx in a {len(raw) / 1e6:.1f} MB message through ExtractionPool "
          f"(parse + extract + detectors + transfer): median {statistics.median(times):.2f} s "
          f"{[round(t, 2) for t in times]}, CPU (this process and the worker) median "
          f"{statistics.median(cpus):.2f} s {[round(t, 2) for t in cpus]}, {len(findings)} "
          f"findings, problems={view.problems}")


def _cpu_of(pids: list[int]) -> float:
    """utime + stime of these processes, seconds (Linux /proc)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def bench_mime(quick: bool) -> None:
    rng = random.Random(5)
    blob = rng.randbytes(int(20_000_000 * (0.25 if quick else 1.0)))
    text = ("お世話になっております。添付の件、ご確認ください。\n" * 60_000).encode()
    raw = (b"From: a@example.jp\r\nTo: b@example.com\r\nSubject: =?UTF-8?B?5ZCN57C/?=\r\n"
           b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n"
           + base64.encodebytes(text).replace(b"\n", b"\r\n")
           + b"--b\r\nContent-Type: application/octet-stream\r\n"
           b'Content-Disposition: attachment; filename="blob.bin"\r\n'
           b"Content-Transfer-Encoding: base64\r\n\r\n"
           + base64.encodebytes(blob).replace(b"\n", b"\r\n") + b"--b--\r\n")
    seconds, _view = timed(lambda: parse_message(raw, "a", ["b"]), 3)
    mb = len(raw) / 1e6
    print(f"\nMIME parse_message: {mb:.1f} MB message (base64 attachment + "
          f"{len(text) / 1e6:.1f} MB text body) in {seconds:.2f} s = {mb / seconds:.1f} MB/s")
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nhello %d\r\n" % i
                     for i in range(450))
    many = (b"Subject: many\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n" + parts
            + b"--b--\r\n")
    seconds, _view = timed(lambda: parse_message(many, "a", ["b"]), 3)
    print(f"MIME parse_message: 450 small parts in {seconds * 1000:.0f} ms")


def _load_before(checkout: Path) -> Any:
    """The guard package of `checkout`, importable as `guard_before` next to `guard`: a
    copy with its imports renamed (its metrics register the same names again, which the
    default Prometheus registry refuses: registration is switched off for the bench)."""
    import atexit
    import re
    import shutil
    import tempfile

    import prometheus_client.registry

    prometheus_client.registry.REGISTRY.register = lambda *a, **k: None  # type: ignore[method-assign]
    tmp = Path(tempfile.mkdtemp(prefix="guard-before-"))
    atexit.register(shutil.rmtree, tmp, True)
    shutil.copytree(checkout / "guard", tmp / "guard_before",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for py in (tmp / "guard_before").rglob("*.py"):
        text = py.read_text()
        text = re.sub(r"\bguard\.(?=[a-z_])", "guard_before.", text)
        text = re.sub(r"^(\s*)(from|import) guard\b(?!_)", r"\1\2 guard_before", text, flags=re.M)
        py.write_text(text)
    sys.path.insert(1, str(tmp))
    import importlib

    return importlib.import_module("guard_before")


def bench_against(checkout: Path, quick: bool, rounds: int, scan: bool,
                  only: set[str] | None) -> None:
    import importlib

    _load_before(checkout)
    sides = []
    for pkg in ("guard_before", "guard"):
        mods = {m: importlib.import_module(f"{pkg}.{m}") for m in (
            "inspect.extract", "inspect.run", "mail.message", "accept.decide", "policy")}
        ctx = mods["accept.decide"].Inspector(None, b"k" * 32).static_context(
            mods["policy"].load_policy(ROOT / "policies"), "sato@example.co.jp")
        sides.append((mods, ctx))

    def run(side: int, data: bytes, name: str, with_scan: bool) -> tuple[Any, Any]:
        mods, ctx = sides[side]
        msg = mods["mail.message"]
        att = msg.Attachment(filename=name, content_type="", data=data,
                             where=f"attachment:{name}")
        ex = mods["inspect.extract"].extract(att)
        if not with_scan:
            return ex, None
        view = msg.MessageView(mail_from="", rcpt_tos=["buyer@new-client.example"],
                               texts=ex.texts, tables=ex.tables, inner_names=ex.inner_names)
        return ex, mods["inspect.run"].text_findings(view, ctx)

    def same(a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
        def key(r: tuple[Any, Any]) -> object:
            ex, findings = r
            return ([(t.where, t.text) for t in ex.texts],
                    [(t.where, t.rows, t.more_rows) for t in ex.tables], list(ex.problems),
                    [(f.symbol, f.score, f.count, f.where, f.evidence) for f in findings])
        return key(a) == key(b)

    scale = 0.25 if quick else 1.0
    files = {
        "xlsx": ("customers.xlsx", lambda: make_xlsx(int(90_000 * scale))),
        "xlsx10": ("big.xlsx", lambda: make_xlsx(int(170_000 * scale), seed=9)),
        "docx": ("staff.docx", lambda: make_docx(int(180_000 * scale))),
        "docx-w": ("word.docx", lambda: make_word_docx(int(25_000 * scale))),
        "pdf": ("list.pdf", lambda: make_pdf(int(900 * scale))),
        "csv": ("customers.csv", lambda: make_csv(int(90_000 * scale))),
    }
    print(f"before = {checkout}, after = {ROOT}; CPU ms of this process, median of {rounds} "
          "paired rounds (MB/s of input, median after/before of the rounds)")
    print(f"{'format':<7} {'MB':>6}  {'extract before -> after':<40}"
          + (" extract + detectors before -> after" if scan else ""))
    for kind, (name, make) in files.items():
        if only and kind not in only:
            continue
        data = make()
        mb = len(data) / 1e6
        identical = same(run(0, data, name, True), run(1, data, name, True))
        times: dict[tuple[int, bool], list[float]] = {}
        for rnd in range(rounds):
            for with_scan in (False, True) if scan else (False,):
                for side in (0, 1) if rnd % 2 == 0 else (1, 0):
                    cpu = time.process_time()
                    run(side, data, name, with_scan)
                    times.setdefault((side, with_scan), []).append(time.process_time() - cpu)
        med = {k: statistics.median(v) for k, v in times.items()}
        cells = []
        for with_scan in (False, True) if scan else (False,):
            a, b = med[(0, with_scan)], med[(1, with_scan)]
            # after/before of each round: steadier than the medians when the load moves
            ratio = statistics.median(y / x for x, y in zip(
                times[(0, with_scan)], times[(1, with_scan)], strict=True))
            cells.append(f"{a * 1000:6.0f} -> {b * 1000:6.0f} ({mb / a:5.1f} -> {mb / b:5.1f}, "
                         f"x{ratio:.2f})")
        print(f"{kind:<7} {mb:>6.2f}  " + " ".join(f"{c:<40}" for c in cells).rstrip()
              + ("" if identical else "   RESULTS DIFFER"), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="quarter-size inputs")
    ap.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    ap.add_argument("--only", help="comma-separated formats (xlsx,docx,docx-w,pdf,csv)")
    ap.add_argument("--formats-only", action="store_true",
                    help="only the per-format table (no pool, no MIME)")
    ap.add_argument("--full", action="store_true",
                    help="also stall_bench.py: 10 MB xlsx decision and EHLO under load")
    ap.add_argument("--pool-only", action="store_true",
                    help="only the 10 MB xlsx through ExtractionPool")
    ap.add_argument("--against", type=Path, metavar="CHECKOUT",
                    help="paired A/B in one process against another checkout's guard code")
    ap.add_argument("--scan", action="store_true", help="--against: extract + detectors too")
    args = ap.parse_args()
    if args.against:
        bench_against(args.against, args.quick, max(args.repeat, 2), args.scan,
                      set(args.only.split(",")) if args.only else None)
        return
    if not args.pool_only:
        bench_formats(args.quick, args.repeat, set(args.only.split(",")) if args.only else None)
    if args.formats_only:
        return
    asyncio.run(bench_pool(args.quick, args.repeat))
    if args.pool_only:
        return
    bench_mime(args.quick)
    if args.full:
        import subprocess

        print("\nstall_bench.py (a real guard serve on 127.0.0.1):", flush=True)
        subprocess.run([sys.executable, str(ROOT / "tests/bench/stall_bench.py")]
                       + (["--quick"] if args.quick else []), check=False)


if __name__ == "__main__":
    main()
