"""Office mail of Example株式会社 as five kinds of sender write it: the sample corpus.

    .venv/bin/python -m tests.make_samples policies/samples   (writes these too)

Each message is built byte by byte, as its client sends it, so that the detectors see
what they see in an office: Outlook (ISO-2022-JP or UTF-8, multipart/alternative with
HTML, Thread-Index, RFC 2231 file names, Japanese reply headers), Thunderbird
(format=flowed, "… wrote:" quotes), iPhone Mail ("iPhoneから送信"), a copier's
scan-to-mail (ASCII subject, a PDF with a text layer as OCR leaves it) and a business
system's CP932 output (charset=Shift_JIS with NEC characters, a CP932 CSV).

Every date, Message-ID, boundary and archive timestamp is fixed: running the generator
twice writes the same bytes. CORPUS gives each file the action and rule the shipped
policy should give it, against the delivery history in HISTORY; NEEDS names the samples
whose expected verdict waits for a feature of another branch of issue 16.
"""

from __future__ import annotations

import base64
import io
import quopri
import zipfile
from email.header import Header
from urllib.parse import quote

from tests.inspect.fixtures import docx, pdf_file, xlsx

# --- the verdicts ------------------------------------------------------------------------

# file name → (expected action, expected winning rule); None = no rule matched
CORPUS: dict[str, tuple[str, str | None]] = {
    # the six default risks
    "13-outlook-card-to-partner.eml": ("approve", "personal-data-external"),
    "15-outlook-roster-docx.eml": ("approve", "personal-data-external"),
    "17-outlook-members-visible-to.eml": ("bcc", "many-visible-recipients"),
    "19-thunderbird-records-in-body.eml": ("approve", "personal-data-external"),
    # the only recipient asked us to stop (利用停止): dropped, so nothing is sent and the
    # sender's phone shows the refusal at once
    "22-iphone-opted-out.eml": ("reject", "opted-out-recipient"),
    # one of three recipients asked us to stop: taken out, the two others get the mail
    "28-outlook-opted-out-among-three.eml": ("drop", "opted-out-recipient"),
    "23-iphone-new-gmail-address.eml": ("delay", "first-time-private-address"),
    "24-copier-ricoh-roster-pdf.eml": ("approve", "personal-data-external"),
    "25-copier-canon-my-number-pdf.eml": ("reject", "my-number-external"),
    "27-cp932-shipping-notice-csv.eml": ("approve", "personal-data-external"),
    # ordinary office mail that must pass
    "14-outlook-reply-disclaimer.eml": ("pass", None),
    "16-outlook-branch-offices.eml": ("pass", None),
    "18-outlook-signature-private.eml": ("pass", None),
    "20-thunderbird-reply-customer.eml": ("pass", None),
    "21-thunderbird-plan-to-warehouse.eml": ("pass", None),
    "26-cp932-invoice-csv.eml": ("pass", None),
}

# samples whose expected verdict needs a feature not merged yet: "helper/feature"
NEEDS: dict[str, str] = {}

# The delivery history the verdicts assume (`guard domains import` and delivered
# addresses): the company has mailed its customers and private Gmail addresses before.
HISTORY_DOMAINS = ["sakura-shoji.example", "midori-kogyo.example", "hikari-realty.example",
                   "gmail.com", "yahoo.co.jp", "example.com"]
MEMBERS = ["k.yamamoto.1975@gmail.com", "mika.inoue@yahoo.co.jp", "h.kimura.0403@gmail.com",
           "s.hayashi@gmail.com", "yuko.shimizu@gmail.com", "t.mori88@yahoo.co.jp"]
PRIVATE_KNOWN = "yamamoto.kenji@gmail.com"
HISTORY_ADDRESSES = [*MEMBERS, PRIVATE_KNOWN, "kato@sakura-shoji.example"]

# one client per shape, the one the running-guard test sends
E2E = ["13-outlook-card-to-partner.eml", "20-thunderbird-reply-customer.eml",
       "22-iphone-opted-out.eml", "25-copier-canon-my-number-pdf.eml",
       "26-cp932-invoice-csv.eml"]

# --- building blocks ------------------------------------------------------------------

CRLF = "\r\n"
STAMP = (2026, 11, 24, 9, 30, 0)


def _b64(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return CRLF.join(text[i:i + 76] for i in range(0, len(text), 76)) + CRLF


def _qp(data: bytes) -> str:
    # encoded on LF lines (quopri would keep a CR as a bare byte), sent on CRLF ones
    return quopri.encodestring(data.replace(b"\r\n", b"\n")).decode("ascii").replace(
        "\n", CRLF)


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", CRLF)


def _word(text: str, charset: str = "iso-2022-jp") -> str:
    """An RFC 2047 encoded word, or the text itself when it is ASCII."""
    return text if text.isascii() else Header(text, charset).encode(linesep=CRLF)


def _headers(fields: list[tuple[str, str]]) -> bytes:
    return "".join(f"{k}: {v}{CRLF}" for k, v in fields).encode("ascii")


def _part(content_type: str, body: bytes, cte: str, extra: list[tuple[str, str]] = ()
          ) -> bytes:
    head = [("Content-Type", content_type), ("Content-Transfer-Encoding", cte), *extra]
    return _headers(head) + CRLF.encode() + body


def _multipart(subtype: str, boundary: str, parts: list[bytes], preamble: str = "") -> bytes:
    out = _headers([("Content-Type", f'multipart/{subtype};{CRLF}\tboundary="{boundary}"')])
    out += CRLF.encode() + preamble.encode("ascii")
    for p in parts:
        out += f"--{boundary}{CRLF}".encode() + p
        if not p.endswith(b"\r\n"):
            out += CRLF.encode()
    return out + f"--{boundary}--{CRLF}".encode()


def _attachment(name: str, data: bytes, ctype: str, outlook: bool = False) -> bytes:
    """A base64 attachment; its Japanese name in RFC 2231 (and RFC 2047 in Content-Type,
    as Outlook writes both for older readers)."""
    star = "filename*=utf-8''" + quote(name, safe="")
    if name.isascii():
        disp, cname = f'attachment; filename="{name}"', f'{ctype}; name="{name}"'
    elif outlook:
        disp = f"attachment;{CRLF}\t{star}"
        cname = f'{ctype};{CRLF}\tname="{_word(name)}"'
    else:
        disp, cname = f"attachment;{CRLF}\t{star}", f"{ctype};{CRLF}\tname*=utf-8''" + quote(name)
    return _part(cname, _b64(data).encode(), "base64", [("Content-Disposition", disp)])


def stable_zip(data: bytes) -> bytes:
    """An OOXML package rewritten with fixed member timestamps and document dates, so the
    generated attachment is the same on every run."""
    import re

    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            blob = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                blob = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", b"2026-11-24T00:30:00Z", blob)
            z.writestr(zipfile.ZipInfo(info.filename, date_time=STAMP), blob)
    return out.getvalue()


def cjk_pdf(lines: list[str]) -> bytes:
    """A one-page PDF whose text layer holds Japanese: a Type0 font (Identity-H, CID =
    the UTF-16 code unit) with a ToUnicode map, as an OCR'd scan carries its text."""
    hexlines = ["<" + line.encode("utf-16-be").hex().upper() + "> Tj T*" for line in lines]
    stream = ("BT\n/F1 10 Tf\n40 800 Td\n14 TL\n" + "\n".join(hexlines) + "\nET").encode()
    ranges = "\n".join(f"<{h:02X}00> <{h:02X}FF> <{h:02X}00>" for h in range(0x20, 0xA0))
    ranges += "\n" + "\n".join(f"<{h:02X}00> <{h:02X}FF> <{h:02X}00>" for h in range(0xFF, 0x100))
    cmap = ("/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
            "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
            "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
            "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
            f"{ranges.count(chr(10)) + 1} beginbfrange\n{ranges}\nendbfrange\n"
            "endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend").encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type0 /BaseFont /MS-Gothic /Encoding /Identity-H "
        b"/DescendantFonts [6 0 R] /ToUnicode 7 0 R >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /MS-Gothic /CIDSystemInfo "
        b"<< /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /FontDescriptor 8 0 R "
        b"/DW 1000 /CIDToGIDMap /Identity >>",
        b"<< /Length %d >>\nstream\n" % len(cmap) + cmap + b"\nendstream",
        b"<< /Type /FontDescriptor /FontName /MS-Gothic /Flags 4 /FontBBox [0 -141 1000 859] "
        b"/ItalicAngle 0 /Ascent 859 /Descent -141 /CapHeight 859 /StemV 80 >>",
    ]
    return pdf_file(objs)


# --- the company and the people in its mail ----------------------------------------------

SIGNATURE = """\
--
Example株式会社 営業部 第一営業課
佐藤 一郎 (Ichiro Sato)
〒100-0005 東京都千代田区丸の内1-1-1 Exampleビル8F
TEL: 03-1234-5678 / FAX: 03-1234-5679
携帯: 090-1234-5678
E-mail: sato@example.co.jp
https://www.example.co.jp/
"""

BRANCHES = [
    ("札幌支店", "060-0001", "北海道札幌市中央区北一条西2-1", "011-231-0101", "011-231-0102"),
    ("仙台支店", "980-0811", "宮城県仙台市青葉区一番町3-3-1", "022-261-0201", "022-261-0202"),
    ("さいたま営業所", "330-0854", "埼玉県さいたま市大宮区桜木町1-7-5", "048-641-0301",
     "048-641-0302"),
    ("本社", "100-0005", "東京都千代田区丸の内1-1-1", "03-1234-5678", "03-1234-5679"),
    ("横浜支店", "220-0011", "神奈川県横浜市西区高島2-19-12", "045-451-0501", "045-451-0502"),
    ("新潟営業所", "950-0087", "新潟県新潟市中央区東大通1-2-23", "025-241-0601", "025-241-0602"),
    ("名古屋支店", "450-0002", "愛知県名古屋市中村区名駅4-6-17", "052-581-0701", "052-581-0702"),
    ("大阪支店", "530-0001", "大阪府大阪市北区梅田3-1-3", "06-6345-0801", "06-6345-0802"),
    ("神戸営業所", "650-0021", "兵庫県神戸市中央区三宮町1-9-1", "078-391-0901", "078-391-0902"),
    ("広島支店", "730-0011", "広島県広島市中区基町6-78", "082-221-1001", "082-221-1002"),
    ("高松営業所", "760-0019", "香川県高松市サンポート2-1", "087-851-1101", "087-851-1102"),
    ("福岡支店", "812-0012", "福岡県福岡市博多区博多駅中央街1-1", "092-431-1201", "092-431-1202"),
]

SURNAMES = ["山本", "中村", "小林", "加藤", "吉田", "山田", "佐々木", "山口", "松本", "井上",
            "木村", "林", "斎藤", "清水", "山崎"]
GIVEN = ["健一", "美咲", "大輔", "陽子", "翔太", "由美", "拓也", "恵子", "直樹", "彩",
         "誠", "真由美", "亮", "智子", "浩二"]
CITIES = ["東京都世田谷区桜新町2-", "神奈川県川崎市中原区小杉町1-", "埼玉県川口市栄町3-",
          "千葉県船橋市本町4-", "東京都杉並区荻窪5-"]


def people(n: int) -> list[tuple[str, str, str, str]]:
    """(氏名, 〒, 住所, 携帯) of n made-up private persons."""
    return [(f"{SURNAMES[i % 15]} {GIVEN[(i * 7) % 15]}",
             f"{154 + i:03d}-00{i % 10}{(i * 3) % 10}",
             f"{CITIES[i % 5]}{i + 2}-{(i * 5) % 9 + 1}",
             f"090-{2345 + i * 111:04d}-{6789 - i * 37:04d}")
            for i in range(n)]


# the signature separator of RFC 3676 (dash dash space), as Thunderbird writes it
SIG_SEP = "-- "

PARTNER_DISCLAIMER = """\
CONFIDENTIALITY NOTICE: This e-mail message, including any attachments, is for the sole
use of the intended recipient(s) and may contain confidential and privileged information.
Any unauthorized review, use, disclosure or distribution is prohibited. If you are not the
intended recipient, please contact the sender by reply e-mail and destroy all copies of the
original message.
"""

# --- Outlook (Windows, Japanese) ----------------------------------------------------------


def _outlook_head(sender: str, to: str, subject: str, date: str, msgid: str, index: str,
                  cc: str = "") -> list[tuple[str, str]]:
    fields = [("From", sender), ("To", to)]
    if cc:
        fields.append(("Cc", cc))
    return [*fields, ("Subject", _word(subject)), ("Date", date),
            ("Message-ID", f"<{msgid}@example.co.jp>"), ("MIME-Version", "1.0"),
            ("X-Mailer", "Microsoft Outlook 16.0"), ("Thread-Index", index),
            ("Content-Language", "ja")]


def _outlook_html(text: str) -> str:
    paras = "".join(f'<p class="MsoNormal">{ln or "<o:p>&nbsp;</o:p>"}<o:p></o:p></p>\r\n'
                    for ln in text.split("\n"))
    return ('<html xmlns:o="urn:schemas-microsoft-com:office:office" '
            'xmlns:w="urn:schemas-microsoft-com:office:word" '
            'xmlns="http://www.w3.org/TR/REC-html40">\r\n<head>\r\n'
            '<meta http-equiv="Content-Type" content="text/html; charset=iso-2022-jp">\r\n'
            '<meta name="Generator" content="Microsoft Word 15 (filtered medium)">\r\n'
            '</head>\r\n<body lang="JA" link="#0563C1" vlink="#954F72" '
            'style="word-wrap:break-word;text-justify-trim:punctuation">\r\n'
            f'<div class="WordSection1">\r\n{paras}</div>\r\n</body>\r\n</html>\r\n')


def _outlook_alternative(text: str, boundary: str, html: str | None = None) -> bytes:
    """text/plain and text/html, both ISO-2022-JP, as Japanese Outlook sends them."""
    plain = _part('text/plain; charset="iso-2022-jp"',
                  _crlf(text).encode("iso-2022-jp"), "7bit")
    html_bytes = _crlf(html if html is not None else _outlook_html(text)).encode("iso-2022-jp")
    rich = _part('text/html; charset="iso-2022-jp"', _qp(html_bytes).encode(),
                 "quoted-printable")
    return _multipart("alternative", boundary, [plain, rich])


def outlook_card() -> bytes:
    text = f"""\
株式会社パートナー物流
配送管理課 鈴木様

いつもお世話になっております。Example株式会社の佐藤です。

先日お電話でご相談した代引き不可のお客様について、代金はカード決済で
お受けすることになりました。決済代行へのご登録をお願いいたします。

ご注文者: 高橋 美穂 様
クレジットカード番号: 4980 0200 1234 5678
有効期限: 08/28
セキュリティコード: 123

お手数をおかけしますが、よろしくお願いいたします。

{SIGNATURE}"""
    head = _outlook_head(f"{_word('佐藤 一郎')} <sato@example.co.jp>",
                         f"{_word('鈴木 次郎')} <suzuki@partner-logistics.example>",
                         "カード決済のご登録のお願い", "Tue, 24 Nov 2026 10:12:40 +0900",
                         "000101db5e2a$3c5a1f20$b50e5d60$", "AQHbXiozrL2cwWm9kEOHjW3s4lH1Ag==")
    return _headers(head) + _outlook_alternative(text, "----=_NextPart_000_0001_01DB5E2A.3C5A1F20")


def outlook_reply_disclaimer() -> bytes:
    text = f"""\
鈴木様

承知しました。12月の配送枠、そのままでお願いいたします。

佐藤

-----Original Message-----
差出人: 鈴木 次郎 <suzuki@partner-logistics.example>
送信日時: 2026年11月24日 15:32
宛先: 佐藤 一郎 <sato@example.co.jp>
件名: 12月の配送枠について

佐藤様

いつもお世話になっております。パートナー物流の鈴木です。
12月の配送枠は例年どおり週3便で確保しております。変更があればお知らせください。

鈴木 次郎
株式会社パートナー物流 配送管理課

{PARTNER_DISCLAIMER}"""
    head = _outlook_head(f"{_word('佐藤 一郎')} <sato@example.co.jp>",
                         f"{_word('鈴木 次郎')} <suzuki@partner-logistics.example>",
                         "RE: 12月の配送枠について", "Tue, 24 Nov 2026 16:05:11 +0900",
                         "000201db5e4f$8a1b2c30$9e518490$",
                         "AQHbXk+KhdzU3e4uTk2JX1o8b2z3SrEgAAAB")
    head.append(("In-Reply-To", "<TY3PR01MB1234567@TY3PR01MB1234.jpnprd01.prod.outlook.com>"))
    return _headers(head) + _outlook_alternative(text, "----=_NextPart_000_0002_01DB5E4F.8A1B2C30")


def outlook_roster_docx() -> bytes:
    rows = [["No.", "氏名", "所属", "携帯電話", "メールアドレス"]] + [
        [str(i + 1), name, "Example株式会社 物流部", mobile, f"member{i + 1:02d}@gmail.com"]
        for i, (name, _, _, mobile) in enumerate(people(12))]
    doc = stable_zip(docx(["物流フェア2026 出展スタッフ名簿", "当日の緊急連絡先です。"], rows))
    text = f"""\
デザイン事務所合同会社
渡辺様

お世話になっております。Example株式会社の佐藤です。
物流フェアのブース設営にあたり、当日のスタッフ名簿をお送りします。
入館証の作成にお使いください。

{SIGNATURE}"""
    head = _outlook_head(f"{_word('佐藤 一郎')} <sato@example.co.jp>",
                         "watanabe@design-office.example", "物流フェア スタッフ名簿の送付",
                         "Tue, 24 Nov 2026 11:20:05 +0900", "000301db5e33$1f2e3d40$5d6e7f80$",
                         "AQHbXjMfLj1A5W5/gH6p2yqYbn0Tcg==")
    mixed = _multipart("mixed", "----=_NextPart_000_0003_01DB5E33.1F2E3D40", [
        _outlook_alternative(text, "----=_NextPart_001_0004_01DB5E33.1F2E3D40"),
        _attachment("出展スタッフ名簿.docx", doc, "application/vnd.openxmlformats-"
                    "officedocument.wordprocessingml.document", outlook=True)])
    return _headers([*head, ("X-MS-Has-Attach", "yes")]) + mixed


def outlook_branch_offices() -> bytes:
    table = "\n".join("\t".join((b[0], f"〒{b[1]}", b[2], b[3], b[4])) for b in BRANCHES)
    text = f"""\
さくら商事株式会社
購買部 加藤様

いつもお世話になっております。Example株式会社の佐藤です。
12月1日より弊社の拠点の連絡先が下記のとおりとなります。
お近くの拠点へお問い合わせください。

拠点\t郵便番号\t住所\t電話\tFAX
{table}

今後ともよろしくお願いいたします。

{SIGNATURE}"""
    cells = "".join(
        "<tr>" + "".join(f"<td>{c}</td>" for c in (b[0], f"〒{b[1]}", b[2], b[3], b[4]))
        + "</tr>\n" for b in BRANCHES)
    html = _outlook_html(text.split("拠点\t")[0]).replace(
        "</div>", '<table class="MsoTableGrid" border="1">\n<tr><th>拠点</th><th>郵便番号'
        f"</th><th>住所</th><th>電話</th><th>FAX</th></tr>\n{cells}</table>\n</div>")
    head = _outlook_head(f"{_word('佐藤 一郎')} <sato@example.co.jp>",
                         f"{_word('加藤 様')} <kato@sakura-shoji.example>",
                         "【ご案内】拠点連絡先一覧（12月1日より）",
                         "Tue, 24 Nov 2026 13:45:00 +0900",
                         "000401db5e47$5a6b7c80$0e1f2a30$", "AQHbXkdaa3yA2e1PqU6mJf3oU0Cz1w==")
    return _headers(head) + _outlook_alternative(
        text, "----=_NextPart_000_0005_01DB5E47.5A6B7C80", html)


def outlook_members_visible() -> bytes:
    text = f"""\
会員の皆様

いつもExampleの配送サービスをご利用いただきありがとうございます。
年末年始の集荷・配達スケジュールをお知らせいたします。

  12月29日(火)〜1月3日(日): 集荷休止
  1月4日(月): 通常どおり

ご不明な点は担当までお問い合わせください。

{SIGNATURE}"""
    head = _outlook_head(f"{_word('佐藤 一郎')} <sato@example.co.jp>", ", ".join(MEMBERS[:4]),
                         "年末年始の集荷スケジュールのお知らせ", "Wed, 25 Nov 2026 09:05:00 +0900",
                         "000501db5f05$2b3c4d50$6e7f8090$", "AQHbXwUrPE1QbqCQ3kN2hm9b6Ck0Ug==",
                         cc=", ".join(MEMBERS[4:]))
    return _headers(head) + _outlook_alternative(text, "----=_NextPart_000_0006_01DB5F05.2B3C4D50")


def outlook_signature_private() -> bytes:
    text = f"""\
山本 健二 様

お問い合わせいただきありがとうございます。Example株式会社の佐藤です。
ご依頼のお荷物は本日17時に出荷いたしました。明日午前中にお届けの予定です。

お届けまで今しばらくお待ちください。

{SIGNATURE}"""
    head = _outlook_head(f"{_word('佐藤 一郎')} <sato@example.co.jp>",
                         f"{_word('山本 健二')} <{PRIVATE_KNOWN}>", "RE: 荷物の到着日について",
                         "Wed, 25 Nov 2026 17:20:30 +0900", "000601db5f4a$7c8d9ea0$b1c2d3e4$",
                         "AQHbX0p8jZ6gscLT5E5d3m1vZ0QyAw==")
    # Outlook set to send UTF-8 (File > Options > Advanced): the same shape in UTF-8
    plain = _part('text/plain; charset="utf-8"', _b64(_crlf(text).encode()).encode(), "base64")
    html = _outlook_html(text).replace("iso-2022-jp", "utf-8")
    rich = _part('text/html; charset="utf-8"', _qp(_crlf(html).encode()).encode(),
                 "quoted-printable")
    return _headers(head) + _multipart(
        "alternative", "----=_NextPart_000_0007_01DB5F4A.7C8D9EA0", [plain, rich])


def outlook_opted_out_among_three() -> bytes:
    text = f"""\
各位

いつもお世話になっております。Example株式会社の佐藤です。
12月の定例説明会は、12月10日(木) 14時から本社8階会議室で行います。
ご出席の可否を12月4日までにお知らせください。

{SIGNATURE}"""
    to = ", ".join([f"{_word('加藤 真一')} <kato@sakura-shoji.example>",
                    f"{_word('山田 太郎')} <yamada.taro@example.com>",
                    f"{_word('鈴木 花子')} <suzuki.hanako@example.com>"])
    head = _outlook_head(f"{_word('佐藤 一郎')} <sato@example.co.jp>", to,
                         "12月の定例説明会のご案内", "Thu, 26 Nov 2026 11:02:15 +0900",
                         "000801db5fd1$1a2b3c40$5d6e7f80$", "AQHbX9EaKzxAXW5/gBjD4k5n2a0Qxg==")
    return _headers(head) + _outlook_alternative(text, "----=_NextPart_000_0008_01DB5FD1.1A2B3C40")


# --- Thunderbird --------------------------------------------------------------------------

def _flowed(text: str) -> bytes:
    """format=flowed (RFC 3676) as Thunderbird writes it: a line longer than 72 columns
    (a full-width character is two) is broken after its last space within them, the
    space kept at the end of the line; a line without such a space stays whole."""
    out = []
    for line in text.split("\n"):
        while not line.startswith(">"):
            cols, cut = 0, -1
            for i, ch in enumerate(line):
                cols += 1 if ch.isascii() else 2
                if cols > 72:
                    break
                if ch == " ":
                    cut = i
            if cols <= 72 or cut <= 0:
                break
            out.append(line[:cut + 1])
            line = line[cut + 1:]
        out.append(line)
    return CRLF.join(out).encode()


def _thunderbird(to: str, subject: str, date: str, msgid: str, body: str,
                 attachments: list[bytes] = (), refs: str = "") -> bytes:
    head = [("Message-ID", f"<{msgid}@example.co.jp>"), ("Date", date), ("MIME-Version", "1.0"),
            ("User-Agent", "Mozilla Thunderbird"), ("Content-Language", "ja"),
            ("To", to), ("From", f"{_word('佐藤 一郎', 'utf-8')} <sato@example.co.jp>"),
            ("Subject", _word(subject, "utf-8"))]
    if refs:
        head += [("References", refs), ("In-Reply-To", refs)]
    text = _part("text/plain; charset=UTF-8; format=flowed", _flowed(body), "8bit")
    if not attachments:
        return _headers(head) + text
    return _headers(head) + _multipart("mixed", f"------------{msgid[:24]}",
                                       [text, *attachments],
                                       "This is a multi-part message in MIME format.\r\n")


def thunderbird_records() -> bytes:
    rows = "\n".join("\t".join(p) for p in people(12))
    body = f"""\
パートナー物流 鈴木様

お世話になっております。佐藤です。
明日の再配達分のお届け先を貼り付けます。よろしくお願いします。

氏名\t〒\t住所\t携帯
{rows}

{SIG_SEP}
佐藤 一郎 / Example株式会社 営業部
"""
    return _thunderbird("suzuki@partner-logistics.example", "明日の再配達分",
                        "Wed, 25 Nov 2026 18:02:11 +0900", "7d1f3a52-4c1e-4b8a-9f06-2e5c1d8a0b11",
                        body)


def thunderbird_reply_customer() -> bytes:
    body = f"""\
加藤様

ありがとうございます。では12月3日(木)14時に伺います。

佐藤

On 2026/11/24 18:40, 加藤 真一 wrote:
> 佐藤様
>
> お世話になっております。さくら商事の加藤です。
> 来月の定例会ですが、12月3日(木)14時はいかがでしょうか。
>
> --
> さくら商事株式会社 購買部 加藤 真一
> 〒530-0011 大阪府大阪市北区大深町4-20
> TEL 06-6359-1234

{SIG_SEP}
佐藤 一郎 / Example株式会社 営業部
TEL 03-1234-5678
"""
    return _thunderbird(f"{_word('加藤 真一', 'utf-8')} <kato@sakura-shoji.example>",
                        "Re: 12月の定例会", "Wed, 25 Nov 2026 08:55:47 +0900",
                        "0b2e6c1a-8f3d-4e55-a1c9-7d40e2f9b6a3", body,
                        refs="<c1f2e3d4-5a6b-7c8d-9e0f-a1b2c3d4e5f6@sakura-shoji.example>")


def thunderbird_plan_to_warehouse() -> bytes:
    plan = stable_zip(xlsx([["さくら商事株式会社 様 12月出荷計画"],
                            ["出荷日", "品名", "数量", "配送先"],
                            ["2026/12/01", "業務用食器セット", 120, "さくら商事 大阪物流センター"],
                            ["2026/12/08", "業務用食器セット", 80, "さくら商事 大阪物流センター"],
                            ["2026/12/15", "保冷ボックス", 45, "さくら商事 名古屋倉庫"]],
                           sheet="12月"))
    body = f"""\
パートナー物流 鈴木様

さくら商事様の12月の出荷計画をお送りします。
倉庫の作業枠の確保をお願いいたします。

{SIG_SEP}
佐藤 一郎 / Example株式会社 営業部
"""
    att = _attachment("さくら商事_12月出荷計画.xlsx", plan, "application/vnd.openxmlformats-"
                      "officedocument.spreadsheetml.sheet")
    return _thunderbird("suzuki@partner-logistics.example", "12月出荷計画（さくら商事様分）",
                        "Wed, 25 Nov 2026 10:14:02 +0900", "5e8a1c3f-2b7d-4f90-8e16-c4a9d3b7f2e0",
                        body, [att])


# --- iPhone Mail ---------------------------------------------------------------------------

def _iphone(to: str, subject: str, date: str, msgid: str, body: str) -> bytes:
    head = [("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Transfer-Encoding", "base64"),
            ("From", f"{_word('佐藤 一郎', 'utf-8')} <sato@example.co.jp>"),
            ("Mime-Version", "1.0 (1.0)"), ("Date", date), ("Subject", _word(subject, "utf-8")),
            ("Message-Id", f"<{msgid}@example.co.jp>"), ("To", to),
            ("X-Mailer", "iPhone Mail (22B91)")]
    text = _crlf(body + "\niPhoneから送信\n").encode()
    return _headers(head) + CRLF.encode() + _b64(text).encode()


def iphone_opted_out() -> bytes:
    return _iphone("yamada.taro@example.com", "先日のお見積りの件",
                   "Wed, 25 Nov 2026 12:31:09 +0900", "6C0E8F2B-91A4-4D3E-B7C5-2F1A9E0D4B63",
                   "山田様\n\n外出先から失礼します。先日のお見積りですが、"
                   "来週改めてご連絡いたします。\n\n佐藤\n\n")


def iphone_new_gmail() -> bytes:
    return _iphone("ryo.nakamura.0612@gmail.com", "資料の件",
                   "Wed, 25 Nov 2026 19:48:55 +0900", "A3D91F7C-5E02-4B8F-9C61-D07E2B4A1F95",
                   "中村さん\n\n今日の打ち合わせの資料、明日こちらのアドレスにお送りします。\n\n"
                   "佐藤\n\n")


# --- copiers: scan to mail -----------------------------------------------------------------

def copier_ricoh_roster() -> bytes:
    lines = ["2026年度 健康診断 受診者名簿", "氏名　〒　住所　携帯"] + [
        "　".join(p) for p in people(14)]
    pdf = cjk_pdf(lines)
    body = ('This E-mail was sent from "RICOH IM C3000" (IM C3000).\r\n\r\n'
            "Scan Date: 2026.11.26 09:15:32 (+0900)\r\n"
            "Queries to: scan-3f@example.co.jp\r\n")
    head = [("From", "scan-3f@example.co.jp"), ("To", "kenshin@payroll-service.example"),
            ("Subject", "Scanned from RICOH IM C3000"), ("Date", "Thu, 26 Nov 2026 09:15:34 +0900"),
            ("Message-Id", "<20261126091534.3F01.scan-3f@example.co.jp>"),
            ("X-Mailer", "RICOH IM C3000"), ("MIME-Version", "1.0")]
    return _headers(head) + _multipart("mixed", "RICOH_20261126091534_3F01", [
        _part("text/plain; charset=us-ascii", body.encode(), "7bit"),
        _attachment("20261126091532.pdf", pdf, "application/pdf")])


def copier_canon_my_number() -> bytes:
    pdf = cjk_pdf(["扶養控除等(異動)申告書", "提出者 氏名 吉田 陽子", "個人番号（マイナンバー）",
                   "1234 5678 9018", "住所 東京都杉並区荻窪5-12-3"])
    head = [("From", "iR-ADV C5535 <canon-2f@example.co.jp>"),
            ("To", "tetsuzuki@payroll-service.example"), ("Subject", "Attached Image"),
            ("Date", "Thu, 26 Nov 2026 14:02:10 +0900"),
            ("Message-ID", "<000a01d2b3c4$0e1f2a3b$canon-2f@example.co.jp>"),
            ("X-Mailer", "Canon iR-ADV C5535"), ("MIME-Version", "1.0")]
    return _headers(head) + _multipart("mixed", "--CanonBoundary_20261126140210", [
        _part("text/plain; charset=us-ascii", b"\r\n", "7bit"),
        _attachment("20261126140208.pdf", pdf, "application/pdf")])


# --- a business system's CP932 output ---------------------------------------------------

def _system(sender: str, to: str, subject: str, date: str, msgid: str, body: str,
            csv_name: str, csv: str) -> bytes:
    head = [("From", sender), ("To", to), ("Subject", _word(subject, "shift_jis")
                                               if subject.isascii() else
                                               "=?Shift_JIS?B?" + base64.b64encode(
                                                   subject.encode("cp932")).decode() + "?="),
            ("Date", date), ("Message-ID", f"<{msgid}@erp.example.co.jp>"),
            ("MIME-Version", "1.0"), ("X-Mailer", "KIKAN-ERP Mailer 3.2")]
    text = _part("text/plain; charset=Shift_JIS", _crlf(body).encode("cp932"), "8bit")
    att = _part(f'text/csv; charset=Shift_JIS; name="{csv_name}"',
                _b64(_crlf(csv).encode("cp932")).encode(), "base64",
                [("Content-Disposition", f'attachment; filename="{csv_name}"')])
    return _headers(head) + _multipart("mixed", f"=_ERP_{msgid}", [text, att])


INVOICE_LINES = [("業務用食器セット", 120, 3800), ("保冷ボックス ①大", 45, 5200),
                 ("緩衝材（ロール）", 30, 1500), ("配送料 ㈱パートナー物流扱い", 1, 48000)]


def system_invoice() -> bytes:
    rows = "\n".join(f"{n}\t{q}\t{p:,}\t{q * p:,}" for n, q, p in INVOICE_LINES)
    sub = sum(q * p for _, q, p in INVOICE_LINES)
    body = f"""\
さくら商事株式会社 御中

いつもお引き立ていただき誠にありがとうございます。
2026年11月分のご請求書を送付いたします。添付のCSVもご確認ください。

請求番号: INV-2026-11-0042
請求日: 2026年11月30日
お支払期限: 2026年12月31日

品名\t数量\t単価\t金額
{rows}

小計: {sub:,}円
消費税(10%): {sub // 10:,}円
ご請求金額: {sub + sub // 10:,}円

お振込先: ひまわり銀行 丸の内支店 普通 1234567 エグザンプル(カ
Example㈱ 登録番号 T1234567890123
〒100-0005 東京都千代田区丸の内1-1-1 TEL 03-1234-5678

※本メールは基幹システムから自動送信しています。
"""
    csv = "請求番号,品名,数量,単価,金額\n" + "\n".join(
        f"INV-2026-11-0042,{n},{q},{p},{q * p}" for n, q, p in INVOICE_LINES) + "\n"
    return _system("billing@example.co.jp", "kato@sakura-shoji.example",
                   "【Example㈱】ご請求書 INV-2026-11-0042", "Mon, 30 Nov 2026 06:00:00 +0900",
                   "INV2026110042", body, "INV-2026-11-0042.csv", csv)


def system_shipping_notice() -> bytes:
    ppl = people(15)
    body = """\
株式会社パートナー物流 御中

本日の出荷予定を送付いたします（15件）。添付のCSVをご確認ください。

※本メールは基幹システムから自動送信しています。
"""
    csv = "伝票番号,お届け先氏名,郵便番号,住所,電話番号,品名,個数\n" + "\n".join(
        f"SHP26112700{i:02d},{n},{z},{a},{t},保冷ボックス①,1" for i, (n, z, a, t) in enumerate(ppl)
    ) + "\n"
    return _system("shukka@example.co.jp", "center@partner-logistics.example",
                   "【出荷予定】2026/11/27 15件", "Fri, 27 Nov 2026 07:00:00 +0900",
                   "SHP20261127", body, "shipping_20261127.csv", csv)


def build() -> dict[str, bytes]:
    return {
        "13-outlook-card-to-partner.eml": outlook_card(),
        "14-outlook-reply-disclaimer.eml": outlook_reply_disclaimer(),
        "15-outlook-roster-docx.eml": outlook_roster_docx(),
        "16-outlook-branch-offices.eml": outlook_branch_offices(),
        "17-outlook-members-visible-to.eml": outlook_members_visible(),
        "18-outlook-signature-private.eml": outlook_signature_private(),
        "19-thunderbird-records-in-body.eml": thunderbird_records(),
        "20-thunderbird-reply-customer.eml": thunderbird_reply_customer(),
        "21-thunderbird-plan-to-warehouse.eml": thunderbird_plan_to_warehouse(),
        "22-iphone-opted-out.eml": iphone_opted_out(),
        "23-iphone-new-gmail-address.eml": iphone_new_gmail(),
        "24-copier-ricoh-roster-pdf.eml": copier_ricoh_roster(),
        "25-copier-canon-my-number-pdf.eml": copier_canon_my_number(),
        "26-cp932-invoice-csv.eml": system_invoice(),
        "27-cp932-shipping-notice-csv.eml": system_shipping_notice(),
        "28-outlook-opted-out-among-three.eml": outlook_opted_out_among_three(),
    }
