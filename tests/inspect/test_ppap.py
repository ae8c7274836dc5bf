"""The PPAP password mail: which mails announce a password, and which encrypted-attachment
mail of the sender a password mail is linked to (pure: candidates from the context)."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

import pytest

from guard.inspect.context import InspectContext, RecentEncrypted
from guard.inspect.ppap import detect_ppap_password, password_announcement
from guard.mail.message import parse_message

PARTNER = "tantou@partner.example"


def view(body: str, subject: str = "ご連絡", to: str = PARTNER, attachment: bytes = b"",
         charset: str = "utf-8"):
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"], m["To"], m["Subject"] = "alice@example.co.jp", to, subject
    m.set_content(body, charset=charset)
    if attachment:
        m.add_attachment(attachment, maintype="text", subtype="plain", filename="pw.txt")
    return parse_message(m.as_bytes(), "alice@example.co.jp", [to])


@pytest.mark.parametrize(("body", "subject", "with_value"), [
    ("お世話になっております。\n解凍パスワードは Xk9pQ2zw です。\n", "資料", True),
    ("先ほどのファイルのパスワード：Xk9pQ2zw\nよろしくお願いいたします。", "資料", True),
    ("パスワードは「Ab12cd34」となります。", "Re: 見積書", True),
    ("解凍パスワードをお送りします。\n\n  Ab12cd34\n", "パスワード", False),
    ("先ほどお送りしたファイルの解凍用パスワードです。\nAb12cd34", "資料送付", False),
    ("Ab12cd34", "【パスワード送付】見積書", False),
    ("Hello,\nThe password for the attached file is Xk9pQ2zw.\nRegards", "Files", True),
    ("Password: Xk9pQ2zw", "zip", True),
    ("Please find the password below.\n\nXk9pQ2zw\n", "password", False),
])
def test_password_announcements(body: str, subject: str, with_value: bool) -> None:
    said = password_announcement(view(body, subject))
    assert said is not None
    assert said.with_value is with_value


def test_cp932_mail_from_a_business_system() -> None:
    said = password_announcement(view("パスワードは Xk9pQ2zw です。", "パスワード送付",
                                      charset="shift_jis"))
    assert said is not None and said.with_value


@pytest.mark.parametrize(("body", "subject", "attachment"), [
    ("来週の会議は 10 時からです。", "会議", b""),
    ("パスワードを変更してください。", "お知らせ", b""),
    # a long mail that mentions a password in passing is a real mail
    ("議事録です。\n" + "本日の議題について。\n" * 200 + "パスワードは別途お送りします。", "議事録",
     b""),
    # a document is not a "tiny attachment"
    ("パスワードは Xk9pQ2zw です。", "資料", b"x" * 5000),
])
def test_not_password_mails(body: str, subject: str, attachment: bytes) -> None:
    assert password_announcement(view(body, subject, attachment=attachment)) is None


def test_a_tiny_attachment_is_allowed() -> None:
    assert password_announcement(view("パスワードは添付のとおりです。", "資料",
                                      attachment=b"Xk9pQ2zw")) is not None


def zip_mail(qid: str, ago: float, *rcpts: str, state: str = "held") -> RecentEncrypted:
    return RecentEncrypted(qid, state, ago, frozenset(rcpts))


def test_linked_to_the_latest_zip_sharing_a_recipient() -> None:
    ctx = InspectContext(recent_encrypted=(
        zip_mail("Q1", 300, PARTNER), zip_mail("Q2", 120, PARTNER, "b@partner.example"),
        zip_mail("Q3", 30, "other@elsewhere.example")))
    (f,) = detect_ppap_password(view("パスワードは Xk9pQ2zw です。"), ctx)
    assert f.symbol == "ppap.password" and f.where == "body" and f.score == 1.0
    assert f.evidence == {"queue_id": "Q2", "state": "held", "after_seconds": 120,
                          "after_minutes": 2, "shared_recipients": 1, "with_value": True}
    assert "Xk9pQ2zw" not in f.reason_ja + f.reason_en + str(f.evidence)


def test_not_linked_without_a_shared_recipient_or_a_zip() -> None:
    other = InspectContext(recent_encrypted=(zip_mail("Q1", 60, "x@elsewhere.example"),))
    assert detect_ppap_password(view("パスワードは Xk9pQ2zw です。"), other) == []
    assert detect_ppap_password(view("パスワードは Xk9pQ2zw です。"), InspectContext()) == []
    mine = InspectContext(recent_encrypted=(zip_mail("Q1", 60, PARTNER),))
    assert detect_ppap_password(view("来週の会議は 10 時からです。"), mine) == []
