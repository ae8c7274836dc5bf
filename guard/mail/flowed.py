"""RFC 3676 format=flowed: soft line breaks joined again before the body is scanned.

Thunderbird and Apple Mail send text/plain; format=flowed and break long lines at a
space, leaving that space at the end of the line ("soft" break). A table row broken so
would be two lines to the detectors, and half a row is no record. The receiving client
joins them; so does the guard, once, where the body text is decoded. One pass over the
lines: linear in the text.
"""

from __future__ import annotations

__all__ = ["unflow"]

_SIG_SEPARATOR = "-- "


def _split_quote(line: str) -> tuple[str, str]:
    """(the quote marks, the content without its space-stuffing)."""
    depth = len(line) - len(line.lstrip(">"))
    marks, content = line[:depth], line[depth:]
    if content.startswith(" "):  # space-stuffed (RFC 3676 4.4), or "> " after marks
        content = content[1:]
    return marks, content


def unflow(text: str, delsp: bool = False) -> str:
    """The text with flowed lines joined (RFC 3676 4.2): a line ending in a space, other
    than the signature separator "-- ", continues on the next line of the same quote
    depth. With DelSp=yes the trailing space is the sender's, not the text's, and goes."""
    out: list[str] = []
    para: list[str] = []
    para_marks: str | None = None
    for raw in text.split("\n"):
        cr = raw.endswith("\r")
        line = raw[:-1] if cr else raw
        marks, content = _split_quote(line)
        if para_marks is not None and marks != para_marks:
            # a change of quote depth ends a paragraph (a broken flow)
            out.append(_render(para_marks, para))
            para, para_marks = [], None
        flowed = content.endswith(" ") and content != _SIG_SEPARATOR
        if flowed and delsp:
            content = content[:-1]
        para.append(content)
        para_marks = marks
        if not flowed:
            out.append(_render(marks, para))
            para, para_marks = [], None
    if para_marks is not None:
        out.append(_render(para_marks, para))
    return "\n".join(out)


def _render(marks: str, pieces: list[str]) -> str:
    joined = "".join(pieces)
    return f"{marks} {joined}" if marks else joined
