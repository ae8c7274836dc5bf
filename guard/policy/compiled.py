"""The compiled policy: a validated document plus everything evaluation looks up.

Compiling happens once per load (patterns, domain sets, group membership), so
`engine.evaluate` does no parsing per message. A Policy is immutable: a reload builds a
new one and swaps it in whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from guard.inspect.context import KeywordRule
from guard.inspect.owndata import OwnContacts
from guard.mail.addresses import address_key, domain_of
from guard.policy.patterns import DomainSet, glob_pattern
from guard.policy.rules import CompiledRule
from guard.policy.schema import (
    Action,
    AllOf,
    AnyOf,
    Condition,
    ConditionGroup,
    Defaults,
    Group,
    NotOf,
    PolicyDoc,
)
from guard.policy.scope import RecipientTables


@dataclass(frozen=True, eq=False)
class Policy:
    """A validated, compiled policy. Immutable: reload builds a new one."""

    doc: PolicyDoc
    rules: tuple[CompiledRule, ...]
    source: Path | None = None  # the main policy file
    files: tuple[Path, ...] = ()  # YAML files read: the main file and its includes
    partners_file: Path | None = None
    customers_file: Path | None = None
    own_contacts_file: Path | None = None  # read with the policy (into own_contacts)
    suppression_lists: Mapping[str, Path] = field(default_factory=dict)  # synced from files
    store_lists: frozenset[str] = frozenset()  # managed by `guard lists import`
    digest: str = ""  # sha256 of the YAML files, to record which policy decided
    warnings: tuple[str, ...] = ()
    internal_domains: frozenset[str] = frozenset()
    keywords: tuple[KeywordRule, ...] = ()
    # defaults.own_contacts, the company name and lists.own_contacts, merged
    own_contacts: OwnContacts = field(default_factory=OwnContacts)
    # customers and partners by domain, for scopes that name them (recipient_is)
    tables: RecipientTables = field(default_factory=RecipientTables)
    # the symbols the enabled rules' conditions name (exact or a family), so the
    # decision asks the store only for what some rule can use
    symbols: frozenset[str] = frozenset()
    # how far the store counts sender_volume.*: the largest count a rule can ask for,
    # plus one (a count there is "at least"); 0 = no rule names sender_volume
    sender_volume_cap: int = 0
    _internal: DomainSet = field(default_factory=lambda: DomainSet(()), repr=False)
    _exact_members: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    _pattern_members: tuple[tuple[str, re.Pattern[str]], ...] = field(default=(), repr=False)
    _group_cache: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    @property
    def defaults(self) -> Defaults:
        return self.doc.defaults

    @property
    def groups(self) -> Mapping[str, Group]:
        return self.doc.groups

    @property
    def new_domain_scope(self) -> str:
        return self.doc.defaults.new_domain_scope

    @property
    def new_address_scope(self) -> str:
        return self.doc.defaults.new_address_scope

    @property
    def language(self) -> str:
        return self.doc.defaults.language

    @property
    def data_files(self) -> tuple[Path, ...]:
        files = [self.partners_file, self.customers_file, self.own_contacts_file,
                 *self.suppression_lists.values()]
        return tuple(f for f in files if f is not None)

    @property
    def watched_files(self) -> tuple[Path, ...]:
        """Files whose change means "reload": the YAML files and the lists they name."""
        return (*self.files, *self.data_files)

    def uses(self, family: str) -> bool:
        """Whether a rule's condition names this symbol, its family or one inside it."""
        return any(s == family or s.startswith(family + ".") or family.startswith(s + ".")
                   for s in self.symbols)

    def is_internal(self, address: str) -> bool:
        return domain_of(address) in self._internal

    def groups_of(self, sender: str) -> tuple[str, ...]:
        """The sender's groups: exact member entries first, then patterns, in file order."""
        address = address_key(sender)
        cached = self._group_cache.get(address)
        if cached is not None:
            return cached
        found = list(self._exact_members.get(address, ()))
        for name, pattern in self._pattern_members:
            if name not in found and pattern.match(address):
                found.append(name)
        result = tuple(found)
        if len(self._group_cache) > 10_000:  # bounded: senders are few, but be safe
            self._group_cache.clear()
        self._group_cache[address] = result
        return result

    def group_of(self, sender: str) -> str | None:
        groups = self.groups_of(sender)
        return groups[0] if groups else None

    def department_of(self, sender: str, *, with_name: bool = True) -> str | None:
        """The sender's first group as people know it: "営業部 / Sales (sales)", or
        "営業部 / Sales" without the name; the name alone when the group has no label."""
        name = self.group_of(sender)
        if name is None:
            return None
        group = self.groups.get(name)
        label = " / ".join(t for t in (group.label.ja, group.label.en) if t) if group else ""
        if not label:
            return name
        return f"{label} ({name})" if with_name else label


def compile_policy(
    doc: PolicyDoc,
    *,
    source: Path | None = None,
    files: tuple[Path, ...] = (),
    partners_file: Path | None = None,
    customers_file: Path | None = None,
    own_contacts_file: Path | None = None,
    own_contacts: OwnContacts | None = None,
    suppression_lists: Mapping[str, Path] | None = None,
    store_lists: frozenset[str] = frozenset(),
    digest: str = "",
    warnings: tuple[str, ...] = (),
    tables: RecipientTables | None = None,
) -> Policy:
    """Compile a validated document; the loader adds what it read (files, digest)."""
    exact: dict[str, list[str]] = {}
    patterns: list[tuple[str, re.Pattern[str]]] = []
    for name, group in doc.groups.items():
        globs = [m for m in group.members if set("*?[") & set(m)]
        for member in group.members:
            if member not in globs and name not in exact.setdefault(member, []):
                exact[member].append(name)
        compiled = glob_pattern(globs)
        if compiled is not None:
            patterns.append((name, compiled))
    rules = [r for r in doc.rules if r.enabled]
    conditions = [c for r in rules for item in r.conditions for c in _conditions(item)]
    return Policy(
        doc=doc,
        rules=tuple(CompiledRule(r) for r in rules),
        source=source,
        files=files,
        partners_file=partners_file,
        customers_file=customers_file,
        own_contacts_file=own_contacts_file,
        own_contacts=_declared_own(doc).merged(own_contacts or OwnContacts()),
        suppression_lists=dict(suppression_lists or {}),
        store_lists=store_lists,
        digest=digest,
        warnings=warnings,
        internal_domains=frozenset(doc.defaults.internal_domains),
        keywords=tuple(KeywordRule(k.name, k.pattern, tuple(k.fields)) for k in doc.keywords),
        tables=tables or RecipientTables(),
        symbols=frozenset(c.symbol for c in conditions),
        sender_volume_cap=_volume_cap(conditions),
        _internal=DomainSet(doc.defaults.internal_domains),
        _exact_members={k: tuple(v) for k, v in exact.items()},
        _pattern_members=tuple(patterns),
    )


def _conditions(item: Condition | ConditionGroup) -> Iterator[Condition]:
    if isinstance(item, Condition):
        yield item
    elif isinstance(item, NotOf):
        yield from _conditions(item.item)
    elif isinstance(item, AllOf | AnyOf):
        for child in item.items:
            yield from _conditions(child)


def _volume_cap(conditions: list[Condition]) -> int:
    """One more than any min_count a sender_volume condition asks for (its only test of
    size: it has no evidence keys), so a count that reaches it decides every rule alike."""
    asked = [c.min_count for c in conditions
             if c.symbol == "sender_volume" or c.symbol.startswith("sender_volume.")]
    return max(asked) + 1 if asked else 0


def _declared_own(doc: PolicyDoc) -> OwnContacts:
    """defaults.own_contacts (values already in key form) and the company name."""
    d = doc.defaults.own_contacts
    names = [doc.defaults.company_name, *d.names]
    return OwnContacts(
        names=tuple(dict.fromkeys(n.strip() for n in names if n.strip())),
        addresses=tuple(dict.fromkeys(d.addresses)), phones=frozenset(d.phones),
        postal_codes=frozenset(d.postal_codes), domains=frozenset(d.domains))


def default_policy() -> Policy:
    """Pass everything: used when no policy is configured."""
    doc = PolicyDoc(defaults=Defaults(uninspectable=Action.PASS))
    return compile_policy(doc, digest="default")
