"""Benchmark for the personal-data detectors (guard.inspect.pii.detect): MB/s per core and
precision/recall against a seeded synthetic corpus (performance.md §7.6).

    .venv/bin/python tests/bench/bench_pii.py                 # 4 KiB, 100 KiB, 1 MiB
    .venv/bin/python tests/bench/bench_pii.py --density 200   # a denser corpus

Corpus: Japanese and English business prose (with the numbers ordinary mail has: dates,
amounts, times, versions, room numbers), one personal-data item every `--density`
bytes on average (default 2048, as in performance.md §6), and one "hard negative" (a
Luhn-valid order number, a 12-digit invoice number passing the My Number check, a JAN
code, a plain date, a part number shaped like a postal code...) per item. The same
seed always gives the same corpus and the same ground truth.

Speed is CPU time (time.process_time) of scan_texts() on one core, repeated for at
least --min-time seconds, reported as MB/s of UTF-8 input and ms/doc p50/p99. Pattern
compilation happens at import and is reported separately.

Accuracy is measured on distinct (kind, value) pairs: what the scanner reports at or
above PiiLimits.min_score (e-mail: every address) against what the generator planted.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Allow running as a script from the repository root or from tests/bench.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

_t0 = time.process_time()
import phonenumbers  # noqa: E402  (only to make ground-truth phone numbers valid)

from guard.inspect.pii import scan as pii_scan  # noqa: E402  (import time is part of the report)
from guard.inspect.pii.checkdigits import (  # noqa: E402
    corporate_check_digit,
    luhn_valid,
    my_number_check_digit,
)
from guard.inspect.pii.detect import PiiLimits, scan_texts  # noqa: E402
from guard.mail.nfkc import normalize  # noqa: E402

IMPORT_SECONDS = time.process_time() - _t0

FILLER_JA = (
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
)
FILLER_EN = (
    "Thank you for your time at the meeting yesterday. ",
    "Please find the updated quarterly report attached. ",
    "The budget for Q3 is 125,000 USD, up 4.5% from last year. ",
    "We will meet again on 2026-11-12 at 10:30 in room 401. ",
    "Build 2.14.7 fixes the login issue reported last week. ",
    "Let me know if you have any questions about the proposal. ",
    "Shipping takes 3 to 5 business days from the warehouse. ",
    "Best regards, and have a nice weekend. ",
)


@dataclass
class Corpus:
    text: str
    truth: set[tuple[str, str]] = field(default_factory=set)
    items: int = 0
    negatives: int = 0


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + _digits(rng, length - len(prefix) - 1)
    for d in "0123456789":
        if luhn_valid(body + d):
            return body + d
    raise AssertionError("unreachable")


def _my_number(rng: random.Random) -> str:
    while True:
        base = _digits(rng, 11)
        number = base + str(my_number_check_digit(base))
        if len(set(number)) > 1:
            return number


def _corporate(rng: random.Random) -> str:
    base = _digits(rng, 12)
    return str(corporate_check_digit(base)) + base


def _phone(rng: random.Random) -> tuple[str, str]:
    """A number phonenumbers calls valid (ground truth must be real numbers: 06-2xxx is
    not an allocated Osaka range, and the detector is right to skip it)."""
    while True:
        if rng.random() < 0.6:
            prefix = rng.choice(("090", "080", "070"))
        else:
            prefix = rng.choice(("03", "06"))
        a = rng.randrange(1000, 10000) if len(prefix) == 3 else rng.randrange(2000, 10000)
        b = rng.randrange(1000, 10000)
        key = f"{prefix}{a}{b}"
        if phonenumbers.is_valid_number(phonenumbers.parse(key, "JP")):
            return f"{prefix}-{a}-{b}", key


_TOWNS = (
    ("東京都", "港区", "芝公園"), ("東京都", "千代田区", "丸の内"),
    ("大阪府", "大阪市", "北区梅田"), ("神奈川県", "横浜市", "西区みなとみらい"),
    ("福岡県", "福岡市", "博多区博多駅前"), ("北海道", "札幌市", "中央区北"),
)
_ERAS = (("昭和", 1925, 30, 63), ("平成", 1988, 1, 30))


_FULL_WIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")


def _variant(rng: random.Random, groups: list[str]) -> str:
    """The ways people write one number: spaces, hyphens, none, or full-width."""
    style = rng.randrange(4)
    if style == 0:
        return " ".join(groups)
    if style == 1:
        return "-".join(groups)
    if style == 2:
        return "".join(groups)
    return "-".join(groups).translate(_FULL_WIDTH)


def _item(rng: random.Random, n: int, truth: set[tuple[str, str]]) -> str:
    kind = rng.choice(
        ("my_number", "card", "phone", "phone", "email", "email", "address",
         "birth_date", "corporate_number")
    )
    if kind == "my_number":
        number = _my_number(rng)
        truth.add(("my_number", number))
        label = rng.choice(("マイナンバー：", "個人番号 ", "ﾏｲﾅﾝﾊﾞｰ:", "My Number: "))
        return label + _variant(rng, [number[:4], number[4:8], number[8:]])
    if kind == "card":
        prefix, length = rng.choice((("4", 16), ("5", 16), ("2221", 16), ("35", 16), ("37", 15)))
        if prefix == "5":
            prefix += str(rng.randrange(1, 6))
        elif prefix == "35":
            prefix = str(rng.randrange(3528, 3590))
        number = _luhn_complete(rng, prefix, length)
        truth.add(("card", number))
        if length == 15:
            groups = [number[:4], number[4:10], number[10:]]
        else:
            groups = [number[i : i + 4] for i in range(0, 16, 4)]
        label = rng.choice(("カード番号 ", "クレジットカード：", "Card no. ", "ｶｰﾄﾞ番号 "))
        expiry = f" 有効期限 {rng.randrange(1, 13):02d}/{rng.randrange(27, 32)}"
        return label + _variant(rng, groups) + (expiry if rng.random() < 0.5 else "")
    if kind == "phone":
        shown, key = _phone(rng)
        truth.add(("phone", key))
        shown = _variant(rng, shown.split("-"))
        if key.startswith(("090", "080", "070")) and rng.random() < 0.3:
            return f"{shown} までご連絡ください"  # a mobile number needs no label
        return f"{rng.choice(('TEL', '携帯', '電話番号', 'Phone'))}：{shown}"
    if kind == "email":
        address = f"user{n}.{rng.randrange(10**6)}@example{rng.randrange(50)}.co.jp"
        truth.add(("email", address))
        return f"連絡先 {address}"
    if kind == "address":
        pref, city, town = rng.choice(_TOWNS)
        block = f"{rng.randrange(1, 10)}-{rng.randrange(1, 30)}-{rng.randrange(1, 20)}"
        postal = f"{rng.randrange(100, 1000)}-{rng.randrange(0, 10000):04d}"
        truth.add(("address", f"{pref}{city}{town}{block}"))
        truth.add(("postal_code", postal.replace("-", "")))
        return f"〒{postal} {pref}{city}{town}{block} "
    if kind == "birth_date":
        era, base, low, high = rng.choice(_ERAS)
        y, m, d = rng.randrange(low, high + 1), rng.randrange(1, 13), rng.randrange(1, 29)
        truth.add(("birth_date", f"{base + y:04d}-{m:02d}-{d:02d}"))
        style = rng.randrange(3)
        if style == 0:
            return f"生年月日：{era}{y}年{m}月{d}日"
        if style == 1:
            return f"誕生日 {'S' if era == '昭和' else 'H'}{y}.{m}.{d}"
        return f"DOB: {base + y}/{m:02d}/{d:02d}"
    number = _corporate(rng)
    truth.add(("corporate_number", number))
    return f"{rng.choice(('法人番号 ', '登録番号 T'))}{number}"


def _negative(rng: random.Random) -> str:
    """Things that look like personal data and are not (design §1.5 false-positive test)."""
    kind = rng.randrange(8)
    if kind == 0:
        return f"注文番号 {_luhn_complete(rng, '4', 16)}"
    if kind == 1:
        return f"請求書番号 {_my_number(rng)}"
    if kind == 2:
        return f"JANコード {_digits(rng, 13)}"
    if kind == 3:
        y, m, d = rng.randrange(2020, 2027), rng.randrange(1, 13), rng.randrange(1, 29)
        return f"会議日 {y}年{m}月{d}日"
    if kind == 4:
        return f"部品番号 {rng.randrange(100, 1000)}-{rng.randrange(1000, 10000)}"
    if kind == 5:
        return f"伝票 {_digits(rng, 12)}"
    if kind == 6:
        return f"> From: someone{rng.randrange(10**4)}@example.net"  # a quoted reply header
    return f"金額 {rng.randrange(1, 10**7):,}円"


def make_corpus(size: int, density: int, seed: int) -> Corpus:
    """About `size` UTF-8 bytes, one item per `density` bytes on average."""
    rng = random.Random(seed)
    corpus = Corpus("")
    parts: list[str] = []
    used = 0
    next_item = rng.expovariate(1 / density)
    while used < size:
        filler = rng.choice(FILLER_JA if rng.random() < 0.6 else FILLER_EN)
        parts.append(filler)
        used += len(filler.encode())
        if rng.random() < 0.08:
            parts.append("\n")
            used += 1
        if used >= next_item and used < size:
            item = _item(rng, corpus.items, corpus.truth)
            neg = _negative(rng)
            parts.append(f"\n{item}\n{neg}\n")
            used += len(parts[-1].encode())
            corpus.items += 1
            corpus.negatives += 1
            next_item = used + rng.expovariate(1 / density)
    corpus.text = "".join(parts)
    return corpus


@dataclass(frozen=True)
class Chunk:
    where: str
    text: str


def time_scan(text: str, min_time: float, min_reps: int = 3) -> list[float]:
    chunk = [Chunk("body", text)]
    scan_texts(chunk)  # warm caches (phone-number lookups) as a long-running worker would
    times: list[float] = []
    total = 0.0
    while total < min_time or len(times) < min_reps:
        t0 = time.process_time()
        scan_texts(chunk)
        dt = time.process_time() - t0
        times.append(dt)
        total += dt
    return times


def accuracy(corpus: Corpus) -> tuple[float, float, int, int]:
    limits = PiiLimits()
    text = normalize(corpus.text)
    hits = pii_scan.scan_normalized(text, limits.settings())
    found = {(h.kind, h.key) for h in hits}
    true_pos = len(found & corpus.truth)
    precision = true_pos / len(found) if found else 1.0
    recall = true_pos / len(corpus.truth) if corpus.truth else 1.0
    return precision, recall, len(found), len(corpus.truth)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--density", type=int, default=2048, help="bytes per PII item")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds per size")
    parser.add_argument("--sizes", default="4096,102400,1048576")
    args = parser.parse_args()

    print(f"import + pattern compile: {IMPORT_SECONDS * 1000:.0f} ms CPU")
    print(
        f"corpus: seed {args.seed}, one PII item per ~{args.density} bytes "
        "plus one hard negative per item"
    )
    print(f"load average at start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    header = (
        f"{'bytes':>9} {'items':>6} {'MB/s p50':>8} {'MB/s max':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'reps':>5} {'found':>6} {'truth':>6} {'precision':>9} {'recall':>7}"
    )
    print(header)
    for size in (int(s) for s in args.sizes.split(",")):
        corpus = make_corpus(size, args.density, args.seed)
        nbytes = len(corpus.text.encode())
        times = time_scan(corpus.text, args.min_time)
        mbps = nbytes / statistics.median(times) / 1e6
        best = nbytes / min(times) / 1e6
        precision, recall, found, truth = accuracy(corpus)
        print(
            f"{nbytes:>9} {corpus.items:>6} {mbps:>8.1f} {best:>8.1f} "
            f"{_pct(times, 0.5) * 1000:>8.2f} {_pct(times, 0.99) * 1000:>8.2f} "
            f"{len(times):>5} {found:>6} {truth:>6} {precision:>9.3f} {recall:>7.3f}"
        )


if __name__ == "__main__":
    main()
