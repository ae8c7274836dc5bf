"""Before/after proof for reader changes: extract() and the text detectors over a corpus.

Not a test. Run, once with the code before the change and once with it:

    GUARD_BENCH_ROOT=/path/to/old/checkout .venv/bin/python tests/bench/extract_equivalence.py \
        dump before.pickle
    .venv/bin/python tests/bench/extract_equivalence.py dump after.pickle
    .venv/bin/python tests/bench/extract_equivalence.py diff before.pickle after.pickle

(an old checkout without a venv: `git archive COMMIT | tar -x -C DIR`.) `dump` extracts
every file of the corpus with the guard code at GUARD_BENCH_ROOT (default: this checkout)
and runs guard.inspect.run.text_findings on the result with the example policy's
context, and stores texts, tables (rows and counted rows), problems, inner names and
findings (symbol, score, count, where, evidence). `diff` lists every difference; a
reader change that is meant to give identical results must show none.

The corpus: the bench files of bench_extract.py (smaller), 40 random sheets with every
cell form (shared strings with rich text, phonetic runs, entities, `_x000D_` escapes,
CRs; inline strings; formula strings; numbers, dates, booleans, errors, styled empty
cells, empty rows) each read with samples of 1, 7, 50, 300 and 25,000 cells and under a
cell limit, the office, PDF and CSV fixtures of tests/inspect/fixtures.py, and hostile
files (a zip bomb, a DTD, truncated parts, a bad shared-string index, an encrypted and a
broken PDF).
"""

from __future__ import annotations

import os
import pickle
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, os.environ.get("GUARD_BENCH_ROOT") or str(Path(__file__).resolve().parents[2]))

from guard.inspect.extract import ExtractLimits, extract
from guard.inspect.run import text_findings
from guard.mail.message import Attachment, MessageView
from tests.bench import bench_extract as bench
from tests.inspect import fixtures as fx

_WORDS = ["山田 太郎", "佐藤&amp;花子", "a_x000D_b", "line\r\nbreak", "東京都千代田区1-2-3",
          "090-1234-5678", "user@example.jp", "x &lt;y&gt;", "ﾊﾝｶｸ", "マイナンバー 123456789018",
          "plain", " pad ", "&#12354;"]
_W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def _shared_string(rng: random.Random) -> str:
    w = rng.choice(_WORDS)
    k = rng.random()
    if k < 0.15:
        return (f"<si><r><rPr><b/></rPr><t>{w}</t></r><r><t xml:space=\"preserve\"> "
                f"{rng.choice(_WORDS)}</t></r></si>")
    if k < 0.25:
        return f'<si><t>{w}</t><rPh sb="0" eb="1"><t>ヤマダ</t></rPh><phoneticPr fontId="1"/></si>'
    if k < 0.3:
        return "<si><t/></si>"
    return f"<si><t>{w}</t></si>"


def _cell(rng: random.Random, r: int, c: int, n_strings: int) -> str:
    ref = f"{bench._col(c)}{r}"
    forms = [
        (0.45, f'<c r="{ref}" t="s"><v>{rng.randrange(n_strings)}</v></c>'),
        (0.55, f'<c r="{ref}"><v>{rng.randint(-5, 99999)}</v></c>'),
        (0.60, f'<c r="{ref}" s="1"><v>{rng.randint(1, 50000)}</v></c>'),
        (0.65, f'<c r="{ref}" t="inlineStr"><is><t>{rng.choice(_WORDS)}</t></is></c>'),
        (0.68, f'<c r="{ref}" t="inlineStr"><is><r><t>{rng.choice(_WORDS)}</t></r>'
               f"<r><t>{rng.choice(_WORDS)}</t></r></is></c>"),
        (0.70, f'<c r="{ref}" t="str"><f>A1&amp;B1</f><v>{rng.choice(_WORDS)}</v></c>'),
        (0.72, f"<c r='{ref}' t='str'><f>A1</f><v>{rng.choice(_WORDS)}</v></c>"),
        (0.75, f'<c r="{ref}" t="b"><v>{rng.randint(0, 1)}</v></c>'),
        (0.77, f'<c r="{ref}" t="e"><v>#N/A</v></c>'),
        (0.85, f'<c r="{ref}" s="2"/>'),
        (0.88, f'<c r="{ref}" s="1" t="n"><f>NOW()</f><v>{rng.random() * 40000}</v></c>'),
    ]
    k = rng.random()
    return next((xml for edge, xml in forms if k < edge),
                f'<c r="{ref}" t="s"><v>{rng.randrange(n_strings)}</v></c>')


def _random_sheet(seed: int) -> bytes:
    rng = random.Random(seed)
    n_strings = rng.randint(5, 300)
    strings = [_shared_string(rng) for _ in range(n_strings)]
    rows = []
    for r in range(1, rng.randint(5, 400)):
        if rng.random() < 0.05:
            rows.append(f'<row r="{r}"/>')
        elif rng.random() < 0.05:
            rows.append(f'<row r="{r}" spans="1:3"><c r="A{r}" s="2"/></row>')
        else:
            cells = "".join(_cell(rng, r, c, n_strings) for c in range(rng.randint(1, 8))
                            if rng.random() < 0.8)
            rows.append(f'<row r="{r}">{cells}</row>')
    return fx.raw_xlsx("".join(rows), strings)


def _docx(document_xml: str) -> bytes:
    return bench._zip({"[Content_Types].xml": "<Types/>", "word/document.xml": document_xml})


def corpus() -> dict[str, tuple[bytes, ExtractLimits | None]]:
    out: dict[str, tuple[bytes, ExtractLimits | None]] = {
        "bench.xlsx": (bench.make_xlsx(22_500), None),
        "bench-small.xlsx": (bench.make_xlsx(3000), None),
        "bench.docx": (bench.make_docx(20_000), None),
        "bench-w.docx": (bench.make_word_docx(4000), None),
        "bench.pdf": (bench.make_pdf(60), None),
        "bench.csv": (bench.make_csv(22_500), None),
    }
    for seed in range(40):
        data = _random_sheet(seed)
        for sample in (1, 7, 50, 300, 25_000):
            out[f"rand{seed}-s{sample}.xlsx"] = (data, ExtractLimits(sheet_sample_cells=sample))
        out[f"rand{seed}-cells.xlsx"] = (data, ExtractLimits(sheet_sample_cells=40,
                                                              max_cells=200))
    people = [["氏名", "電話", "メール"]] + [[f"山田{i}", f"090-1111-{i:04d}", f"u{i}@ex.jp"]
                                         for i in range(300)]
    out.update({
        "openpyxl.xlsx": (fx.xlsx(people), None),
        "openpyxl-big.xlsx": (fx.big_xlsx(4000), None),
        "openpyxl-big-s.xlsx": (fx.big_xlsx(400), ExtractLimits(sheet_sample_cells=100)),
        "table.docx": (fx.docx(["本文です", "電話 090-1234-5678"],
                               [["氏名", "電話"], ["山田", "03-1234-5678"]],
                               header_text="社外秘"), None),
        "pptx.pptx": (fx.pptx(["スライド 1 山田", "電話 090-1234-5678"], ["ノート"]), None),
        "ods.ods": (fx.ods([["氏名", "電話"], ["山田", "090-1234-5678"]]), None),
        "odt.odt": (fx.odt(["本文", "住所 東京都千代田区1-1-1"]), None),
        "simple.pdf": (fx.pdf([["Hello Yamada", "Tel 090-1234-5678"], ["page 2"]]), None),
        "table.pdf": (fx.pdf_table([["氏名", "電話", "メール"],
                                    ["山田 太郎", "090-1234-5678", "a@b.jp"],
                                    ["佐藤", "", "c@d.jp"]], [72, 200, 330]), None),
        "empty.pdf": (fx.pdf([[]]), None),
        "encrypted.pdf": (fx.encrypted_pdf(["secret line"]), None),
        "broken.pdf": (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage", None),
        "bomb.zip": (fx.zero_bomb(150), None),
        "dtd.docx": (_docx(f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
                           f'<w:document xmlns:w="{_W_NS}"><w:body><w:p><w:r><w:t>&a;</w:t>'
                           "</w:r></w:p></w:body></w:document>"), None),
        "truncated.docx": (_docx(f'<?xml version="1.0"?><w:document xmlns:w="{_W_NS}"><w:body>'
                                 "<w:p><w:r><w:t>abc</w:t></w:r></w:p><w:p><w:r><w:t>def"),
                           None),
        "truncated.xlsx": (fx.raw_xlsx("", ["x"], sheet_xml=(
            f'<?xml version="1.0"?><worksheet xmlns="{fx.XLSX_NS}"><sheetData>'
            '<row r="1"><c r="A1" t="s"><v>0</v></c></row>')), None),
        "bad-index.xlsx": (fx.raw_xlsx('<row r="1"><c r="A1" t="s"><v>9</v></c></row>', ["x"]),
                           None),
        "quotes.csv": (('氏名,電話\r\n"山田, 太郎",090-1234-5678\r\n' * 3000).encode("cp932"),
                       None),
        "sampled.csv": (bench.make_csv(500), ExtractLimits(sheet_sample_cells=100)),
        "list.tsv": (b"a\tb\n1\t2\n", None),
    })
    for seed in range(8):
        out[f"word{seed}.docx"] = (_docx(fx.word_like_document(300, seed).decode()), None)
    return out


def dump(path: Path) -> None:
    ctx = bench.static_context()
    results: dict[str, Any] = {}
    for name, (data, limits) in corpus().items():
        att = Attachment(filename=name, content_type="", data=data, where=f"attachment:{name}")
        ex = extract(att, limits) if limits else extract(att)
        view = MessageView(mail_from="", rcpt_tos=["buyer@new-client.example"],
                           texts=ex.texts, tables=ex.tables, inner_names=ex.inner_names)
        findings = text_findings(view, ctx)
        results[name] = {
            "texts": [(t.where, t.text) for t in ex.texts],
            "tables": [(t.where, t.rows, t.more_rows) for t in ex.tables],
            "problems": list(ex.problems),
            "inner_names": list(ex.inner_names),
            "findings": [(f.symbol, f.score, f.count, f.where, repr(sorted(f.evidence.items())))
                         for f in findings],
        }
    path.write_bytes(pickle.dumps(results))
    print(f"{len(results)} files -> {path}")


def diff(before: Path, after: Path) -> int:
    a, b = pickle.loads(before.read_bytes()), pickle.loads(after.read_bytes())
    differences = 0
    for name in sorted(a.keys() | b.keys()):
        if name not in a or name not in b:
            print(f"{name}: only in {'after' if name not in a else 'before'}")
            differences += 1
            continue
        for part in a[name]:
            if a[name][part] != b[name][part]:
                differences += 1
                print(f"{name} {part}:\n  before {str(a[name][part])[:400]}\n"
                      f"  after  {str(b[name][part])[:400]}")
    print(f"{len(a)} files, {differences} differences")
    return 1 if differences else 0


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "dump":
        dump(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "diff":
        sys.exit(diff(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
