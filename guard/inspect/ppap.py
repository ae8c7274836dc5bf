"""PPAP: the password mail that follows an encrypted attachment.

Japanese offices send a password-protected zip, then minutes later a second mail to the
same people: "パスワードは xxxx です", "解凍パスワードをお送りします", "Password: …".
Holding the zip alone is defeated by the second mail. Two pure steps:

- `password_announcement(view)`: does this message look like a password mail (a short
  text that announces a password, no attachment or a tiny one)? Cheap; the recipient
  stage asks the store for the sender's recent encrypted-attachment mail only when it
  does, so ordinary mail costs no query.
- `detect_ppap_password(view, ctx)`: the announcement, linked to the latest of those
  mails (`ctx.recent_encrypted`) that shares a recipient: `ppap.password`, evidence the
  linked queue id, its state and how long after it this one came. The password itself
  is never kept (only whether the mail gives one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from guard.inspect.context import InspectContext, RecentEncrypted
from guard.inspect.finding import Finding
from guard.mail.addresses import address_key
from guard.mail.view import MessageView

SYMBOL = "ppap.password"

# A password mail says little: a greeting, one sentence, perhaps a signature. Anything
# longer is a real mail that mentions a password in passing.
MAX_TEXT_CHARS = 1500
# "or a tiny one": a .txt holding the password; not a document.
MAX_ATTACHMENT_BYTES = 2048

_PW = (r"(?:パスワード|パスワ－ド|ﾊﾟｽﾜｰﾄﾞ|パスコード|暗証番号|解凍キー|ＰＷ|ＰＡＳＳ"
       r"|\bPW\b|\bpass(?:word|code|phrase)?\b)")
# the announcement: the word, then within a few characters a colon, は, or a verb of
# sending ("をお送りします", "をお知らせします", "送付", "follows", "for the attached")
_ANNOUNCE = re.compile(
    _PW + r"[^\n]{0,20}?(?:[:：=＝]|は|を(?:お送り|お知らせ|ご連絡|送付|送り|通知)"
    r"|(?:送付|通知|連絡|のご案内|のお知らせ))"
    r"|(?:解凍|展開|開封)[^\n]{0,6}" + _PW
    + r"|" + _PW + r"\s+(?:is|below|follows|for\s+the\s+(?:attached|zip|file|previous))",
    re.IGNORECASE)
# a value after the announcement: a run of printable ASCII (half- or full-width),
# ended by です / 。 / the line end
_VALUE = re.compile(
    _PW + r"[^\n:：=＝]{0,30}?(?:[:：=＝]|は|\s+is)\s*[「『\"']?"
    r"([!-~！-～]{4,64})[」』\"']?\s*(?:です|となります|になります|。|\.|$)",
    re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Announcement:
    where: str  # "subject" or "body"
    with_value: bool


def password_announcement(view: MessageView) -> Announcement | None:
    """A short text that announces a password, with no attachment beyond a tiny one;
    None for anything else."""
    if any(len(a.data) > MAX_ATTACHMENT_BYTES for a in view.attachments):
        return None
    if view.problems:  # an encrypted or unreadable attachment is not a password mail
        return None
    body = "\n".join(t.text for t in view.texts if t.where == "body"
                     or t.where.startswith("body."))
    if len(body) > MAX_TEXT_CHARS:
        return None
    tiny = "\n".join(t.text for t in view.texts if t.where.startswith("attachment:"))
    with_value = any(_VALUE.search(text) for text in (body, tiny, view.subject))
    for where, text in (("body", body), ("subject", view.subject), ("body", tiny)):
        if _ANNOUNCE.search(text):
            return Announcement(where, with_value)
    return None


def _linked(view: MessageView, ctx: InspectContext) -> tuple[RecentEncrypted, int] | None:
    """The latest encrypted-attachment mail of this sender that shares a recipient."""
    mine = {address_key(r) for r in view.rcpt_tos}
    best: tuple[RecentEncrypted, int] | None = None
    for mail in ctx.recent_encrypted:
        shared = len(mine & mail.recipients)
        if shared and (best is None or mail.seconds_ago < best[0].seconds_ago):
            best = (mail, shared)
    return best


def detect_ppap_password(view: MessageView, ctx: InspectContext) -> list[Finding]:
    if not ctx.recent_encrypted:
        return []
    said = password_announcement(view)
    if said is None:
        return []
    found = _linked(view, ctx)
    if found is None:
        return []
    mail, shared = found
    minutes = max(0, round(mail.seconds_ago / 60))
    return [Finding(
        SYMBOL, score=1.0 if said.with_value else 0.9, where=said.where,
        evidence={"queue_id": mail.queue_id, "state": mail.state,
                  "after_seconds": int(mail.seconds_ago), "after_minutes": minutes,
                  "shared_recipients": shared, "with_value": said.with_value},
        reason_ja=f"暗号化添付メール {mail.queue_id} の {minutes} 分後のパスワード通知",
        reason_en=f"password mail {minutes} min after the encrypted attachment "
                  f"mail {mail.queue_id}")]
