"""Keyword rules: admin-written regular expressions over subject, body and file names.

Text and patterns are NFKC-normalised, and matching ignores case, so "社外秘",
"ＣＯＮＦＩＤＥＮＴＩＡＬ" and "Confidential" meet a rule written as "CONFIDENTIAL";
half-width "ｼｬｶﾞｲﾋ" meets "シャガイヒ".

Patterns run on RE2 (linear time: a careless pattern cannot hang the relay on a large
attachment). A pattern RE2 cannot compile (look-arounds, back-references) falls back
to Python's `re`; `compile_pattern` is what the policy loader should call to reject a
pattern that neither engine accepts.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import cache, lru_cache
from typing import Any, Protocol

import re2

from guard.inspect.context import InspectContext, KeywordRule
from guard.inspect.finding import Finding
from guard.mail.bodyparts import WHOLE, body_part, part_of
from guard.mail.nfkc import normalize

__all__ = [
    "AttachmentLike",
    "KeywordView",
    "TextChunkLike",
    "compile_pattern",
    "detect_keywords",
    "nfkc",
]

log = logging.getLogger(__name__)

# Snippet length in evidence: enough to recognise the match, short enough for a page.
_SNIPPET = 40
# Stop counting matches of one rule after this many (the count is "many" by then).
_MAX_MATCHES = 1000


class TextChunkLike(Protocol):
    @property
    def where(self) -> str: ...

    @property
    def text(self) -> str: ...


class AttachmentLike(Protocol):
    @property
    def filename(self) -> str | None: ...

    @property
    def where(self) -> str: ...


class KeywordView(Protocol):
    """The part of guard.mail.message.MessageView this detector reads."""

    @property
    def subject(self) -> str | None: ...

    @property
    def texts(self) -> Sequence[TextChunkLike]: ...

    @property
    def attachments(self) -> Sequence[AttachmentLike]: ...

    @property
    def inner_names(self) -> Sequence[tuple[str, str]]: ...


def nfkc(text: str) -> str:
    """NFKC, applied only to the runs of characters it can change (the same text:
    guard.mail.nfkc); the same object when nothing changes. On Japanese
    text with a few full-width characters, whole-text NFKC (and is_normalized) takes
    the slow path over all of it: ~2.5x the time on a 17 M-character Word roster."""
    return normalize(text)


_REGEX_SYNTAX = frozenset("\\^$.|?*+()[]{}")


@cache
def _syntax_lookalikes() -> re.Pattern[str]:
    """Non-ASCII characters whose NFKC form holds regex syntax: "［", "（", "＊", "⑴"."""
    chars = [chr(cp) for cp in range(0x80, 0x10000)
             if not 0xD800 <= cp <= 0xDFFF
             and _REGEX_SYNTAX.intersection(unicodedata.normalize("NFKC", chr(cp)))]
    return re.compile("[" + "".join(re.escape(c) for c in chars) + "]")


def _normalize_pattern(pattern: str) -> str:
    """NFKC the pattern like the text, keeping full-width characters literal.

    Admins type "［社外秘］" meaning those brackets, not a character class: a
    character that only becomes regex syntax through NFKC is escaped. The rest is
    normalised as whole runs, so half-width "ｶﾞ" still becomes "ガ" as in the text.
    """
    out: list[str] = []
    pos = 0
    for m in _syntax_lookalikes().finditer(pattern):
        out.append(unicodedata.normalize("NFKC", pattern[pos:m.start()]))
        out.append(re.escape(unicodedata.normalize("NFKC", m.group(0))))
        pos = m.end()
    out.append(unicodedata.normalize("NFKC", pattern[pos:]))
    return "".join(out)


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """Compiled, case-insensitive matcher for a rule pattern; re.error if invalid.

    Cached by pattern: rules are compiled once, not per message.
    """
    normalized = _normalize_pattern(pattern)
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # an unsupported pattern is expected, not an incident
    try:
        return re2.compile(normalized, options)
    except re2.error:
        pass
    compiled = re.compile(normalized, re.IGNORECASE)
    log.info("keyword pattern %r needs Python re (not RE2-compatible)", pattern)
    return compiled


def _fields(view: KeywordView) -> dict[str, list[tuple[str, str]]]:
    """field name -> [(where, NFKC text)], as the rules name them."""
    fields: dict[str, list[tuple[str, str]]] = {
        "subject": [], "body": [], "filename": [], "attachment": []}
    if view.subject:
        fields["subject"].append(("subject", nfkc(view.subject)))
    for chunk in view.texts:
        if chunk.where == "body" or chunk.where.startswith(("body:", "body.")):
            fields["body"].append((chunk.where, nfkc(chunk.text)))
        elif chunk.where.startswith("attachment:"):
            fields["attachment"].append((chunk.where, nfkc(chunk.text)))
    for att in view.attachments:
        if att.filename:
            fields["filename"].append((att.where or f"attachment:{att.filename}",
                                       nfkc(att.filename)))
    for where, name in view.inner_names:
        if name:
            fields["filename"].append((where, nfkc(name)))
    return fields


def _matches(matcher: Any, text: str) -> Iterator[str]:
    for m in matcher.finditer(text):
        if m.end() > m.start():  # an empty match ("a*") says nothing
            yield m.group(0)


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 1] + "…"


def detect_keywords(view: KeywordView, ctx: InspectContext) -> list[Finding]:
    """One finding per rule that matches; count = distinct matched strings. Matches in
    the body's quoted text, signature or disclaimer make a finding of their own per part
    (where "body.quoted"…), so `where: new_text` is not set off by them; when the parts
    split a count, one more finding at "body.all" has the whole body's."""
    if not ctx.keywords:
        return []
    fields = _fields(view)
    findings = []
    for rule in ctx.keywords:
        findings.extend(_apply(rule, fields))
    return findings


def _apply(rule: KeywordRule, fields: dict[str, list[tuple[str, str]]]) -> list[Finding]:
    try:
        matcher = compile_pattern(rule.pattern)
    except re.error as e:
        # The policy loader rejects these; if one slips through, skip it loudly rather
        # than fail the whole inspection.
        log.error("keyword rule %r has an invalid pattern: %s", rule.name, e)
        return []
    # body part ("" = everything else) -> (case-folded -> as found, places)
    parts: dict[str, tuple[dict[str, str], dict[str, None]]] = {}
    for field in rule.fields:
        for where, text in fields.get(field, ()):
            distinct, places = parts.setdefault(part_of(where), ({}, {}))
            for found in _matches(matcher, text):
                distinct.setdefault(found.casefold(), found)
                places.setdefault(where, None)
                if len(distinct) >= _MAX_MATCHES:
                    break
    out = [_finding(rule, distinct, places) for distinct, places in parts.values()
           if distinct]
    whole = _whole_body(rule, matcher, fields, out)
    return out if whole is None else [*out, whole]


def _whole_body(rule: KeywordRule, matcher: Any, fields: dict[str, list[tuple[str, str]]],
                found: list[Finding]) -> Finding | None:
    """The rule's finding at "body.all" (the body's parts together) when it counts more
    distinct matches than any one finding: a rule on the body sees the body's count."""
    if len(found) < 2:  # one part matched (or none): its finding has the count
        return None
    distinct: dict[str, str] = {}
    places: dict[str, None] = {}
    for field in rule.fields:
        for where, text in fields.get(field, ()):
            if body_part(where) is None:
                continue
            for match in _matches(matcher, text):
                distinct.setdefault(match.casefold(), match)
                places.setdefault(where, None)
                if len(distinct) >= _MAX_MATCHES:
                    break
    if len({body_part(w) for w in places}) < 2 or \
            len(distinct) <= max(f.count for f in found):
        return None
    whole = _finding(rule, distinct, places)
    return replace(whole, where="body" + WHOLE,
                   reason_ja=whole.reason_ja.replace(f"（{whole.where}）", "（本文全体）"),
                   reason_en=whole.reason_en.replace(f"({whole.where})", "(whole body)"))


def _finding(rule: KeywordRule, distinct: dict[str, str], places: dict[str, None]) -> Finding:
    first_where = next(iter(places))
    snippet = _snippet(next(iter(distinct.values())))
    return Finding(
        "keyword",
        score=1.0,
        count=len(distinct),
        where=first_where,
        evidence={"rule": rule.name, "match": snippet, "places": list(places)[:10]},
        reason_ja=f"キーワード規則「{rule.name}」に一致しました: 「{snippet}」（{first_where}）",
        reason_en=f"matches keyword rule '{rule.name}': \"{snippet}\" ({first_where})",
    )
