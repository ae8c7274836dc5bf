"""What one MIME part holds besides its bytes: its file name, its text as plain text
(HTML included) and the parser's defects that mean content may have been lost."""

from __future__ import annotations

import email.utils
import re
from email.message import Message
from html.parser import HTMLParser

from guard.mail.encodedwords import decode_encoded_words
from guard.mail.headers import has_surrogates, unfold
from guard.mail.textdecode import decode_declared, decode_header_bytes
from guard.mail.view import Problem

_RAW_PARAM_RE = {
    name: re.compile(
        rb"(?:^|;)\s*" + name.encode() + rb'\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', re.I)
    for name in ("filename", "name")
}


def _raw_header(part: Message, name: str) -> str | None:
    for key, value in part.raw_items():
        if key.lower() == name:
            return str(value)
    return None


def _param_from_raw(raw_value: str, param: str) -> str:
    value = unfold(raw_value)
    if has_surrogates(value):
        # raw 8-bit bytes in the header (old MUAs): recover from the bytes themselves
        m = _RAW_PARAM_RE[param].search(value.encode("utf-8", "surrogateescape"))
        if not m:
            return ""
        found = m.group(1) if m.group(1) is not None else m.group(2)
        return decode_encoded_words(decode_header_bytes(found)).strip()
    # compat32 Message gives us RFC 2231 (charset, language, latin-1 text) tuples and
    # joins continuations; we decode the bytes with our own charset map.
    holder = Message()
    holder["X"] = value
    got = holder.get_param(param, header="x")
    if got is None:
        return ""
    if isinstance(got, tuple):
        charset, _lang, text = got
        data = str(text).encode("latin-1", "replace")
        return decode_declared(data, charset or "utf-8").strip()
    return decode_encoded_words(email.utils.unquote(str(got))).strip()


def part_filename(part: Message) -> str:
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        raw = _raw_header(part, header)
        if raw is not None:
            name = _param_from_raw(raw, param)
            if name:
                return name
    return ""


_SPACES = re.compile(r"[ \t\r\n\f]+")


class _HTMLText(HTMLParser):
    _SKIP = frozenset({"script", "style", "template"})
    _BLOCK = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6",
                        "table", "ul", "ol", "blockquote", "pre", "hr", "section"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0
        self._tables = 0  # open <table> elements
        self._pre = 0  # open <pre> elements: their line breaks are text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._tables += 1
        elif tag == "pre":
            self._pre += 1
        if tag in self._SKIP:
            self._skip += 1
        elif tag == "tr" and self.out and self.out[-1].endswith("\n"):
            pass  # the previous row's end: rows are consecutive lines, no blank between
        elif tag == "br":
            self.out.append("\n")
        elif tag in self._BLOCK:
            self._break()
        elif tag in ("td", "th"):
            self.out.append("\t")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._tables = max(0, self._tables - 1)
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self._break()

    def _break(self) -> None:
        # A block starts or ends a line, once: Outlook writes every line as its own
        # <p class=MsoNormal> (no margin), which reads as consecutive lines, and an empty
        # line as <p>&nbsp;</p>. A blank line between each would split a block of text
        # (a disclaimer, a signature) into one-line paragraphs.
        if not self.out or not self.out[-1].endswith("\n"):
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._tables:
            # Inside a table the source's line breaks between and within cells are
            # layout (Excel's HTML has one per tag), not text: a row stays one line of
            # tab-separated cells.
            data = _SPACES.sub(" ", data)
            if data == " ":
                return
        elif (not self._pre and (not self.out or self.out[-1].endswith("\n"))
              and not data.strip(" \t\r\n\f")):
            # the source's line break between two blocks is layout, not an empty line
            return
        self.out.append(data)


def html_to_text(html: str) -> str:
    parser = _HTMLText()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient; keep whatever was read
        pass
    return re.sub(r"\n{3,}", "\n\n", "".join(parser.out))


_PAYLOAD_DEFECTS = (
    "InvalidBase64CharactersDefect",
    "InvalidBase64PaddingDefect",
    "InvalidBase64LengthDefect",
    "StartBoundaryNotFoundDefect",
    "MultipartInvariantViolationDefect",
    "NoBoundaryInMultipartDefect",
    "MisplacedEnvelopeHeaderDefect",
)


def defect_problems(part: Message, where: str) -> list[Problem]:
    """Defects that mean content may have been lost or misread. A missing closing
    boundary is not one of them: the last part is still read in full."""
    names = {type(d).__name__ for d in getattr(part, "defects", [])}
    return [("parse_error", where, d) for d in _PAYLOAD_DEFECTS if d in names]
