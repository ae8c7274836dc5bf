"""The shared strings of an xlsx workbook (sharedStrings.xml), parsed on demand."""

from __future__ import annotations

import re

from guard.inspect.readers.ooxml import (
    S_NS_B,
    Unsupported,
    check_end,
    check_namespaces,
    decode_utf8,
    ooxml_unescape,
    prolog,
    screen,
    xml_unescape,
)

_SST_T = re.compile(r"<t(?:\s[^>]*)?(?<!/)>([^<]*)</t>")
_SST_RPH = re.compile(r"<rPh\b.*?</rPh>|<rPh\b[^>]*/>", re.S)
_SST_RUN_JOIN = re.compile(r"</t>\s*</r>\s*<r>\s*(?:<rPr>.*?</rPr>|<rPr/>)?\s*<t(?:\s[^>]*)?>",
                           re.S)
_SST_ROOT = re.compile(rb"\s*<sst[\s>]")
_SST_STEP = 1 * 1024 * 1024  # bytes of the part parsed per step


class SharedStrings:
    """The strings of sharedStrings.xml by index: rich-text runs joined, phonetic
    readings (rPh: the furigana of names typed with a Japanese IME) left out, as
    calamine does.

    Parsed on demand, in blocks from the start: Excel numbers the strings in the order
    it first writes them, so a sheet's sampled first rows use the first ones. The
    strings no row asked for are only needed as text (`unused_text`): in the usual
    layout (`<si><t>…</t></si>` one after another) that is one replace and one decode,
    not a Python object per string (the bench's 10 MB part: ~0.06 s instead of ~0.2 s)."""

    def __init__(self, data: bytes) -> None:
        start = prolog(data[:4096])
        body = data[start:]
        screen(body)
        check_namespaces(body[:4096], {b"": S_NS_B})
        if not _SST_ROOT.match(body):
            raise Unsupported("shared strings root is not <sst>")
        check_end(body[-4096:], b"</sst")
        self._body = body
        self._end = body.rfind(b"</sst")
        first = body.find(b"<si", 0, self._end)
        self._pos = self._end if first < 0 else first  # the next string not parsed yet
        self.parsed: list[str] = []  # the strings parsed so far (grows in place)

    def __getitem__(self, i: int) -> str:
        while i >= len(self.parsed) and self._pos < self._end:
            self._parse(_SST_STEP)
        if i < 0:
            raise IndexError(i)
        return self.parsed[i]

    def _parse(self, size: int) -> None:
        """Parse about `size` more bytes of strings (up to the next <si>)."""
        cut = self._body.find(b"<si", self._pos + size, self._end)
        if cut < 0:
            cut = self._end
        self.parsed.extend(_parse_strings(self._body[self._pos: cut]))
        self._pos = cut

    def unused_text(self, used: set[int]) -> str:
        """Every string whose index is not in `used`, one per line, in order."""
        if used:
            self[max(used)]  # (the sampled rows have asked for these already)
        parsed = self.parsed
        out: list[str] = []
        start = 0
        for i in sorted(used):
            out.extend(parsed[start:i])
            start = i + 1
        out.extend(parsed[start:])
        if self._pos < self._end:
            out.append(_strings_text(self._body[self._pos: self._end]))
        return "\n".join(out)


def _parse_strings(part: bytes) -> list[str]:
    """The strings of a run of whole <si> elements."""
    s = decode_utf8(part)
    # (each `in` below is a pass over the part: the rarer forms are tested together)
    if "<rPh" in s:
        s = _SST_RPH.sub("", s)
    if "</r>" in s:
        s = _SST_RUN_JOIN.sub("", s)
    if "/>" in s:
        s = s.replace("<t/>", "<t></t>").replace("<si/>", "<si><t></t></si>")
    strings = _SST_T.findall(s)
    if len(strings) != s.count("<si"):  # "<si>" and "<si ...>" (never "<sst": checked)
        raise Unsupported("shared strings layout")
    if "&" in s or "\r" in s:
        strings = [xml_unescape(x) if "&" in x or "\r" in x else x for x in strings]
    if "_x" in s:
        strings = [ooxml_unescape(x) if "_x" in x else x for x in strings]
    return strings


def _strings_text(part: bytes) -> str:
    """The strings of a run of whole <si> elements, one per line."""
    plain = part.rstrip()
    if plain.startswith(b"<si><t>") and plain.endswith(b"</t></si>"):
        # when every boundary is exactly this and no other '<' is left, every string
        # was <si><t>text</t></si>
        inner = plain[7:-9].replace(b"</t></si><si><t>", b"\n")
        if b"<" not in inner:
            return ooxml_unescape(xml_unescape(decode_utf8(inner)))
    return "\n".join(_parse_strings(part))


def shared_strings(data: bytes) -> list[str]:
    """Every string of sharedStrings.xml by index (SharedStrings, all parsed)."""
    sst = SharedStrings(data)
    sst._parse(len(data))
    return sst.parsed

