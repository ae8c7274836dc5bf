"""Addresses and domains: one canonical form, the organisational domain, internal or not.

Every part of guard that compares addresses (suppression digests, delivery history,
look-alike checks, CSV imports) goes through `normalize_address` / `canonical_address`,
so the same mailbox always compares equal however it was typed.

Canonical address: NFKC, stripped, lower-case local part, "@", IDNA A-label domain in
lower case, e.g. "Tanaka@ＡＢＣ.co.jp" -> "tanaka@abc.co.jp", "a@例え.jp" ->
"a@xn--r8jz45g.jp". A-labels are what the SMTP envelope carries and they show a
homograph for what it is ("xn--exmple-4nf.com"), so they are the stored form.
The local part is lower-cased too (RFC 5321 says it is case-sensitive, but no mail
system in use treats it so, and a suppression list must not miss "Tanaka@" for "tanaka@").

Organisational domain: the registrable domain under the Public Suffix List (private
section on, as DMARC does), from the list bundled in publicsuffixlist: no network.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import cache, lru_cache

import idna
from email_validator import EmailNotValidError, validate_email
from publicsuffixlist import PublicSuffixList

from guard.inspect.context import InspectContext

__all__ = [
    "canonical_address",
    "domain_of",
    "domain_to_unicode",
    "in_domain_set",
    "is_internal",
    "normalize_address",
    "normalize_domain",
    "normalized_domains",
    "public_suffix",
    "registrable_domain",
]


@cache
def _psl() -> PublicSuffixList:
    # Loading the bundled list takes ~0.1 s: do it once, on first use.
    return PublicSuffixList()


@lru_cache(maxsize=65536)
def normalize_domain(domain: str) -> str:
    """Lower-case IDNA A-label form of a domain; never raises.

    "ＡＢＣ.co.jp." -> "abc.co.jp", "例え.jp" -> "xn--r8jz45g.jp". A domain that IDNA
    refuses (underscores, a stray character) is kept lower-cased, so it still compares
    equal to itself.
    """
    d = unicodedata.normalize("NFKC", domain).strip().strip(".").lower()
    if d.isascii():
        # already A-labels (or an address literal): nothing for IDNA to do; the hot path
        return d
    try:
        return idna.encode(d, uts46=True).decode("ascii")
    except idna.IDNAError:
        return d


@lru_cache(maxsize=16384)
def domain_to_unicode(domain: str) -> str:
    """U-label form for people to read ("xn--r8jz45g.jp" -> "例え.jp"); never raises."""
    if "xn--" not in domain:
        return domain
    try:
        return idna.decode(domain, uts46=True)
    except idna.IDNAError:
        return domain


@lru_cache(maxsize=65536)
def normalize_address(address: str) -> str:
    """Canonical form of one address (see the module docstring); ValueError if invalid.

    Syntax is checked by email-validator with no DNS lookups. Angle brackets around
    the address are accepted ("<a@b.jp>"); display names are not.
    """
    a = unicodedata.normalize("NFKC", address).strip()
    if a.startswith("<") and a.endswith(">"):
        a = a[1:-1].strip()
    try:
        v = validate_email(
            a,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_quoted_local=True,
        )
    except EmailNotValidError as e:
        raise ValueError(str(e)) from e
    return f"{v.local_part.lower()}@{v.ascii_domain.lower()}"


@lru_cache(maxsize=65536)
def canonical_address(address: str) -> str:
    """Like normalize_address, but never raises: for detectors reading the envelope.

    email-validator refuses some addresses that a relay still has to handle (".local"
    intranet domains, "postmaster" without a domain). Those are compared in a looser
    form (NFKC, stripped, lower-cased, domain through IDNA when possible). A valid
    address gives exactly the same string as normalize_address, which is what makes
    suppression digests and history lookups agree with the CSV imports.
    """
    try:
        return normalize_address(address)
    except ValueError:
        a = unicodedata.normalize("NFKC", address).strip()
        if a.startswith("<") and a.endswith(">"):
            a = a[1:-1].strip()
        local, at, domain = a.rpartition("@")
        if not at:
            return a.lower()
        return f"{local.lower()}@{normalize_domain(domain)}"


def domain_of(address: str) -> str:
    """The normalised domain of an address ("" when there is no "@")."""
    _, at, domain = canonical_address(address).rpartition("@")
    return domain if at else ""


@lru_cache(maxsize=65536)
def registrable_domain(domain: str) -> str:
    """The organisational domain: "mail.example.co.jp" -> "example.co.jp".

    A-label form. A domain that is itself a public suffix ("kobe.jp") or unknown to
    the list has no registrable part: the domain itself is returned, so it still
    counts as one organisation.
    """
    d = normalize_domain(domain)
    if not d or d.startswith("["):
        return d
    return _psl().privatesuffix(d) or d


def public_suffix(domain: str) -> str:
    """The public suffix of a domain: "example.co.jp" -> "co.jp" ("" if none)."""
    d = normalize_domain(domain)
    return _psl().publicsuffix(d) or ""


def _normalized_set(domains: Iterable[str]) -> frozenset[str]:
    return frozenset(normalize_domain(d) for d in domains if d.strip())


@lru_cache(maxsize=32)
def _normalized_cached(domains: frozenset[str]) -> frozenset[str]:
    # Contexts are rebuilt per message from the same policy sets: normalise each set once.
    return _normalized_set(domains)


def in_domain_set(domain: str, domains: frozenset[str]) -> bool:
    """True if the domain, or a parent of it, is in the set.

    Parents, not just the registrable domain: a company that owns only
    "corp.example.co.jp" lists that, and "mail.corp.example.co.jp" belongs to it while
    "example.co.jp" does not. When the set holds registrable domains (the usual case)
    this is the same as comparing registrable domains.
    """
    if not domains:
        return False
    wanted = _normalized_cached(domains)
    d = normalize_domain(domain)
    while d:
        if d in wanted:
            return True
        _, dot, d = d.partition(".")
        if not dot:
            break
    return False


def is_internal(address: str, ctx: InspectContext) -> bool:
    """True if the address belongs to the company (its domain under an internal domain)."""
    return in_domain_set(domain_of(address), ctx.internal_domains)


def normalized_domains(domains: frozenset[str]) -> frozenset[str]:
    """A context domain set in A-label lower case (cached per set)."""
    return _normalized_cached(domains)
