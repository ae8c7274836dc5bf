"""Evidence comparison: does a finding's evidence hold one of the values a condition names.

A condition may test evidence (`evidence: {list: withdrawn}`); the finding's value and
the admin's are compared in one form on both sides, so a spelling in the policy finds
every spelling in the message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guard.inspect.domains import registrable_domain
from guard.mail.addresses import address_key, normalize_domain

EvidenceForm = Callable[[str], str]


def _address_or_domain(value: str) -> str:
    return address_key(value) if "@" in value else normalize_domain(value)


def _same(value: str) -> str:
    return value


# Evidence values compared in one form on both sides: an organisation's registrable
# domain in A-labels ("Mail.例え.jp" finds "xn--r8jz45g.jp"), an address by its key or
# a domain in A-labels (guard.mail.addresses); a client name and a Precedence value in
# lower case; names (lists, keyword rules, customers, kinds) as written.
_EVIDENCE_FORM: dict[str, EvidenceForm] = {
    "domains": registrable_domain, "resembles": _address_or_domain,
    # the sending client (guard.inspect.envelope): "Outlook" in a policy is outlook
    "name": str.lower, "value": str.lower}


def evidence_form(key: str) -> EvidenceForm:
    """The form values of this evidence key are compared in."""
    return _EVIDENCE_FORM.get(key, _same)


def evidence_has(value: Any, wanted: frozenset[str], form: EvidenceForm) -> bool:
    """An evidence value (a name, or a list of names) holds one of `wanted`."""
    if isinstance(value, str):
        return form(value) in wanted
    if isinstance(value, list | tuple):
        return any(isinstance(v, str) and form(v) in wanted for v in value)
    return False
