"""A text body's parts: the sender's new text, quoted text, signature and disclaimers.

`segment(text)` reads the lines of one body text and tells which are quoted (`>` lines
and everything below an Outlook reply header), which are the sender's signature or
footer (after a `-- ` line, or a closing block of company, 〒, TEL lines) and which are
a known confidentiality notice. Detectors then report a body finding at
`body` (new text), `body.quoted`, `body.signature` or `body.disclaimer`, so a rule can
look at what the sender wrote and not at the partner's disclaimer it quotes.

Linear time on any input: every line is looked at a bounded number of times and each
pattern reads at most the first `_HEAD` characters of a line (a 1 MB line with no
newline costs one split). Heuristics, not a parser: a wrong guess moves text between
parts of the body, never out of it (`where: body` still covers every part).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import compress, pairwise, repeat
from operator import itemgetter, ne
from typing import NamedTuple

from guard.mail.nfkc import normalize as nfkc
from guard.mail.view import TextChunk

__all__ = [
    "DISCLAIMER",
    "NEW",
    "PARTS",
    "QUOTED",
    "SIGNATURE",
    "WHOLE",
    "BodyPart",
    "body_part",
    "part_of",
    "segment",
    "split_bodies",
]

# The parts, as the suffix of `where` ("body" + part); NEW is the body itself.
NEW = ""
QUOTED = ".quoted"
SIGNATURE = ".signature"
DISCLAIMER = ".disclaimer"
PARTS = (NEW, QUOTED, SIGNATURE, DISCLAIMER)
# Not a part: the whole body, all parts together. A detector that counts distinct values
# reports this place too when the parts' own counts split a count (a 12-row list, 6 rows
# above a reply header and 6 below), so a rule on the body sees the body's count.
WHOLE = ".all"

# Characters of a line the patterns read: headers and signature lines are short.
_HEAD = 300
# _header_candidates finds the lines worth a look this many at a time
_BLOCK = 64
# Lines read one by one (see segment); an ordinary reply chain has a few thousand.
_MAX_LINES = 10_000
# A signature or footer found without a "-- " line is at most this many lines.
_SIG_MAX_LINES = 20
# After a "-- " line: at most this many non-blank lines, besides a disclaimer that may
# follow. A full Japanese business signature (rules, name, company, department, 〒 and
# address, TEL, FAX, mobile, e-mail, URL) is 10-13 lines.
_DASH_SIG_MAX_LINES = 15
# A disclaimer is one paragraph of at most this many lines / characters.
_DISCLAIMER_MAX_LINES = 40
_DISCLAIMER_MAX_CHARS = 4000
# "On … wrote:" may be wrapped over two lines by the client (Gmail at 78 columns).
_QUOTE_MARK = re.compile(r"^[ \t]{0,3}[>＞|]")
_QUOTE_FIRST = frozenset(" \t>＞|")  # what a line _QUOTE_MARK matches starts with

# --- reply headers -----------------------------------------------------------------

# "-----Original Message-----", "-----元のメッセージ-----", "---------- Forwarded message"
_ORIGINAL = re.compile(
    r"^\s*[-_=]{2,}\s*(?:original message|元のメッセージ|forwarded message|"
    r"転送されたメッセージ|転送メッセージ|message d'origine|ursprüngliche nachricht)",
    re.IGNORECASE)
# Outlook's header block: "From: …" (差出人, 送信者) followed within a few lines by
# "Sent: …" (送信日時, Date, 日時)
_FROM = re.compile(r"^\s*\**(?:from|差出人|送信者|送信元)\**\s*[:：]", re.IGNORECASE)
_SENT = re.compile(r"^\s*\**(?:sent|date|送信日時|送信日|日時|日付)\**\s*[:：]", re.IGNORECASE)
# what _ORIGINAL or _FROM can start with after leading white space: a test before the two
# regexes on every line ("" for an all-space line, which neither matches)
_ORIGINAL_OR_FROM_FIRST = frozenset("-_=*fF差送")
# "On Tue, Dec 1, 2026 at 10:00 Yamada <a@b> wrote:", "…さんは書きました:",
# "2026年12月1日(火) 10:00 山田 <a@b>:", "2026/12/01 10:00、山田 <a@b>のメール:"
_WROTE = re.compile(
    r"(?:\bwrote\s*:\s*$|(?:さんは書きました|は書きました|のメール)\s*[:：]\s*$|"
    r"^\s*\d{4}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日.*<[^<>\s@]+@[^<>\s@]+>\s*[:：]\s*$|"
    r"^\s*\d{4}/\d{1,2}/\d{1,2}.*<[^<>\s@]+@[^<>\s@]+>\s*[:：]\s*$|"
    r"\ba écrit\s*:\s*$|^\s*am\b.*\bschrieb\b.*:\s*$)",
    re.IGNORECASE)
# ...and a client's header line has a time or an address in it: "as John wrote:" and
# "詳細は以下のメール:" in the sender's own text do not quote what follows
_WHEN_OR_WHO = re.compile(r"\d{1,2}:\d{2}|@|さんは書きました")

# --- signatures --------------------------------------------------------------------

# A rule line: "────", "━━━━", "-----", "=====", "*****", "_____" (4 or more)
_RULE = re.compile(r"^\s*[─━\-=*_＝－＿~〜・]{4,}\s*$")
_CONTACT_LABEL = re.compile(
    r"(?:\b(?:tel|fax|phone|mobile|mob|direct|e-?mail|mail|url|web)\b|電話|携帯|"
    r"ＴＥＬ|ＦＡＸ|〒|https?://|www\.)", re.IGNORECASE)
_POSTAL_CODE = re.compile(r"(?:〒\s*\d{3}-?\d{4}|(?<![\d-])\d{3}-\d{4}(?![\d-]))")
_PHONE_LABEL = re.compile(r"(?:\b(?:tel|fax|phone|mobile|direct)\b|電話|携帯|ＴＥＬ|ＦＡＸ)",
                          re.IGNORECASE)
_COMPANY_FORM = re.compile(
    r"(?:株式会社|有限会社|合同会社|\(株\)|（株）|㈱|\(有\)|㈲|"
    r"\b(?:co\.,?\s*ltd|inc|corp|corporation|llc|gmbh|k\.k)\b\.?)",
    re.IGNORECASE)
_SENT_FROM = re.compile(
    r"^\s*(?:sent from my \S+|sent from (?:outlook|mail) for|get outlook for|"
    r"\S+\s*から送信|\S+\s*から送信されました)", re.IGNORECASE)
# someone the mail is about or for, not the sender ("お客様" and "皆様" are not)
_ADDRESSEE = re.compile(r"(?<!お客)(?<!皆)様|御中|殿\b|(?:お?届け|配送|送付|送り|納品|発送)先")
_EMAIL = re.compile(r"[\w.+-]+@([\w-]+(?:\.[\w-]+)+)")
_SENTENCE_END = re.compile(r"[。！？!?]\s*$|[。！？]")

# --- disclaimers -------------------------------------------------------------------

_EN_DISCLAIMER = (
    re.compile(r"confidential|privileged|proprietary", re.IGNORECASE),
    re.compile(r"intended (?:solely |only )?(?:for the )?(?:use of the )?"
               r"(?:recipient|addressee|individual|person)|received this (?:e-?mail|message|"
               r"communication|transmission) in error|if you are not the intended",
               re.IGNORECASE),
)
_JA_DISCLAIMER = (
    re.compile(r"(?:本|この|当)(?:電子)?(?:メール|Eメール|e-mail|email)", re.IGNORECASE),
    re.compile(r"機密|秘密|守秘"),
    re.compile(r"誤って|誤送信|誤配信|誤り|お心当たり|心当たりのない|宛先に誤り|削除"),
)
_NOTICE_WORD = re.compile(r"confidential|disclaimer|notice|注意|機密|秘密|免責|注記",
                          re.IGNORECASE)


@dataclass(frozen=True)
class BodyPart:
    part: str  # NEW, QUOTED, SIGNATURE or DISCLAIMER
    text: str  # the part's lines, joined with "\n"


def _head(line: str) -> str:
    head = line[:_HEAD]
    return head if head.isascii() else unicodedata.normalize("NFKC", head)


def _is_quoted(line: str) -> bool:
    # most lines start with a letter: no regex call for them (it runs twice per line)
    return line[:1] in _QUOTE_FIRST and _QUOTE_MARK.match(line) is not None


def _unquoted(line: str) -> str:
    i = 0
    while i < len(line) and i < 40 and line[i] in " \t>＞|":
        i += 1
    return line[i:]


def _reply_header(lines: list[str], heads: list[str], firsts: _Firsts
                  ) -> tuple[int, bool] | None:
    """(index of the first reply-header line, everything below is quoted?) or None.
    An "On … wrote:" line followed by `>` lines only quotes those lines (text below
    them is an inline or bottom-posted answer); otherwise all below it is quoted."""
    n = len(lines)
    for i in _header_candidates(heads, firsts):
        head = heads[i]
        if not head or _is_quoted(head):
            continue
        # both header forms start (after spaces) with one of these characters
        if head.lstrip()[:1] in _ORIGINAL_OR_FROM_FIRST:
            if _ORIGINAL.match(head):
                return _with_rule_above(i, heads), True
            if _FROM.match(head) and any(_SENT.match(heads[j])
                                         for j in range(i + 1, min(n, i + 5))):
                return _with_rule_above(i, heads), True
        wrote = _is_wrote(head)
        # (the joined line ends as the next one does: no colon there, no "wrote:")
        if not wrote and i + 1 < n and len(head) < 120 and heads[i + 1] \
                and heads[i + 1].rstrip().endswith((":", "：")):
            wrote = _is_wrote(head + " " + heads[i + 1])
        if wrote:
            nxt = next((heads[j] for j in range(i + 1, min(n, i + 4)) if heads[j].strip()), "")
            return i, not _is_quoted(nxt)
    return None


def _header_candidates(heads: list[str], firsts: _Firsts) -> Iterator[int]:
    """The lines _reply_header has to look at, in order: a line that starts (after white
    space) with what _ORIGINAL or _FROM starts with, a line ending in a colon (every
    _WROTE form does) and the line above one (joined with it). Every other line does
    nothing there; a substring test and a first-character test per line replace its
    loop body. Found _BLOCK lines at a time: a reply header near the top ends the search
    there, as the loop did."""
    starts = {c for c in firsts.present if c in _ORIGINAL_OR_FROM_FIRST or c.isspace()}
    chars = firsts.chars
    for b in range(0, len(heads), _BLOCK):
        e = b + _BLOCK
        out = [i for i in range(b, min(e, len(heads))) if chars[i] in starts] \
            if starts else []
        block = heads[b:e + 1]  # and the line below the block, for its last line
        joined = "\n".join(block)
        if ":" in joined or "：" in joined:
            colon = [b + k for k, h in enumerate(block) if h.rstrip().endswith((":", "："))]
            out = sorted({*out, *(i for i in colon if i < e), *(i - 1 for i in colon if i > b)})
        yield from out


def _is_wrote(line: str) -> bool:
    # every _WROTE form ends in a colon: the unanchored search tries each of its forms
    # at every position (~14 µs a line, 57 ms for a 100 KiB body), the test costs ~0.1 µs
    if not line.rstrip().endswith((":", "：")):
        return False
    return _WROTE.search(line) is not None and _WHEN_OR_WHO.search(line) is not None


def _with_rule_above(i: int, heads: list[str]) -> int:
    """Outlook puts a "________" rule above its From: block: part of the header."""
    j = i - 1
    while j >= 0 and not heads[j].strip():
        j -= 1
    return j if j >= 0 and _RULE.match(heads[j]) else i


def _is_signature_line(head: str, names: tuple[str, ...], domains: frozenset[str]) -> bool:
    if _RULE.match(head) or _SENT_FROM.match(head) or _CONTACT_LABEL.search(head):
        return True
    if _POSTAL_CODE.search(head) or any(n in head for n in names):
        return True
    if len(head) <= 60 and _COMPANY_FORM.search(head) and not _SENTENCE_END.search(head):
        return True
    return any(_own_domain(m.group(1), domains) for m in _EMAIL.finditer(head))


def _own_domain(domain: str, domains: frozenset[str]) -> bool:
    d = domain.lower()
    while "." in d:
        if d in domains:
            return True
        d = d.split(".", 1)[1]
    return False


def _qualifies(block: list[str], names: tuple[str, ...], domains: frozenset[str]) -> bool:
    """A closing block is the sender's signature when it holds the company's name, an
    address at its domain or a "Sent from" line; or, unless it names an addressee
    (鈴木様, 御中, お届け先: a customer's address the sender passes on), when it is set off
    by a rule, holds 〒 and TEL, or a company form (株式会社, Co., Ltd.) in two lines or
    more."""
    rule = postal = phone = company = addressee = False
    lines = 0
    for head in block:
        if _SENT_FROM.match(head) or any(n in head for n in names):
            return True
        if any(_own_domain(m.group(1), domains) for m in _EMAIL.finditer(head)):
            return True
        lines += bool(head.strip())
        rule = rule or _RULE.match(head) is not None
        company = company or (len(head) <= 60 and _COMPANY_FORM.search(head) is not None
                              and not _SENTENCE_END.search(head))
        postal = postal or _POSTAL_CODE.search(head) is not None
        phone = phone or _PHONE_LABEL.search(head) is not None
        addressee = addressee or _ADDRESSEE.search(head) is not None
    if addressee:
        return False
    return rule or (postal and phone) or (company and lines >= 2)


def _dash_block_lines(heads: list[str], start: int, end: int) -> int:
    """Non-blank lines in [start, end), not counting paragraphs that are a disclaimer."""
    lines = 0
    k = start
    while k < end:
        if not heads[k].strip():
            k += 1
            continue
        j = k
        while j < end and heads[j].strip():
            j += 1
        if not _is_disclaimer(" ".join(heads[k:j])):
            lines += j - k
        k = j
    return lines


def _signature_start(heads: list[str], start: int, end: int, names: tuple[str, ...],
                     domains: frozenset[str], whole: str | None = None) -> int | None:
    """Where the signature in new-text lines [start, end) begins, or None. `whole`: a
    text whose lines hold the heads (_disclaimer_lines), if the caller has one."""
    # (one substring test of the text instead of a Python loop when it has no "--")
    dashes = "--" in ("\n".join(heads[start:end]) if whole is None else whole)
    for i in (range(start, end) if dashes else ()):
        if heads[i].rstrip(" ") == "--":  # "-- " (RFC 3676), or with the space stripped
            # a signature is a few lines: a customer list after a "-- " is not one (its
            # contact data would not be counted as personal data)
            if _dash_block_lines(heads, i + 1, min(end, i + _DASH_SIG_MAX_LINES * 4)) \
                    <= _DASH_SIG_MAX_LINES:
                return i
            break
    # closing block: walk up from the last line while lines look like a signature's
    last = end - 1
    while last >= start and not heads[last].strip():
        last -= 1
    if last < start:
        return None
    first = None
    i = last
    while i >= start and last - i < _SIG_MAX_LINES:
        head = heads[i]
        if not head.strip():
            # a blank line ends the block once it is a signature already (the
            # paragraph above may be a customer's address the sender is passing on)
            if first is not None and _qualifies(heads[first:last + 1], names, domains):
                break
            i -= 1
            continue
        if _SENTENCE_END.search(head) and not _RULE.match(head):
            break  # a sentence: the sender's text (a signature is not written in them)
        if _is_signature_line(head, names, domains):
            first = i
            if i < last and _RULE.match(head) and _qualifies(heads[i:last + 1], names,
                                                             domains):
                break  # a rule line opens the footer (the one closing it is the last)
        elif len(head.strip()) > 30 or _SENTENCE_END.search(head) or _is_quoted(head):
            break
        i -= 1
    if first is None:
        return None
    # a signature closes a text: a body that is only an address and a phone number is
    # what the sender is sending, not their signature
    def text_above(k: int) -> bool:
        return any(heads[m].strip() and not _is_quoted(heads[m]) for m in range(start, k))
    if not text_above(first):
        return None
    # the name line just above the company line belongs to the signature
    above = first - 1
    if heads[above].strip() and len(heads[above].strip()) <= 20 and text_above(above) \
            and not _SENTENCE_END.search(heads[above]) and not _is_quoted(heads[above]):
        first = above
    return first if _qualifies(heads[first:last + 1], names, domains) else None


def _disclaimer_lines(lines: list[str], heads: list[str], labels: list[str],
                      firsts: _Firsts, whole: str | None = None) -> None:
    """Mark the paragraphs that are a confidentiality notice (quoted or not). `whole`:
    a text whose lines hold the heads (see _notice_lines), if the caller has one."""
    n = len(lines)
    # blank (after quote markers) or not (a line whose first character is neither white
    # space nor a quote marker is not)
    maybe = {c for c in firsts.present if not c or c.isspace() or c in _QUOTE_FIRST}
    chars = firsts.chars

    def blank(k: int) -> bool:
        c = chars[k]
        return c in maybe and not (_unquoted(heads[k]) if c in _QUOTE_FIRST else heads[k]
                                   ).strip()

    def mark(i: int, j: int) -> None:
        """Read the paragraph of lines [i, j)."""
        if j - i <= _DISCLAIMER_MAX_LINES and \
                sum(map(len, lines[i:j])) <= _DISCLAIMER_MAX_CHARS:
            para = " ".join(_unquoted(heads[m]) for m in range(i, j))
            if _is_disclaimer(para):
                for m in range(_disclaimer_start(heads, i, j), j):
                    labels[m] = DISCLAIMER

    simple = maybe <= {""}  # blank lines are empty ones
    # a text of few paragraphs (mail that is not a reply chain) reads them all for less
    notices = None if simple and chars.count("") < _FEW_PARAGRAPHS else \
        _notice_lines("\n".join(heads) if whole is None else whole, n)
    if notices is None:  # every paragraph, found by list.index over the blank flags
        flags = [not c for c in chars] if simple else [
            c in maybe and not (_unquoted(h) if c in _QUOTE_FIRST else h).strip()
            for c, h in zip(chars, heads, strict=True)]
        i = 0
        while i < n:
            try:
                i = flags.index(False, i)
            except ValueError:
                break
            try:
                j = flags.index(True, i)
            except ValueError:
                j = n
            mark(i, j)
            i = j
        return
    # Only the paragraphs around the lines with a notice word (a reply chain of 600
    # paragraphs has a few), each found from such a line up and down to its blank lines;
    # one longer than a notice is not read (nor was it when every paragraph was).
    done = 0  # the paragraphs above this line are read
    for k in notices:
        if k < done or blank(k):
            continue
        i = k
        while i > 0 and k - i <= _DISCLAIMER_MAX_LINES and not blank(i - 1):
            i -= 1
        j = k + 1
        while j < n and j - i <= _DISCLAIMER_MAX_LINES and not blank(j):
            j += 1
        if (i == 0 or blank(i - 1)) and (j == n or blank(j)):  # the whole paragraph
            mark(i, j)
            done = j
        else:  # more lines than a notice has: so has every line of this paragraph,
            # which is skipped whole (walked again from each notice line, a long quoted
            # paragraph of notice words cost ~80 lines a line)
            while j < n and not blank(j):
                j += 1
            done = j


# Blank lines below which every paragraph is read rather than found from its words
_FEW_PARAGRAPHS = 16
# Every notice holds one of these on one line (none spans a line end): a word of
# _EN_DISCLAIMER[0] in any case, or 機密, 秘密 or 守秘 of _JA_DISCLAIMER[1], which all
# hold one of the two characters (found one at a time in C, faster than the words)
_EN_NOTICE_BYTES = (b"confidential", b"privileged", b"proprietary")
_JA_NOTICE_CHARS = ("密", "秘")


def _notice_lines(text: str, n: int) -> list[int] | None:
    """Of the first `n` lines of `text`, those that hold a word every notice needs, in
    order. `text`'s lines must hold at least the words the heads do (the joined heads,
    the text of ASCII heads, the NFKC text of NFKC heads). None when the text holds İ
    or ı, the only characters besides ASCII letters that _EN_DISCLAIMER[0] takes for a
    letter of its words (lower() would not find those words there)."""
    if "İ" in text or "ı" in text:
        return None
    # one byte a character ("?" for the others, in C), lower-cased as ASCII: the English
    # words at the text's positions (str.lower of Japanese text cost ~5 times as much)
    lowered = text.encode("ascii", "replace").lower()
    found: list[int] = []
    for where, words, eol in ((lowered, _EN_NOTICE_BYTES, b"\n"),
                              (text, _JA_NOTICE_CHARS, "\n")):
        for word in words:
            pos = where.find(word)  # type: ignore[arg-type]
            while pos >= 0:
                found.append(pos)
                # one hit a line is enough: on from the line's end (a line of 密 × 300
                # kept 300 positions to sort)
                end = where.find(eol, pos)  # type: ignore[arg-type]
                pos = -1 if end < 0 else where.find(word, end + 1)  # type: ignore[arg-type]
    out: list[int] = []
    line = last = 0
    for pos in sorted(found):
        line += text.count("\n", last, pos)
        last = pos
        if line >= n:
            break
        if not out or out[-1] != line:
            out.append(line)
    return out


def _disclaimer_start(heads: list[str], i: int, j: int) -> int:
    """The notice may close a paragraph of other lines ("了解です / 佐藤 / 本メールは…"):
    it starts at the last line from which the rest still reads as one, and the title
    lines just above it ("CONFIDENTIALITY NOTICE", "【注意】")."""
    k = j - 1
    while k > i and not _is_disclaimer(" ".join(_unquoted(heads[m]) for m in range(k, j))):
        k -= 1
    while k > i and _NOTICE_WORD.search(heads[k - 1]):
        k -= 1
    return k


_FIRST = itemgetter(slice(0, 1))  # h[:1], by map: no Python frame per line


class _Firsts(NamedTuple):
    """Each head's first character ("" for an empty line) and the set of them: most
    per-line tests start with the first character, and a body whose lines start with
    none that a test needs skips that test's pass over its lines."""
    chars: list[str]
    present: frozenset[str]


def _firsts(heads: list[str]) -> _Firsts:
    chars = list(map(_FIRST, heads))
    return _Firsts(chars, frozenset(chars))


def _is_disclaimer(para: str) -> bool:
    if all(p.search(para) for p in _EN_DISCLAIMER):
        return True
    return all(p.search(para) for p in _JA_DISCLAIMER)


def segment(text: str, names: Iterable[str] = (),
            domains: Iterable[str] = ()) -> list[BodyPart]:
    """The parts of one body text, in PARTS order, empty parts left out. `names` are the
    organisation's names (a line holding one is a signature line), `domains` its mail
    domains (an address there in a closing block makes it the signature)."""
    own_names = tuple(unicodedata.normalize("NFKC", n) for n in names if n.strip())
    own_domains = frozenset(d.lower() for d in domains)
    lines = text.split("\n")
    # Only the first _MAX_LINES lines are read line by line (a Python loop per line);
    # the lines after them take the part the reply header implies (quoted below an
    # Outlook header, else new text: the safe side, every rule sees new text).
    read = lines[:_MAX_LINES]
    # a text whose first len(read) lines hold (at least) what the heads do, for the
    # disclaimer words: the text itself or its NFKC when the heads are made from those
    whole: str | None = None
    if text.isascii():
        whole = text
        # _head of an ASCII line is its first _HEAD characters (the line itself when
        # it is shorter: no copy); then a "\r" to strip where the text has one (mail
        # as it came over SMTP), by map: no Python frame per line
        short = max(map(len, read)) <= _HEAD
        if "\r" not in text:
            heads = read if short else [line[:_HEAD] for line in read]
        elif short:
            heads = list(map(str.rstrip, read, repeat("\r")))
        else:
            heads = [line[:_HEAD].rstrip("\r") for line in read]
    elif max(map(len, read)) <= _HEAD:
        # every line is its own head: NFKC of the lines is the lines of NFKC of their
        # text (a line end is a character NFKC never makes, changes, composes or
        # reorders with its neighbours), normalised once and only where it can change
        # (guard.mail.nfkc); per line it cost ~1 µs a line, 2.2 ms a 100 KiB reply
        norm = whole = nfkc("\n".join(read) if len(read) < len(lines) else text)
        heads = norm.split("\n")
        if "\r" in norm:
            heads = list(map(str.rstrip, heads, repeat("\r")))
    else:
        heads = [_head(line).rstrip("\r") for line in read]
    n = len(read)
    labels = [NEW] * n
    firsts = _firsts(heads)
    header = _reply_header(read, heads, firsts)
    new_end = n
    rest = NEW
    if header is not None:
        at, all_below = header
        if all_below:
            new_end, rest = at, QUOTED
            labels[at:] = [QUOTED] * (n - at)
        else:
            labels[at] = QUOTED
    marks = firsts.present & _QUOTE_FIRST
    for k in [k for k in range(new_end) if firsts.chars[k] in marks] if marks else ():
        if _QUOTE_MARK.match(heads[k]):
            labels[k] = QUOTED
    # the signature: at the end of the new text, above the reply header (top posting)
    # or at the end of the text (when all of it was read)
    if new_end < n or len(lines) == n:
        sig = _signature_start(heads, 0, new_end, own_names, own_domains, whole)
        if sig is not None:
            for k in range(sig, new_end):
                if labels[k] == NEW:
                    labels[k] = SIGNATURE
    _disclaimer_lines(read, heads, labels, firsts, whole)
    by_part: dict[str, list[str]] = {p: [] for p in PARTS}
    if labels.count(NEW) == n:  # all new text (most mail that is not a reply)
        by_part[NEW] = list(read)
    else:  # the lines run by run of one label (where the label changes: found in C)
        cuts = [0, *compress(range(1, n), map(ne, labels[1:], labels)), n]
        for a, b in pairwise(cuts):
            by_part[labels[a]] += read[a:b]
    by_part[rest].extend(lines[n:])
    return [BodyPart(p, "\n".join(by_part[p])) for p in PARTS
            if any(s.strip() for s in by_part[p])]


def body_part(where: str) -> str | None:
    """The part a message body's `where` is ("body" -> NEW, "body.quoted" -> QUOTED),
    None for any other place (subject, attachments, the whole body)."""
    if where == "body":
        return NEW
    if where.startswith("body.") and where[4:] in PARTS:
        return where[4:]
    return None


def part_of(where: str) -> str:
    """The body part a `where` names beside the new text (".quoted", ".signature",
    ".disclaimer"), "" for the new text and anything outside the body. Detectors that
    gather one finding over several places keep these parts in findings of their own,
    so a rule on the new text is not set off by a quoted disclaimer."""
    if where.startswith("body."):
        suffix = where[4:]
        if suffix in PARTS:
            return suffix
    return NEW


def split_bodies(texts: Iterable[TextChunk], names: Iterable[str] = (),
                 domains: Iterable[str] = ()) -> list[TextChunk]:
    """The texts with each message body ("body") replaced by its parts, as texts at
    "body", "body.quoted", "body.signature" and "body.disclaimer"."""
    names, domains = tuple(names), tuple(domains)
    out: list[TextChunk] = []
    for chunk in texts:
        if chunk.where != "body":
            out.append(chunk)
            continue
        out.extend(TextChunk("body" + p.part, p.text)
                   for p in segment(chunk.text, names, domains))
    return out
