"""A rule's scope, compiled: which messages it looks at, and why one is in or out.

The scope tests the envelope, never the content: direction, who sends (address, group),
where it goes (recipient domains, and what the recipients are: a customer, a partner of
some kind, someone on a suppression list), minus the `except` tests. `Envelope` holds
what every rule asks about one message, computed once; `RecipientTables` the customers
and partners the policy names (read when the policy is loaded, so a change of the CSV is
a reload like any other).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from guard.inspect.finding import Finding
from guard.mail.addresses import address_key, domain_of
from guard.policy.patterns import DomainSet, glob_pattern
from guard.policy.schema import Scope, ScopeExcept


def _parents(domain: str) -> Iterator[str]:
    """mail.acme.example, acme.example, example: a domain and the domains above it."""
    while domain:
        yield domain
        domain = domain.partition(".")[2]


@dataclass(frozen=True)
class RecipientTables:
    """Customer and partner domains (subdomains included), from the policy's CSV files."""

    customers: Mapping[str, str] = field(default_factory=dict)  # domain -> customer name
    partners: Mapping[str, frozenset[str]] = field(default_factory=dict)  # domain -> kinds

    def customer(self, domain: str) -> str | None:
        return next((self.customers[d] for d in _parents(domain) if d in self.customers), None)

    def partner_kinds(self, domain: str) -> frozenset[str] | None:
        return next((self.partners[d] for d in _parents(domain) if d in self.partners), None)

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(k for kinds in self.partners.values() for k in kinds)


@dataclass
class Envelope:
    """What the scopes of all rules ask about one message, worked out once."""

    sender: str  # the sender's address key
    rcpt_tos: Sequence[str]
    is_internal: Callable[[str], bool]
    groups_of: Callable[[str], tuple[str, ...]]
    tables: RecipientTables
    # recipient key -> the suppression lists it is on (from the `suppressed` findings)
    lists: Mapping[str, frozenset[str]]
    rcpt_domains: list[str] = field(init=False)
    external: bool = field(init=False)
    _groups: tuple[str, ...] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.rcpt_domains = [domain_of(r) for r in self.rcpt_tos]
        self.external = any(not self.is_internal(r) for r in self.rcpt_tos)

    @property
    def sender_groups(self) -> tuple[str, ...]:
        if self._groups is None:  # looked up only when a rule asks
            self._groups = self.groups_of(self.sender)
        return self._groups


def suppression_by_recipient(findings: Iterable[Finding]) -> dict[str, frozenset[str]]:
    """Recipient key -> the lists the `suppressed` findings put it on."""
    out: dict[str, set[str]] = {}
    for f in findings:
        if f.symbol == "suppressed" and isinstance(f.evidence.get("list"), str):
            for r in f.recipients:
                out.setdefault(address_key(r), set()).add(f.evidence["list"])
    return {k: frozenset(v) for k, v in out.items()}


def recipient_classes(env: Envelope, rcpt: str, domain: str) -> list[tuple[str, str]]:
    """The classes a recipient is in, each with a few words for people:
    [("customer", "a customer (さくら商事株式会社)"), ("partner:contractor", ...)]."""
    out: list[tuple[str, str]] = []
    customer = env.tables.customer(domain)
    if customer is not None:
        out.append(("customer", f"a customer ({customer})"))
    kinds = env.tables.partner_kinds(domain)
    if kinds is not None:
        out.append(("partner", "a partner"))
        out += [(f"partner:{k}", f"a partner of kind {k}") for k in sorted(kinds)]
    for name in sorted(env.lists.get(address_key(rcpt), ())):
        out.append((f"list:{name}", f"on the list {name}"))
    return out


class _Tests:
    """The tests a scope and its `except` share, compiled."""

    __slots__ = ("domains", "every_external", "groups", "recipient_is", "senders")

    def __init__(self, spec: Scope | ScopeExcept) -> None:
        self.senders = glob_pattern(spec.senders)
        self.groups = frozenset(spec.groups) or None
        self.domains = DomainSet(spec.recipient_domains) if spec.recipient_domains else None
        self.recipient_is = frozenset(spec.recipient_is) or None
        self.every_external = frozenset(spec.every_external_recipient_is) or None

    def results(self, env: Envelope) -> Iterator[tuple[str, bool, str]]:
        """(test, holds, why) for each test this scope has, in the order written."""
        if self.senders is not None:
            held = bool(self.senders.match(env.sender))
            yield "senders", held, f"the sender {env.sender} is{'' if held else ' not'} listed"
        if self.groups is not None:
            found = sorted(self.groups.intersection(env.sender_groups))
            yield "groups", bool(found), (f"the sender is in {', '.join(found)}" if found
                                          else "the sender is in none of these groups")
        if self.domains is not None:
            hit = next((r for r, d in zip(env.rcpt_tos, env.rcpt_domains, strict=True)
                        if d in self.domains), None)
            yield "recipient_domains", hit is not None, (
                f"{hit} is in one of the domains" if hit else "no recipient is in these domains")
        if self.recipient_is is not None:
            yield "recipient_is", *self._some_recipient(env, self.recipient_is)
        if self.every_external is not None:
            yield "every_external_recipient_is", *self._every_external(env, self.every_external)

    def checks(self) -> tuple[Callable[[Envelope], bool], ...]:
        """The tests as functions, without the words (the fast path of `results`)."""
        out: list[Callable[[Envelope], bool]] = []
        senders, groups, domains = self.senders, self.groups, self.domains
        if senders is not None:
            out.append(lambda env: senders.match(env.sender) is not None)
        if groups is not None:
            out.append(lambda env: not groups.isdisjoint(env.sender_groups))
        if domains is not None:
            out.append(lambda env: any(d in domains for d in env.rcpt_domains))
        if self.recipient_is is not None:
            wanted = self.recipient_is
            out.append(lambda env: self._some_recipient(env, wanted)[0])
        if self.every_external is not None:
            every = self.every_external
            out.append(lambda env: self._every_external(env, every)[0])
        return tuple(out)

    @staticmethod
    def _some_recipient(env: Envelope, wanted: frozenset[str]) -> tuple[bool, str]:
        for rcpt, domain in zip(env.rcpt_tos, env.rcpt_domains, strict=True):
            for cls, words in recipient_classes(env, rcpt, domain):
                if cls in wanted:
                    return True, f"{rcpt} is {words}"
        return False, f"no recipient is {' or '.join(sorted(wanted))}"

    @staticmethod
    def _every_external(env: Envelope, wanted: frozenset[str]) -> tuple[bool, str]:
        external = [(r, d) for r, d in zip(env.rcpt_tos, env.rcpt_domains, strict=True)
                    if not env.is_internal(r)]
        if not external:
            return False, "there is no external recipient"
        said: list[str] = []
        for rcpt, domain in external:
            found = [(c, w) for c, w in recipient_classes(env, rcpt, domain) if c in wanted]
            if not found:
                return False, f"{rcpt} is not {' or '.join(sorted(wanted))}"
            said.append(f"{rcpt} is {found[0][1]}")
        return True, "; ".join(said)


@dataclass(frozen=True)
class ScopeResult:
    """Why a message is in a rule's scope or not: each test with its outcome."""

    applies: bool
    tests: tuple[tuple[str, bool, str], ...]  # ("senders", True, "...") as written
    excluded_by: tuple[str, str] | None = None  # the `except` test that held, and why


class CompiledScope:
    """A rule's scope: the direction, the tests that must all hold, and the exceptions."""

    __slots__ = ("_checks", "_except_checks", "direction", "excepts", "tests")

    def __init__(self, spec: Scope) -> None:
        self.direction = spec.direction
        self.tests = _Tests(spec)
        self.excepts = _Tests(spec.except_) if spec.except_ is not None else None
        self._checks = self.tests.checks()
        self._except_checks = self.excepts.checks() if self.excepts is not None else ()

    def applies(self, env: Envelope) -> bool:
        if self.direction == "outbound-external" and not env.external:
            return False
        if self.direction == "internal" and env.external:
            return False
        for check in self._checks:
            if not check(env):
                return False
        for check in self._except_checks:
            if check(env):
                return False
        return True

    def explain(self, env: Envelope) -> ScopeResult:
        tests: list[tuple[str, bool, str]] = []
        if self.direction != "any":
            fits = env.external if self.direction == "outbound-external" else not env.external
            words = "some recipient is external" if env.external else "every recipient is internal"
            tests.append((f"direction {self.direction}", fits, words))
        tests += list(self.tests.results(env))
        if not all(held for _, held, _ in tests):
            return ScopeResult(False, tuple(tests))
        if self.excepts is not None:
            for name, held, words in self.excepts.results(env):
                if held:
                    return ScopeResult(False, tuple(tests), (name, words))
        return ScopeResult(True, tuple(tests))
