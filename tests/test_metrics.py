"""/metrics through the real interface: a `guard serve` process (SMTP fronts, so the
multiprocess files), real mail over SMTP (passed, deferred, held, refused), holds
confirmed and cancelled on the review pages, scrapes over HTTP parsed with
prometheus_client's parser; who may read /metrics (token, own listener); two instances
on one PostgreSQL report the same database-wide queue; docs/metrics.md lists exactly
the metrics guard/metrics.py defines."""

from __future__ import annotations

import hashlib
import re
import smtplib
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    ROOT,
    GuardProcess,
    Sink,
    TlsFiles,
    free_port,
    require_postgres,
    reset_postgres,
    simple_message,
    submit,
    wait_for,
)
from tests.hold.conftest import LINK, forms_of, http_request, parse_notice

TOKEN = "metrics-token-for-tests"
POLICY = """\
version: 1
name: metrics-test
defaults:
  internal_domains: [example.co.jp]
  uninspectable: pass
lists:
  suppression:
    gone: gone.csv
groups:
  security: {approvers: [boss@example.co.jp]}
keywords:
  - {name: hold-me, pattern: "HOLDME", fields: [subject, body]}
  - {name: refuse-me, pattern: "REFUSEME", fields: [subject, body]}
  - {name: approve-me, pattern: "APPROVEME", fields: [subject, body]}
rules:
  - name: refuse-keyword
    conditions: [{symbol: keyword, evidence: {rule: refuse-me}}]
    action: reject
    message: {ja: 送れません。, en: Refused.}
  - name: confirm-keyword
    conditions: [{symbol: keyword, evidence: {rule: hold-me}}]
    action: confirm
    message: {ja: 確認してください。, en: Please confirm.}
  - name: approve-keyword
    conditions: [{symbol: keyword, evidence: {rule: approve-me}}]
    action: approve
    approver_group: security
    message: {ja: 承認が必要です。, en: Needs approval.}
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def write_policy(d: Path) -> Path:
    d.mkdir(exist_ok=True)
    (d / "gone.csv").write_text("email\nleft@example.org\nquit@example.net\n")
    path = d / "policy.yaml"
    path.write_text(POLICY)
    return path


def scrape(port: int, token: str | None = TOKEN) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def labelled(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


# --- the review page, as the sender's browser uses it ----------------------------------

def _http(method: str, url: str, form: dict[str, str] | None = None,
          cookies: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    r = http_request(method, url, form, {"User-Agent": "Mozilla/5.0 test", "Origin": "null",
                                         "Sec-Fetch-Site": "same-origin"}, cookies)
    return r.status, r.body, r.cookies


def review(link: str, op: str, **fields: str) -> None:
    status, page, cookies = _http("GET", link)
    assert status == 200, page[:500]
    (form,) = [f for f in forms_of(page) if f.get("op") == op]
    status, page, _ = _http("POST", link, {**form, **fields}, cookies)
    assert status == 200, page[:500]


def held_notice_link(sink: Sink, subject: str) -> str:
    def find() -> str:
        for m in list(sink.messages):
            if b"X-Guard-Notice: held" in m.data:
                n = parse_notice(m.data)
                if subject in n.body or subject in n.subject:
                    found = LINK.search(n.body)
                    return found.group(1) if found else ""
        return ""

    return wait_for(find, 15, what=f"held notice for {subject}")


# --- tests -------------------------------------------------------------------------------


def test_metrics_follow_mail_through_the_guard(guard_factory: Any, sink: Sink, tls: TlsFiles,
                                               tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "policy")
    sink.behaviour.rcpt_replies = {"later": "451 4.3.0 try again later"}
    # an approval is late at once (nobody to escalate to: the default escalation time)
    g: GuardProcess = guard_factory(sink.url, policy=str(policy), metrics__token=TOKEN,
                                    review__default_escalate_after_minutes="0")
    # no token, a wrong one: 401, and nothing is read for them
    for token in (None, "wrong"):
        status, body = scrape(g.web_port, token)
        assert status == 401 and "guard_" not in body

    ext, me = "bob@example.net", "alice@example.co.jp"
    submit(g.smtp_port, tls, me, [ext], simple_message("plain", to=ext))
    submit(g.smtp_port, tls, me, ["later@example.net"],
           simple_message("deferred", to="later@example.net"))
    for subject in ("HOLDME one", "HOLDME two", "HOLDME three", "APPROVEME"):
        submit(g.smtp_port, tls, me, [ext], simple_message(subject, to=ext))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        submit(g.smtp_port, tls, me, [ext], simple_message("REFUSEME", to=ext))
    assert refused.value.smtp_code == 550
    # the sender confirms one hold and cancels another on the review page
    review(held_notice_link(sink, "HOLDME one"), "confirm", **{"rcpt-0": "send"})
    review(held_notice_link(sink, "HOLDME two"), "cancel", cancel_reason="wrong_recipient")
    wait_for(lambda: any(b"Subject: HOLDME one" in m.data for m in sink.messages),
             what="the confirmed message delivered")

    def settled() -> Samples | None:
        status, text = scrape(g.web_port)
        assert status == 200
        s = parse(text)
        ok = (value(s, "guard_queue_messages", state="deferred") == 1
              and value(s, "guard_queue_messages", state="held") == 2
              and value(s, "guard_holds_pending_past_escalation", kind="approve") == 1
              # the notices the holds and the cancel queued are delivered too (a gauge read
              # while one waits for the delivery worker says it is seconds old)
              and value(s, "guard_queue_oldest_age_seconds", state="queued") == 0
              and value(s, "guard_hold_outcomes_total", kind="confirm", outcome="cancelled",
                        by="sender") == 1)
        return s if ok else None

    # (the gauges are read at most every 5 s; a loaded machine needs more than that)
    s = wait_for(settled, 60, 0.5, what="queue and hold gauges settled")
    sub = {"listener": "submission"}
    # intake, by listener
    assert value(s, "guard_messages_received_total", **sub) == 7
    assert value(s, "guard_messages_accepted_total", disposition="queued", **sub) == 2
    assert value(s, "guard_messages_accepted_total", disposition="held", **sub) == 4
    assert value(s, "guard_messages_rejected_total", reason="policy", **sub) == 1
    assert value(s, "guard_smtp_sessions_total", **sub) >= 6  # (+ the readiness probe)
    # verdicts by action and deciding rule; findings by symbol and scope
    assert value(s, "guard_verdicts_total", action="pass", rule="none") == 2
    assert value(s, "guard_verdicts_total", action="confirm", rule="confirm-keyword") == 3
    assert value(s, "guard_verdicts_total", action="reject", rule="refuse-keyword") == 1
    assert value(s, "guard_verdicts_total", action="approve", rule="approve-keyword") == 1
    assert value(s, "guard_findings_total", symbol="keyword", scope="external") == 5
    assert value(s, "guard_inspection_seconds_count") == 7
    # holds: created, what became of them, who acted; pending and age, database-wide
    assert value(s, "guard_holds_created_total", kind="confirm", rule="confirm-keyword") == 3
    assert value(s, "guard_hold_outcomes_total", kind="confirm", outcome="confirmed",
                 by="sender") == 1
    assert value(s, "guard_hold_decision_seconds_count", kind="confirm") == 2
    assert value(s, "guard_near_misses_total", by="sender", kind="confirm") == 1
    assert value(s, "guard_notices_sent_total", kind="held") == 4
    assert value(s, "guard_notices_sent_total", kind="approval_request") == 1
    assert value(s, "guard_review_requests_total", method="POST", result="200") == 2
    assert value(s, "guard_holds_pending", kind="confirm") == 1
    assert value(s, "guard_holds_pending", kind="approve") == 1
    assert value(s, "guard_holds_pending", kind="delay") == 0
    assert 0 < value(s, "guard_hold_oldest_pending_age_seconds", kind="confirm") < 120
    assert value(s, "guard_hold_oldest_pending_age_seconds", kind="delay") == 0
    assert value(s, "guard_holds_pending_past_escalation", kind="confirm") == 0
    # delivery: upstream attempts by result and reply class; the queue, database-wide
    assert value(s, "guard_upstream_attempts_total", result="delivered", reply_class="2xx") >= 2
    assert value(s, "guard_upstream_attempts_total", result="deferred", reply_class="4xx") >= 1
    assert value(s, "guard_messages_delivered_total") >= 2
    assert 0 < value(s, "guard_queue_oldest_age_seconds", state="deferred") < 120
    assert value(s, "guard_queue_oldest_age_seconds", state="queued") == 0
    assert {d["state"] for d in labelled(s, "guard_queue_messages")} == {
        "queued", "deferred", "held"}
    assert abs(value(s, "guard_queue_metrics_refreshed_timestamp_seconds") - time.time()) < 60
    # lists, policy, database, build
    assert value(s, "guard_list_members", list="gone") == 2
    assert abs(value(s, "guard_list_last_sync_timestamp_seconds", list="gone")
                - time.time()) < 120
    digest = hashlib.sha256(hashlib.sha256(policy.read_bytes()).digest()).hexdigest()
    assert labelled(s, "guard_policy_info") == [{"sha256": digest[:12]}]
    assert value(s, "guard_policy_info", sha256=digest[:12]) == 1
    assert value(s, "guard_policy_rules") == 3
    assert value(s, "guard_policy_last_reload_successful") == 1
    assert value(s, "guard_db_commit_seconds_count") > 0
    assert value(s, "guard_db_errors_total") == 0
    from importlib.metadata import version

    (build,) = labelled(s, "guard_build_info")
    assert build["version"] == version("guard") and re.fullmatch(r"3\.\d+\.\d+.*",
                                                                 build["python"])
    # no address, subject or id in any label
    for (_, labels) in s:
        for _, v in labels:
            assert "@" not in v and not re.search(r"HOLDME|APPROVEME|REFUSEME", v), v


def test_two_instances_report_the_same_database_wide_queue(
        guard_factory: Any, sink: Sink, tls: TlsFiles, tmp_path: Path) -> None:
    """Two guards on one PostgreSQL: each reports the whole queue (max combines them, not
    sum). One serves /metrics on its own listener (none on the web one), the other with
    a token."""
    url = require_postgres()
    reset_postgres(url)
    policy = write_policy(tmp_path / "policy")
    own = free_port()
    a = guard_factory(sink.url, url, policy=str(policy), metrics__listen=f"127.0.0.1:{own}",
                      instance_id="a")
    b = guard_factory(sink.url, url, policy=str(policy), metrics__token=TOKEN,
                      instance_id="b")
    assert a.http("/metrics")[0] == 404  # the people-facing listener does not serve it
    assert "/metrics" not in a.http("/")[1]
    for i, g in enumerate((a, a, a, b, b)):
        submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
               simple_message(f"HOLDME {i}"))

    def held(port: int, token: str | None) -> float | None:
        s = parse(scrape(port, token)[1])
        n = value(s, "guard_queue_messages", state="held")
        return n if n == 5 and value(s, "guard_holds_pending", kind="confirm") == 5 else None

    # (each reading is cached for 5 s: wait for one taken after the last commit); a's
    # listener of its own needs no token
    assert wait_for(lambda: held(own, None), 15, 0.5, what="a sees all 5") == 5
    assert wait_for(lambda: held(b.web_port, TOKEN), 15, 0.5, what="b sees all 5") == 5
    sa, sb = parse(scrape(own, None)[1]), parse(scrape(b.web_port, TOKEN)[1])
    # counters stay per instance: each counted what it accepted
    assert value(sa, "guard_messages_accepted_total", listener="submission",
                 disposition="held") == 3
    assert value(sb, "guard_messages_accepted_total", listener="submission",
                 disposition="held") == 2


DOC_ROW = re.compile(r"^\| `(guard_[a-z0-9_]+)` \| (counter|gauge|histogram) \|", re.M)


def test_docs_list_exactly_the_metrics_guard_defines() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    from guard import metrics

    defined: dict[str, str] = {}
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            (family,) = obj.describe()
            name = family.name + ("_total" if family.type == "counter" else "")
            defined[name] = family.type
    for family in metrics.STATE.describe():
        defined[family.name] = family.type
    documented = dict(DOC_ROW.findall((ROOT / "docs" / "metrics.md").read_text()))
    assert set(defined) - set(documented) == set(), "defined but not in docs/metrics.md"
    assert set(documented) - set(defined) == set(), "in docs/metrics.md but not defined"
    assert documented == defined  # and with the right type
