"""The values admins write in a policy, validated: names, domains, addresses, symbols.

Each type normalises what it accepts into the form the guard compares (domains in
lower-case A-labels, addresses by their key: guard.mail.addresses), so the compiled
policy never normalises again. Errors say what was expected, because admins read them.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from guard.inspect.owndata import checked_address, checked_phone, checked_postal_code
from guard.mail.addresses import InvalidAddress, address_key, ascii_domain

try:  # google-re2 is a project dependency; tolerate its absence in odd environments
    import re2 as _re2
except ImportError:  # pragma: no cover - exercised only without google-re2
    _re2 = None


MAX_HOLD_MINUTES = 7 * 24 * 60  # a hold longer than a week is a forgotten message


def one_or_many(value: Any) -> Any:
    """A single value where a list is expected: the one-item list."""
    # `senders: tanaka@example.co.jp` is as natural to write as a one-item list.
    return [value] if isinstance(value, str) else value


_GLOB_CHARS = frozenset("*?[]")


def normalise_domain(value: str, *, wildcard: bool = False) -> str:
    """A domain as written in a policy -> lower-case A-labels (guard.mail.addresses).

    A leading "@" is dropped; with `wildcard`, "*.example.co.jp" keeps its "*.".
    """
    text = unicodedata.normalize("NFKC", value).strip().removeprefix("@")
    prefix = ""
    if wildcard and text.startswith("*."):
        prefix, text = "*.", text[2:]
    expected = "a domain name like example.co.jp" + (" or *.example.co.jp" if wildcard else "")
    try:
        return prefix + ascii_domain(text)
    except InvalidAddress:
        raise ValueError(f"expected {expected}; got {value!r}") from None


def _domain(value: str) -> str:
    return normalise_domain(value)


def _domain_pattern(value: str) -> str:
    return normalise_domain(value, wildcard=True)


def _split_address(value: str, expected: str) -> tuple[str, str]:
    text = unicodedata.normalize("NFKC", value).strip()
    if text.count("@") != 1 or any(c.isspace() or ord(c) < 32 for c in text):
        raise ValueError(f"expected {expected}; got {value!r}")
    local, domain = text.split("@")
    if not local or not domain:
        raise ValueError(f"expected {expected}; got {value!r}")
    return local, domain


def _address_pattern(value: str) -> str:
    """A member or sender: an address, compared by its key, or a glob over keys."""
    expected = "an address or pattern like tanaka@example.co.jp or *@example.co.jp"
    local, domain = _split_address(value, expected)
    try:
        if not _GLOB_CHARS & set(domain):
            domain = ascii_domain(domain)
        elif domain.startswith("*.") and not _GLOB_CHARS & set(domain[2:]):
            domain = "*." + ascii_domain(domain[2:])
        else:
            domain = domain.lower()
    except InvalidAddress:
        raise ValueError(f"expected {expected}; got {value!r}") from None
    if _GLOB_CHARS & set(local + domain):
        return f"{local.lower()}@{domain}"  # matched against keys: lower-case too
    return address_key(f"{local}@{domain}")


def _address(value: str) -> str:
    """An approver: the address's key (guard.mail.addresses), which is how people are compared."""
    expected = "a mail address like tanaka@example.co.jp (no wildcards)"
    local, domain = _split_address(value, expected)
    if _GLOB_CHARS & set(value):
        raise ValueError(f"expected {expected}; got {value!r}")
    return address_key(f"{local}@{_domain(domain)}")


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_GROUP_NAME = re.compile(r"^[\w][\w.-]*$")
_SYMBOL = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")


def _name(value: str) -> str:
    # Rule and keyword names appear in JSON verdicts, metrics labels and log lines.
    if not _NAME.match(value):
        raise ValueError(
            f"expected a name of ASCII letters, digits, '_', '-' or '.'; got {value!r}"
        )
    return value


def _group_name(value: str) -> str:
    if not _GROUP_NAME.match(value):
        raise ValueError(f"expected a group name without spaces; got {value!r}")
    return value


def _symbol(value: str) -> str:
    text = value.strip()
    if not _SYMBOL.match(text):
        raise ValueError(
            f"expected a finding symbol like pii.my_number or a family like pii; got {value!r}"
        )
    return text


def _one_line(value: str) -> str:
    # Marks and headers end up in mail headers: a CR or LF would inject new header lines.
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"expected text on one line without control characters; got {value!r}")
    return value


# Named places a condition's `where` may use besides a prefix of Finding.where: the
# body's new text, without what the sender quoted, signed or was made to append.
NEW_TEXT = "new_text"
NOT_NEW_TEXT = ("body.quoted", "body.signature", "body.disclaimer")
# The body's parts together (guard.mail.bodyparts.WHOLE): counts over the whole body.
WHOLE_BODY = "body.all"


def _place(value: str) -> str:
    text = value.strip()
    if not text or any((c.isspace() and c != " ") or ord(c) < 32 for c in text):
        raise ValueError(
            "expected a place like body, subject, attachment, attachment:名簿.xlsx or "
            f"{NEW_TEXT}; got {value!r}"
        )
    return text


# What a scope may say a recipient is: a table (customers.csv, partners.csv and a kind
# of its `kind` column) or a suppression list the findings name.
RECIPIENT_CLASSES = ("customer", "partner")
RECIPIENT_PREFIXES = ("partner:", "list:")
_KIND = re.compile(r"^[\w][\w .&/-]*$")


def normalise_kind(value: str) -> str:
    """A partner kind as written in partners.csv or a policy: compared case-folded."""
    return " ".join(unicodedata.normalize("NFKC", value).split()).casefold()


def _recipient_class(value: str) -> str:
    text = unicodedata.normalize("NFKC", value).strip()
    expected = ("expected customer, partner, partner:KIND (a kind in partners.csv, "
                "like partner:contractor) or list:NAME (a suppression list)")
    head, sep, tail = text.partition(":")
    head = head.strip().casefold()
    if not sep and head in RECIPIENT_CLASSES:
        return head
    if sep and head == "partner" and _KIND.match(tail.strip()):
        return f"partner:{normalise_kind(tail)}"
    if sep and head == "list" and _NAME.match(tail.strip()):
        return f"list:{tail.strip()}"
    hint = ""
    if not sep and head.rstrip("s") in RECIPIENT_CLASSES:
        hint = f" (did you mean {head.rstrip('s')!r}?)"
    elif not sep and _KIND.match(head):
        hint = f" (did you mean 'partner:{head}' or 'list:{head}'?)"
    raise ValueError(f"unknown recipient class {value!r}{hint}; {expected}")


Name = Annotated[str, AfterValidator(_name)]
GroupName = Annotated[str, AfterValidator(_group_name)]
Domain = Annotated[str, AfterValidator(_domain)]
DomainPattern = Annotated[str, AfterValidator(_domain_pattern)]
Address = Annotated[str, AfterValidator(_address)]
AddressPattern = Annotated[str, AfterValidator(_address_pattern)]
Symbol = Annotated[str, AfterValidator(_symbol)]
OneLine = Annotated[str, AfterValidator(_one_line)]
Minutes = Annotated[int, Field(ge=1, le=MAX_HOLD_MINUTES)]
FilePath = Annotated[str, Field(min_length=1)]

DomainList = Annotated[list[Domain], BeforeValidator(one_or_many)]
DomainPatternList = Annotated[list[DomainPattern], BeforeValidator(one_or_many)]
AddressList = Annotated[list[Address], BeforeValidator(one_or_many)]
AddressPatternList = Annotated[list[AddressPattern], BeforeValidator(one_or_many)]
GroupNameList = Annotated[list[GroupName], BeforeValidator(one_or_many)]
PathList = Annotated[list[FilePath], BeforeValidator(one_or_many)]
PlaceList = Annotated[list[Annotated[str, AfterValidator(_place)]], BeforeValidator(one_or_many)]
RecipientClassList = Annotated[list[Annotated[str, AfterValidator(_recipient_class)]],
                               BeforeValidator(one_or_many)]

# The organisation's own contact data (defaults.own_contacts), in the forms the
# personal-data scan compares (guard.inspect.owndata)
PhoneList = Annotated[list[Annotated[str, AfterValidator(checked_phone)]],
                      BeforeValidator(one_or_many)]
PostalCodeList = Annotated[list[Annotated[str, AfterValidator(checked_postal_code)]],
                           BeforeValidator(one_or_many)]
PostalAddressList = Annotated[list[Annotated[str, AfterValidator(checked_address)]],
                              BeforeValidator(one_or_many)]
OneLineList = Annotated[list[OneLine], BeforeValidator(one_or_many)]


def check_regex(pattern: str) -> None:
    """Accept only patterns that both Python `re` and RE2 compile.

    RE2 (google-re2) runs in linear time, so a keyword pattern cannot stall the relay;
    requiring the common subset keeps the detector free to use either engine.
    """
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"expected a valid regular expression; got {pattern!r} ({exc})") from None
    if _re2 is not None:
        options = _re2.Options()
        options.log_errors = False
        try:
            _re2.compile(pattern, options)
        except _re2.error as exc:
            detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            raise ValueError(
                "expected a regular expression RE2 supports (no backreferences or "
                f"look-around); got {pattern!r} ({detail})"
            ) from None
