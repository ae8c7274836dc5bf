"""All detectors over one message, in two halves.

`content_findings` reads only the message and the policy's static lists (keywords,
customers): it is the CPU-heavy half (personal data over every text and table) and runs
in the extraction worker process. `recipient_findings` needs what the store knows
(history, suppression lists) and is cheap: it runs in the main process. Both are pure,
so `guard policy test` and `replay` call exactly the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from guard.inspect.context import InspectContext
from guard.inspect.customers import detect_customer_mismatch
from guard.inspect.envelope import detect_bcc_only, detect_bulk, detect_client
from guard.inspect.finding import Finding
from guard.inspect.gcpause import collections_paused
from guard.inspect.keywords import detect_keywords
from guard.inspect.pii.detect import PiiLimits, scan
from guard.inspect.ppap import detect_ppap_password
from guard.inspect.recipients import (
    detect_external_orgs,
    detect_lookalike,
    detect_new_address,
    detect_new_domain,
    detect_sender_volume,
    detect_suppressed,
    detect_visible_external,
)
from guard.mail.bodyparts import split_bodies
from guard.mail.message import MessageView
from guard.mail.nfkc import normalize
from guard.mail.view import TextChunk

# problem code → (Japanese, English) for people
_PROBLEM_TEXT: dict[str, tuple[str, str]] = {
    "encrypted": ("暗号化されていて中身を確認できない添付ファイル",
                  "an encrypted attachment that could not be inspected"),
    "too_large": ("大きすぎて確認できない添付ファイル", "an attachment too large to inspect"),
    "too_deep": ("入れ子が深すぎて確認できない添付ファイル", "attachments nested too deeply"),
    "too_many_parts": ("パートが多すぎて確認できないメール", "too many MIME parts to inspect"),
    # header limits (guard.mail.message.prescan): the message is not parsed at all
    "too_large:headers": ("ヘッダーが大きすぎて確認できないメール",
                          "a header too large to inspect"),
    "too_many_headers": ("ヘッダーの数が多すぎて確認できないメール",
                         "too many header fields to inspect"),
    "too_many_params": ("パラメーターが多すぎて確認できない MIME ヘッダー",
                        "a MIME header with too many parameters to inspect"),
    "bomb": ("展開すると巨大になる圧縮ファイル（zip 爆弾の疑い）",
             "an archive that expands to an enormous size (zip bomb?)"),
    "parse_error": ("壊れていて読めない部分", "a part that could not be parsed"),
    "timeout": ("確認に時間がかかりすぎた添付ファイル",
                "an attachment that took too long to inspect"),
    "worker_died": ("確認中に異常終了した添付ファイル", "an attachment that crashed the inspector"),
    "unknown_binary": ("種類の分からないバイナリファイル", "a binary file of unknown type"),
    "no_text": ("文字を取り出せない添付ファイル", "an attachment with no readable text"),
}


def problem_findings(view: MessageView) -> list[Finding]:
    """What could not be inspected, and malformed headers: the policy decides (the safe
    default holds external mail)."""
    out: list[Finding] = []
    for code, where, detail in view.problems:
        ja, en = _PROBLEM_TEXT.get(f"{code}:{where}") or _PROBLEM_TEXT.get(
            code, ("確認できない部分", "a part that could not be inspected"))
        name = where.split(":", 1)[1] if ":" in where else where
        out.append(Finding(
            symbol=f"uninspectable.{code}", score=1.0, where=where,
            evidence={"detail": detail[:300], "file": name},
            reason_ja=f"{ja}: {name}" if name else ja,
            reason_en=f"{en}: {name}" if name else en))
    for problem in view.header_problems:
        kind = "address" if "address" in problem else "header"
        out.append(Finding(
            symbol=f"malformed.{kind}", score=1.0, where="header",
            evidence={"detail": problem[:300]},
            reason_ja=f"ヘッダーの形式が不正です（{problem[:120]}）",
            reason_en=f"malformed header ({problem[:120]})"))
    return out


# Personal-data value scanning costs ~25 µs a cell: a 70,000-row customer list took
# 5 s for its first 200,000 cells (tests/bench/stall_bench.py). The people-list and
# records signals still count every row; values are sampled from the first cells, and
# evidence says "truncated". Enough to decide a hold in well under 2 s. A text is read
# up to its 20,000th value the same way (a Word roster of 900,000 values took 20 s);
# My Numbers and cards with their context words are still found in all of it.
PII_LIMITS = PiiLimits(max_scan_cells=20_000, max_scan_values=20_000)


def text_findings(view: MessageView, ctx: InspectContext) -> list[Finding]:
    """Everything that reads the texts and tables (the extraction worker runs this on
    each part it reads, so the texts never have to travel back to the main process)."""
    # the collector paused: the detectors make hits and values by the hundred thousand
    # (~25-30 % of their CPU on a 5 MB xlsx went to full collections)
    with collections_paused():
        return _text_findings(view, ctx)


def _text_findings(view: MessageView, ctx: InspectContext) -> list[Finding]:
    # A spreadsheet or CSV arrives as a Table and as tab-separated text under the same
    # `where`: the personal-data scan reads the table (with its header row) and skips
    # the text copy, which keywords and customer names still read.
    tabled = {t.where for t in view.tables}
    # the organisation's own contact data; its mail domains are own domains too
    own = ctx.own_contacts
    own = replace(own, domains=own.domains | ctx.internal_domains)
    # the body as its parts: findings there say body, body.quoted, body.signature or
    # body.disclaimer (guard.mail.bodyparts)
    texts = split_bodies(view.texts, own.names, own.domains)
    # NFKC once for keywords and customer names, which both normalise what they read
    # (then a quick check: nothing to change), and for the personal-data scan's values.
    # The scan reads the texts as they are too: its tables are found by full-width-space
    # gaps, which NFKC makes spaces.
    normalized = [_Normalized(t.where, t.text, normalize(t.text)) for t in texts]
    pii = scan([t for t in normalized if t.where not in tabled], view.tables, PII_LIMITS,
               own)
    view = replace(view, texts=[TextChunk(t.where, t.normalized) for t in normalized])
    return [*pii, *detect_keywords(view, ctx), *detect_customer_mismatch(view, ctx)]


@dataclass(frozen=True)
class _Normalized:
    """A text and its NFKC form (guard.inspect.pii.detect reads both)."""

    where: str
    text: str
    normalized: str


def content_findings(view: MessageView, ctx: InspectContext) -> list[Finding]:
    return text_findings(view, ctx) + problem_findings(view)


def recipient_findings(view: MessageView, ctx: InspectContext) -> list[Finding]:
    return [
        *detect_new_domain(view, ctx),
        *detect_new_address(view, ctx),
        *detect_lookalike(view, ctx),
        *detect_suppressed(view, ctx),
        *detect_visible_external(view, ctx),
        *detect_external_orgs(view, ctx),
        # header and envelope shape (cheap, from the fields the parser kept)
        *detect_bulk(view),
        *detect_bcc_only(view, ctx),
        *detect_client(view),
        *detect_sender_volume(view, ctx),
        *detect_ppap_password(view, ctx),
    ]


def inspect_view(view: MessageView, ctx: InspectContext) -> list[Finding]:
    return content_findings(view, ctx) + recipient_findings(view, ctx)
