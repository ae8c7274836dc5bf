"""Addresses and domains in one form: every part of the guard normalises through here.

Domains: UTS 46 mapping and IDNA 2008, non-transitional (the `idna` package), in
lower-case A-labels without a trailing dot: "ＡＢＣ.co.jp." -> "abc.co.jp",
"例え.jp" -> "xn--r8jz45g.jp", "straße.de" -> "xn--strae-oqa.de". Not Python's "idna"
codec: that is IDNA 2003, which turns "straße.de" into "strasse.de", a different
registrant's domain.

An address has two forms. `address_form` is what the guard stores and shows: the
local part as written (NFKC-normalised, so full-width letters typed with the IME on
become ASCII, but its case kept: only the receiving host may interpret it), "@", the
domain as above. `address_key` is what the guard compares: the same with the local part
lower-cased too, because a suppression list must never miss "Tanaka@" for "tanaka@"
and history, look-alike checks and sender/approver identity must see one mailbox.
Suppression digests, known addresses and policy members, senders and approvers use the
key. (Lower case, not full case folding: folding turns "ß" into "ss", the very
distinction IDNA 2008 keeps in domains.)

Strict functions (`ascii_domain`, `valid_address_key`) are for what admins type and
raise InvalidAddress with a one-line reason. The lenient ones never raise, because the
envelope must still be judged: a domain that IDNA refuses is kept NFKC-normalised and
lower-cased (it equals only itself and no valid domain), text without "@" has no
domain, and `domain_of` gives "" for it.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import idna
from email_validator import EmailNotValidError, validate_email

__all__ = [
    "InvalidAddress",
    "address_form",
    "address_key",
    "ascii_domain",
    "domain_of",
    "domain_to_unicode",
    "in_domain_set",
    "normalize_domain",
    "valid_address_key",
]

# RFC 1035 limit for the A-label form. A U-label is never longer than its A-label, so
# longer input is refused before IDNA sees it (its punycode step is quadratic).
_MAX_DOMAIN = 253
_LDH_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class InvalidAddress(ValueError):
    """An address or domain that cannot be normalised; the text is one line for people."""


def _clean(text: str) -> str:
    """NFKC, stripped, angle brackets off: "＜Tanaka＠ＡＢＣ.jp＞ " -> "Tanaka@ABC.jp"."""
    t = unicodedata.normalize("NFKC", text).strip()
    if t.startswith("<") and t.endswith(">"):
        t = t[1:-1].strip()
    return t


def _domain_text(domain: str) -> str:
    # one trailing dot is the DNS root ("example.com." is example.com)
    d = unicodedata.normalize("NFKC", domain).strip().lower()
    return d[:-1] if d.endswith(".") else d


@lru_cache(maxsize=65536)
def ascii_domain(domain: str) -> str:
    """A domain as typed -> lower-case A-labels; InvalidAddress if it is not a host name.

    Each label must be letters, digits and inner hyphens after UTS 46 / IDNA 2008
    (no "_", no empty label, at most 63 characters, 253 in all); an "xn--" label must
    be valid Punycode of a valid U-label.
    """
    d = _domain_text(domain)
    if not d:
        raise InvalidAddress("empty domain")
    if len(d) > _MAX_DOMAIN:
        raise InvalidAddress(f"domain longer than {_MAX_DOMAIN} characters")
    try:
        a = idna.encode(d, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError as e:
        raise InvalidAddress(f"{domain.strip()!r} is not a valid domain ({e})") from None
    labels = a.split(".")
    if len(a) > _MAX_DOMAIN or not all(_LDH_LABEL.match(label) for label in labels):
        raise InvalidAddress(f"{domain.strip()!r} is not a valid domain")
    return a


@lru_cache(maxsize=65536)
def normalize_domain(domain: str) -> str:
    """Lower-case A-label form of a domain; never raises.

    The same as ascii_domain for every domain ascii_domain accepts. Anything else
    ("exa_mple.example", "bad..example") is kept NFKC-normalised and lower-cased, so
    it still compares equal to itself.
    """
    # stray dots at either end go too ("..example.com."): for comparing, not for typing
    d = _domain_text(domain).strip(".")
    if d.isascii():
        # the hot path: UTS 46 maps nothing in ASCII but upper case
        return d
    if len(d) > _MAX_DOMAIN:
        return d
    try:
        return idna.encode(d, uts46=True, transitional=False).decode("ascii")
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


def _split(address: str) -> tuple[str, str, str]:
    """(local, "@" or "", domain) of a cleaned address; the last "@" separates."""
    return _clean(address).rpartition("@")


@lru_cache(maxsize=65536)
def address_form(address: str) -> str:
    """The stored and shown form: local part as written (case kept), "@", normalised
    domain. Never raises; text without "@" comes back NFKC-normalised and stripped."""
    local, at, domain = _split(address)
    if not at:
        return domain  # rpartition left the whole text in `domain`
    return f"{local}@{normalize_domain(domain)}"


@lru_cache(maxsize=65536)
def valid_address_key(address: str) -> str:
    """The comparison key of a valid address; InvalidAddress (one line) otherwise.

    Syntax is checked by email-validator, with no DNS lookups; a quoted local part
    that needs no quotes compares equal to the plain one ('"tanaka"@' is 'tanaka@').
    Angle brackets around the address are accepted; display names are not.
    """
    a = _clean(address)
    try:
        v = validate_email(a, check_deliverability=False, allow_smtputf8=True,
                           allow_quoted_local=True)
    except EmailNotValidError as e:
        raise InvalidAddress(str(e)) from None
    return f"{v.local_part.lower()}@{ascii_domain(v.domain)}"


@lru_cache(maxsize=65536)
def address_key(address: str) -> str:
    """The comparison key of any address; never raises (for the envelope and history).

    A valid address gives exactly valid_address_key, which is what makes envelope
    digests meet the imported lists'. What email-validator refuses (".local"
    intranet domains, "postmaster" without a domain) still gets a key: the local part
    lower-cased, the domain through normalize_domain.
    """
    try:
        return valid_address_key(address)
    except InvalidAddress:
        local, at, domain = _split(address)
        if not at:
            return domain.lower()  # rpartition left the whole text in `domain`
        return f"{local.lower()}@{normalize_domain(domain)}"


def domain_of(address: str) -> str:
    """The normalised domain of an address ("" when there is no "@"); never raises."""
    _, at, domain = _split(address)
    return normalize_domain(domain) if at else ""


@lru_cache(maxsize=32)
def _normalized_set(domains: frozenset[str]) -> frozenset[str]:
    """A set of domains in normalised form (cached per set: contexts reuse their sets)."""
    return frozenset(normalize_domain(d) for d in domains if d.strip())


def in_domain_set(domain: str, domains: frozenset[str]) -> bool:
    """True if the domain, or a parent of it, is in the set (both normalised here).

    Parents, not just the registrable domain: a company that owns only
    "corp.example.co.jp" lists that, and "mail.corp.example.co.jp" belongs to it while
    "example.co.jp" does not.
    """
    wanted = _normalized_set(domains)
    if not wanted:
        return False
    d = normalize_domain(domain)
    while d:
        if d in wanted:
            return True
        _, dot, d = d.partition(".")
        if not dot:
            break
    return False
