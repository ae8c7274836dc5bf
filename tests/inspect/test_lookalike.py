"""Skeletons, script mixing and the look-alike index."""

from __future__ import annotations

import time

import pytest

from guard.inspect.lookalike import (
    LookalikeIndex,
    build_index,
    is_mixed_script,
    latinise,
    skeleton,
)

CYR_A = "\u0430"  # CYRILLIC SMALL LETTER A
CYR_IE = "\u0435"  # CYRILLIC SMALL LETTER IE, looks like "e"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("examp1e.co.jp", "example.co.jp"),  # digit one for l
        ("exarnple.co.jp", "example.co.jp"),  # rn for m
        (f"ex{CYR_A}mple.co.jp", "example.co.jp"),
        (f"{CYR_IE}xample.co.jp", "example.co.jp"),
        ("partner-c0rp.com", "partner-corp.com"),  # zero for o, case-folded
        ("ＥＸＡＭＰＬＥ.co.jp", "example.co.jp"),
        ("EXAMPLE.CO.JP", "example.co.jp"),
    ],
)
def test_confusables_share_a_skeleton(a: str, b: str) -> None:
    assert skeleton(a) == skeleton(b)


@pytest.mark.parametrize(("a", "b"), [("exampie", "example"), ("abc", "abd"), ("tanaka", "tanaki")])
def test_different_strings_have_different_skeletons(a: str, b: str) -> None:
    # "i" and "l" are not TR39 confusables: mapping them gives false positives
    assert skeleton(a) != skeleton(b)


def test_mixed_script() -> None:
    assert is_mixed_script(f"ex{CYR_A}mple")
    assert is_mixed_script("pαypal")  # Greek alpha
    assert not is_mixed_script("example")
    assert not is_mixed_script("例え")
    # Japanese names mix Latin, Han, Hiragana and Katakana; that is normal
    assert not is_mixed_script("abcヤマダ電機")
    assert not is_mixed_script("partner-corp2")
    # digits, "-", "." and "ー" belong to no script and mix with any
    assert not is_mixed_script("スーパー-2.例え")
    assert latinise(f"ex{CYR_A}mple.com") == "example.com"


@pytest.fixture(scope="module")
def index() -> LookalikeIndex:
    return build_index(
        frozenset({"tanaka@abc.co.jp", "sato@example.co.jp", "info@partner-corp.com"}),
        frozenset({"example.co.jp", "customer.jp", "abc.co.jp"}),
        frozenset({"partner-corp.com"}),
        frozenset({"ourcorp.co.jp"}),
    )


@pytest.mark.parametrize(
    ("address", "kind", "resembles"),
    [
        ("tanaka@abd.co.jp", "edit_distance", "tanaka@abc.co.jp"),  # the mission case
        ("x@examp1e.co.jp", "skeleton", "example.co.jp"),
        ("x@exarnple.co.jp", "skeleton", "example.co.jp"),
        (f"x@ex{CYR_A}mple.co.jp", "skeleton", "example.co.jp"),
        ("x@xn--exmple-4nf.co.jp", "skeleton", "example.co.jp"),  # same, as A-label
        ("sato@examp1e.co.jp", "skeleton", "sato@example.co.jp"),
        ("x@exmaple.co.jp", "edit_distance", "example.co.jp"),  # a swap is one edit
        ("x@partnercorp.com", "edit_distance", "partner-corp.com"),
        ("x@customers.jp", "edit_distance", "customer.jp"),
        ("x@example-co.jp", "edit_distance", "example.co.jp"),
        ("x@partner-c0rp.com", "skeleton", "partner-corp.com"),
        ("x@0urcorp.co.jp", "skeleton", "ourcorp.co.jp"),  # our own domain imitated
        ("x@example.com", "tld_variant", "example.co.jp"),
        ("sato@example.com", "tld_variant", "sato@example.co.jp"),
        (f"t{CYR_A}naka@abc.co.jp", "mixed_script", "tanaka@abc.co.jp"),
    ],
)
def test_lookalikes_found(index: LookalikeIndex, address: str, kind: str,
                          resembles: str) -> None:
    m = index.match(address)
    assert m is not None
    assert (m.kind, m.resembles) == (kind, resembles)


@pytest.mark.parametrize(
    "address",
    [
        "tanaka@abc.co.jp",  # known itself
        "TANAKA@ABC.CO.JP",  # known, other case
        "x@mail.example.co.jp",  # same organisation
        "someone@example.co.jp",  # known organisation, not close to a known mailbox
        "x@unrelated.org",
        "suzuki@abd.co.jp",  # 3-letter labels are too dense to judge alone
        "x@sample.net",
    ],
)
def test_no_lookalike(index: LookalikeIndex, address: str) -> None:
    assert index.match(address) is None


def test_scores_rank_the_signals(index: LookalikeIndex) -> None:
    tld = index.match("x@example.com")
    swap = index.match("x@exmaple.co.jp")
    homoglyph = index.match("x@examp1e.co.jp")
    assert tld is not None and swap is not None and homoglyph is not None
    assert tld.score < 0.5 <= swap.score < homoglyph.score
    colleague = index.match("tanaki@abc.co.jp")  # same organisation, one letter off
    assert colleague is not None and colleague.score < 0.5


def test_fast_with_ten_thousand_known_addresses() -> None:
    known = frozenset(f"user{i:05d}.sei@client{i % 2000:04d}.co.jp" for i in range(10_000))
    t0 = time.perf_counter()
    idx = build_index(known, frozenset(), frozenset(), frozenset())
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    # the same person at a mistyped organisation ("cleint" for "client")
    hits = [idx.match(f"user{i:05d}.sei@cleint{i % 2000:04d}.co.jp") for i in range(200)]
    queried = time.perf_counter() - t0
    assert all(h is not None and h.kind == "edit_distance" for h in hits)
    assert idx.match("someone@elsewhere.example") is None
    assert built < 3.0, built
    assert queried < 2.0, queried
