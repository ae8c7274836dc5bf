"""What the fast OOXML readers share: the XML subset they accept, unescaping, the
prolog and end checks, streaming a part in pieces, and namespace checks.

Why not a general XML parser: an event parser calls Python for every element, and a
10 MB xlsx is ~50 MB of sheet XML with ~1.2 M cells (calamine: ~15 µs a row; defusedxml
iterparse on docx: ~10 M characters/s). The fast readers (guard.inspect.readers.wordml
for docx/pptx text, guard.inspect.readers.sheetml and .sharedstrings for xlsx) do their
per-byte work in C (zlib, bytes.split/count/replace, one `re.findall` per chunk) and call
Python per row or per run only where the result needs it.

Security: the same bounded member streams as everything else (zip-bomb caps, ratio and
per-message budgets); no DTD (a DOCTYPE or ENTITY declaration is refused, like
defusedxml's forbid_dtd); only the five predefined entities and character references
are expanded, anything else is a parse error; input must be UTF-8. Anything these
readers do not understand (CDATA, comments or processing instructions in content,
namespace prefixes other than the usual ones, a non-UTF-8 encoding, xlsb) raises
`Unsupported`, and the caller falls back to the slower complete readers (calamine,
defusedxml). Malformed input (truncated part, bad entity, bad shared-string index)
raises `Malformed`, which becomes a parse_error problem.

Not a full well-formedness check of the counted part of a sheet or of a docx: the
readers check the prolog, the namespace bindings, entities, characters and that the
part ends with its root element's end tag, and read every text run a parser would
report; a document broken in the middle is read as far as its runs go.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import IO

MiB = 1024 * 1024

class Unsupported(Exception):
    """The fast reader does not handle this input; use the complete reader."""


class Malformed(Exception):
    """Broken or refused XML (DTD, unknown entity, truncated part): a parse_error."""


# --- shared helpers ----------------------------------------------------------------------

_ENTITY = re.compile(r"&(?:(amp|lt|gt|quot|apos)|#([0-9]{1,7})|#x([0-9a-fA-F]{1,6}));")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _entity(m: re.Match[str]) -> str:
    name, dec, hexa = m.groups()
    if name:
        return _NAMED[name]
    code = int(dec) if dec else int(hexa, 16)
    if code > 0x10FFFF:
        raise Malformed(f"character reference {m.group(0)!r} out of range")
    ch = chr(code)
    if _ILLEGAL_XML.match(ch):
        raise Malformed(f"character reference {m.group(0)!r} is not allowed in XML")
    return ch


def xml_unescape(text: str) -> str:
    """Character data as an XML parser reports it: the five predefined entities and
    character references; any other `&` (an entity a DTD would have to declare, or a
    bare ampersand) is malformed. Line ends are normalised first, as XML requires
    (a literal CR becomes LF; `&#13;` stays a CR)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "&" not in text:
        return text
    out, n = _ENTITY.subn(_entity, text)
    if n != text.count("&"):
        raise Malformed("undefined entity or bare '&' in XML text")
    return out


_OOXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def ooxml_unescape(text: str) -> str:
    """SpreadsheetML strings escape characters XML cannot carry as `_xHHHH_` (Excel
    writes a CR as `_x000D_`, a literal "_x0041_" as `_x005F_x0041_`); calamine
    decodes them, so this does too."""
    if "_" not in text or "_x" not in text:  # (one character: a memchr-like search)
        return text
    return _OOXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


_DECL = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*(<\?xml\b[^>]*\?>)?", re.S)
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def prolog(head: bytes) -> int:
    """Check the start of a part; return where the content after the XML declaration
    starts. UTF-8 only (OOXML writers use it); UTF-16 and others fall back."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or head[:4] in (b"<\x00?\x00", b"\x00<\x00?"):
        raise Unsupported("UTF-16 XML")
    m = _DECL.match(head)
    assert m is not None  # the pattern matches the empty string
    if m.group(1):
        enc = _ENCODING.search(m.group(1))
        if enc and enc.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
            raise Unsupported(f"XML encoding {enc.group(1).decode('ascii', 'replace')}")
    return m.end()


def screen(buf: bytes, start: int = 0, end: int | None = None) -> None:
    """What the fast readers refuse (DTDs) or leave to a full parser (CDATA, comments,
    processing instructions inside content). `buf[start:end]` is content after the
    prolog."""
    if end is None:
        end = len(buf)

    def has(needle: bytes) -> bool:
        return buf.find(needle, start, end) >= 0

    # (memchr for the rare byte first: two-byte searches over markup are slower)
    if has(b"!") and has(b"<!"):
        if has(b"<!DOCTYPE") or has(b"<!ENTITY"):
            raise Malformed("DTD forbidden (DOCTYPE or ENTITY declaration)")
        raise Unsupported("CDATA section or comment in content")
    if has(b"?") and has(b"<?"):
        raise Unsupported("processing instruction in content")
    if has(b"\x00"):
        raise Malformed("NUL character in XML")


def decode_utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Malformed(f"not UTF-8: {e}") from None


_ROOT = re.compile(rb"\s*<([A-Za-z_][\w.:-]*)")


def root_end_tag(content: bytes) -> bytes:
    m = _ROOT.match(content)
    if not m:
        raise Malformed("no root element")
    return b"</" + m.group(1)


def check_end(tail: bytes, root_end: bytes) -> None:
    """The part must end with its root element's end tag: a crafted truncated part
    (the zip CRC catches an accidental one) is malformed, not silently short."""
    tail = tail.rstrip()
    i = tail.rfind(root_end)
    if i < 0 or not tail.endswith(b">") or tail[i + len(root_end):-1].strip():
        raise Malformed("truncated XML (no end tag of the root element)")


def read_chunks(stream: IO[bytes], size: int = 4 * MiB) -> Iterator[bytes]:
    while True:
        chunk = stream.read(size)
        if not chunk:
            return
        yield chunk


def units(chunks: Iterable[bytes], cut: bytes, max_carry: int) -> Iterator[bytes]:
    """Re-chunk a byte stream so that each piece ends right after `cut` (a paragraph or
    row end tag): text runs and rows never straddle two pieces. The last piece is the
    rest. A single element larger than max_carry is refused."""
    for buf, start, end in unit_ranges(chunks, cut, max_carry):
        yield buf if start == 0 and end == len(buf) else buf[start:end]


def unit_ranges(chunks: Iterable[bytes], cut: bytes, max_carry: int
            ) -> Iterator[tuple[bytes, int, int]]:
    """units without copying the chunks: (buffer, start, end), where buffer[start:end]
    is a piece. Only the element that straddles two chunks is copied (with the rest
    of the earlier chunk): copying 35 MB of XML costs ~20 ms on these machines."""
    carry = b""
    for chunk in chunks:
        start = 0
        if carry:
            # the first cut in chunk, or one that straddles the carry and the chunk
            k = len(cut)
            overlap = carry[1 - k:]
            w = (overlap + chunk[:k - 1]).find(cut)
            if w >= 0:
                j = w + k - len(overlap)
            else:
                j = chunk.find(cut)
                j = j + k if j >= 0 else -1
            if j < 0:
                carry += chunk
                if len(carry) > max_carry:
                    raise Unsupported("element too large for the streaming reader")
                continue
            joined = carry + chunk[:j]
            yield joined, 0, len(joined)
            start = j
        i = chunk.rfind(cut, start)
        if i < 0:
            carry = chunk[start:]
            if len(carry) > max_carry:
                raise Unsupported("element too large for the streaming reader")
            continue
        i += len(cut)
        yield chunk, start, i
        carry = chunk[i:]
    yield carry, 0, len(carry)


# --- xmlns checks --------------------------------------------------------------------------

# every namespace declaration: a prefix is any name (not only ASCII word characters)
_XMLNS = re.compile(rb"""xmlns(?::([^\s=/>]+))?\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def check_namespaces(buf: bytes, expected: dict[bytes, frozenset[bytes]], start: int = 0,
                      end: int | None = None) -> set[bytes]:
    """Prefixes in `expected` may only be bound to their namespace URIs, and those URIs
    only to those prefixes (never as the default namespace): the regexes match on the
    prefix. Returns the expected prefixes that this piece (buf[start:end]) declares.
    Anything else that could bind a namespace (a URI written with character
    references, a declaration this pattern does not read) goes to the full parser."""
    seen: set[bytes] = set()
    if end is None:
        end = len(buf)
    if buf.find(b"xmlns", start, end) < 0:
        return seen
    all_uris = {u: p for p, us in expected.items() for u in us}
    found = _XMLNS.findall(buf, start, end)
    if len(found) != buf.count(b"xmlns", start, end):
        raise Unsupported("a namespace declaration the fast reader does not read")
    for prefix, quoted, apos in found:
        uri = quoted or apos
        if b"&" in uri:
            raise Unsupported("namespace URI with references")
        if prefix in expected:
            if uri not in expected[prefix]:
                raise Unsupported(f"prefix {prefix.decode(errors='replace')} bound to "
                                  "another namespace")
            seen.add(prefix)
        elif uri in all_uris:
            raise Unsupported("unusual namespace prefix")
    return seen


# --- SpreadsheetML namespaces (sheets, shared strings, the workbook) ------------------------

S_NS = ("http://schemas.openxmlformats.org/spreadsheetml/2006/main",
         "http://purl.oclc.org/ooxml/spreadsheetml/main")
S_NS_B = frozenset(u.encode() for u in S_NS)
R_NS = ("http://schemas.openxmlformats.org/officeDocument/2006/relationships",
         "http://purl.oclc.org/ooxml/officeDocument/relationships")
PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
