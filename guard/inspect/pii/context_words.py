"""Context words (JA/EN) for the personal-data detectors, and table-header keywords.

Presidio raises a match's score when a context word precedes it; it finds those words by
token lemma, which needs a tokenizer Japanese does not have for free. Here context words
are found as text (a character window around the match): the scanner
searches for all of them in the same RE2 pass as the candidates, then looks up the ones
inside each candidate's window. Japanese words match anywhere; ASCII words must not be
glued to other ASCII letters ("tel" must not fire inside "hotel", but
"TEL03-1234-5678" is fine).

All words are stored NFKC-normalised and lower-cased, the same as the windows they are
searched in. The katakana long-vowel mark ー is kept as is: mapping it to "-" silently
killed the マイナンバー context in an early prototype.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

import re2


def _norm(word: str) -> str:
    return unicodedata.normalize("NFKC", word).lower()


def _glued(text: str, index: int) -> bool:
    """True when text[index] is an ASCII letter (i.e. the word continues)."""
    return 0 <= index < len(text) and text[index].isascii() and text[index].isalpha()


def glued_after(text: str, end: int) -> bool:
    """Whether an ASCII word ending at `end` runs on into more letters ("hotels" is
    not "tel"; "cards" is "card"; "TEL03" is "TEL")."""
    if end < len(text) and text[end] in "sS":
        end += 1
    return _glued(text, end)


@dataclass(frozen=True)
class WordList:
    """One category of context words (NFKC, lower case)."""

    name: str
    words: tuple[str, ...]
    _set: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        words = tuple(dict.fromkeys(_norm(w) for w in self.words))
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "_set", frozenset(words))

    def pick(self, found: dict[str, int]) -> dict[str, int]:
        """The words of this list among `found` (word -> distance to the value)."""
        return {w: d for w, d in found.items() if w in self._set} if found else {}


MY_NUMBER = WordList(
    "my_number",
    (
        "個人番号", "マイナンバー", "マイナンバーカード", "個人番号カード", "通知カード",
        "番号確認", "共通番号", "個人識別番号", "個人識別ナンバー",
        "my number", "mynumber", "individual number",
    ),
)

CORPORATE = WordList(
    "corporate_number",
    (
        "法人番号", "登録番号", "適格請求書", "インボイス", "事業者番号",
        "corporate number", "registration number", "qualified invoice",
    ),
)

# Codes that look like corporate numbers: JAN/EAN-13 barcodes pass the mod-9 check
# about 1 time in 9.
CORPORATE_NEGATIVE = WordList(
    "corporate_number_negative",
    ("jan", "ean", "isbn", "品番", "型番", "商品コード", "バーコード", "barcode", "部品番号"),
)

CARD = WordList(
    "card",
    (
        "カード番号", "クレジット", "クレカ", "デビット", "カード情報", "有効期限",
        "セキュリティコード", "カード名義", "card", "credit", "debit", "visa", "mastercard",
        "master", "amex", "american express", "jcb", "diners", "discover", "unionpay",
        "exp", "expiry", "expiration", "cvv", "cvc", "cvv2", "pan",
    ),
)

# Numbers that are business references, not people: order/invoice/slip numbers pass
# Luhn + IIN on ~13 % of invoice lines in a false-positive test on real invoices, and the
# same reference numbers are sometimes 10-12 digits starting with 0 or passing mod-11.
ID_NEGATIVE = WordList(
    "reference_number",
    (
        "注文", "発注", "受注", "伝票", "請求", "見積", "納品", "品番", "型番", "追跡",
        "問合せ番号", "問い合わせ番号", "お問合せ番号", "受付番号", "管理番号", "予約番号",
        "会員番号", "ポイントカード", "商品コード", "製造番号", "シリアル", "注文番号",
        "請求書番号", "伝票番号", "取引番号", "整理番号", "部品番号", "製品番号",
        "order", "invoice", "tracking", "serial", "jan", "isbn", "po", "sku", "ref",
        "reference", "slip", "transaction", "receipt", "booking", "reservation", "ticket",
    ),
)

PHONE = WordList(
    "phone",
    (
        "電話", "電話番号", "tel", "携帯", "連絡先", "fax", "ファックス", "ファクス", "直通",
        "フリーダイヤル", "フリーコール", "ナビダイヤル",
        "phone", "mobile", "cell", "telephone", "contact",
    ),
)

POSTAL = WordList(
    "postal_code",
    # No 〒 here: the mark counts only right before the code (the scanner checks that),
    # not as a word in the window, where it is usually the previous address's mark.
    ("郵便番号", "郵便", "住所", "zip", "postal", "postcode", "post code"),
)

ADDRESS = WordList(
    "address",
    (
        "住所", "所在地", "現住所", "住居", "居所", "送付先", "届け先", "お届け先", "自宅",
        "address", "addr",
    ),
)

BIRTH_DATE = WordList(
    "birth_date",
    (
        "生年月日", "誕生日", "生まれ", "出生", "年齢",
        "date of birth", "birth date", "birthdate", "birthday", "dob", "d.o.b", "born",
    ),
)

# Lines that start with these are quoted-reply or message headers: the addresses on
# them are the correspondents, not data being sent.
QUOTED_HEADER_PREFIXES: tuple[str, ...] = tuple(
    _norm(w)
    for w in (
        "from:", "to:", "cc:", "bcc:", "reply-to:", "sender:", "sent:",
        "差出人:", "送信者:", "宛先:", "送信日時:", "件名:", "返信先:",
    )
)


def _alternation(words: Iterable[str]) -> str:
    # Longest first: at one position "マイナンバーカード" beats "マイナンバー".
    return "|".join(re2.escape(w) for w in sorted(set(words), key=len, reverse=True))


def word_pattern(words: Iterable[str]) -> str:
    """RE2 alternation: Japanese words anywhere, ASCII words from an ASCII word start.

    RE2 has no lookbehind/lookahead; `\\b` covers the start ("hotel" does not yield
    "tel") and the caller checks the end with `glued_after` (digits and a plural "s"
    may follow a word, so "TEL03-1234-5678" and "cards" count).
    """
    words = list(words)
    ja = [w for w in words if not w.isascii()]
    en = [w for w in words if w.isascii()]
    parts = []
    if ja:
        parts.append(_alternation(ja))
    if en:
        parts.append(f"(?i:\\b(?:{_alternation(en)}))")
    return "|".join(parts)


# ---------------------------------------------------------------------------
# Table header keywords (people lists)
# ---------------------------------------------------------------------------

# Everything that varies between spellings of the same header is removed before
# matching: spaces, separators, brackets and the long-vowel / dash family, so that
# メールアドレス, ﾒｰﾙｱﾄﾞﾚｽ (half-width, NFKC → メールアドレス), メ－ルアドレス and
# "E-Mail" all reduce to the same key as the keyword list below.
_HEADER_STRIP = re.compile(r"[\s_・/\\()\[\]{}（）「」【】:：.,、。*※\-‐‑‒–—―−﹣ー〜~～]+")


def header_key(cell: str) -> str:
    return _HEADER_STRIP.sub("", unicodedata.normalize("NFKC", cell).lower())


@dataclass(frozen=True)
class HeaderClass:
    name: str
    # Japanese (and mixed) keywords matched as substrings of the header key.
    contains: tuple[str, ...] = ()
    # Keywords that must be the whole header key (single characters like 姓/名 would
    # otherwise match 会社名, 商品名...).
    exact: tuple[str, ...] = ()
    # English words matched on the lower-cased header with ASCII word boundaries.
    english: tuple[str, ...] = ()
    _contains: tuple[str, ...] = field(default=(), repr=False, compare=False)
    _exact: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    _english: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_contains", tuple(header_key(w) for w in self.contains))
        object.__setattr__(self, "_exact", frozenset(header_key(w) for w in self.exact))
        if self.english:
            words = "|".join(
                re.escape(w).replace(r"\ ", r"[\s_\-]*")
                for w in sorted(self.english, key=len, reverse=True)
            )
            object.__setattr__(
                self, "_english", re.compile(rf"(?<![a-z])(?:{words})s?(?![a-z])")
            )

    def matches(self, key: str, lowered: str) -> bool:
        if key in self._exact or any(k in key for k in self._contains):
            return True
        return self._english is not None and self._english.search(lowered) is not None


# Order matters: the first class that matches wins, so "メールアドレス" is email (not
# address) and "緊急連絡先電話" is phone.
HEADER_CLASSES: tuple[HeaderClass, ...] = (
    HeaderClass(
        "email",
        contains=("メール", "メアド", "eメール", "電子メール", "email", "mailaddress"),
        exact=("mail",),
        english=("e-mail", "email", "mail address", "mail"),
    ),
    HeaderClass(
        "birth_date",
        contains=("生年月日", "誕生日", "生まれ", "年齢"),
        english=("birth", "birthday", "birthdate", "date of birth", "dob", "age"),
    ),
    HeaderClass(
        "phone",
        contains=("電話", "携帯", "連絡先", "ファックス", "ファクス"),
        english=("phone", "telephone", "tel", "mobile", "cell", "cellphone", "fax"),
    ),
    HeaderClass(
        "id",
        contains=(
            "マイナンバー", "個人番号", "社員番号", "従業員番号", "職員番号", "会員番号",
            "顧客番号", "保険証", "被保険者", "免許証", "運転免許", "パスポート", "旅券",
            "基礎年金番号", "口座番号",
        ),
        english=(
            "my number", "passport", "employee id", "employee number", "member id",
            "customer id", "ssn", "social security", "national id", "license number",
            "account number",
        ),
    ),
    HeaderClass(
        "address",
        contains=(
            "住所", "所在地", "郵便番号", "〒", "都道府県", "市区町村", "番地", "町名",
            "建物名", "送付先", "届け先",
        ),
        english=("address", "zip", "zip code", "postal", "postcode", "street", "city"),
    ),
    HeaderClass(
        "sensitive",
        contains=(
            "性別", "病歴", "病名", "既往歴", "診断", "健康", "血液型", "国籍", "宗教",
            "本籍", "障害", "犯罪", "前科", "信条", "人種",
        ),
        english=(
            "gender", "sex", "religion", "nationality", "diagnosis", "medical",
            "disability", "blood type", "ethnicity",
        ),
    ),
    HeaderClass(
        "name",
        contains=(
            "氏名", "名前", "姓名", "フリガナ", "ふりがな", "担当者名", "漢字氏名",
        ),
        exact=("姓", "名", "セイ", "メイ", "カナ", "かな", "シメイ"),
        english=(
            "name", "full name", "first name", "last name", "given name", "family name",
            "middle name", "surname", "forename", "firstname", "lastname", "fullname",
            "customer name", "contact name", "member name", "employee name", "kana",
        ),
    ),
)

# English "name" alone is too wide as a substring ("company name", "file name",
# "product name"); these qualifiers disqualify a header that only matched "name".
NOT_PERSON_NAME = re.compile(
    r"(?<![a-z])(?:company|corporate|product|item|file|host|domain|user|account|project|"
    r"shop|store|brand|model|department|dept|organization|organisation|org|bank|branch|"
    r"sheet|table|field|column|server|service|plan)[\s_\-]*name"
)
# Same idea in Japanese: 会社名, 商品名 end in 名 but are not people.
NOT_PERSON_NAME_JA: tuple[str, ...] = (
    "会社名", "法人名", "商品名", "品名", "部署名", "店舗名", "件名", "ファイル名", "銀行名",
    "支店名", "製品名", "団体名", "施設名", "学校名",
)


def classify_header(cell: str) -> str | None:
    """The personal-data class of a header cell, or None."""
    key = header_key(cell)
    if not key or len(key) > 40:  # long cells are data or titles, not headers
        return None
    lowered = unicodedata.normalize("NFKC", cell).lower()
    for cls in HEADER_CLASSES:
        if cls.matches(key, lowered):
            if cls.name == "name" and (
                NOT_PERSON_NAME.search(lowered) or any(w in key for w in NOT_PERSON_NAME_JA)
            ):
                return None
            return cls.name
    return None
