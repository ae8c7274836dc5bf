"""Check digits: My Number (mod 11), corporate number (mod 9), Luhn, card IIN table.

The reference functions below are written a second time, straight from the statute's
wording (P_n counted from the right, Q_n weights), so that a mistake in the module's
left-to-right weight tables shows up as a disagreement.
"""

from __future__ import annotations

import random

import pytest

from guard.inspect.pii.checkdigits import (
    card_brand,
    corporate_check_digit,
    is_valid_card,
    is_valid_corporate_number,
    is_valid_my_number,
    luhn_valid,
    my_number_check_digit,
)

# Published examples of valid numbers.
MY_NUMBER_EXAMPLE = "621498320257"
CORPORATE_EXAMPLES = ("5835678256246", "7010705000725", "4011001098993")


def statute_my_number_check(base: str) -> int:
    """総務省令第85号 第5条, literally: n = 1 is the rightmost base digit."""
    total = 0
    for n in range(1, 12):
        p = int(base[11 - n])
        q = n + 1 if n <= 6 else n - 5
        total += p * q
    r = total % 11
    return 0 if r <= 1 else 11 - r


def statute_corporate_check(base: str) -> int:
    """財務省令第70号 第2条: n = 1 is the rightmost digit, Q = 1 (odd) / 2 (even)."""
    total = 0
    for n in range(1, 13):
        p = int(base[12 - n])
        total += p * (1 if n % 2 else 2)
    return 9 - total % 9


def test_published_my_number_is_valid() -> None:
    assert is_valid_my_number(MY_NUMBER_EXAMPLE)
    assert my_number_check_digit(MY_NUMBER_EXAMPLE[:11]) == 7


def test_my_number_agrees_with_statute_wording() -> None:
    rng = random.Random(85)
    for _ in range(3000):
        base = "".join(rng.choice("0123456789") for _ in range(11))
        assert my_number_check_digit(base) == statute_my_number_check(base), base


def test_my_number_remainders_0_and_1_give_check_digit_0() -> None:
    rng = random.Random(1)
    seen = set()
    while seen != {0, 1}:
        base = "".join(rng.choice("0123456789") for _ in range(11))
        weights = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
        r = sum(w * int(d) for w, d in zip(weights, base, strict=True)) % 11
        if r in (0, 1):
            seen.add(r)
            assert my_number_check_digit(base) == 0
            assert is_valid_my_number(base + "0")


def test_every_single_digit_change_breaks_the_published_my_number() -> None:
    for i in range(12):
        for d in "0123456789":
            if d == MY_NUMBER_EXAMPLE[i]:
                continue
            changed = MY_NUMBER_EXAMPLE[:i] + d + MY_NUMBER_EXAMPLE[i + 1 :]
            assert not is_valid_my_number(changed), changed


@pytest.mark.parametrize(
    "value",
    [
        "000000000000",  # passes the arithmetic, but it is a placeholder
        "62149832025",  # 11 digits
        "6214983202570",  # 13 digits
        "６２１４９８３２０２５７",  # full-width: callers normalise first
        "6214 9832 0257",  # separators: callers strip them
    ],
)
def test_my_number_rejects(value: str) -> None:
    assert not is_valid_my_number(value)


@pytest.mark.parametrize("value", CORPORATE_EXAMPLES)
def test_published_corporate_numbers_are_valid(value: str) -> None:
    assert is_valid_corporate_number(value)
    assert corporate_check_digit(value[1:]) == int(value[0])


def test_corporate_agrees_with_statute_wording() -> None:
    rng = random.Random(70)
    for _ in range(3000):
        base = "".join(rng.choice("0123456789") for _ in range(12))
        check = corporate_check_digit(base)
        assert check == statute_corporate_check(base), base
        assert 1 <= check <= 9


def test_corporate_number_rejects_changed_and_malformed() -> None:
    value = CORPORATE_EXAMPLES[0]
    assert not is_valid_corporate_number(str(int(value[0]) % 9 + 1) + value[1:])
    assert not is_valid_corporate_number(value[:5] + str((int(value[5]) + 1) % 10) + value[6:])
    assert not is_valid_corporate_number("0" + value[1:])  # check digit is 1..9
    assert not is_valid_corporate_number(value[:12])
    # A valid My Number is not a corporate number (different length and formula).
    assert not is_valid_corporate_number(MY_NUMBER_EXAMPLE)


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4111111111111111", "visa"),
        ("4012888888881881", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223000048400011", "mastercard"),  # 2-series, missed by Presidio's regex
        ("378282246310005", "amex"),
        ("371449635398431", "amex"),
        ("3530111333300000", "jcb"),
        ("3566002020360505", "jcb"),
        ("30569309025904", "diners"),
        ("6011111111111117", "discover"),
        ("6200000000000005", "unionpay"),
    ],
)
def test_known_test_card_numbers(number: str, brand: str) -> None:
    assert luhn_valid(number)
    assert is_valid_card(number) == brand


def _with_luhn(prefix: str, length: int) -> str:
    """prefix + zeros + the one last digit that makes Luhn pass."""
    body = prefix.ljust(length - 1, "0")
    for d in "0123456789":
        if luhn_valid(body + d):
            return body + d
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("prefix", "length", "brand"),
    [
        ("2221", 16, "mastercard"),
        ("2720", 16, "mastercard"),
        ("2220", 16, None),
        ("2721", 16, None),
        ("3528", 16, "jcb"),
        ("3589", 19, "jcb"),
        ("3527", 16, None),
        ("3590", 16, None),
        ("34", 15, "amex"),
        ("34", 16, None),  # Amex is 15 digits only
        ("51", 16, "mastercard"),
        ("56", 16, None),
        ("4", 13, "visa"),
        ("4", 15, None),
    ],
)
def test_iin_ranges_and_lengths(prefix: str, length: int, brand: str | None) -> None:
    number = _with_luhn(prefix, length)
    assert card_brand(number) == brand
    assert is_valid_card(number) == brand


def test_luhn_detects_a_changed_digit() -> None:
    number = "4111111111111111"
    for i in range(len(number)):
        changed = number[:i] + str((int(number[i]) + 1) % 10) + number[i + 1 :]
        assert not luhn_valid(changed), changed
    assert is_valid_card("4111111111111112") is None
    assert not luhn_valid("")
    assert not luhn_valid("4111-1111-1111-1111")
