"""customer_mismatch: the mail names one customer but goes to another customer.

The mission's case: a file meant for customer B attached to the mail for customer A
(a small laptop screen at home, the wrong file picked). The file name or its text
names B; a recipient is at A's domains, none at B's.

With no customer among the recipients (a customer's plan sent to the contracted
warehouse, a translator, a printer) naming a customer is ordinary work, not a
mismatch: that is reported as `customer_to_noncustomer` instead, for a policy that
asks for "names a customer, to a non-customer".

Names match on NFKC text, ignoring case. Latin names match as whole words ("ABC" not
inside "ABCD"); Japanese names as substrings (there are no spaces to delimit words).
A name's core without the legal form ("ABC商事" of "ABC商事株式会社", "Acme" of
"Acme Co., Ltd.") is also looked for, since that is how people write file names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import re2

from guard.inspect.context import Customer, InspectContext
from guard.inspect.domains import is_internal, registrable_domain
from guard.inspect.finding import Finding
from guard.inspect.keywords import KeywordView, nfkc
from guard.mail.addresses import address_key, domain_of, in_domain_set
from guard.mail.bodyparts import part_of

__all__ = ["CustomerView", "detect_customer_mismatch", "name_terms"]

# Shorter names or cores match too much ("AB", "日本") to say anything.
# a recipient is a customer and the content names another one; no recipient is one
MISMATCH = "customer_mismatch"
TO_NONCUSTOMER = "customer_to_noncustomer"

_MIN_TERM = 2
_MIN_CORE = 3
# Where a name is strong evidence (the file itself) versus a mention in the mail text.
_SCORE_FILE = 0.8
_SCORE_TEXT = 0.5
_MAX_PLACES = 10

_JA_LEGAL = re.compile(r"^(?:株式会社|有限会社|合同会社|合資会社|合名会社|\((?:株|有|同)\))\s*"
                       r"|\s*(?:株式会社|有限会社|合同会社|合資会社|合名会社|\((?:株|有|同)\))$")
_EN_LEGAL = re.compile(r"[\s,]*(?:co\.?,?\s*ltd\.?|inc\.?|corp\.?|corporation|k\.?k\.?|llc|"
                       r"ltd\.?|limited|co\.?)$", re.IGNORECASE)


class CustomerView(KeywordView, Protocol):
    """The part of guard.mail.message.MessageView this detector reads: the keyword
    detector's view, and the envelope recipients."""

    @property
    def rcpt_tos(self) -> Sequence[str]: ...


def _key(term: str) -> str:
    return re.sub(r"\s+", "", term).casefold()


def name_terms(customer: Customer) -> list[str]:
    """The NFKC strings a customer is recognised by: name, aliases, name without legal form."""
    terms: dict[str, str] = {}
    for raw in (customer.name, *customer.aliases):
        t = " ".join(nfkc(raw).split())
        if len(_key(t)) >= _MIN_TERM:
            terms.setdefault(_key(t), t)
        core = _EN_LEGAL.sub("", _JA_LEGAL.sub("", t)).strip()
        if core != t and len(_key(core)) >= _MIN_CORE:
            terms.setdefault(_key(core), core)
    return list(terms.values())


def _is_word_char(c: str) -> bool:
    return c.isascii() and c.isalnum()


@dataclass(frozen=True)
class _Matcher:
    regex: Any  # RE2: linear time over large attachment text, however many names
    owners: dict[str, tuple[int, ...]]  # term key -> indexes into ctx.customers

    def find(self, text: str) -> list[tuple[str, tuple[int, ...]]]:
        """(term as found, owner customers) for each whole-word-ish mention."""
        out = []
        for m in self.regex.finditer(text):
            found = m.group(0)
            # RE2 has no look-behind: check Latin word boundaries here instead
            if _is_word_char(found[0]) and m.start() > 0 and _is_word_char(text[m.start() - 1]):
                continue
            if _is_word_char(found[-1]) and m.end() < len(text) and _is_word_char(text[m.end()]):
                continue
            owners = self.owners.get(_key(found))
            if owners:
                out.append((found, owners))
        return out


@lru_cache(maxsize=8)
def _matcher(customers: tuple[Customer, ...]) -> _Matcher | None:
    owners: dict[str, list[int]] = {}
    spelled: dict[str, str] = {}  # key -> the term with its spaces
    for i, c in enumerate(customers):
        if not c.domains:
            continue  # no domains: we cannot tell whether a recipient is this customer
        for t in name_terms(c):
            owners.setdefault(_key(t), []).append(i)
            spelled.setdefault(_key(t), t)
    if not owners:
        return None
    # longest first, so "ABC商事" wins over "ABC" where both are names; a space in a
    # name matches any spacing ("ABC Corp", "ABC  Corp", "ABCCorp")
    terms = sorted(spelled.values(), key=lambda t: len(_key(t)), reverse=True)
    pattern = "|".join(r"\s*".join(re.escape(part) for part in t.split(" ")) for t in terms)
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = 64 << 20  # thousands of names need more than RE2's 8 MB default
    return _Matcher(re2.compile(pattern, options), {k: tuple(v) for k, v in owners.items()})


def _places(view: CustomerView) -> list[tuple[str, str, float]]:
    """(where, NFKC text, score) of everything that may name a customer."""
    places: list[tuple[str, str, float]] = []
    for att in view.attachments:
        if att.filename:
            places.append((att.where or f"attachment:{att.filename}", nfkc(att.filename),
                           _SCORE_FILE))
    for where, name in view.inner_names:
        if name:
            places.append((where, nfkc(name), _SCORE_FILE))
    for chunk in view.texts:
        score = _SCORE_FILE if chunk.where.startswith("attachment:") else _SCORE_TEXT
        places.append((chunk.where, nfkc(chunk.text), score))
    if view.subject:
        places.append(("subject", nfkc(view.subject), _SCORE_TEXT))
    return places


def detect_customer_mismatch(view: CustomerView, ctx: InspectContext) -> list[Finding]:
    """One finding per customer named in the mail while none of its domains is a
    recipient: `customer_mismatch` when another customer is a recipient,
    `customer_to_noncustomer` when no recipient is a customer."""
    matcher = _matcher(ctx.customers)
    if matcher is None:
        return []
    external: list[str] = []
    orgs: dict[str, None] = {}
    seen: set[str] = set()
    for rcpt in view.rcpt_tos:
        addr = address_key(rcpt)
        if addr in seen or is_internal(addr, ctx):
            continue
        seen.add(addr)
        external.append(rcpt)
        orgs.setdefault(registrable_domain(domain_of(addr)), None)
    if not external:
        return []  # mail inside the company may name any customer

    def customer_orgs(i: int) -> set[str]:
        return {registrable_domain(d) for d in ctx.customers[i].domains}

    recipient_customers = {i for i, c in enumerate(ctx.customers)
                           if c.domains and customer_orgs(i) & orgs.keys()}
    # (customer index, body part) -> (term as found, places, best score); a name only in
    # quoted text, a signature or a disclaimer is a finding of its own (where body.quoted…)
    named: dict[tuple[int, str], tuple[str, dict[str, None], float]] = {}
    for where, text, score in _places(view):
        part = part_of(where)
        for found, owners in matcher.find(text):
            if any(i in recipient_customers for i in owners):
                continue  # the name (maybe shared) is explained by a recipient
            for i in owners:
                if all(in_domain_set(d, ctx.internal_domains)
                       for d in ctx.customers[i].domains):
                    continue  # our own company listed as a customer
                term, where_set, best = named.get((i, part), (found, {}, 0.0))
                if len(where_set) < _MAX_PLACES:
                    where_set.setdefault(where, None)
                named[i, part] = (term, where_set, max(best, score))
    recipient_names = [ctx.customers[i].name for i in sorted(recipient_customers)]
    if recipient_names:
        to_ja, to_en = "、".join(recipient_names), ", ".join(recipient_names)
    else:
        to_ja = "、".join(orgs) + "（顧客ではありません）"
        to_en = ", ".join(orgs) + " (not a customer)"
    findings = []
    for (i, _), (term, where_set, score) in named.items():
        customer = ctx.customers[i]
        wheres = list(where_set)
        findings.append(Finding(
            MISMATCH if recipient_names else TO_NONCUSTOMER,
            score=score,
            where=wheres[0],
            evidence={"named": customer.name, "matched": term, "where": wheres,
                      "recipient_orgs": list(orgs), "recipient_customers": recipient_names},
            recipients=tuple(external),
            reason_ja=f"{wheres[0]} に顧客「{customer.name}」の名前がありますが、"
                      f"宛先は {to_ja} です",
            reason_en=f"{wheres[0]} names customer {customer.name}, but the mail goes to {to_en}",
        ))
    return findings
