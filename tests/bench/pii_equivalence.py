"""Before/after proof for detector changes: the personal-data scan on random texts.

Not a test. Run:  .venv/bin/python tests/bench/pii_equivalence.py /path/to/old/checkout [N]

The old checkout's guard is loaded beside this one as `guard_before` (bench_extract's
--against loader; an old checkout without a venv: `git archive COMMIT | tar -x -C DIR`)
and both run on N random cases (default 20,000) made of the pieces the detectors read:
phone numbers in every spelling, digit runs glued to letters, code punctuation, 〒 and
T, My Numbers, corporate and card numbers, context words, addresses, dates, e-mail
addresses, cell and line separators, drawn from a small pool so that values repeat (as
in a roster). Compared: scan_normalized's hits (every field), and detect.scan's
findings for the texts and for the same pieces as table rows, with and without the
organisation's own contact data. Prints the cases that differ; exit status 1 if any.
"""

from __future__ import annotations

import random
import sys
from dataclasses import astuple
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.bench_extract import _load_before  # noqa: E402

PIECES = [
    "0123456789", "0312345678", "09012345678", "090-1234-5678", "03-1234-5678",
    "03 1234 5678", "090ー1234ー5678", "(03)1234-5678", "(090) 1234 5678", "03(1234)5678",
    "+81 90 1234 5678", "+81-3-1234-5678", "+1 650 253 0000", "0120-123-456",
    "0570-000-000", "050-1234-5678", "123-4567", "100-0001", "〒1234567", "〒 100-0001",
    "〒100-0001", "T1234567890123", "1234567890123", "123456789018", "1234 5678 9018",
    "123456789012", "4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111",
    "378282246310005", "3782 822463 10005", "2024", "2024 1234 5678 9012", "1234-5678 9012",
    "12345678901234567890", "0123456789 0123456789", "電話", "TEL", "tel:", "携帯",
    "マイナンバー", "個人番号", "カード番号", "注文番号", "請求", "order", "invoice",
    "法人番号", "住所", "所在地", "address", "生年月日", "誕生日", "DOB", "郵便番号",
    "東京都千代田区丸の内1-1-1", "大阪府大阪市北区梅田1丁目2番3号", "東京都千代田区",
    "千代田区霞が関1-2-3", "1985年4月12日", "S58.1.2", "昭和58年1月2日", "2026-11-12",
    "山田 太郎", "taro@example.co.jp", "sato@example.co.jp", "x@example.com",
    "From: a@b.example", "ABC", "X-", "_", "#", "/", "T", " ", " ", "  ", "\n", "\n",
    "\x1f", "\t", "ー", ".", "-", "の", "です。", "The quick brown fox ", "example",
    "hotels", "0", "1", "9", "1-", "a-", "1 ", "xT", "1-123-4567", "123-4567-89",
    "9234567890123", "T9234567890123", "xT9234567890123", "1 123-4567", "a 123-4567",
]


def case(rng: random.Random) -> str:
    pool = rng.sample(PIECES, rng.randrange(3, 25))
    return "".join(rng.choice(pool) for _ in range(rng.randrange(1, 80)))


def main() -> int:
    import importlib

    old_root = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    _load_before(old_root)
    sides = []
    for pkg in ("guard_before", "guard"):
        side = {m: importlib.import_module(f"{pkg}.{m}") for m in (
            "inspect.pii.scan", "inspect.pii.hits", "inspect.pii.detect", "inspect.owndata")}
        # NFKC moved from inspect.pii.normalize to mail.nfkc (an older checkout has the one)
        try:
            side["nfkc"] = importlib.import_module(f"{pkg}.mail.nfkc")
        except ModuleNotFoundError:
            side["nfkc"] = importlib.import_module(f"{pkg}.inspect.pii.normalize")
        sides.append(side)

    def run(side: dict[str, Any], text: str, rows: list[list[str]], own: bool,
            max_values: int) -> object:
        hits_mod, scan_mod, det = (side["inspect.pii.hits"], side["inspect.pii.scan"],
                                   side["inspect.pii.detect"])
        settings = hits_mod.ScanSettings(today=date(2026, 12, 7))
        norm = side["nfkc"].normalize(text)
        hits = [astuple(h) for h in scan_mod.scan_normalized(norm, settings)]
        od = side["inspect.owndata"]
        owned = od.OwnContacts(
            phones=frozenset({od.phone_key("03-1234-5678")}),
            addresses=(od.address_key("東京都千代田区丸の内1-1-1"),),
            domains=frozenset({"example.co.jp"}),
            postal_codes=frozenset({"1000001"})) if own else None
        limits = det.PiiLimits(today=date(2026, 12, 7), max_scan_values=max_values)

        class T:
            def __init__(self, where: str, text: str) -> None:
                self.where, self.text = where, text

        class R:
            def __init__(self, where: str, rows: list[list[str]]) -> None:
                self.where, self.rows = where, rows

        findings = det.scan([T("body.main", text), T("body.signature", text[:200]),
                             T("attachment:a.xlsx", text)],
                            [R("attachment:a.xlsx", rows)], limits, owned)
        return hits, [(f.symbol, f.score, f.count, f.where, f.evidence) for f in findings]

    rng = random.Random(18)
    bad = with_hits = 0
    for i in range(n):
        text = case(rng)
        rows = [["氏名", "電話", "メール", "住所"]] + [
            [case(rng)[:40] for _ in range(4)] for _ in range(rng.randrange(0, 8))]
        own = rng.random() < 0.5
        max_values = rng.choice([200_000, 3, 10])
        a, b = (run(s, text, rows, own, max_values) for s in sides)
        with_hits += bool(a[0])  # type: ignore[index]
        if a != b:
            bad += 1
            if bad <= 5:
                print("DIFFERENT", i, repr(text), rows, own, "\n ", a, "\n ", b)
    print(f"{n} cases ({with_hits} with hits in the text), {bad} different")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
