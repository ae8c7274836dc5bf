"""The Grafana dashboard (deploy/grafana/guard.json): import-ready JSON, every panel's
expression accepted by promtool, and — the real chain — a guard taking mail, Debian's
Prometheus scraping it with the alert rules loaded, every panel queried from that live
Prometheus without an error and drawn into a PNG by headless Chromium
(tests/dashboard/render.py, which also makes the screenshot for the docs)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboard import render
from tests.test_alerts import run_promtool

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "deploy" / "grafana"
# gauges read from the shared database: every instance reports the same value
DB_WIDE = re.compile(r"guard_(queue_messages|queue_oldest_age_seconds"
                     r"|holds_pending(_past_escalation)?|hold_oldest_pending_age_seconds|list_members"
                     r"|list_last_sync_timestamp_seconds)\b")


def dashboard() -> dict[str, Any]:
    return render.load_dashboard()


def exprs(d: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in render.data_panels(d) for t in p["targets"]]


def test_dashboard_is_import_ready() -> None:
    d = dashboard()
    assert d["schemaVersion"] >= 36 and d["uid"] and d["title"] and d["id"] is None
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query"
    assert variables["instance"]["includeAll"] and variables["instance"]["allValue"] == ".*"
    rows = [p["title"].lower() for p in d["panels"] if p["type"] == "row"]
    for wanted in ("intake", "inspection", "holds and approvals", "delivery", "database"):
        assert any(wanted in r for r in rows), wanted
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in render.data_panels(d):
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["type"] in ("timeseries", "stat"), p["title"]
        assert p["targets"], p["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])
        # units set, and ones the renderer knows how to print
        assert p["fieldConfig"]["defaults"]["unit"] in render.UNITS, p["title"]


def test_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for p in dashboard()["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                 for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, f"{p['title']} overlaps another panel"
        taken |= cells


def test_rates_and_database_wide_gauges() -> None:
    for e in exprs(dashboard()):
        for window in re.findall(r"\b(?:rate|increase)\([^\[]*\[([^\]]+)\]", e):
            assert window in ("$__rate_interval", "$__range"), e
        if DB_WIDE.search(e):
            assert "max" in e and "sum" not in e, f"database-wide gauge not by max: {e}"
        assert '$instance"' in e, f"not filtered by $instance: {e}"


def test_every_expression_is_accepted_by_promtool(tmp_path: Path) -> None:
    """The panels' and the alert annotation's queries as recording rules, with the
    variables Grafana substitutes."""
    d = dashboard()
    variables = render.variables_for(0, 3600, 15, 15)
    queries = [render.substitute(e, variables) for e in exprs(d)]
    queries += [a["expr"] for a in d["annotations"]["list"] if "expr" in a]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries)]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    r = run_promtool("check", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(queries)} rules found" in r.stdout
    # and a broken one is refused: the check is real
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "x:y", "expr": render.substitute(
            "sum(rate(guard_messages_received_total[$__rate_interval])", variables)}]}]}))
    assert run_promtool("check", "rules", str(path)).returncode != 0


def test_grafana_provisioning() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
                        .read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"]
    assert source["url"] == "http://prometheus:9090"
    boards = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "guard.yml")
                            .read_text())
    (provider,) = boards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is required in CI")
        pytest.skip(f"{tool} not installed")


def test_live_prometheus_answers_every_panel(tmp_path: Path) -> None:
    _require(render.PROMETHEUS)
    _require(render.CHROMIUM)
    with render.demo_stack(tmp_path) as stack:
        start = time.time()
        traffic = render.send_traffic(stack)
        assert traffic.accepted >= 20 and traffic.refused >= 1  # My Number is refused
        render.wait_until(lambda: render.scraped(stack, "guard_messages_received_total")
                          >= traffic.accepted, 20, "the traffic in Prometheus")
        # the alert rules are loaded and evaluate without an error
        rules = render.wait_until(lambda: [
            r for g in render.prom_get(stack.prometheus, "/api/v1/rules", {})["groups"]
            for r in g["rules"] if r.get("lastEvaluation", "").startswith("2")
            and r["health"] == "ok"], 10, "the alert rules evaluated")
        assert {r["name"] for r in rules} == {
            r["alert"] for r in yaml.safe_load(render.ALERTS.read_text())["groups"][0]["rules"]}
        # the My Number sample went to an outside address: once the guard counts it,
        # GuardSevereFinding fires at the next evaluation (it has no waiting time)
        finding = 'guard_findings_total{symbol="pii.my_number", scope="external"}'
        if render.scraped(stack, finding) > 0:
            render.wait_until(lambda: "GuardSevereFinding" in render.firing_alerts(
                stack.prometheus, render.load_dashboard()), 10, "GuardSevereFinding")

        time.sleep(3 * stack.scrape_interval)  # scrapes after the mail, for the rates
        png = tmp_path / "dashboard.png"
        # rate windows of 20 s ($__rate_interval of a 5 s scrape interval)
        results = render.render(stack.prometheus, png, start - 5, 5.0)

    errors = [f"{pid}: {r.expr}: {r.error}" for pid, rs in results.items() for r in rs
              if r.error]
    assert not errors, errors
    panels = {p["title"]: p["id"] for p in render.data_panels(render.load_dashboard())}
    assert len(results) == len(panels)
    # metrics the guard has today reach the drawing
    for title in ("Messages received", "Delivered, deferred, bounced", "Queue by state"):
        assert any(r.series for r in results[panels[title]]), title
    width, height = _png_size(png)
    assert width == render.WIDTH and height > 2000
    page = png.with_suffix(".html").read_text(encoding="utf-8")
    assert "Holds and approvals" in page and "<polyline" in page
