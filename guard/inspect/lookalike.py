"""Look-alike addresses and domains: is this recipient a near miss of one we know?

Four signals, strongest first:
- skeleton: UTS #39 confusable skeletons are equal ("examp1e.co.jp", Cyrillic "exаmple").
- edit_distance: restricted Damerau-Levenshtein (OSA: one swap of neighbours counts as
  one edit) within a bound that grows with the label length ("exmaple", "abd" for
  "abc" when the same person's name is in front of it).
- mixed_script: a label mixes scripts that no real name mixes (Latin with Cyrillic);
  Latin + Han + Hiragana + Katakana is normal in Japan and is not flagged.
- tld_variant: same label, another suffix ("example.com" for "example.co.jp"). Many
  firms own both, so this is only a low-score warning.

The skeleton table is derived from the data that ships with `confusable_homoglyphs`
(Unicode confusables.txt, stored there as a two-way map) plus a few ASCII
multi-character prototypes that its copy lacks. No network, no vendored copy to update.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache

from confusable_homoglyphs.categories import alias as _script_of
from rapidfuzz import process
from rapidfuzz.distance import OSA

from guard.inspect.domains import public_suffix, registrable_domain
from guard.mail.addresses import address_key, domain_to_unicode

__all__ = [
    "LookalikeIndex",
    "LookalikeMatch",
    "build_index",
    "is_mixed_script",
    "latinise",
    "scripts",
    "skeleton",
]

# ASCII prototypes from UTS #39 that the confusable_homoglyphs copy of the table lacks.
# Deliberately NOT "i" -> "l": it is not in TR39 and causes false positives.
_EXTRA_PROTOTYPES = {"d": "cl"}

# Default-ignorable code points (UTS #39 skeleton step 2): invisible, so dropped.
_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)

# Scripts that may share one label (UTS #39 "highly restrictive" profile): Japanese
# names mix Latin, Han, Hiragana and Katakana; Chinese and Korean have their own sets.
_ALLOWED_SCRIPT_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_NEUTRAL_SCRIPTS = frozenset({"COMMON", "INHERITED", "Unknown"})


@cache
def _prototypes() -> dict[str, str]:
    """Map each confusable character to its prototype string (TR39 confusables.txt).

    confusable_homoglyphs stores the table both ways: for each line "source -> target"
    it appended target to data[source] and source to data[target], in file order. In
    TR39 a source is a single code point that is never a prototype itself, so:
    - a key with several partners is a prototype;
    - a single-character key whose only partner has several partners, or is longer
      than one character, is a source;
    - for a pair of keys that only know each other, the source is the key created
      first (JSON keeps insertion order, and the source comes first on its line).
    """
    from confusable_homoglyphs.confusables import confusables_data

    def clean(s: str) -> str:
        # the data wraps right-to-left characters in LEFT-TO-RIGHT MARKs for display
        return s.replace("\u200e", "")

    order = {k: i for i, k in enumerate(confusables_data)}
    table: dict[str, str] = {}
    for key, partners in confusables_data.items():
        src = clean(key)
        if len(src) != 1 or len(partners) != 1:
            continue
        target = partners[0]["c"]
        others = confusables_data.get(target, ())
        if len(others) > 1 or len(clean(target)) > 1 or order[key] < order.get(target, -1):
            table[src] = clean(target)
    table.update(_EXTRA_PROTOTYPES)
    # A prototype's own characters map to themselves in TR39; the extras can break that
    # ("ⅾ" -> "d" -> "cl"), so close the table: at most a couple of rounds are needed.
    for _ in range(3):
        changed = False
        for src, target in table.items():
            mapped = "".join(table.get(c, c) for c in target)
            if mapped != target and src not in mapped:
                table[src] = mapped
                changed = True
        if not changed:
            break
    return table


@cache
def _ascii_translation() -> dict[int, str]:
    # str.translate table for ASCII input (the common case, kept cheap). The input is
    # lower-cased first, so upper-case keys such as "I" never fire; harmless to keep.
    return {ord(c): t for c, t in _prototypes().items() if c.isascii()}


@lru_cache(maxsize=65536)
def skeleton(text: str) -> str:
    """UTS #39 skeleton, case-folded: equal skeletons mean the strings look alike.

    NFKC, lower-case, drop default-ignorables, NFD, map each character to its
    prototype, NFD, lower-case again (mail domains are case-insensitive, so "0" -> "O"
    must meet "o").
    """
    s = text.lower()
    if s.isascii():
        return s.translate(_ascii_translation()).lower()
    s = unicodedata.normalize("NFKC", text).lower()
    s = unicodedata.normalize("NFD", _IGNORABLE.sub("", s))
    table = _prototypes()
    s = "".join(table.get(c, c) for c in s)
    return unicodedata.normalize("NFD", s).lower()


def scripts(text: str) -> frozenset[str]:
    """Unicode scripts used in the text, ignoring Common/Inherited (digits, "-", ".")."""
    if text.isascii():
        return frozenset({"LATIN"}) if any(c.isalpha() for c in text) else frozenset()
    return frozenset(_script_of(c) for c in text) - _NEUTRAL_SCRIPTS


def is_mixed_script(text: str) -> bool:
    """True if the text mixes scripts that a genuine name would not mix."""
    found = scripts(text)
    if len(found) <= 1:
        return False
    return not any(found <= allowed for allowed in _ALLOWED_SCRIPT_MIXES)


def latinise(text: str) -> str:
    """Replace non-ASCII look-alikes of ASCII characters: "exаmple" (Cyrillic а) -> "example".

    For "did you mean" texts: the skeleton itself is not readable ("m" becomes "rn").
    """
    if text.isascii():
        return text
    table = _prototypes()
    out = []
    for c in text:
        t = table.get(c, c)
        out.append(t.lower() if not c.isascii() and t.isascii() else c)
    return "".join(out)


# what a match is (and what a policy condition can ask for: evidence {kind: ...})
KINDS = ("skeleton", "edit_distance", "mixed_script", "tld_variant")


@dataclass(frozen=True)
class LookalikeMatch:
    kind: str  # one of KINDS
    resembles: str  # the known address or domain, readable (U-labels)
    distance: int  # edit distance between the readable forms
    score: float


def _allowed_edits(label_len: int) -> int:
    # ≤ 1 edit for labels of 5–9 characters, ≤ 2 from 10; shorter labels
    # are too dense ("abc"/"abd" are both real firms) to judge from the domain alone.
    if label_len >= 10:
        return 2
    if label_len >= 5:
        return 1
    return 0


def _label(org: str) -> tuple[str, str]:
    """(label, suffix) of a registrable domain in U-labels: ("example", "co.jp")."""
    org_u = domain_to_unicode(org)
    suffix = domain_to_unicode(public_suffix(org))
    if suffix and org_u.endswith("." + suffix):
        return org_u[: -len(suffix) - 1], suffix
    return org_u, ""


def _readable(address: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain_to_unicode(domain)}"


def _near(query: str, choices: list[str], max_edits: int) -> list[tuple[str, int]]:
    """Choices within max_edits of the query (rapidfuzz's C++ scorer with a cut-off)."""
    if not choices:
        return []
    hits = process.extract(query, choices, scorer=OSA.distance, score_cutoff=max_edits,
                           limit=20)
    return [(choice, int(dist)) for choice, dist, _ in hits]


def _by_length(by_len: dict[int, list[str]], query: str, max_edits: int) -> list[str]:
    # strings whose length differs by more than max_edits cannot be that close
    out: list[str] = []
    for n in range(len(query) - max_edits, len(query) + max_edits + 1):
        out.extend(by_len.get(n, ()))
    return out


class LookalikeIndex:
    """Known addresses and organisations, indexed for fast near-miss queries.

    Built once per set of context data (see build_index) and queried per recipient:
    skeleton lookups are dict hits; edit distances run through rapidfuzz's C++ scorer
    with a cut-off, against organisations of about the same length, or against the
    addresses sharing the query's mailbox name or organisation.
    """

    def __init__(self, addresses: Iterable[str], orgs: Iterable[str]) -> None:
        self.addresses: frozenset[str] = frozenset(addresses)
        self.orgs: frozenset[str] = frozenset(orgs) | {
            registrable_domain(a.rpartition("@")[2]) for a in self.addresses
        }
        self._addr_by_skel: dict[str, list[str]] = defaultdict(list)
        # A near miss that matters keeps one half of the address: the same mailbox name
        # at a close organisation, or a close mailbox name at the same organisation.
        # So the fuzzy search runs on these small groups, never on all addresses.
        self._by_local: dict[str, list[str]] = defaultdict(list)  # local -> addresses
        self._by_org: dict[str, dict[str, str]] = defaultdict(dict)  # org -> local -> addr
        for a in self.addresses:
            local, _, domain = a.rpartition("@")
            self._addr_by_skel[skeleton(_readable(a))].append(a)
            self._by_local[local].append(a)
            self._by_org[registrable_domain(domain)].setdefault(local, a)
        self._org_by_skel: dict[str, list[str]] = defaultdict(list)
        self._org_by_label_skel: dict[str, list[str]] = defaultdict(list)
        self._org_by_len: dict[int, list[str]] = defaultdict(list)
        self._org_readable: dict[str, str] = {}
        for o in self.orgs:
            o_u = domain_to_unicode(o)
            self._org_readable[o_u] = o
            self._org_by_skel[skeleton(o_u)].append(o)
            self._org_by_label_skel[skeleton(_label(o)[0])].append(o)
            self._org_by_len[len(o_u)].append(o_u)

    def match(self, address: str) -> LookalikeMatch | None:
        """The strongest resemblance of an unknown address to a known one, or None."""
        addr = address_key(address)
        if addr in self.addresses or "@" not in addr:
            return None
        local, _, domain = addr.rpartition("@")
        org = registrable_domain(domain)
        found = self._address_matches(addr, local, org)
        if org not in self.orgs:
            found += self._org_matches(local, org)
        if is_mixed_script(local) or is_mixed_script(_label(org)[0]):
            found.append(self._mixed(addr))
        if not found:
            return None
        # strongest first; on equal scores the closest one
        return max(found, key=lambda m: (m.score, -m.distance))

    def _same_person_elsewhere(self, local: str, org: str) -> str:
        """"tanaka@abc.co.jp" when the query is tanaka@ at a domain resembling abc.co.jp."""
        candidate = f"{local}@{org}"
        return _readable(candidate) if candidate in self.addresses else domain_to_unicode(org)

    def _address_matches(self, addr: str, local: str, org: str) -> list[LookalikeMatch]:
        readable = _readable(addr)
        out: list[LookalikeMatch] = []
        for known in self._addr_by_skel.get(skeleton(readable), ()):
            if known == addr:
                continue
            k_org = registrable_domain(known.rpartition("@")[2])
            k_readable = _readable(known)
            out.append(LookalikeMatch("skeleton", k_readable, OSA.distance(readable, k_readable),
                                      0.9 if k_org != org else 0.6))
        domain_u = domain_to_unicode(addr.rpartition("@")[2])
        org_u = domain_to_unicode(org)
        for known in self._by_local.get(local, ()):
            if known == addr:
                continue
            k_domain_u = domain_to_unicode(known.rpartition("@")[2])
            k_org = registrable_domain(known.rpartition("@")[2])
            if k_org != org:
                # Same name in front of a close domain: the mission's tanaka@abc/abd case.
                # The name is extra evidence, so one edit is enough even for short labels.
                labels = min(len(_label(org)[0]), len(_label(k_org)[0]))
                limit = max(1, _allowed_edits(labels))
                if OSA.distance(org_u, domain_to_unicode(k_org), score_cutoff=limit) <= limit:
                    out.append(LookalikeMatch("edit_distance", _readable(known),
                                              OSA.distance(domain_u, k_domain_u), 0.9))
            elif OSA.distance(domain_u, k_domain_u, score_cutoff=2) <= 1:
                # same organisation and mailbox name, a mistyped sub-domain
                out.append(LookalikeMatch("edit_distance", _readable(known),
                                          OSA.distance(domain_u, k_domain_u), 0.5))
        colleagues = self._by_org.get(org)
        if colleagues:
            for k_local, dist in _near(local, list(colleagues), 2):
                if k_local == local or dist > (2 if min(len(local), len(k_local)) >= 10 else 1):
                    continue
                # Another mailbox at the same organisation, a typo away: often a colleague
                # with a similar name, so only a low score.
                out.append(LookalikeMatch("edit_distance", _readable(colleagues[k_local]),
                                          dist, 0.4))
        return out

    def _org_matches(self, local: str, org: str) -> list[LookalikeMatch]:
        org_u = domain_to_unicode(org)
        label, suffix = _label(org)
        out: list[LookalikeMatch] = []
        for known in self._org_by_skel.get(skeleton(org_u), ()):
            out.append(LookalikeMatch("skeleton", self._same_person_elsewhere(local, known),
                                      OSA.distance(org_u, domain_to_unicode(known)), 0.9))
        for known in self._org_by_label_skel.get(skeleton(label), ()):
            k_label, k_suffix = _label(known)
            if k_suffix == suffix:
                continue  # same label skeleton and suffix: already found above
            resembles = self._same_person_elsewhere(local, known)
            dist = OSA.distance(org_u, domain_to_unicode(known))
            if k_label == label:
                out.append(LookalikeMatch("tld_variant", resembles, dist, 0.3))
            else:
                # a confusable label under another suffix: still deceptive, less certain
                out.append(LookalikeMatch("skeleton", resembles, dist, 0.7))
        for k_u, dist in _near(org_u, _by_length(self._org_by_len, org_u, 2), 2):
            known = self._org_readable[k_u]
            if known == org:
                continue
            if dist <= _allowed_edits(min(len(label), len(_label(known)[0]))):
                out.append(LookalikeMatch("edit_distance",
                                          self._same_person_elsewhere(local, known), dist, 0.8))
        return out

    def _mixed(self, addr: str) -> LookalikeMatch:
        # Mixed scripts deceive whether or not we know the address it imitates: name the
        # Latin reading ("tanaka@example.com" for a Cyrillic "а").
        readable = _readable(addr)
        plain = latinise(readable)
        return LookalikeMatch("mixed_script", plain, OSA.distance(readable, plain), 0.85)


@lru_cache(maxsize=8)
def build_index(
    known_addresses: frozenset[str],
    known_domains: frozenset[str],
    partner_domains: frozenset[str],
    internal_domains: frozenset[str],
) -> LookalikeIndex:
    """The index for one context's sets, cached: contexts are rebuilt per message from
    the same store snapshot, and frozensets hash once."""
    # known addresses are stored as keys already; plain ASCII ones skip the key's
    # validation (200,000 of them would cost seconds)
    addresses = (a if a.isascii() and a == a.strip().lower() else address_key(a)
                 for a in known_addresses if "@" in a)
    orgs = {
        registrable_domain(d)
        for group in (known_domains, partner_domains, internal_domains)
        for d in group
        if d.strip()
    }
    return LookalikeIndex(addresses, orgs)
