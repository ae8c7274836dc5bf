"""CPU of the extraction worker's "parse" job per ~100 KiB message, stage by stage.

Not a test. Run:

    .venv/bin/python tests/bench/worker_bench.py                     # this checkout
    .venv/bin/python tests/bench/worker_bench.py --ab /tmp/base      # paired A/B
    .venv/bin/python tests/bench/worker_bench.py --dump out.pickle   # results, for --same

A message over 16 KiB is inspected in a worker process (guard.inspect.isolate.worker):
the job is unpickled, the message parsed (guard.mail.message.parse_message), the text
detectors run on its texts (guard.inspect.run.text_findings: body parts, the
personal-data scan with its text tables, keywords, customer names) and the answer
pickled back. This runs exactly that in one process, with the example policy's context,
on six shapes of about 100 KiB:

  source       what relay_bench's smtp-source sends: "1XXX…" lines, no MIME header, CRLF
  probe        relay_bench's time-to-250 probe: "The quick brown fox … 0123456789 …" lines
  jis-reply    ISO-2022-JP text/plain, Outlook reply chain (-----Original Message-----),
               a signature, a disclaimer, a few personal-data values
  utf8-alt     Gmail-style multipart/alternative: UTF-8 base64 text/plain with "> " quoted
               reply + quoted-printable HTML
  jis-png      a short ISO-2022-JP body + a ~90 KiB base64 PNG
  utf8-pdf     a short UTF-8 (quoted-printable) alternative body + a ~90 KiB base64 PDF
               with an RFC 2231 file name

and prints CPU ms per message (time.process_time_ns; the machine is shared) in total and
per stage: recv (unpickle the job), parse (parse_message; within it prescan, decode =
decode_declared), segment (split_bodies), scan (the personal-data scan; within it
tables = texttables.find_tables), normalize, keywords, customers, send (pickle the
answer). Stages are timed by wrapping those functions (a few µs of overhead each), the
total without wrappers. Medians over --rounds rounds of --n messages each.

--ab ROOT runs this script on ROOT's guard code (a `git archive` of the base) and on this
checkout in alternating child processes, --pairs times, and prints both medians and
new/old. --dump writes each shape's and each test message's worker answer (view without
texts, findings) so two checkouts' answers can be compared with --same A B.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pickle
import quopri
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, os.environ.get("GUARD_BENCH_ROOT") or str(Path(__file__).resolve().parents[2]))
HERE = Path(__file__).resolve().parents[2]
if str(HERE) not in sys.path:
    sys.path.append(str(HERE))  # tests.* from this checkout

from multiprocessing.reduction import ForkingPickler  # noqa: E402

from guard.accept.decide import Inspector  # noqa: E402
from guard.inspect.extract import ExtractLimits  # noqa: E402
from guard.inspect.isolate import worker  # noqa: E402
from guard.policy import load_policy  # noqa: E402

FROM, TO = "sato@example.co.jp", ["buyer@new-client.example"]
SIZE = 100 * 1024

# --- the shapes ----------------------------------------------------------------------

SENTENCES = (
    "いつもお世話になっております。",
    "先日はお打ち合わせのお時間をいただき、誠にありがとうございました。",
    "来週の定例会議は11月12日（水）14:00から第3会議室で行います。",
    "見積書を添付いたしますので、ご確認のほどよろしくお願いいたします。",
    "合計金額は1,234,567円（税込）となります。",
    "資料の第2版では、12ページ目の図を差し替えました。",
    "納期は2026年12月15日を予定しております。",
    "ご不明な点がございましたら、お気軽にお問い合わせください。",
    "本件につきましては、社内で検討のうえ改めてご連絡いたします。",
    "新しいシステムはVersion 3.10.2で動作確認済みです。",
    "出荷数は前月比105%の8,450個でした。",
    "引き続きどうぞよろしくお願い申し上げます。",
    "ご提案いただいた仕様変更について、社内で確認いたしました。",
    "前回の議事録を共有いたします。修正点があればご指摘ください。",
    "第4四半期の売上は前年同期比で12.5%増加しました。",
    "サーバーの移行作業は土曜日の夜間に実施します。",
    "検収書の押印をお願いできますでしょうか。",
    "請求書は月末締め翌月末払いでお願いいたします。",
)
NAMES = ("鈴木 一郎", "高橋 美咲", "田中 健太", "伊藤 陽子", "渡辺 大輔", "中村 由美")
SIGNATURE = (
    "--\n株式会社サンプル商事\n営業本部 第二営業部\n佐藤 花子 (Hanako Sato)\n"
    "〒100-0005 東京都千代田区丸の内1-2-3 サンプルビル8F\nTEL: 03-1234-5678 / FAX: 03-1234-5679\n"
    "Mail: sato@example.co.jp\nURL: https://www.example.co.jp/\n")
THEIR_SIGNATURE = (
    "━━━━━━━━━━━━━━━━━━━━\n株式会社クライアント\n購買部\n{name}\n"
    "〒530-0001 大阪府大阪市北区梅田2-4-9\nTEL 06-6345-1234\n━━━━━━━━━━━━━━━━━━━━\n")
DISCLAIMER = (
    "本メールは機密情報を含む場合があります。誤って受信された場合は、お手数ですが送信者に"
    "ご連絡のうえ削除してください。\nThis e-mail is confidential and may be privileged. If you"
    " are not the intended recipient, please notify the sender and delete it.\n")


def _wrap(text: str, width: int) -> list[str]:
    return [text[i:i + width] for i in range(0, len(text), width)] or [""]


def ja_paragraphs(rng: random.Random, chars: int, width: int = 36,
                  pii_every: int = 6000) -> str:
    """Japanese office prose wrapped at `width` characters (as mail clients wrap it),
    in paragraphs, with a personal-data value now and then (bench_pii's items)."""
    from tests.bench.bench_pii import _item

    out: list[str] = []
    used = 0
    next_item = pii_every
    truth: set[tuple[str, str]] = set()
    while used < chars:
        para = "".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 4)))
        lines = _wrap(para, width)
        if used >= next_item:
            item = _item(rng, used, truth)
            lines.append(item.encode("iso2022_jp", "ignore").decode("iso2022_jp"))
            next_item += pii_every
        out += [*lines, ""]
        used += len(para) + len(lines)
    return "\n".join(out)


def reply_chain(rng: random.Random, chars: int, quote: str) -> str:
    """New text, the sender's signature, then older mails of the thread below reply
    headers (quote "": Outlook's -----Original Message----- blocks; ">": On … wrote:)."""
    parts = [f"{rng.choice(NAMES).split()[0]}様\n\n" + ja_paragraphs(rng, 600), SIGNATURE]
    size = sum(map(len, parts))
    depth = 0
    while size < chars:
        name = NAMES[depth % len(NAMES)]
        old = ja_paragraphs(rng, rng.randint(1500, 4000)) + "\n" + \
            THEIR_SIGNATURE.format(name=name) + DISCLAIMER
        if quote:
            head = f"\n2026年11月{28 - depth % 27}日(月) 10:{depth % 60:02d} {name} " \
                   f"<user{depth}@client.example>:\n"
            body = "\n".join(quote * (1 + depth // 3) + " " + line for line in old.split("\n"))
        else:
            head = (f"\n-----Original Message-----\nFrom: {name} <user{depth}@client.example>\n"
                    f"Sent: Monday, November {28 - depth % 27}, 2026 10:{depth % 60:02d} AM\n"
                    f"To: 佐藤 花子 <sato@example.co.jp>\nSubject: RE: お見積りの件\n\n")
            body = old
        parts.append(head + body)
        size += len(head) + len(body)
        depth += 1
    return "".join(parts)[:chars]


def _crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def _head(ctype: str, subject: str = "=?ISO-2022-JP?B?GyRCOCtAURsoQg==?=",
          mailer: str = "Microsoft Outlook 16.0") -> bytes:
    return _crlf(
        f"From: =?ISO-2022-JP?B?GyRCOjRGIzJWO1IbKEI=?= <{FROM}>\n"
        f"To: =?ISO-2022-JP?B?GyRCTmtMWhsoQg==?= <{TO[0]}>\n"
        "Cc: tanaka@example.co.jp, ito@example.co.jp\n"
        f"Subject: {subject}\nDate: Mon, 7 Dec 2026 10:00:00 +0900\n"
        "Message-ID: <0123456789abcdef@example.co.jp>\nMIME-Version: 1.0\n"
        f"X-Mailer: {mailer}\nThread-Index: AdkTeSt0123456789abcdef==\n"
        f"Content-Type: {ctype}\n").encode()


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _qp(text: str) -> bytes:
    return quopri.encodestring(_crlf(text).encode()).replace(b"\r\n", b"\n").replace(
        b"\n", b"\r\n")


def _fit(make: Callable[[int], bytes], size: int = SIZE) -> bytes:
    """make(chars) with `chars` adjusted until the message is within 3 % of `size`."""
    chars = size // 4
    raw = make(chars)
    for _ in range(20):
        if abs(len(raw) - size) <= size * 0.03:
            break
        chars = max(1, int(chars * size / len(raw)))
        raw = make(chars)
    return raw


def source_message() -> bytes:
    """What smtp-source -l 102400 sends (relay_bench's throughput phase)."""
    head = (f"From: <{FROM}>\r\nTo: <{TO[0]}>\r\n"
            "Date: Mon,  7 Dec 2026 10:50:58 +0000 (UTC)\r\nMessage-Id: <2e71.0003.0000@vm>\r\n"
            "\r\n").encode()
    lines = [b"%d" % ((i + 1) % 10) + b"X" * 77 for i in range(1279)] + [b"X" * 80]
    return head + b"".join(line + b"\r\n" for line in lines)


def probe_message() -> bytes:
    """relay_bench's probe message (make_message), sent for the time-to-250 figures."""
    head = (f"From: <{FROM}>\r\nTo: <{TO[0]}>\r\nSubject: probe 0\r\n"
            "Message-ID: <0@probe.local>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuv\r\n"
    body = (line * (SIZE // len(line) + 1))[:SIZE]
    return head + body[: body.rfind(b"\r\n") + 2]


def jis_reply() -> bytes:
    def make(chars: int) -> bytes:
        text = reply_chain(random.Random(1), chars, "")
        return _head('text/plain; charset="iso-2022-jp"') + \
            b"Content-Transfer-Encoding: 7bit\r\n\r\n" + _crlf(text).encode("iso2022_jp")
    return _fit(make)


def _html(text: str) -> str:
    paras = text.split("\n\n")
    return "<html><body>" + "".join(
        "<div>" + "<br>".join(p.split("\n")) + "</div>\n" for p in paras) + "</body></html>"


def utf8_alt() -> bytes:
    def make(chars: int) -> bytes:
        text = reply_chain(random.Random(2), chars, ">")
        return _head('multipart/alternative; boundary="000000000000a1b2c3d4e5f6"',
                     mailer="Gmail") + (
            b"\r\n--000000000000a1b2c3d4e5f6\r\n"
            b'Content-Type: text/plain; charset="UTF-8"\r\nContent-Transfer-Encoding: base64\r\n'
            b"\r\n" + _b64(_crlf(text).encode()) +
            b"\r\n--000000000000a1b2c3d4e5f6\r\n"
            b'Content-Type: text/html; charset="UTF-8"\r\n'
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + _qp(_html(text)) +
            b"\r\n--000000000000a1b2c3d4e5f6--\r\n")
    # the HTML repeats the text: half the characters for the same size
    return _fit(make)


def _png(n: int) -> bytes:
    rnd = random.Random(3).randbytes(n)
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rnd


def _pdf(n: int) -> bytes:
    rnd = random.Random(4).randbytes(n)
    return (b"%%PDF-1.7\n%%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Length %d /Filter /FlateDecode >>\n"
            b"stream\n" % n) + rnd + b"\nendstream\nendobj\n%%EOF\n"


def jis_png() -> bytes:
    text = _crlf(reply_chain(random.Random(5), 900, "")[:900])
    return _head('multipart/mixed; boundary="----=_NextPart_000_0001_01DB0000.12345670"') + (
        b"\r\nThis is a multi-part message in MIME format.\r\n\r\n"
        b"------=_NextPart_000_0001_01DB0000.12345670\r\n"
        b'Content-Type: text/plain; charset="iso-2022-jp"\r\nContent-Transfer-Encoding: 7bit'
        b"\r\n\r\n" + text.encode("iso2022_jp") +
        b"\r\n\r\n------=_NextPart_000_0001_01DB0000.12345670\r\n"
        b'Content-Type: image/png; name="image001.png"\r\nContent-Transfer-Encoding: base64\r\n'
        b'Content-Disposition: attachment; filename="image001.png"\r\n\r\n' +
        _b64(_png(90 * 1024 * 3 // 4)) +
        b"\r\n------=_NextPart_000_0001_01DB0000.12345670--\r\n")


def utf8_pdf() -> bytes:
    text = reply_chain(random.Random(6), 1200, ">")[:1200]
    return _head('multipart/mixed; boundary="0000000000007f8e9d0c1b2a"', mailer="Gmail") + (
        b"\r\n--0000000000007f8e9d0c1b2a\r\n"
        b'Content-Type: multipart/alternative; boundary="0000000000007f8e9d0c1b28"\r\n\r\n'
        b"--0000000000007f8e9d0c1b28\r\n"
        b'Content-Type: text/plain; charset="UTF-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + _qp(text) +
        b"\r\n--0000000000007f8e9d0c1b28\r\n"
        b'Content-Type: text/html; charset="UTF-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + _qp(_html(text)) +
        b"\r\n--0000000000007f8e9d0c1b28--\r\n--0000000000007f8e9d0c1b2a\r\n"
        b'Content-Type: application/pdf; name="=?UTF-8?B?6KaL56mN5pu4LnBkZg==?="\r\n'
        b"Content-Disposition: attachment;\r\n"
        b" filename*=UTF-8''%E8%A6%8B%E7%A9%8D%E6%9B%B8.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(_pdf(90 * 1024 * 3 // 4)) +
        b"\r\n--0000000000007f8e9d0c1b2a--\r\n")


SHAPES: dict[str, Callable[[], bytes]] = {
    "source": source_message, "probe": probe_message, "jis-reply": jis_reply, "utf8-alt": utf8_alt,
    "jis-png": jis_png, "utf8-pdf": utf8_pdf,
}

# --- the job -------------------------------------------------------------------------


def static_context() -> Any:
    return Inspector(None, b"k" * 32).static_context(load_policy(HERE / "policies"), FROM)


def job_bytes(raw: bytes, ctx: Any) -> bytes:
    return bytes(ForkingPickler.dumps(("parse", raw, FROM, list(TO), ctx)))


LIMITS = ExtractLimits()


def compute(job: tuple[Any, ...]) -> tuple[str, Any]:
    """The answer worker_main sends for one "parse" job (its lines for that job)."""
    _, raw, mail_from, rcpt_tos, ctx = job
    view = worker.parse_message(raw, mail_from, rcpt_tos, LIMITS.parse_limits)
    return ("ok", (*worker._detect(view, ctx), None))


def run_job(data: bytes) -> bytes:
    """What worker_main does with one "parse" job, from the pipe's bytes to the answer's."""
    return bytes(ForkingPickler.dumps(compute(ForkingPickler.loads(data))))


# the stages: (label, module, attribute), wrapped to sum their CPU time
STAGES = (
    ("parse", "guard.inspect.isolate.worker", "parse_message"),
    ("  prescan", "guard.mail.message", "prescan"),
    ("  decode", "guard.mail.message", "decode_declared"),
    ("segment", "guard.inspect.run", "split_bodies"),
    ("scan", "guard.inspect.run", "scan"),
    ("  tables", "guard.inspect.pii.detect", "tables_in"),
    ("normalize", "guard.inspect.run", "normalize"),
    ("keywords", "guard.inspect.run", "detect_keywords"),
    ("customers", "guard.inspect.run", "detect_customer_mismatch"),
)
SPENT: dict[str, int] = defaultdict(int)


def _wrap_stages() -> None:
    import importlib

    clock = time.process_time_ns
    for label, module, name in STAGES:
        mod = importlib.import_module(module)
        fn = getattr(mod, name, None)
        if fn is None:
            continue

        def timed(*a: Any, _fn: Any = fn, _label: str = label, **k: Any) -> Any:
            t0 = clock()
            try:
                return _fn(*a, **k)
            finally:
                SPENT[_label] += clock() - t0
        setattr(mod, name, timed)


def measure(rounds: int, n: int) -> dict[str, dict[str, float]]:
    """{shape: {stage: median CPU ms per message}} ("total" unwrapped)."""
    ctx = static_context()
    jobs = {name: job_bytes(make(), ctx) for name, make in SHAPES.items()}
    clock = time.process_time_ns
    for data in jobs.values():  # warm up (phone-number metadata, regex caches)
        run_job(data)
    totals: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for name, data in jobs.items():
            t0 = clock()
            for _ in range(n):
                run_job(data)
            totals[name].append((clock() - t0) / n / 1e6)
    _wrap_stages()
    stages: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for _ in range(rounds):
        for name, data in jobs.items():
            SPENT.clear()
            for _ in range(n):
                t0 = clock()
                job = ForkingPickler.loads(data)
                t1 = clock()
                answer = compute(job)
                t2 = clock()
                reply = ForkingPickler.dumps(answer)
                t3 = clock()
                ForkingPickler.loads(reply)  # (the parent's side, for reference)
                SPENT["(parent unpickle)"] += clock() - t3
                SPENT["recv"] += t1 - t0
                SPENT["send"] += t3 - t2
            for label, ns in SPENT.items():
                stages[name][label].append(ns / n / 1e6)
    out: dict[str, dict[str, float]] = {}
    for name in jobs:
        out[name] = {"total": statistics.median(totals[name]), "size KiB": len(
            pickle.loads(jobs[name])[1]) / 1024}
        out[name].update({k: statistics.median(v) for k, v in stages[name].items()})
    return out


ORDER = ["size KiB", "total", "recv", "parse", "  prescan", "  decode", "segment", "scan",
         "  tables", "normalize", "keywords", "customers", "send", "(parent unpickle)"]


def show(results: list[tuple[str, dict[str, dict[str, float]]]]) -> None:
    names = list(results[0][1])
    print(f"{'CPU ms/message':<18}" + "".join(f"{n:>24}" for n in names))
    for stage in ORDER:
        row = f"{stage:<18}"
        for name in names:
            vals = [r[name].get(stage) for _, r in results]
            if len(vals) == 1:
                row += f"{vals[0]:>24.3f}" if vals[0] is not None else f"{'-':>24}"
            else:
                a, b = vals[0], vals[1]
                if a is None or b is None:
                    row += f"{'-':>24}"
                elif stage == "size KiB":
                    row += f"{a:>24.1f}"
                else:
                    row += f"{f'{a:.3f} → {b:.3f} ({b / a if a else 0:.2f})':>24}"
        print(row)


def ab(base: str, pairs: int, rounds: int, n: int) -> None:
    """Alternate child processes on the base's code and this checkout's."""
    runs: dict[str, list[dict[str, dict[str, float]]]] = {"old": [], "new": []}
    for i in range(pairs):
        for label in (("old", "new") if i % 2 == 0 else ("new", "old")):
            env = dict(os.environ)
            if label == "old":
                env["GUARD_BENCH_ROOT"] = base
            else:
                env.pop("GUARD_BENCH_ROOT", None)
            out = subprocess.run(
                [sys.executable, __file__, "--json", "--rounds", str(rounds), "--n", str(n)],
                env=env, check=True, capture_output=True, text=True).stdout
            runs[label].append(json.loads(out))
        print(f"pair {i + 1}/{pairs} done", file=sys.stderr, flush=True)
    med = {label: _median_of(r) for label, r in runs.items()}
    print(f"old = {base}, new = {HERE}; medians of {pairs} child processes each, "
          f"old → new (new/old)")
    show([("old", med["old"]), ("new", med["new"])])


def _median_of(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name in runs[0]:
        out[name] = {stage: statistics.median(r[name][stage] for r in runs if stage in r[name])
                     for stage in runs[0][name]}
    return out


# --- identical answers -------------------------------------------------------------------


def corpus() -> dict[str, bytes]:
    """The shapes, the sample mails, the test messages, generated messages."""
    out = {f"shape:{k}": make() for k, make in SHAPES.items()}
    for path in sorted((HERE / "policies" / "samples").glob("*.eml")):
        out[f"sample:{path.name}"] = path.read_bytes()
    from tests import hostile
    for name, make in [*hostile.HOSTILE.items(), *getattr(hostile, "GATE", {}).items()]:
        try:
            out[f"hostile:{name}"] = make()
        except Exception:  # (a shape that needs a fixture)
            continue
    # (from this checkout's file: with GUARD_BENCH_ROOT, `tests` is the base's package)
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "message_corpus", HERE / "tests" / "bench" / "message_corpus.py")
    assert spec is not None and spec.loader is not None
    corpus_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(corpus_module)
    out.update(corpus_module.generated())
    return out


def canonical(reply: bytes) -> Any:
    """A worker answer as plain data (the view without its texts, the findings)."""
    status, payload = pickle.loads(reply)
    if status != "ok":
        return (status, payload)
    packed, findings, _ = payload
    shell = packed.shell
    return (status, repr(shell), repr(packed.texts), repr(packed.tables),
            [repr(f) for f in findings])


def dump(path: str) -> None:
    ctx = static_context()
    out = {name: canonical(run_job(job_bytes(raw, ctx))) for name, raw in corpus().items()}
    Path(path).write_bytes(pickle.dumps(out))
    print(f"{len(out)} answers written to {path}")


def same(a: str, b: str) -> int:
    left, right = pickle.loads(Path(a).read_bytes()), pickle.loads(Path(b).read_bytes())
    diff = [k for k in left if left[k] != right.get(k)] + [k for k in right if k not in left]
    print(f"{len(left)} / {len(right)} messages, {len(diff)} different")
    for k in diff[:20]:
        print(" ", k)
        for x, y in zip(left.get(k, ()), right.get(k, ()), strict=False):
            if x != y:
                print("    old:", str(x)[:400])
                print("    new:", str(y)[:400])
    return 1 if diff else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=20, help="messages per shape per round")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--ab", metavar="ROOT")
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--dump", metavar="FILE")
    ap.add_argument("--same", nargs=2, metavar=("OLD", "NEW"))
    ap.add_argument("--write", metavar="DIR", help="write the shapes as .eml files")
    args = ap.parse_args()
    if args.same:
        sys.exit(same(*args.same))
    if args.dump:
        dump(args.dump)
        return
    if args.write:
        for name, make in SHAPES.items():
            (Path(args.write) / f"{name}.eml").write_bytes(make())
        return
    if args.ab:
        ab(args.ab, args.pairs, args.rounds, args.n)
        return
    result = measure(args.rounds, args.n)
    if args.json:
        print(json.dumps(result))
    else:
        show([("", result)])


if __name__ == "__main__":
    main()
