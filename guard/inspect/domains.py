"""Organisations: the registrable domain of a domain, and whether an address is ours.

Organisational domain: the registrable domain under the Public Suffix List (private
section on, as DMARC does), from the list bundled in publicsuffixlist: no network.
Domains and addresses are normalised by guard.mail.addresses first.
"""

from __future__ import annotations

from functools import cache, lru_cache

from publicsuffixlist import PublicSuffixList

from guard.inspect.context import InspectContext
from guard.mail.addresses import address_key, domain_of, in_domain_set, normalize_domain

__all__ = [
    "FREE_MAIL_DOMAINS",
    "history_entry",
    "is_free_mail",
    "is_internal",
    "public_suffix",
    "registrable_domain",
]


# Free-mail and mobile-carrier providers: a mailbox there is a person's, not an
# organisation's (six members at gmail.com and docomo.ne.jp are not six companies).
# The guard's one list of them; a policy names the domains it means in its own scopes.
FREE_MAIL_DOMAINS: frozenset[str] = frozenset({
    "gmail.com", "googlemail.com",
    "yahoo.co.jp", "ymail.ne.jp", "yahoo.com",
    "outlook.jp", "outlook.com", "hotmail.com", "hotmail.co.jp", "live.jp", "live.com",
    "msn.com",
    "icloud.com", "me.com", "mac.com",
    "aol.com", "proton.me", "protonmail.com",
    "docomo.ne.jp", "ezweb.ne.jp", "au.com", "softbank.ne.jp", "i.softbank.jp",
    "ymobile.ne.jp", "rakuten.jp",
})


@cache
def _psl() -> PublicSuffixList:
    # Loading the bundled list takes ~0.1 s: do it once, on first use.
    return PublicSuffixList()


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


def is_internal(address: str, ctx: InspectContext) -> bool:
    """True if the address belongs to the company (its domain under an internal domain)."""
    return in_domain_set(domain_of(address), ctx.internal_domains)


def is_free_mail(domain: str) -> bool:
    """True if the domain (or a parent) is a free-mail or carrier provider's."""
    return in_domain_set(domain, FREE_MAIL_DOMAINS)


def history_entry(address: str) -> tuple[str, str]:
    """What a delivery to the address teaches the history: (its key, its organisation)."""
    return address_key(address), registrable_domain(domain_of(address))
