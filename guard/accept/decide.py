"""Inspection + policy → the pipeline's Decision.

    message ─▶ content stage (parse, extract, personal data, keywords, customers)
           ─▶ context (policy lists + what the store knows about these recipients)
           ─▶ recipient findings (new domain, look-alike, suppressed, To/Cc, orgs)
           ─▶ evaluate(policy) ─▶ Verdict ─▶ Decision (queue / hold / reject, edits)

The content stage runs in the extraction worker processes, except for small messages
of a simple shape without attachments (message.cheap_to_read: bounded to a few ms
whatever their bytes), which are cheaper to read here than to ship to a worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from guard import metrics
from guard.accept.pipeline import Decision, NowPart
from guard.ids import new_queue_id
from guard.inspect.context import Customer, InspectContext, RecentEncrypted
from guard.inspect.domains import is_internal, registrable_domain
from guard.inspect.extract import extract_message
from guard.inspect.finding import Finding
from guard.inspect.isolate import ExtractionPool
from guard.inspect.ppap import MAX_ATTACHMENT_BYTES, password_announcement
from guard.inspect.run import content_findings, problem_findings, recipient_findings
from guard.mail.addresses import address_key, domain_of
from guard.mail.digests import DIGEST_SCHEME, address_digest, canonical_digest, key_fingerprint
from guard.mail.limits import cheap_to_read
from guard.mail.message import parse_message
from guard.mail.rewrite import add_headers, move_to_bcc, prefix_subject, remove_recipients
from guard.mail.view import MessageView
from guard.policy import Policy, Verdict, evaluate, load_customers, load_partners
from guard.policy.datafiles import parse_address_csv
from guard.policy.schema import Action
from guard.smtp.outcome import Rejected
from guard.smtp.received import ReceivedMessage
from guard.store import AsyncEngine, knowledge, links

log = logging.getLogger("guard.inspect")

MAX_STORED_FINDINGS = 200
# a password mail is short: a bigger message is not read a second time for one
_PASSWORD_MAIL_BYTES = 64 * 1024


@dataclass
class Inspection:
    view: MessageView
    findings: list[Finding]
    verdict: Verdict
    context: InspectContext
    timings: dict[str, float] = field(default_factory=dict)


class _FileCache:
    """Partners and customers files, re-read when they change (looked at once a second
    at most: a stat per message and file showed in the relay's profile)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[float, float, Any]] = {}

    def get(self, kind: str, path: Path | None, loader: Callable[[Path], Any]) -> Any:
        if path is None:
            return None
        key = (kind, str(path))
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit and now - hit[1] < 1.0:
            return hit[2]
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return None
        if hit and hit[0] == mtime:
            self._cache[key] = (mtime, now, hit[2])
            return hit[2]
        value = loader(path)
        self._cache[key] = (mtime, now, value)
        return value


class KnowledgeCache:
    """What the store knows, in memory: known domains (per scope), known addresses and
    the suppression digests. Per-message database reads were the largest cost of a
    small message (tests/bench); this cache is refreshed every `ttl` seconds, updated at
    once for what this process delivers, so a single instance is exact and several
    instances lag each other by at most `ttl` (a domain delivered by another instance a
    moment ago may still count as new: the safe direction).

    Suppression lists may not lag like that (a list says who must NOT get mail): every
    `lists_check` seconds one small query asks whether any list changed (an import by
    `guard lists import` or by another instance's policy sync), and the entries are read
    again at once if one did."""

    def __init__(self, engine: AsyncEngine, ttl: float = 30.0, list_key: str = "",
                 lists_check: float = 1.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self.lists_check = lists_check
        self.list_key = list_key  # ListKey.stamp of this guard's key ("" = do not check)
        self._reported: set[tuple[str, str, int]] = set()
        self._at = -1e9
        self._lists_at = -1e9
        self._lists_version: tuple[int, float] | None = None
        self._lock = asyncio.Lock()
        self.domains: dict[str, set[str]] = {}  # registrable domain → scopes ("" = org)
        # stable objects between changes: the look-alike index is cached on them
        self.all_domains: frozenset[str] = frozenset()
        self.addresses: frozenset[str] = frozenset()
        self.suppression: dict[bytes, set[str]] = {}  # digest → list names
        # (address, sender) pairs this process wrote: per-sender addresses are not kept
        # in memory (new_address asks the store), only what spares a second write
        self._sender_addresses: set[tuple[str, str]] = set()

    def invalidate(self) -> None:
        self._at = -1e9

    def unknown(self, sender: str, delivered: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The pairs the store may not have yet (the rest need no write: last_seen is
        refreshed only when something new is learned)."""
        return [(a, d) for a, d in delivered
                if a not in self.addresses or sender not in self.domains.get(d, ())
                or (a, sender) not in self._sender_addresses]

    async def recipient_facts(self, scope: str, sender: str, keys: Sequence[str],
                              lowered: Sequence[str], internal: frozenset[str],
                              volume_cap: int) -> tuple[set[str], knowledge.Volume]:
        """Exact, from the store at this moment (not the cache): which of these
        recipients are known in `scope`, and the sender's recent volume (only when a
        rule asks: volume_cap > 0)."""
        volume = knowledge.Volume(0, 0)
        async with self.engine.connect() as conn:
            known = await knowledge.known_among(conn, keys, scope)
            if volume_cap:
                volume = await knowledge.sender_volume(conn, sender, lowered, internal,
                                                       cap=volume_cap)
        return known, volume

    def learned(self, sender: str, delivered: list[tuple[str, str]]) -> None:
        if len(self._sender_addresses) > 500_000:
            self._sender_addresses.clear()  # bounded: at worst a few rows written again
        self._sender_addresses.update((a, sender) for a, _ in delivered)
        new_domain = False
        for _, domain in delivered:
            if domain:
                new_domain |= domain not in self.domains
                self.domains.setdefault(domain, set()).update((knowledge.ORG, sender))
        if new_domain:
            self.all_domains = frozenset(self.domains)
        new = {a for a, _ in delivered} - self.addresses
        if new:
            self.addresses = self.addresses | new

    async def fresh(self) -> KnowledgeCache:
        now = time.monotonic()
        if now - self._at < self.ttl and now - self._lists_at < self.lists_check:
            return self
        async with self._lock:
            now = time.monotonic()
            if now - self._at >= self.ttl:
                await self._reload()
            elif now - self._lists_at >= self.lists_check:
                await self._reload_lists_if_changed()
        return self

    async def _reload(self) -> None:
        async with self.engine.connect() as conn:
            version = await knowledge.lists_version(conn)
            pairs = await knowledge.all_known_domains(conn)
            addrs = await knowledge.all_known_addresses(conn)
            entries = await knowledge.all_list_entries(conn)
            rows = await knowledge.list_rows(conn) if self.list_key else []
        self._report_foreign_keys(rows)
        domains: dict[str, set[str]] = {}
        for domain, scope in pairs:
            domains.setdefault(domain, set()).add(scope)
        self.domains, self.addresses = domains, frozenset(addrs)
        self.all_domains = frozenset(domains)
        self.suppression = _suppression_index(entries)
        self._lists_version = version
        self._at = self._lists_at = time.monotonic()

    async def _reload_lists_if_changed(self) -> None:
        async with self.engine.connect() as conn:
            version = await knowledge.lists_version(conn)
            if version != self._lists_version:
                entries = await knowledge.all_list_entries(conn)
                rows = await knowledge.list_rows(conn) if self.list_key else []
                self._report_foreign_keys(rows)
                self.suppression = _suppression_index(entries)
                self._lists_version = version
                log.info("suppression lists changed in the store: %d entries now", len(entries))
        self._lists_at = time.monotonic()

    def _report_foreign_keys(self, rows: list[knowledge.ListRow]) -> None:
        """A list hashed under another key matches nobody: say so (once per list and
        key) rather than let it pass in silence. Start and policy loads prevent it; a
        `guard lists import` run meanwhile with another secret is what is left."""
        for r in rows:
            seen = (r.name, r.key_fingerprint, r.digest_scheme)
            stamp = f"{r.key_fingerprint}/{r.digest_scheme}"
            if stamp != self.list_key and seen not in self._reported:
                self._reported.add(seen)
                if not r.key_fingerprint:
                    log.warning("list %s was stored before key fingerprints were recorded: "
                                "import it again to be sure it matches", r.name)
                    continue
                log.error("list %s was hashed with key %s (scheme %d), not this guard's key "
                          "%s: it matches nobody until it is imported again with this "
                          "guard's secret", r.name, r.key_fingerprint,
                          r.digest_scheme, self.list_key)


def _external(rcpt_tos: Sequence[str], ctx: InspectContext) -> list[tuple[str, str]]:
    """(as given, comparison key) of the distinct external envelope recipients."""
    out: dict[str, str] = {}
    for r in rcpt_tos:
        key = address_key(r)
        if key and not is_internal(key, ctx):
            out.setdefault(key, r)
    return [(given, key) for key, given in out.items()]


def _with_own_volume(ctx: InspectContext, rcpt_tos: Sequence[str]) -> InspectContext:
    """Without a store: the sender's volume is this message's external recipients."""
    n = len({given.lower() for given, _ in _external(rcpt_tos, ctx)})
    return replace(ctx, sender_volume=(n, n)) if n else ctx


def _suppression_index(entries: list[tuple[str, bytes]]) -> dict[bytes, set[str]]:
    """digest → the names of the lists that hold it."""
    index: dict[bytes, set[str]] = {}
    for name, digest in entries:
        index.setdefault(digest, set()).add(name)
    return index


class Knowledge(Protocol):
    """What the recipient stage reads of the history (KnowledgeCache, or the history
    as it was at some moment for `guard policy replay`)."""

    domains: dict[str, set[str]]
    all_domains: frozenset[str]
    addresses: frozenset[str]

    async def recipient_facts(self, scope: str, sender: str, keys: Sequence[str],
                              lowered: Sequence[str], internal: frozenset[str],
                              volume_cap: int) -> tuple[set[str], knowledge.Volume]:
        """Which of these recipient keys are known in `scope` (knowledge.ORG or a
        sender), and `sender`'s volume with this message (lowered: the envelope
        recipients as given, lower-cased, as the store's count compares them), counted
        up to volume_cap (Policy.sender_volume_cap; 0 = not asked: Volume(0, 0))."""
        ...


class Inspector:
    def __init__(self, engine: AsyncEngine | None, secret: bytes,
                 pool: ExtractionPool | None = None,
                 suppression: dict[bytes, set[str]] | None = None) -> None:
        """suppression: digest → list names, for decisions outside `guard serve` (policy
        test, replay: guard.knowledge.listsync.lists_as_served); None = the store's, via
        the cache."""
        self.engine = engine
        self.secret = secret
        self.pool = pool
        self.files = _FileCache()
        self._static: tuple[tuple[Any, Any, Any], InspectContext] | None = None
        self.suppression = suppression
        stamp = f"{key_fingerprint(secret)}/{DIGEST_SCHEME}"
        self.known = KnowledgeCache(engine, list_key=stamp) if engine is not None else None

    def static_context(self, policy: Policy, sender: str) -> InspectContext:
        partners = self.files.get("partners", policy.partners_file, load_partners)
        customers: tuple[Customer, ...] = self.files.get(
            "customers", policy.customers_file, load_customers) or ()
        # one context object per policy and lists: the same frozensets every message, so
        # the detectors' caches keyed on them (look-alike index) stay warm
        # (the key holds the objects, so an id is never reused while it is cached)
        key = (policy, partners, customers)
        if self._static is None or any(a is not b for a, b in zip(self._static[0], key,
                                                                  strict=True)):
            self._static = (key, InspectContext(
                internal_domains=frozenset(policy.internal_domains),
                partner_domains=frozenset(partners or ()), customers=customers,
                keywords=tuple(policy.keywords), own_contacts=policy.own_contacts,
                suppression_key=self.secret))
        return replace(self._static[1], sender=sender)

    async def content(self, data: bytes, mail_from: str, rcpt_tos: list[str],
                      ctx: InspectContext) -> tuple[MessageView, list[Finding]]:
        """Parse, extract and run the text detectors: in a worker process, under its
        deadline, except small messages of a simple shape without attachments, which
        cost less to read here than to ship. Without a pool (the CLI) all of it here."""
        if self.pool is None or cheap_to_read(data):
            view = parse_message(data, mail_from, rcpt_tos)
            if not view.attachments:
                return view, content_findings(view, ctx)
            if self.pool is None:
                view = extract_message(data, mail_from, rcpt_tos)
                return view, content_findings(view, ctx)
        view, findings = await self.pool.inspect_and_detect(data, mail_from, rcpt_tos, ctx)
        return view, findings + problem_findings(view)

    async def full_context(self, policy: Policy, static: InspectContext, scope_key: str,
                           rcpt_tos: list[str], history: Knowledge | None = None
                           ) -> InspectContext:
        """Add what the store knows about these recipients (and all known addresses)."""
        known: Knowledge
        if history is not None:
            known = history
        elif self.engine is None or self.known is None:
            return _with_own_volume(self._context_from_files(policy, static, rcpt_tos),
                                    rcpt_tos)
        else:
            known = await self.known.fresh()
        index = self.suppression
        if index is None:
            index = known.suppression if isinstance(known, KnowledgeCache) else {}
        # every learned or imported domain is known org-wide; per-sender scope takes out
        # the recipients' domains this sender never wrote to
        known_domains = known.all_domains
        if policy.new_domain_scope == "sender":
            unknown = {d for d in (registrable_domain(domain_of(r)) for r in rcpt_tos)
                       if scope_key not in known.domains.get(d, ())}
            if unknown:
                known_domains = known_domains - unknown
        suppression: dict[str, set[bytes]] = {}
        for r in rcpt_tos:
            digest = self._digest(r)
            for name in index.get(digest, ()):
                suppression.setdefault(name, set()).add(digest)
        external = _external(rcpt_tos, static)
        known_recipients: set[str] = set()
        volume = knowledge.Volume(0, 0)
        if external:
            scope = scope_key if policy.new_address_scope == "sender" else knowledge.ORG
            lowered = sorted({given.lower() for given, _ in external})
            known_recipients, volume = await known.recipient_facts(
                scope, scope_key, sorted({k for _, k in external}), lowered,
                static.internal_domains, policy.sender_volume_cap)
        return InspectContext(
            sender=static.sender, internal_domains=static.internal_domains,
            known_domains=known_domains, all_known_domains=known.all_domains,
            known_addresses=known.addresses, known_recipients=frozenset(known_recipients),
            sender_volume=(volume.hour, volume.day), sender_volume_cap=volume.cap,
            partner_domains=static.partner_domains,
            suppression={k: frozenset(v) for k, v in suppression.items()},
            suppression_key=self.secret, customers=static.customers, keywords=static.keywords,
            own_contacts=static.own_contacts)

    def _context_from_files(self, policy: Policy, static: InspectContext,
                            rcpt_tos: list[str]) -> InspectContext:
        """Without a store: no delivery history; the suppression lists given, else
        straight from the policy's CSV files."""
        digests = {self._digest(r) for r in rcpt_tos}
        suppression: dict[str, frozenset[bytes]] = {}
        if self.suppression is not None:
            found: dict[str, set[bytes]] = {}
            for d in digests:
                for name in self.suppression.get(d, ()):
                    found.setdefault(name, set()).add(d)
            return replace(static, suppression={k: frozenset(v) for k, v in found.items()})
        for name, path in policy.suppression_lists.items():
            entries = self.files.get("list", path, self._read_list) or frozenset()
            hits = digests & entries
            if hits:
                suppression[name] = frozenset(hits)
        return replace(static, suppression=suppression)

    def _digest(self, rcpt: str) -> bytes:
        # never raises: an envelope address email-validator refuses (mail.corp.local,
        # *.test) must not turn into a 451 that the client retries forever
        return canonical_digest(self.secret, address_key(rcpt))

    def _read_list(self, path: Path) -> frozenset[bytes]:
        parsed = parse_address_csv(path.read_bytes())
        if not parsed.ok:
            log.error("list %s has bad rows; ignored: %s", path, parsed.errors[:3])
            return frozenset()
        return frozenset(address_digest(self.secret, a) for a in parsed.addresses)

    async def recent_encrypted(self, policy: Policy, data: bytes, view: MessageView,
                               ctx: InspectContext, scope_key: str
                               ) -> tuple[InspectContext, MessageView]:
        """For a message that announces a password: the sender's encrypted-attachment
        mail of the last `defaults.linked_password_minutes`, from the store (one query;
        none for any other message, and none without a store); and the view with its
        body texts for the recipient stage."""
        if self.engine is None:
            return ctx, view
        if not view.texts and len(data) <= _PASSWORD_MAIL_BYTES and all(
                len(a.data) <= MAX_ATTACHMENT_BYTES for a in view.attachments):
            # read in a worker (a tiny attachment): its texts stayed there; the body of
            # a message this small is read again here (no extraction)
            view = parse_message(data, view.mail_from, list(view.rcpt_tos))
        if password_announcement(view) is None:
            return ctx, view
        async with self.engine.connect() as conn:
            rows = await links.recent_encrypted(
                conn, scope_key, policy.defaults.linked_password_minutes * 60)
        return replace(ctx, recent_encrypted=tuple(
            RecentEncrypted(r.id, r.state, r.seconds_ago,
                            frozenset(address_key(a) for a in r.recipients)) for r in rows)), view

    async def inspect(self, policy: Policy, data: bytes, mail_from: str, rcpt_tos: list[str],
                      scope_key: str, history: Knowledge | None = None) -> Inspection:
        """history: the delivery history to judge by (default: the store's, now)."""
        t0 = time.perf_counter()
        static = self.static_context(policy, mail_from)
        view, findings = await self.content(data, mail_from, rcpt_tos, static)
        t1 = time.perf_counter()
        ctx = await self.full_context(policy, static, scope_key, rcpt_tos, history)
        read = view
        if history is None:
            ctx, read = await self.recent_encrypted(policy, data, view, ctx, scope_key)
        findings = findings + recipient_findings(read, ctx)
        verdict = evaluate(policy, findings, sender=mail_from, rcpt_tos=rcpt_tos)
        t2 = time.perf_counter()
        return Inspection(view, findings, verdict, ctx,
                          {"content": t1 - t0, "context_and_policy": t2 - t1})


HELD = {Action.DELAY: "delay", Action.CONFIRM: "confirm", Action.APPROVE: "approve"}


def stored_verdict(inspection: Inspection, policy: Policy, mail_from: str,
                   language: str) -> dict[str, Any]:
    """What the queue row keeps: the verdict (action + reasons: a stable contract), the
    findings for `guard queue show`, and what the hold pages need without the policy."""
    doc = inspection.verdict.to_json()
    doc["findings"] = [f.to_json() for f in inspection.findings[:MAX_STORED_FINDINGS]]
    doc["language"] = language or policy.language
    doc["sender_address"] = mail_from
    doc["attachments"] = [a.filename or a.where for a in inspection.view.attachments][:50]
    doc["internal_domains"] = sorted(inspection.context.internal_domains)
    return doc


def apply_modifiers(data: bytes, verdict: Verdict, internal_domains: Collection[str] = ()
                    ) -> bytes | None:
    """Header edits the verdict asks for (recipients a drop rule took out leave To/Cc;
    tag; bcc: external To/Cc addresses moved out, the company's kept), or None when
    there are none."""
    out = data
    if verdict.dropped:
        out = remove_recipients(out, [d.address for d in verdict.dropped])
    tag = verdict.modifiers.tag
    if tag is not None:
        out = prefix_subject(add_headers(out, dict(tag.headers)), tag.subject_prefix)
    if verdict.modifiers.bcc:
        out = move_to_bcc(out, internal_domains)
    return None if out is data else out


def rejection(verdict: Verdict) -> Rejected:
    """The refusal a reject verdict asks for: its code, enhanced status code and the
    administrator's text (guard.smtp.replies words the reply line)."""
    if verdict.reject_code is None or verdict.reject_status is None:
        raise ValueError(f"no refusal for action {verdict.action.value}")
    # the verdict's UTF-8 line is "<status> <the text in the policy's language>"
    _, _, utf8 = (verdict.reject_text_utf8 or "").partition(" ")
    return Rejected(verdict.reject_code, verdict.reject_status, verdict.message_en, utf8)


def observe(ins: Inspection, rcpt_tos: list[str]) -> None:
    """The relay's verdict and findings on one received message, counted once (here,
    not in Inspector.inspect: `guard policy test` and replay inspect too). A finding
    counts once per message and symbol, in scope "external" when any recipient is
    outside the internal domains."""
    metrics.INSPECTION_SECONDS.observe(sum(ins.timings.values()))
    metrics.VERDICTS.labels(ins.verdict.action.value, ins.verdict.rule or "none").inc()
    scope = ("external" if any(not is_internal(address_key(r), ins.context) for r in rcpt_tos)
             else "internal")
    for symbol in sorted({f.symbol for f in ins.findings}):
        metrics.FINDINGS.labels(symbol, scope).inc()


class PolicyDecider:
    """The pipeline's Decider: inspection and the current policy."""

    def __init__(self, inspector: Inspector, policy: Callable[[], Policy]) -> None:
        self.inspector = inspector
        self.policy = policy

    async def __call__(self, msg: ReceivedMessage, queue_id: str) -> Decision:
        policy = self.policy()
        ins = await self.inspector.inspect(policy, msg.data, msg.mail_from, msg.rcpt_tos,
                                           msg.sender)
        v = ins.verdict
        observe(ins, msg.rcpt_tos)
        language = msg.user.language if msg.user else ""
        doc = stored_verdict(ins, policy, msg.mail_from, language)
        log.info("verdict %s (%s) in %.1f ms", v.action.value,
                 ", ".join(sorted({r.symbol for r in v.reasons})) or "no findings",
                 sum(ins.timings.values()) * 1e3)
        if v.action == Action.REJECT:
            return Decision(action="reject", rejection=rejection(v), verdict=doc)
        edited = None
        if v.modifiers.tag is not None or v.modifiers.bcc or v.dropped:
            # a header block of 80,000 folded lines or a To of 1,000 addresses takes
            # tens of ms to rewrite (bounded, linear): not on the event loop
            edited = await asyncio.to_thread(apply_modifiers, msg.data, v,
                                             ins.context.internal_domains)
        why = {address_key(d.address): f"dropped by policy (rule {d.rule}): "
               f"{d.reason_en or d.symbol}" for d in v.dropped}
        # keyed by the envelope's spelling: the store's recipient rows are matched on it
        dropped = {r: why[address_key(r)] for r in msg.rcpt_tos if address_key(r) in why}
        if v.split is not None:
            # one message becomes two with the same bytes: the part for the recipients no
            # rule holds goes now, the part for the others is held (its own id and audit)
            now_id = new_queue_id()
            held_doc = _part_doc(doc, v.split.held, {
                "part": "held", "other": now_id,
                "other_recipients": list(v.split.now_recipients)})
            now_doc = _part_doc(doc, v.split.now, {
                "part": "now", "other": queue_id,
                "other_recipients": list(v.split.held_recipients)})
            now_doc["dropped"] = doc["dropped"]
            minutes = (v.split.held.delay_minutes if v.split.held.action == Action.DELAY
                       else v.split.held.expiry_minutes)
            return Decision(action="hold", verdict=held_doc, data=edited,
                            hold_seconds=minutes * 60 if minutes else None,
                            recipients=list(v.split.held_recipients), dropped=dropped,
                            now=NowPart(now_id, _envelope_order(
                                msg.rcpt_tos, (*v.split.now_recipients, *dropped)), now_doc))
        if v.action in HELD:
            minutes = v.delay_minutes if v.action == Action.DELAY else v.expiry_minutes
            link = v.linked_to
            return Decision(action="hold", verdict=doc, data=edited, dropped=dropped,
                            hold_seconds=minutes * 60 if minutes else None,
                            link_to=link.queue_id if link and link.effect == "hold" else None)
        return Decision(action="queue", verdict=doc, data=edited, dropped=dropped)


def _part_doc(doc: dict[str, Any], part: Verdict, split: dict[str, Any]) -> dict[str, Any]:
    """The stored verdict of one part of a split message: that part's action and reasons,
    the message's findings and context, and which part it is."""
    out = {**doc, **part.to_json(), "split": split}
    for key in ("findings", "language", "sender_address", "attachments", "internal_domains"):
        out[key] = doc[key]
    return out


def _envelope_order(rcpt_tos: list[str], chosen: Collection[str]) -> list[str]:
    keys = {address_key(a) for a in chosen}
    return [r for r in rcpt_tos if address_key(r) in keys]


PolicySource = Callable[[], Policy]
DeciderFactory = Callable[[], Awaitable[PolicyDecider]]
