"""Address normalisation (guard.mail.addresses), registrable domains, internal or external."""

from __future__ import annotations

import socket

import pytest

from guard.inspect.context import InspectContext
from guard.inspect.domains import is_internal, registrable_domain
from guard.mail.addresses import (
    address_key,
    domain_to_unicode,
    in_domain_set,
    normalize_domain,
    valid_address_key,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("tanaka@abc.co.jp", "tanaka@abc.co.jp"),
        ("Tanaka@ABC.CO.JP", "tanaka@abc.co.jp"),
        ("  tanaka@abc.co.jp\t", "tanaka@abc.co.jp"),
        ("<tanaka@abc.co.jp>", "tanaka@abc.co.jp"),
        # full-width letters and at-sign, as typed with the IME still on
        ("ｔａｎａｋａ＠ａｂｃ．ｃｏ．ｊｐ", "tanaka@abc.co.jp"),
        # IDN: U-label and A-label give the same stored form
        ("info@例え.jp", "info@xn--r8jz45g.jp"),
        ("info@XN--R8JZ45G.JP", "info@xn--r8jz45g.jp"),
        ("info@ＥＸＡＭＰＬＥ.jp", "info@example.jp"),
    ],
)
def test_address_key(given: str, expected: str) -> None:
    assert valid_address_key(given) == expected
    assert address_key(given) == expected


@pytest.mark.parametrize(
    "bad", ["", "tanaka", "tanaka@", "@abc.co.jp", "ta..naka@abc.co.jp", "tanaka@abc",
            "tanaka @abc.co.jp", "a@b@c.jp", "Tanaka <tanaka@abc.co.jp>"],
)
def test_valid_address_key_refuses_invalid(bad: str) -> None:
    with pytest.raises(ValueError):
        valid_address_key(bad)


def test_address_key_never_raises_and_keeps_intranet_domains() -> None:
    # email-validator refuses ".local"; a relay still has to compare such recipients
    with pytest.raises(ValueError):
        valid_address_key("Sato@Files.Corp.Local")
    assert address_key("Sato@Files.Corp.Local") == "sato@files.corp.local"
    assert address_key("postmaster") == "postmaster"


def test_normalisation_does_no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    # an address not seen by any other test, so no cache answers for the validator
    assert valid_address_key("dns-check-7f3a@never-resolved-domain.co.jp") == (
        "dns-check-7f3a@never-resolved-domain.co.jp")


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("example.co.jp", "example.co.jp"),
        ("mail.example.co.jp", "example.co.jp"),
        ("MAIL.Corp.EXAMPLE.CO.JP", "example.co.jp"),
        ("example.com", "example.com"),
        # lg.jp (local governments) is a public suffix: the town is the organisation
        ("mail.city.shibuya.lg.jp", "shibuya.lg.jp"),
        ("www.city.shibuya.tokyo.jp", "city.shibuya.tokyo.jp"),
        # a domain that is itself a suffix stays one organisation of its own
        ("kobe.jp", "kobe.jp"),
        # private section on, as DMARC does
        ("a.b.example.github.io", "example.github.io"),
        ("www.例え.jp", "xn--r8jz45g.jp"),
        ("mail.xn--r8jz45g.jp", "xn--r8jz45g.jp"),
        ("ｍａｉｌ.example.co.jp.", "example.co.jp"),
    ],
)
def test_registrable_domain(domain: str, org: str) -> None:
    assert registrable_domain(domain) == org


def test_normalize_domain_and_back() -> None:
    assert normalize_domain("例え.JP") == "xn--r8jz45g.jp"
    assert domain_to_unicode("xn--r8jz45g.jp") == "例え.jp"
    assert domain_to_unicode("example.co.jp") == "example.co.jp"


def test_is_internal_by_organisation() -> None:
    ctx = InspectContext(internal_domains=frozenset({"example.co.jp"}))
    assert is_internal("a@example.co.jp", ctx)
    assert is_internal("a@mail.corp.example.co.jp", ctx)
    assert is_internal("A@MAIL.EXAMPLE.CO.JP", ctx)
    assert not is_internal("a@example.com", ctx)
    assert not is_internal("a@notexample.co.jp", ctx)  # a label boundary, not a suffix
    assert not is_internal("a@example.co.jp.evil.com", ctx)


def test_is_internal_with_a_subdomain_entry() -> None:
    # a group company owning only corp.example.co.jp: its parent is not "us"
    ctx = InspectContext(internal_domains=frozenset({"corp.example.co.jp"}))
    assert is_internal("a@mail.corp.example.co.jp", ctx)
    assert not is_internal("a@example.co.jp", ctx)


def test_is_internal_with_idn_and_case() -> None:
    ctx = InspectContext(internal_domains=frozenset({"例え.jp", "ACME.COM"}))
    assert is_internal("a@xn--r8jz45g.jp", ctx)
    assert is_internal("a@mail.例え.jp", ctx)
    assert is_internal("a@acme.com", ctx)
    assert not is_internal("a@example.jp", ctx)
    assert not in_domain_set("example.jp", frozenset())
