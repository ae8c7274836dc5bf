"""docs/ja keeps in step with the English docs: every English page has its Japanese page
(the mapping is the table in docs/ja/index.md), with the same headings in the same order
and the same code blocks (commands must not drift between the languages).

A Japanese heading names its English heading in a comment at its end,
`## ポリシーファイル <!-- en: The file format -->`; a heading without the comment must be
the English heading itself (a key or a command, such as "## `rules`"). The failure
message says which English heading is missing where, so re-syncing after an English
edit is a matter of reading it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

JA = ROOT / "docs" / "ja"
INDEX = JA / "index.md"
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_EN = re.compile(r"\s*<!--\s*en:\s*(.*?)\s*-->\s*$")
_FENCE = re.compile(r"^(`{3,}|~{3,})")
# | [日本語のページ](page.md) | [English page](../../path.md) |
_ROW = re.compile(r"^\|\s*\[[^\]]*\]\(([^)]+\.md)\)\s*\|\s*\[[^\]]*\]\(([^)]+\.md)\)\s*\|")


@dataclass(frozen=True)
class Heading:
    level: int
    key: str  # the English heading text this heading stands for
    text: str  # as written
    line: int


def english_pages() -> set[Path]:
    """Every page an admin or developer reads in English."""
    return {ROOT / "README.md", ROOT / "policies" / "README.md",
            *(ROOT / "docs").glob("*.md")}


def mapping() -> dict[Path, Path]:
    """English page -> Japanese page, from the table of docs/ja/index.md."""
    out: dict[Path, Path] = {}
    for line in INDEX.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line)
        if m:
            out[(JA / m.group(2)).resolve()] = (JA / m.group(1)).resolve()
    return out


@dataclass(frozen=True)
class Block:
    text: str  # fences included
    line: int


def _blocks(text: str) -> tuple[list[Heading], list[Block]]:
    """The headings (outside code) and the fenced code blocks of a Markdown page."""
    headings: list[Heading] = []
    blocks: list[Block] = []
    start = 0
    fence: str | None = None
    current: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if fence is None and m:
            fence, current, start = m.group(1), [line], n
            continue
        if fence is not None:
            current.append(line)
            if line.strip() == fence:
                blocks.append(Block("\n".join(current), start))
                fence = None
            continue
        h = _HEADING.match(line)
        if h:
            raw = h.group(2)
            en = _EN.search(raw)
            shown = raw[: en.start()] if en else raw
            headings.append(Heading(len(h.group(1)), en.group(1) if en else shown, shown, n))
    return headings, blocks


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else p.name


def heading_problems(en_page: Path, ja_page: Path) -> list[str]:
    en, _ = _blocks(en_page.read_text(encoding="utf-8"))
    ja, _ = _blocks(ja_page.read_text(encoding="utf-8"))
    a = [(h.level, h.key) for h in en]
    b = [(h.level, h.key) for h in ja]
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        after = f"after line {ja[j1 - 1].line} ({ja[j1 - 1].text!r})" if j1 else "at the top"
        for h in en[i1:i2]:
            out.append(f"{_rel(ja_page)}: missing {'#' * h.level} {h.key!r} "
                       f"({_rel(en_page)}:{h.line}); add it {after} as "
                       f"`{'#' * h.level} <日本語> <!-- en: {h.key} -->`")
        for h in ja[j1:j2]:
            out.append(f"{_rel(ja_page)}:{h.line}: heading {'#' * h.level} {h.text!r} "
                       f"(en: {h.key!r}) is not a heading of that level in {_rel(en_page)}")
    return out


def code_problems(en_page: Path, ja_page: Path) -> list[str]:
    """Code blocks aligned like the headings, so that one block added in English is
    reported once (with where it goes), not as every later block differing."""
    _, en = _blocks(en_page.read_text(encoding="utf-8"))
    _, ja = _blocks(ja_page.read_text(encoding="utf-8"))
    out: list[str] = []
    matcher = difflib.SequenceMatcher(a=[b.text for b in en], b=[b.text for b in ja],
                                      autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if op == "replace" and i2 - i1 == j2 - j1:  # edited in place: show the edit
            for e, j in zip(en[i1:i2], ja[j1:j2], strict=True):
                diff = "\n".join(difflib.unified_diff(
                    e.text.splitlines(), j.text.splitlines(), "en", "ja", lineterm="", n=0))
                out.append(f"{_rel(ja_page)}:{j.line}: code block differs from "
                           f"{_rel(en_page)}:{e.line}:\n{diff}")
            continue
        after = f"after the block at line {ja[j1 - 1].line}" if j1 else "before the first block"
        for e in en[i1:i2]:
            out.append(f"{_rel(ja_page)}: missing the code block of {_rel(en_page)}:{e.line} "
                       f"({e.text.splitlines()[1:2]}); copy it {after}")
        for j in ja[j1:j2]:
            out.append(f"{_rel(ja_page)}:{j.line}: code block not in {_rel(en_page)}")
    return out


def test_every_english_page_has_a_japanese_page() -> None:
    pages = mapping()
    missing = sorted(_rel(p) for p in english_pages() if p.resolve() not in pages)
    assert not missing, f"no row in {_rel(INDEX)} for: {', '.join(missing)}"
    absent = sorted(_rel(ja) for ja in pages.values() if not ja.is_file())
    assert not absent, f"named in {_rel(INDEX)} but missing: {', '.join(absent)}"
    stale = sorted(str(en) for en in pages if not en.is_file())
    assert not stale, f"{_rel(INDEX)} maps English pages that do not exist: {stale}"


def test_japanese_pages_have_the_english_headings() -> None:
    problems = [p for en, ja in sorted(mapping().items()) for p in heading_problems(en, ja)]
    assert not problems, "\n".join(problems)


def test_japanese_pages_have_the_english_code_blocks() -> None:
    problems = [p for en, ja in sorted(mapping().items()) for p in code_problems(en, ja)]
    assert not problems, "\n".join(problems)


def test_japanese_pages_are_japanese() -> None:
    """Not an English copy: most of the prose outside code is Japanese."""
    for ja in mapping().values():
        text = re.sub(r"```.*?```", "", ja.read_text(encoding="utf-8"), flags=re.DOTALL)
        kana = sum(1 for c in text if "\u3040" <= c <= "\u30ff")
        assert kana > len(text) // 10, f"{_rel(ja)} reads as English"


def test_the_check_can_fail(tmp_path: Path) -> None:
    """A dropped heading and an edited command are reported, by name and place."""
    en = tmp_path / "en.md"
    ja = tmp_path / "ja.md"
    en.write_text("# Title\n## Install\n```sh\nguard dev\n```\n## Policy\n### Scope\n",
                  encoding="utf-8")
    ja.write_text("# タイトル <!-- en: Title -->\n## インストール <!-- en: Install -->\n"
                  "```sh\nguard serve\n```\n## ポリシー <!-- en: Policy -->\n",
                  encoding="utf-8")
    headings = heading_problems(en, ja)
    code = code_problems(en, ja)
    assert headings == ["ja.md: missing ### 'Scope' (en.md:7); add it after line 6 "
                        "('ポリシー') as `### <日本語> <!-- en: Scope -->`"], headings
    assert len(code) == 1 and "-guard dev" in code[0] and "+guard serve" in code[0], code
    # a block added to the English page is reported once, with where it goes
    en.write_text("# Title\n```sh\nguard new\n```\n```sh\nguard dev\n```\n", encoding="utf-8")
    ja.write_text("# タイトル <!-- en: Title -->\n```sh\nguard dev\n```\n", encoding="utf-8")
    assert code_problems(en, ja) == [
        "ja.md: missing the code block of en.md:2 (['guard new']); copy it before the "
        "first block"], code_problems(en, ja)


def test_links_between_pages_resolve() -> None:
    """A relative link in a Japanese page names a file that exists (the pages sit one
    folder deeper than the English ones, so a copied link would point nowhere)."""
    broken = []
    for page in sorted(JA.glob("*.md")):
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{_rel(page)}: {target}")
    assert not broken, broken
