"""Every Prometheus metric of the guard, in one place (the names are a contract with the
alert rules and the dashboard in deploy/; docs/metrics.md lists each, and a test fails
when the two differ).

Two kinds:

- **Events** (counters, histograms) are observed where the event happens, once: in the
  SMTP sessions, the accept pipeline, the hold lifecycle, the relay, the store's writer.
  With SMTP front processes each process writes its own values to prometheus_client's
  multiprocess files and /metrics adds them up (guard/multiproc.py).
- **State** (gauges) is known by the main process only — the queue, the holds and the
  lists as the shared database has them, the loaded policy, the build. `STATE` keeps the
  last reading and yields it at scrape time, beside the multiprocess files. A collector,
  not multiprocess gauges: those cannot drop a label set, and a removed list or the
  previous policy's hash must disappear, not stay at its last value.

To add a metric: define it here, named guard_<what>_<unit> (a counter ends in _total),
labels from small fixed sets (or the policy's own rule ids and list names) — never an
address, subject, file name or message id; add its row to docs/metrics.md; observe it
where its event happens. policy/, inspect/ and mail/ never import this module.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# --- intake ------------------------------------------------------------------------------
SMTP_SESSIONS = Counter("guard_smtp_sessions_total", "SMTP connections accepted", ["listener"])
SMTP_REFUSED = Counter(
    "guard_smtp_refused_total", "SMTP connections and commands refused, by reason",
    ["listener", "reason"])
AUTH_FAILURES = Counter("guard_auth_failures_total", "Failed AUTH attempts", ["listener"])
MESSAGES_RECEIVED = Counter(
    "guard_messages_received_total", "Messages whose DATA was received completely",
    ["listener"])
MESSAGES_ACCEPTED = Counter(
    "guard_messages_accepted_total", "Messages committed and answered 250",
    ["listener", "disposition"])
MESSAGES_REJECTED = Counter(
    "guard_messages_rejected_total", "Messages answered 4xx/5xx after DATA",
    ["listener", "reason"])
ACCEPT_LATENCY = Histogram(
    "guard_accept_commit_seconds", "Time from end of DATA to the commit behind the 250",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))

# --- inspection and policy ---------------------------------------------------------------
VERDICTS = Counter(
    "guard_verdicts_total", "Verdicts on received mail, by action and deciding rule",
    ["action", "rule"])
FINDINGS = Counter(
    "guard_findings_total",
    "Findings on received mail, by symbol; scope external: a recipient is outside the "
    "internal domains", ["symbol", "scope"])
INSPECTION_SECONDS = Histogram(
    "guard_inspection_seconds", "Inspection and policy time per received message",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
POLICY_RELOADS = Counter("guard_policy_reloads_total", "Policy reloads by result", ["result"])

# --- holds and approvals -----------------------------------------------------------------
HOLDS_CREATED = Counter(
    "guard_holds_created_total", "Messages held, by kind and the rule that held them",
    ["kind", "rule"])
HOLD_OUTCOMES = Counter(
    "guard_hold_outcomes_total", "What became of holds, by kind, outcome and who acted",
    ["kind", "outcome", "by"])
DECISION_LATENCY = Histogram(
    "guard_hold_decision_seconds", "Time from a hold to a person's decision on it",
    ["kind"], buckets=(10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 86400, 3 * 86400))
NEAR_MISSES = Counter(
    "guard_near_misses_total",
    "Held messages stopped by a person (cancelled or rejected): ヒヤリハット", ["by", "kind"])
NOTICES_SENT = Counter("guard_notices_sent_total", "Notices queued, by kind", ["kind"])
ALERTS_SENT = Counter(
    "guard_alerts_sent_total",
    "Alert mails queued to officers, by kind: first (a first report), burst (several "
    "severe events in one mail), digest (the daily digest)", ["kind"])
ALERTS_FAILED = Counter("guard_alerts_failed_total",
                        "Alert mails that could not be built (an unusable address)", ["kind"])
ALERT_GAPS = Counter(
    "guard_alert_gaps_total",
    "Audit ids the alert dispatcher could not read in order, by what it did: forgotten "
    "(missing for alerts.gap_wait_seconds: rolled back), held_back (too many missing at "
    "once: the cursor waited), reset (the cursor was past the newest audit id)", ["what"])
NOTICES_FAILED = Counter(
    "guard_notices_failed_total", "Notices that could not be built (bad address), by kind",
    ["kind"])
REVIEW_REQUESTS = Counter(
    "guard_review_requests_total", "Review page requests by method and result",
    ["method", "result"])
# GETs and HEADs with no User-Agent or within seconds of the notice: mail scanners that
# prefetch links (they never act: GET is read-only), counted to show how many there are
LINK_SCANNER_HITS = Counter(
    "guard_link_scanner_hits_total", "Review link fetches that look automated")

# --- delivery ----------------------------------------------------------------------------
UPSTREAM_ATTEMPTS = Counter(
    "guard_upstream_attempts_total",
    "Delivery attempts to the upstream, by result and the class of its reply",
    ["result", "reply_class"])
DELIVERY_RESULTS = Counter(
    "guard_delivery_recipients_total", "Recipient delivery attempts by result", ["result"])
MESSAGES_DELIVERED = Counter("guard_messages_delivered_total", "Messages fully delivered")
MESSAGES_DEFERRED = Counter("guard_messages_deferred_total", "Delivery attempts deferred")
MESSAGES_BOUNCED = Counter(
    "guard_messages_bounced_total", "Messages that failed permanently (DSN sent if possible)")
DELIVERY_LATENCY = Histogram(
    "guard_delivery_latency_seconds", "Time from acceptance to delivery",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400))

# --- database ----------------------------------------------------------------------------
DB_ERRORS = Counter("guard_db_errors_total", "Failed write transactions")
DB_COMMIT_SECONDS = Histogram(
    "guard_db_commit_seconds", "Time of one write transaction's COMMIT",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))
DB_BATCH_SIZE = Histogram(
    "guard_db_batch_operations", "Operations committed per write transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128))


# --- state: gauges the main process knows, yielded at scrape time -----------------------

# name → (labels, help); every instance reads the database-wide ones from the shared
# database, so N instances report the same value: combine with max, never sum
STATE_GAUGES: dict[str, tuple[tuple[str, ...], str]] = {
    "guard_queue_messages": (("state",), "Messages waiting in the queue, by state "
                             "(database-wide)"),
    "guard_queue_oldest_age_seconds": (("state",), "Age of the oldest message in that "
                                       "state, 0 if none (database-wide)"),
    "guard_queue_metrics_refreshed_timestamp_seconds": (
        (), "When the database-wide gauges were last read"),
    "guard_holds_pending": (("kind",), "Held messages waiting, by kind (database-wide)"),
    "guard_hold_oldest_pending_age_seconds": (
        ("kind",), "Age of the oldest waiting hold, 0 if none (database-wide)"),
    "guard_holds_pending_past_escalation": (
        ("kind",), "Approvals waiting past their escalation time (database-wide)"),
    "guard_list_members": (("list",), "Entries in each suppression list (database-wide)"),
    "guard_list_last_sync_timestamp_seconds": (
        ("list",), "When each list's entries were last written: a sync from its file or "
        "guard lists import (database-wide)"),
    "guard_policy_info": (("sha256",), "The loaded policy: first 12 hex digits of its "
                          "digest (value 1)"),
    "guard_policy_last_reload_successful": ((), "1 if the last policy (re)load worked"),
    "guard_policy_rules": ((), "Rules in the loaded policy"),
    "guard_build_info": (("version", "python"), "This guard's version (value 1)"),
}

QUEUE_STATES = ("queued", "deferred", "held")  # waiting; finished mail is in the counters
HOLD_KINDS = ("delay", "confirm", "approve")


def _version() -> str:
    try:
        return metadata.version("guard")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(eq=False)  # registered by identity
class StateGauges(Collector):
    """The last reading of the main process's gauges; yields them when /metrics is read.
    Setters replace a whole family at once (a scrape never sees half a reading)."""

    queue: dict[str, tuple[float, float]] = field(default_factory=dict)  # count, oldest age
    holds: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    lists: dict[str, tuple[float, float]] = field(default_factory=dict)  # members, synced at
    refreshed_at: float | None = None
    policy_digest: str | None = None
    policy_rules: int | None = None
    policy_ok: bool | None = None
    build: tuple[str, str] = field(default_factory=lambda: (_version(),
                                                              platform.python_version()))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set_database(self, *, queue: Mapping[str, tuple[float, float]],
                     holds: Mapping[str, tuple[float, float, float]],
                     lists: Mapping[str, tuple[float, float]], at: float) -> None:
        with self._lock:
            self.queue = {s: queue.get(s, (0, 0.0)) for s in QUEUE_STATES}
            self.holds = {k: holds.get(k, (0, 0.0, 0)) for k in HOLD_KINDS}
            self.lists = dict(lists)
            self.refreshed_at = at

    def policy_loaded(self, digest: str, rules: int) -> None:
        with self._lock:
            self.policy_digest, self.policy_rules, self.policy_ok = digest, rules, True

    def policy_failed(self) -> None:
        with self._lock:
            self.policy_ok = False

    def describe(self) -> Iterable[Metric]:
        for name, (labels, doc) in STATE_GAUGES.items():
            yield GaugeMetricFamily(name, doc, labels=labels)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families = {name: GaugeMetricFamily(name, doc, labels=labels)
                        for name, (labels, doc) in STATE_GAUGES.items()}
            for state, (count, age) in self.queue.items():
                families["guard_queue_messages"].add_metric([state], count)
                families["guard_queue_oldest_age_seconds"].add_metric([state], age)
            if self.refreshed_at is not None:
                families["guard_queue_metrics_refreshed_timestamp_seconds"].add_metric(
                    [], self.refreshed_at)
            for kind, (pending, age, late) in self.holds.items():
                families["guard_holds_pending"].add_metric([kind], pending)
                families["guard_hold_oldest_pending_age_seconds"].add_metric([kind], age)
                families["guard_holds_pending_past_escalation"].add_metric([kind], late)
            for name, (members, synced) in sorted(self.lists.items()):
                families["guard_list_members"].add_metric([name], members)
                families["guard_list_last_sync_timestamp_seconds"].add_metric([name], synced)
            if self.policy_digest is not None:
                families["guard_policy_info"].add_metric([self.policy_digest[:12]], 1)
                families["guard_policy_rules"].add_metric([], self.policy_rules or 0)
            if self.policy_ok is not None:
                families["guard_policy_last_reload_successful"].add_metric(
                    [], 1 if self.policy_ok else 0)
            families["guard_build_info"].add_metric(list(self.build), 1)
        yield from families.values()


STATE = StateGauges()
# this process's registry (no SMTP fronts); with fronts, guard/multiproc.py adds STATE to
# the registry it builds from the multiprocess files
REGISTRY.register(STATE)
