"""Japanese attachment names on the review page.

Messages shaped like each client writes them (Outlook: RFC 2047 inside quotes in
ISO-2022-JP; Thunderbird: RFC 2231 continuations; iPhone: utf-8''; old Japanese
clients: raw Shift_JIS bytes; a Shift_JIS label on an RFC 2231 value; a zip made by
Windows with CP932 member names and no UTF-8 flag), with NEC and IBM extension
characters (①, ㈱, 髙) that plain Shift_JIS / ISO-2022-JP codecs cannot decode. The
parsed MessageView and the page in Chromium must show the real names, each file once.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from guard.inspect.extract import extract_message
from guard.mail.message import parse_message
from guard.mail.textdecode import _jis_to_sjis
from tests.hold.conftest import ALICE, BOB, GuardThread, reason, verdict
from tests.hold.test_browser import ARTIFACTS, browser, pages  # noqa: F401
from tests.hold.test_review_web import notice_link
from tests.inspect.fixtures import RawEntry, raw_zip

NAME = "①見積書㈱髙橋.xlsx"  # NEC row 13 (①, ㈱) and an NEC-selected IBM kanji (髙)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def cp50220(text: str) -> bytes:
    """ISO-2022-JP as Windows writes it (CP50220): JIS pairs of the CP932 codes, so the
    NEC/IBM characters are in it, as Outlook sends them."""
    out = bytearray(b"\x1b$B")
    for ch in text:
        s1, s2 = ch.encode("cp932")
        if s1 >= 0xE0:
            s1 -= 0x40
        j1 = (s1 - 0x81) * 2 + 0x21
        if s2 >= 0x9F:
            j1, j2 = j1 + 1, s2 - 0x7E
        else:
            j2 = s2 - 0x1F - (1 if s2 >= 0x80 else 0)
        assert _jis_to_sjis(j1, j2) == ch.encode("cp932"), ch  # our own encoder is right
        out += bytes((j1, j2))
    return bytes(out) + b"\x1b(B"


def b_word(charset: str, data: bytes) -> str:
    return f"=?{charset}?B?{base64.b64encode(data).decode()}?="


def outlook(name: str) -> bytes:
    # two encoded words inside the quotes, the extension in the second
    stem, ext = name.rsplit(".", 1)
    words = f'{b_word("iso-2022-jp", cp50220(stem[:3]))} ' \
            f'{b_word("iso-2022-jp", cp50220(stem[3:]) + b"." + ext.encode())}'
    return (f'Content-Type: {XLSX};\r\n\tname="{words}"\r\n'
            f'Content-Description: {words}\r\n'
            f'Content-Disposition: attachment;\r\n\tfilename="{words}"; size=33;\r\n'
            '\tcreation-date="Sun, 06 Dec 2026 06:04:05 GMT"\r\n').encode()


def thunderbird(name: str, charset: str = "UTF-8") -> bytes:
    # continuations of 7 encoded bytes: segments end inside a character, as they may
    data = cp50220(name[:-5]) + name[-5:].encode() if charset == "ISO-2022-JP" \
        else name.encode()
    tokens = re.findall(r"%[0-9A-F]{2}|.", urllib.parse.quote(data))
    parts = ["".join(tokens[i:i + 7]) for i in range(0, len(tokens), 7)]
    lines = ";\r\n".join(f" filename*{i}*={charset + chr(39) * 2 if i == 0 else ''}{p}"
                         for i, p in enumerate(parts))
    return (f'Content-Type: {XLSX};\r\n name="{b_word(charset, data)}"\r\n'
            f"Content-Disposition: attachment;\r\n{lines}\r\n").encode()


def iphone(name: str) -> bytes:
    q = urllib.parse.quote(name.encode())
    return (f'Content-Type: {XLSX};\r\n\tname="{b_word("utf-8", name.encode())}"\r\n'
            f"Content-Disposition: attachment;\r\n\tfilename*=utf-8''{q}\r\n").encode()


def raw_shift_jis(name: str) -> bytes:
    sj = name.encode("cp932")
    return (f"Content-Type: {XLSX};\r\n name=\"".encode() + sj + b'"\r\n'
            b'Content-Disposition: attachment; filename="' + sj + b'"\r\n')


def rfc2231_shift_jis(name: str) -> bytes:
    q = urllib.parse.quote(name.encode("cp932"))
    return (f"Content-Type: {XLSX}\r\n"
            f"Content-Disposition: attachment; filename*=shift_jis'ja'{q}\r\n").encode()


CLIENTS: dict[str, Callable[[str], bytes]] = {
    "outlook": outlook, "thunderbird": thunderbird,
    "thunderbird-iso2022jp": lambda name: thunderbird(name, "ISO-2022-JP"), "iphone": iphone,
    "raw-shift_jis": raw_shift_jis, "rfc2231-shift_jis": rfc2231_shift_jis}


def message(tag: str, part_headers: bytes, payload: bytes) -> bytes:
    return (b"From: alice@example.co.jp\r\nTo: bob@example.net\r\n"
            b"Subject: =?UTF-8?B?" + base64.b64encode("見積書の送付".encode()) + b"?=\r\n"
            b"Message-ID: <names-" + tag.encode() + b"@example.co.jp>\r\n"
            b"X-Test-Hold: " + tag.encode() + b"\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            b"--b1\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
            + "添付します。\r\n".encode() +
            b"--b1\r\n" + part_headers + b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(payload).replace(b"\n", b"\r\n") + b"--b1--\r\n")


def hold_with_finding(g: GuardThread, tag: str, data: bytes, where: str) -> str:
    """Held with a finding in the file where the inspection puts it."""
    name = where.removeprefix("attachment:")
    v = verdict("confirm", language="ja", reasons=[reason(
        "pii.people_list", f"添付ファイル {name} に個人情報の一覧表", f"people list in {name}",
        [], where=where)])
    g.verdicts[tag] = (v, 3600)
    return g.send(data, [BOB])


def files_on_page(page: Any) -> tuple[list[str], list[str], list[str], list[str]]:
    """The attachment names listed, their sizes (read from the message itself), their
    findings, and the zip members listed."""
    return (page.locator("ul.files > li > .name").all_inner_texts(),
            page.locator("ul.files > li > .size").all_inner_texts(),
            page.locator("ul.files > li > .why").all_inner_texts(),
            page.locator("ul.files li.member").all_inner_texts())


@pytest.mark.parametrize("client", list(CLIENTS))
def test_client_shaped_names_in_the_view_and_on_the_page(
        guard: GuardThread, browser: Any, client: str):  # noqa: F811
    payload = b"PK\x03\x04 a spreadsheet, really"
    data = message(client, CLIENTS[client](NAME), payload)
    view = parse_message(data, ALICE, [BOB])
    assert [a.filename for a in view.attachments] == [NAME]
    assert view.problems == []
    mid = hold_with_finding(guard, client, data, view.attachments[0].where)
    laptop, _ = pages(browser)
    laptop.goto(notice_link(guard, mid, ALICE, "held"))
    names, sizes, why, _ = files_on_page(laptop)
    assert names == [NAME]  # once, with its real name
    assert sizes == [f"{len(payload)} B"]  # the page read the attachment itself
    assert why == [f"添付ファイル {NAME} に個人情報の一覧表"]
    laptop.screenshot(path=str(ARTIFACTS / f"names-{client}.png"), full_page=True)


def test_zip_with_cp932_member_names(guard: GuardThread, browser: Any):  # noqa: F811
    members = ["①見積書.xlsx", "㈱髙橋/名簿.csv"]
    archive = raw_zip([RawEntry(m.encode("cp932"), b"x" * 40) for m in members])
    zip_name = "送付資料①.zip"
    part = iphone(zip_name).replace(XLSX.encode(), b"application/zip")
    data = message("zip", part, archive)
    view = extract_message(data, ALICE, [BOB])
    assert [a.filename for a in view.attachments] == [zip_name]
    assert [n for _, n in view.inner_names] == members
    inner = next(w for w, n in view.inner_names if n == members[1])
    mid = hold_with_finding(guard, "zip", data, inner)
    laptop, _ = pages(browser)
    laptop.goto(notice_link(guard, mid, ALICE, "held"))
    names, sizes, why, listed = files_on_page(laptop)
    assert names == [zip_name] and sizes == [f"{len(archive)} B"]
    assert listed == members
    assert why == [f"添付ファイル {zip_name}/{members[1]} に個人情報の一覧表"]
    laptop.screenshot(path=str(ARTIFACTS / "names-zip.png"), full_page=True)
