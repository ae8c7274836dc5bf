"""Check digits and issuer tables for the numeric personal-data detectors.

Pure functions over ASCII digit strings (callers strip separators first). The formulas
are the statutory ones (the My Number and corporate number ordinances); each is cheap, but a
check digit alone is weak evidence (10 % of random 12-digit strings pass the My Number
check, ~2.6 % of random 16-digit strings pass Luhn + the brand table), so the detectors
combine them with context words instead of trusting them on their own.
"""

from __future__ import annotations

# 総務省令第85号 第5条: weights for the 11 base digits read left to right (Q_n for
# n = 11..1 counted from the right: 6 5 4 3 2 7 6 5 4 3 2).
_MY_NUMBER_WEIGHTS = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def _is_digits(value: str, length: int) -> bool:
    # str.isdigit() accepts superscripts and other Unicode digits; we want ASCII only.
    return len(value) == length and value.isascii() and value.isdigit()


def my_number_check_digit(base: str) -> int:
    """Check digit for an 11-digit My Number base (個人番号, mod-11 weighted sum).

    check = 11 - (sum mod 11), except that remainders 0 and 1 both give 0.
    """
    if not _is_digits(base, 11):
        raise ValueError("My Number base must be 11 ASCII digits")
    remainder = sum(w * int(d) for w, d in zip(_MY_NUMBER_WEIGHTS, base, strict=True)) % 11
    return 0 if remainder <= 1 else 11 - remainder


def is_valid_my_number(digits: str) -> bool:
    """12 digits whose last digit is the mod-11 check digit, not all one digit.

    All-identical strings (000000000000) pass the arithmetic but are placeholders in forms.
    """
    if not _is_digits(digits, 12) or len(set(digits)) == 1:
        return False
    return my_number_check_digit(digits[:11]) == int(digits[11])


def corporate_check_digit(base: str) -> int:
    """Leading check digit for a 12-digit corporate base number (法人番号, 財務省令第70号).

    check = 9 - (sum mod 9), weights 1 for odd and 2 for even positions counted from the
    right, i.e. 2,1,2,1,... read left to right over the 12 digits. Always 1..9.
    """
    if not _is_digits(base, 12):
        raise ValueError("corporate number base must be 12 ASCII digits")
    total = sum((2 if i % 2 == 0 else 1) * int(d) for i, d in enumerate(base))
    return 9 - total % 9


def is_valid_corporate_number(digits: str) -> bool:
    """13 digits, check digit FIRST (1..9), then the 12-digit base."""
    if not _is_digits(digits, 13) or digits[0] == "0":
        return False
    return corporate_check_digit(digits[1:]) == int(digits[0])


def luhn_valid(digits: str) -> bool:
    """Luhn mod-10: double every second digit from the right, sum digits, ≡ 0 mod 10."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# (brand, inclusive IIN prefix ranges as (low, high) over the first len(low) digits,
# allowed lengths). Presidio's own regex misses the 2-series
# Mastercard range, which is why the table is explicit here.
_BRANDS: tuple[tuple[str, tuple[tuple[str, str], ...], frozenset[int]], ...] = (
    ("visa", (("4", "4"),), frozenset({13, 16, 19})),
    ("mastercard", (("51", "55"), ("2221", "2720")), frozenset({16})),
    ("amex", (("34", "34"), ("37", "37")), frozenset({15})),
    ("jcb", (("3528", "3589"),), frozenset(range(16, 20))),
    ("diners", (("300", "305"), ("3095", "3095"), ("36", "36"), ("38", "39")),
     frozenset(range(14, 20))),
    ("discover", (("6011", "6011"), ("644", "649"), ("65", "65"), ("622126", "622925")),
     frozenset(range(16, 20))),
    ("unionpay", (("62", "62"),), frozenset(range(16, 20))),
)


def card_brand(digits: str) -> str | None:
    """The brand whose IIN range and length fit, or None. Does not check Luhn."""
    if not digits.isascii() or not digits.isdigit():
        return None
    n = len(digits)
    for brand, ranges, lengths in _BRANDS:
        if n not in lengths:
            continue
        for low, high in ranges:
            # Equal-width string comparison is numeric comparison for digit strings.
            if low <= digits[: len(low)] <= high:
                return brand
    return None


def is_valid_card(digits: str) -> str | None:
    """Brand name when the number fits a brand's IIN/length AND passes Luhn."""
    brand = card_brand(digits)
    if brand is not None and luhn_valid(digits):
        return brand
    return None
