"""The body segmenter (guard.mail.bodyparts) and own-data keys (guard.inspect.owndata):
which lines are new text, quoted, signature or disclaimer, and bounded time on
hostile bodies."""

from __future__ import annotations

import time

import pytest

from guard.inspect.owndata import OwnContacts, address_key, checked_phone, phone_key
from guard.mail.bodyparts import (
    DISCLAIMER,
    NEW,
    QUOTED,
    SIGNATURE,
    part_of,
    segment,
    split_bodies,
)
from guard.mail.view import TextChunk

NAMES = ("Example株式会社",)
DOMAINS = ("example.co.jp",)


def parts(text: str) -> dict[str, str]:
    """part -> its text, without the blank lines around it"""
    return {p.part: p.text.strip("\n") for p in segment(text, NAMES, DOMAINS)}


def test_plain_text_is_all_new() -> None:
    assert parts("hello\nworld\n") == {NEW: "hello\nworld"}


def test_outlook_original_message_quotes_everything_below() -> None:
    got = parts("OK\n\n-----Original Message-----\nFrom: a\nSent: b\n\nold text\n> x\n")
    assert got[NEW] == "OK"
    assert got[QUOTED].startswith("-----Original Message-----") and "old text" in got[QUOTED]


def test_outlook_header_block_with_rule_above() -> None:
    got = parts("了解です\n\n________________________________\n差出人: 鈴木 <s@p.example>\n"
                "送信日時: 2026年12月7日 10:00\n宛先: 山田\n\n前のメール\n")
    assert got[NEW] == "了解です"
    assert got[QUOTED].startswith("_____") and "前のメール" in got[QUOTED]


def test_from_line_without_sent_is_new_text() -> None:
    assert set(parts("From: the warehouse team\nthe boxes are ready\n")) == {NEW}


@pytest.mark.parametrize("header", [
    "On Mon, Dec 7, 2026 at 10:00 AM John Smith <john@p.example> wrote:",
    "2026年12月7日(月) 10:00 山田 <yamada@p.example>:",
    "2026/12/07 10:00、山田 <yamada@p.example>のメール:",
    "2026/12/07 10:00 に 山田 さんは書きました:",
    "2026/12/07 10:00, 山田 太郎 wrote:",
    "山田 太郎 さんは書きました:",
])
def test_wrote_lines(header: str) -> None:
    got = parts(f"thanks\n\n{header}\n> quoted line\n")
    assert got[NEW] == "thanks"
    assert got[QUOTED] == f"{header}\n> quoted line"


@pytest.mark.parametrize("line", ["As John wrote:", "On Monday, as John wrote:",
                                  "詳細は以下のメール:"])
def test_sentences_ending_like_a_header_are_new_text(line: str) -> None:
    assert set(parts(f"{line}\nthe plan is ready\n")) == {NEW}


def test_wrapped_gmail_wrote_line() -> None:
    got = parts("ok\n\nOn Mon, Dec 7, 2026 at 10:00 AM John Smith <\njohn@p.example> wrote:\n"
                "> q\n")
    assert got[NEW] == "ok" and got[QUOTED].startswith("On Mon")


def test_wrote_line_in_html_text_form_quotes_everything_below() -> None:
    """An HTML body's text form has no `>` marks: below the header is all quoted."""
    got = parts("ok\n\nOn Mon, Dec 7, 2026 John <j@p.example> wrote:\nold text\nmore\n")
    assert got[NEW] == "ok" and "old text\nmore" in got[QUOTED]


def test_inline_reply_keeps_answers_new() -> None:
    got = parts("> question one?\nanswer one\n> question two?\nanswer two\n")
    assert got[NEW] == "answer one\nanswer two"
    assert got[QUOTED] == "> question one?\n> question two?"


def test_dash_dash_signature() -> None:
    got = parts("本文です。\n-- \n山田\n090-1111-2222\n")
    assert got[NEW] == "本文です。" and got[SIGNATURE] == "-- \n山田\n090-1111-2222"


def test_a_list_after_dash_dash_is_not_a_signature() -> None:
    rows = "".join(f"顧客{i} 090-1111-{i:04d}\n" for i in range(60))
    assert set(parts("一覧です\n-- \n" + rows)) == {NEW}


def test_closing_block_needs_company_domain_rule_or_postal_and_tel() -> None:
    sig = "山田太郎\nExample株式会社 営業部\nTEL 03-1234-5678\n"
    assert parts("本文です。\n\n" + sig)[SIGNATURE] == sig.strip()
    # a closing block of a name and a mobile number alone is not a signature
    assert set(parts("本文です。\n\n鈴木\n090-1111-2222\n")) == {NEW}
    # 〒 and TEL make one, also for another company (the sender may sign as a partner)
    other = "佐藤\n〒150-0001 東京都渋谷区神宮前1-2-3\nTEL 03-9999-0000\n"
    assert parts("本文です。\n\n" + other)[SIGNATURE] == other.strip()


def test_footer_between_two_rules() -> None:
    footer = "━━━━━━━━━━━━\n発行: 某社 広報部\n〒100-0005 東京都千代田区丸の内1-2-3\n━━━━━━━━━━━━"
    got = parts("今月のお知らせです。\n\n" + footer + "\n")
    assert got == {NEW: "今月のお知らせです。", SIGNATURE: footer}


def test_a_body_of_only_contact_data_is_new_text() -> None:
    body = "〒150-0001 東京都渋谷区神宮前1-2-3\nTEL 090-1234-5678\n"
    assert set(parts(body)) == {NEW}
    assert set(parts("了解\n" + body)) == {NEW, SIGNATURE}


def test_a_company_name_in_a_one_line_reply_is_new_text() -> None:
    assert set(parts("本文\n\n株式会社ABCの機密資料を送ります\n")) == {NEW}
    assert set(parts("本文\n\n佐藤\n株式会社ABC 営業部\n")) == {NEW, SIGNATURE}


@pytest.mark.parametrize("label", ["鈴木一郎様", "お届け先: 鈴木一郎", "ABC商事 御中"])
def test_an_addressee_at_the_end_is_not_a_signature(label: str) -> None:
    body = (f"配送をお願いします。\n\n{label}\n〒150-0001 東京都渋谷区神宮前1-2-3\n"
            "TEL 090-1234-5678\n")
    assert set(parts(body)) == {NEW}


def test_customer_paragraph_above_the_signature_stays_new() -> None:
    body = ("お届け先: 鈴木一郎様\n〒150-0001 東京都渋谷区神宮前1-2-3\nTEL 090-1234-5678\n\n"
            "Example株式会社 物流部 佐藤\n〒100-0005 東京都千代田区丸の内1-2-3\nTEL 03-1234-5678\n")
    got = parts(body)
    assert "鈴木一郎" in got[NEW] and "090-1234-5678" in got[NEW]
    assert got[SIGNATURE].startswith("Example株式会社")


def test_sentences_are_not_a_signature() -> None:
    body = "ご連絡ください。\n担当の携帯は TEL 090-1234-5678 です。\n"
    assert set(parts(body)) == {NEW}


def test_sent_from_iphone() -> None:
    assert parts("OKです\n\niPhoneから送信\n")[SIGNATURE] == "iPhoneから送信"
    assert parts("OK\n\nSent from my iPhone\n")[SIGNATURE] == "Sent from my iPhone"


def test_disclaimers_english_japanese_and_quoted() -> None:
    en = ("CONFIDENTIALITY NOTICE:\nThis e-mail is confidential and intended solely for the "
          "addressee.\nIf you have received it in error, please delete it.")
    got = parts("ok\n\n" + en + "\n")
    assert got[NEW] == "ok" and got[DISCLAIMER].startswith("CONFIDENTIALITY NOTICE")
    ja = "本メールは機密情報を含みます。誤って受信された場合は削除してください。"
    got = parts(f"了解です\n-- \n佐藤\n{ja}\n")
    assert got == {NEW: "了解です", SIGNATURE: "-- \n佐藤", DISCLAIMER: ja}
    got = parts("ok\n\nOn Mon, John <j@p.example> wrote:\n> hi\n>\n> " + ja + "\n")
    assert got[DISCLAIMER] == "> " + ja and "hi" in got[QUOTED]
    # "confidential" in a sentence of the sender's is not a disclaimer
    assert set(parts("The price list is confidential, keep it inside.\n")) == {NEW}


def test_part_of_and_split_bodies() -> None:
    assert [part_of(w) for w in ("body", "body.quoted", "body.signature", "subject",
                                 "attachment:body.quoted.txt", "body.x")] == [
        NEW, QUOTED, SIGNATURE, NEW, NEW, NEW]
    chunks = split_bodies([TextChunk("subject", "s"), TextChunk("body", "a\n> b\n"),
                           TextChunk("attachment:x.txt", "> c")])
    assert [(c.where, c.text) for c in chunks] == [
        ("subject", "s"), ("body", "a\n"), ("body.quoted", "> b"),
        ("attachment:x.txt", "> c")]


HOSTILE = {
    "quote_lines": ">\n" * 500_000,
    "one_line": "a" * 1_000_000,
    "wrote_lines": "On x wrote:\n" * 80_000,
    "at_signs": ("2026年1月1日 <" + "@" * 250 + "\n") * 4_000,
    "dash_lines": "-- \n" * 250_000,
    "tel_lines": "Tel 〒\n" * 150_000,
    "blank_lines": "\n" * 1_000_000,
    "disclaimer_words": ("confidential intended recipient " * 30 + "\n") * 1000,
    "from_sent": "From: a\nSent: b\n" * 60_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bodies_take_bounded_time(name: str) -> None:
    text = HOSTILE[name]
    start = time.process_time()
    got = segment(text, NAMES, DOMAINS)
    assert time.process_time() - start < 2.0
    # nothing is lost: every line is in one of the parts
    assert sum(len(p.text) - p.text.count("\n") for p in got) == len(text) - text.count("\n")


def test_lines_past_the_limit_follow_the_header() -> None:
    body = "ok\n-----Original Message-----\n" + "old\n" * 20_000 + "> x\n"
    got = parts(body)
    assert got[NEW] == "ok" and got[QUOTED].endswith("old\n> x")
    got = parts("line\n" * 20_000 + "> x\n")  # no header: past the limit is new text
    assert set(got) == {NEW} and got[NEW].endswith("line\n> x")


# ---------------------------------------------------------------- own data keys


def test_own_keys() -> None:
    assert phone_key("+81 3-1234-5678") == phone_key("03(1234)5678") == "0312345678"
    assert phone_key("+81 (0)3 1234 5678") == "0312345678"
    assert checked_phone("0120-123-456") == "0120123456"
    with pytest.raises(ValueError):
        checked_phone("1234")
    assert address_key("東京都 千代田区丸の内一丁目") != address_key("千代田区丸の内1-2-3")
    assert address_key("東京都千代田区丸の内1丁目2番3号") == "千代田区丸の内1-2-3"
    own = OwnContacts(addresses=(address_key("東京都千代田区丸の内1-2-3 丸の内ビル5F"),),
                      domains=frozenset({"example.co.jp"}))
    assert own.has_address("東京都千代田区丸の内1-2-3")
    assert own.has_address("千代田区丸の内1-2-3丸の内ビル")
    assert not own.has_address("東京都千代田区丸の内1-2-35")
    assert not own.has_address("東京都千代田区丸の内1-2")
    assert own.has_email("a@mail.example.co.jp") and not own.has_email("a@example.com")


@pytest.mark.parametrize("at", [1, 62, 63, 64, 65, 200])
def test_a_reply_header_is_found_at_any_line_of_a_long_body(at: int) -> None:
    # segment looks for reply-header lines 64 at a time (bodyparts._BLOCK): a header
    # wrapped over two lines across that boundary is still one header
    filler = [f"line {i} of the sender's text" for i in range(at)]
    text = "\n".join([*filler, "On Tue, Dec 1, 2026 at 10:00 Yamada Taro",
                      "<taro@partner.example> wrote:", "", "old text", "more old text"])
    got = parts(text)
    assert got[NEW].endswith(f"line {at - 1} of the sender's text")
    assert got[QUOTED].startswith("On Tue") and got[QUOTED].endswith("more old text")


@pytest.mark.parametrize("width", [40, 400])
def test_an_ascii_body_with_cr_reads_as_one_without(width: int) -> None:
    # the ASCII paths read the first 300 characters of a line and strip a "\r" (mail
    # as it came over SMTP): the same parts with or without, short lines or long
    long = "x" * width
    body = (f"{long}\nThanks.\n-- \nSato Jiro\n\nFrom: Yamada\nSent: Monday\n\n"
            f"old {long}\n")
    crlf = {k: v.replace("\r", "").strip("\n")
            for k, v in parts(body.replace("\n", "\r\n")).items()}
    assert parts(body) == crlf == {NEW: f"{long}\nThanks.", SIGNATURE: "-- \nSato Jiro",
                                   QUOTED: f"From: Yamada\nSent: Monday\n\nold {long}"}


_SOUP = [
    "本メールは機密情報を含みます。誤って受信された場合は削除してください。", "CONFIDENTIAL NOTICE",
    "This e-mail is confidential. If you are not the intended recipient, delete it.",
    "PRIVILEGED: received this message in error", "Privİleged and confidentıal",
    "confidentıal: if you are not the intended recipient",
    "本メールは守秘義務の対象です。誤送信の場合は削除してください。",
    "> 本メールには秘密情報が含まれます。お心当たりのない方は削除を。", ">", "> ", "　", " ", "",
    "", "\t", "-- ", "株式会社テスト", "TEL 03-1234-5678", "〒100-0001", "山田 太郎",
    "-----Original Message-----", "From: a", "Sent: b", "> quoted", "ｶﾀｶﾅ ＡＢＣ　１２３（株）",
    "a" * 310, "機密" + "x" * 400, "ordinary line", "【注意】", "proprietary", "本メール",
    "か\u3099", "\u3099", "confidential\r", "x\r", "①②　㈱",
]


def _soup(seed: int, n: int) -> list[str]:
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lines = [rng.choice(_SOUP) for _ in range(rng.randint(0, rng.choice((5, 50, 200))))]
        if rng.random() < 0.2:  # a paragraph of notice lines, about as long as one can be
            lines += [rng.choice(_SOUP[:7])] * rng.randint(35, 50)
        out.append(("\r\n" if rng.random() < 0.3 else "\n").join(lines))
    return out


def test_notice_paragraphs_found_from_their_words_as_when_every_one_is_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """segment reads only the paragraphs around a line with a word every notice needs
    (bodyparts._notice_lines); reading every paragraph gives the same parts."""
    from guard.mail import bodyparts

    texts = _soup(1, 1500)
    with monkeypatch.context() as m:
        m.setattr(bodyparts, "_FEW_PARAGRAPHS", 0)  # found from their words, however few
        quick = [segment(t, NAMES, DOMAINS) for t in texts]
    assert [segment(t, NAMES, DOMAINS) for t in texts] == quick  # (few: all read)
    monkeypatch.setattr(bodyparts, "_notice_lines", lambda text, n: None)
    assert quick == [segment(t, NAMES, DOMAINS) for t in texts]
    assert any(p.part == DISCLAIMER for ps in quick for p in ps)


def test_heads_of_a_text_are_the_nfkc_of_its_lines() -> None:
    """segment normalises a non-ASCII text once instead of line by line: the same
    heads, combining marks at a line start and CR line ends included."""
    import unicodedata

    from guard.mail import bodyparts

    for text in _soup(2, 400):
        lines = text.split("\n")
        if max(map(len, lines)) > 300 or text.isascii():
            continue
        one = bodyparts.nfkc(text).split("\n")
        assert [h.rstrip("\r") for h in one] == [
            unicodedata.normalize("NFKC", line).rstrip("\r") for line in lines]
