"""Evidence shows enough to recognise a value, never the value: masked samples, and the
distinct-value keys of values a person gives (the sender's own numbers to ignore)."""

from __future__ import annotations

import re

from guard.inspect.pii.hits import (
    ADDRESS,
    BIRTH_DATE,
    CARD,
    CORPORATE,
    EMAIL,
    MY_NUMBER,
    PHONE,
    POSTAL,
)
from guard.inspect.pii.numbers import NON_DIGIT
from guard.mail.nfkc import normalize


def _group4(s: str) -> str:
    return " ".join(s[i : i + 4] for i in range(0, len(s), 4))


def mask_card(digits: str) -> str:
    # First four (the brand) and last four, like a receipt: "1234 **** **** 3456".
    return f"{digits[:4]} {_group4('*' * (len(digits) - 8))} {digits[-4:]}"


def mask_my_number(digits: str) -> str:
    return f"**** **** {digits[-4:]}"


def mask_corporate(digits: str) -> str:
    return f"*-****-****-{digits[-4:]}"


def mask_phone(raw: str, keep_tail: int = 4) -> str:
    """Keep the separators, the prefix (first group, or 3 digits) and the last four."""
    digits = sum(c.isdigit() for c in raw)
    first = re.match(r"\+?\(?(\d+)", raw)
    group = len(first.group(1)) if first else 0
    keep_head = group if 2 <= group < digits - keep_tail else 3
    out: list[str] = []
    seen = 0
    for c in raw:
        if c.isdigit():
            seen += 1
            out.append(c if seen <= keep_head or seen > digits - keep_tail else "*")
        else:
            out.append(c)
    return "".join(out)


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def mask(kind: str, raw: str) -> str:
    """The evidence sample for a hit of `kind` whose Hit.raw is `raw`."""
    if kind == CARD:
        return mask_card(raw)
    if kind == MY_NUMBER:
        return mask_my_number(raw)
    if kind == CORPORATE:
        return mask_corporate(raw)
    if kind == PHONE:
        return mask_phone(raw)
    if kind == POSTAL:
        return f"{raw[:3]}-****"
    if kind == EMAIL:
        return mask_email(raw)
    if kind == ADDRESS:
        return raw + "…"  # prefecture and city only
    if kind == BIRTH_DATE:
        return f"{raw[:4]}-**-**"  # the year only
    return "***"


def value_key(raw: str) -> str:
    """The distinct-value key for a value given by a person (PiiLimits.ignore_values).

    E-mail: lower case. Numbers: digits only; +81 phone numbers in domestic form, so
    "+81 3-1234-5678" and "03-1234-5678" are the same key. Anything else (addresses):
    NFKC without whitespace.
    """
    value = normalize(raw).strip()
    if "@" in value:
        return value.lower()
    digits = NON_DIGIT.sub("", value)
    if digits and len(digits) >= len(re.sub(r"[\s\-‐‑‒–—―−﹣ー.()+〒]", "", value)):
        if value.startswith("+81"):
            return "0" + digits[2:]
        if value.startswith("+"):
            return "+" + digits
        return digits
    return re.sub(r"\s+", "", value)
