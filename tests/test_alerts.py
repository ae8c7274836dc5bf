"""The alert rules (deploy/prometheus/alerts.yml) with Debian's real promtool: they load
and lint clean, their unit tests pass (a firing case and a near miss for every alert),
each has a severity, a summary, a description and a runbook section in
docs/operations.md, and every metric they and the dashboard use is documented."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROM_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROM_DIR / "alerts.yml"
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))
OPERATIONS = ROOT / "docs" / "operations.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"
DASHBOARD = ROOT / "deploy" / "grafana" / "guard.json"

# the alerts the operating side promises (docs/operations.md has a section for each)
ALERT_NAMES = {
    "GuardDown", "GuardQueueStalled", "GuardDeferredBacklog", "GuardNoDeliveries",
    "GuardApprovalsUnattended", "GuardNoticeFailures", "GuardPolicyReloadFailed",
    "GuardDBErrors", "GuardListStale", "GuardSevereFinding"}


def promtool() -> str:
    """Debian's promtool (package `prometheus`): CI installs it, so there it must exist."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool (Debian package prometheus) is required in CI")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def run_promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a markdown file."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


def test_rules_load_and_lint_clean() -> None:
    r = run_promtool("check", "rules", str(ALERTS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in r.stdout


def test_rule_unit_tests_pass() -> None:
    r = run_promtool("test", "rules", *[str(p) for p in RULE_TESTS])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_a_broken_expectation_fails(tmp_path: Path) -> None:
    """The unit tests can fail: the GuardDown case with a wrong instance does."""
    doc = yaml.safe_load((PROM_DIR / "tests" / "guard_down.yml").read_text())
    doc["rule_files"] = [str(ALERTS)]
    doc["tests"][0]["alert_rule_test"][0]["exp_alerts"][0]["exp_labels"]["instance"] = \
        "guard2:8025"
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(doc))
    r = run_promtool("test", "rules", str(broken))
    assert r.returncode != 0 and "FAILED" in r.stdout + r.stderr


def test_every_alert_has_a_firing_case_and_a_near_miss() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
                for exp in check.get("exp_alerts") or []:
                    # the exact annotations are part of the expectation
                    assert set(exp["exp_annotations"]) == {
                        "summary", "description", "runbook_url"}, (path.name, case["name"])
    assert firing >= ALERT_NAMES, ALERT_NAMES - firing
    assert quiet >= ALERT_NAMES, ALERT_NAMES - quiet


def test_every_alert_is_described_and_has_a_runbook_section() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} == ALERT_NAMES
    anchors = github_anchors(OPERATIONS.read_text(encoding="utf-8"))
    for r in rules:
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        ann = r["annotations"]
        assert ann["summary"] and ann["description"], r["alert"]
        url = ann["runbook_url"]
        assert url == f"https://guard.example/docs/operations.md#{r['alert'].lower()}", url
        assert r["alert"].lower() in anchors, f"no section {r['alert']} in docs/operations.md"
        # numbers in the text: the value or a query in a template
        assert "{{" in ann["summary"] + ann["description"], r["alert"]


def test_compose_scrape_config_is_valid(tmp_path: Path) -> None:
    # promtool opens the token file the config names: the compose secret's path exists
    # only inside the container, so the check runs on a copy pointing at the demo secret
    text = (PROM_DIR / "prometheus.yml").read_text()
    token = PROM_DIR.parent / "demo" / "secrets" / "guard_metrics_token"
    assert "/run/secrets/guard_metrics_token" in text
    (tmp_path / "alerts.yml").write_text((PROM_DIR / "alerts.yml").read_text())
    (tmp_path / "prometheus.yml").write_text(
        text.replace("/run/secrets/guard_metrics_token", str(token)))
    r = run_promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    doc = yaml.safe_load(text)
    (job,) = doc["scrape_configs"]
    assert job["job_name"] == "guard"
    assert job["authorization"]["credentials_file"] == "/run/secrets/guard_metrics_token"
    assert job["static_configs"][0]["targets"] == ["guard1:8025", "guard2:8025"]
    assert doc["rule_files"] == ["alerts.yml"]


# --- the metric names are the documented ones ---------------------------------------------

_METRIC = re.compile(r"\bguard_[a-z0-9_]+")
_HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


def documented_metrics() -> set[str]:
    """The names in the first column of docs/metrics.md's table."""
    names = set()
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2:
            names.update(re.findall(r"`([a-zA-Z_:][a-zA-Z0-9_:]*)", cells[1]))
    return names


def used_metrics(text: str) -> set[str]:
    return set(_METRIC.findall(text))


def _rules_text() -> str:
    return "\n".join(str(r["expr"]) + "\n" + json.dumps(r["annotations"])
                     for r in alert_rules())


def _dashboard_text() -> str:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = [q for p in doc["panels"] for q in [p, *p.get("panels", [])]]
    return "\n".join(t["expr"] for p in panels for t in p.get("targets", []))


@pytest.mark.parametrize("source", ["alerts.yml", "guard.json"])
def test_metric_names_are_documented(source: str) -> None:
    used = used_metrics(_rules_text() if source == "alerts.yml" else _dashboard_text())
    assert len(used) > 5
    documented = documented_metrics()
    missing = sorted(n for n in used if n not in documented and not any(
        n.endswith(p) and n.removesuffix(p) in documented for p in _HISTOGRAM_PARTS))
    assert not missing, f"used in {source} but not in docs/metrics.md: {missing}"
