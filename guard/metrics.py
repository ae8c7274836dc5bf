"""Prometheus metric objects, all in one place (names are part of the dashboard contract)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SMTP_SESSIONS = Counter("guard_smtp_sessions_total", "SMTP connections accepted", ["listener"])
SMTP_REFUSED = Counter(
    "guard_smtp_refused_total", "SMTP commands refused, by reason", ["reason"])
AUTH_FAILURES = Counter("guard_auth_failures_total", "Failed AUTH attempts")
MESSAGES_RECEIVED = Counter(
    "guard_messages_received_total", "Messages whose DATA was received completely")
MESSAGES_ACCEPTED = Counter(
    "guard_messages_accepted_total", "Messages committed and answered 250", ["disposition"])
MESSAGES_REJECTED = Counter(
    "guard_messages_rejected_total", "Messages answered 4xx/5xx after DATA", ["reason"])
DELIVERY_RESULTS = Counter(
    "guard_delivery_recipients_total", "Recipient delivery attempts by result", ["result"])
MESSAGES_DELIVERED = Counter("guard_messages_delivered_total", "Messages fully delivered")
MESSAGES_DEFERRED = Counter("guard_messages_deferred_total", "Delivery attempts deferred")
MESSAGES_BOUNCED = Counter(
    "guard_messages_bounced_total", "Messages that failed permanently (DSN sent if possible)")
DELIVERY_LATENCY = Histogram(
    "guard_delivery_latency_seconds", "Time from acceptance to delivery",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400))
ACCEPT_LATENCY = Histogram(
    "guard_accept_commit_seconds", "Time from end of DATA to the commit behind the 250",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))
QUEUE_DEPTH = Gauge("guard_queue_messages", "Messages in the queue by state", ["state"],
                    multiprocess_mode="livemax")  # set by the main process only
DB_BATCH_SIZE = Histogram(
    "guard_db_batch_operations", "Operations committed per write transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128))
DB_ERRORS = Counter("guard_db_errors_total", "Failed write transactions")
POLICY_RELOADS = Counter("guard_policy_reloads_total", "Policy reloads by result", ["result"])
