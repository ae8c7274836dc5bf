"""Draw deploy/grafana/guard.json from a live Prometheus into one PNG (Grafana is not
installable here): each panel's queries go to Prometheus's /api/v1/query_range with the
dashboard's variables substituted, panels are laid out by gridPos on an HTML page (time
series as SVG lines, stat panels as numbers, titles and units), and headless Chromium
takes the screenshot.

    .venv/bin/python tests/dashboard/render.py --prometheus http://127.0.0.1:9090 --out d.png
    .venv/bin/python tests/dashboard/render.py --demo --out dashboard.png

--demo runs the whole chain on this machine: `guard dev` (SQLite and its development
upstream; or --instances N on one --database postgresql://…) on free loopback ports,
Debian's `prometheus` scraping it every second with deploy/prometheus/alerts.yml loaded,
the example policy's sample messages and plain mail over SMTP for a while, then the
drawing. tests/test_dashboard.py runs it briefly.

One file of about 700 lines, one job (a picture of the dashboard from live data): it
runs as a plain script from a checkout, with nothing to import but the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import math
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.utils import getaddresses
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "guard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
SAMPLES = ROOT / "policies" / "samples"
CHROMIUM = os.environ.get("GUARD_CHROMIUM", "/usr/bin/chromium")
PROMETHEUS = os.environ.get("GUARD_PROMETHEUS", "/usr/bin/prometheus")

WIDTH = 1600  # page width in pixels
CELL_H, MARGIN = 30, 8  # Grafana's grid: a row unit is 30 px, panels 8 px apart
HEADER_H = 64
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9",
           "#705da0", "#37872d", "#fade2a", "#447ebc", "#c15c17"]
# the units the dashboard may use: each one has a formatter below
UNITS = ("none", "short", "s", "suffix: msg/min", "suffix: /min")


# --- the dashboard and its queries ------------------------------------------------------


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return dict(json.load(f))


def data_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels that query (not the rows), collapsed rows' panels included."""
    out: list[dict[str, Any]] = []
    for p in dashboard["panels"]:
        if p["type"] == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def substitute(expr: str, variables: dict[str, str]) -> str:
    """The expression as Grafana sends it: $name, ${name} and ${name:format} replaced."""
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in variables:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return variables[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", one, expr)


def variables_for(start: float, end: float, step: float, scrape_interval: float,
                  instance: str = ".*") -> dict[str, str]:
    """Grafana's values: $__rate_interval = max(4 × scrape interval, step + scrape)."""
    rate = max(4 * scrape_interval, step + scrape_interval)
    return {"__rate_interval": f"{math.ceil(rate)}s", "__interval": f"{int(step)}s",
            "__range": f"{int(end - start)}s", "instance": instance,
            "datasource": "prometheus"}


class QueryError(Exception):
    """Prometheus refused a query (its own message)."""


def prom_get(base: str, path: str, params: dict[str, str], timeout: float = 20) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            doc = json.load(r)
    except urllib.error.HTTPError as e:
        try:
            doc = json.load(e)
        except ValueError:
            raise QueryError(f"HTTP {e.code}") from None
    if doc.get("status") != "success":
        raise QueryError(f"{doc.get('errorType')}: {doc.get('error')}")
    return doc["data"]


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]  # (unix time, value); NaN for a gap


@dataclass
class TargetResult:
    expr: str
    series: list[Series] = field(default_factory=list)
    error: str = ""


def legend(fmt: str, labels: dict[str, str], expr: str) -> str:
    if fmt:
        name = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
        return name.strip() or "(no label)"
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    if not shown:
        return labels.get("__name__", expr)
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(shown.items()))
    return f"{labels.get('__name__', '')}{{{inner}}}"


def query_panel(base: str, panel: dict[str, Any], variables: dict[str, str], start: float,
                end: float, step: float) -> list[TargetResult]:
    results = []
    for t in panel.get("targets", []):
        expr = substitute(t["expr"], variables)
        res = TargetResult(expr)
        try:
            data = prom_get(base, "/api/v1/query_range", {
                "query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                "step": f"{step:g}"})
        except (QueryError, OSError) as e:
            res.error = str(e)
        else:
            for s in data["result"]:
                res.series.append(Series(
                    legend(t.get("legendFormat", ""), s["metric"], expr),
                    [(float(ts), float(v)) for ts, v in s["values"]]))
        results.append(res)
    return results


def query_all(base: str, dashboard: dict[str, Any], start: float, end: float, step: float,
              scrape_interval: float) -> dict[int, list[TargetResult]]:
    variables = variables_for(start, end, step, scrape_interval)
    return {p["id"]: query_panel(base, p, variables, start, end, step)
            for p in data_panels(dashboard)}


def firing_alerts(base: str, dashboard: dict[str, Any]) -> list[str]:
    """The dashboard's alert annotation query, now: the names of the firing alerts."""
    names = []
    for a in dashboard.get("annotations", {}).get("list", []):
        if "expr" in a:
            for s in prom_get(base, "/api/v1/query", {"query": a["expr"]})["result"]:
                names.append(legend(a.get("titleFormat", ""), s["metric"], a["expr"]))
    return sorted(set(names))


# --- numbers and units -------------------------------------------------------------------


def _short(v: float) -> str:
    a = abs(v)
    for limit, suffix in ((1e12, " T"), (1e9, " B"), (1e6, " M"), (1e3, " K")):
        if a >= limit:
            return f"{v / limit:.3g}{suffix}"
    if a == 0 or a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}" if a >= 0.001 else f"{v:.1e}"


def _duration(v: float) -> str:
    a = abs(v)
    if a == 0:
        return "0 s"
    if a < 1e-3:
        return f"{v * 1e6:.3g} µs"
    if a < 1:
        return f"{v * 1e3:.3g} ms"
    for limit, unit in ((86400, "day"), (3600, "hour"), (60, "min")):
        if a >= limit:
            return f"{v / limit:.3g} {unit}"
    return f"{v:.3g} s"


def fmt(v: float, unit: str) -> str:
    if math.isnan(v):
        return "–"
    if unit == "s":
        return _duration(v)
    if unit.startswith("suffix:"):
        return _short(v) + unit.removeprefix("suffix:")
    return _short(v)


# --- drawing -----------------------------------------------------------------------------


def _esc(s: str) -> str:
    return html.escape(s, quote=True)


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


LEGEND_MAX = 12  # legend entries drawn; more are counted


def _legend_rows(names: list[str], width: int) -> int:
    """Lines the legend wraps to (11 px text: about 6.2 px a character), at most 3."""
    rows, used = (1 if names else 0), 8.0
    for name in names:
        item = 16 + 6.2 * len(name) + 12
        if used + item > width and used > 8:
            rows, used = rows + 1, 8.0
        used += item
    return min(rows, 3)


def timeseries_svg(results: list[TargetResult], unit: str, w: int, h: int, start: float,
                   end: float) -> str:
    series = [s for r in results for s in r.series]
    values = [v for s in series for _, v in s.points if not math.isnan(v)]
    shown = series[:LEGEND_MAX]
    svg_h = h - 18 * _legend_rows([s.name for s in shown], w) - 4
    plot_h = svg_h - 20  # the time labels below
    left, right, top = 76, 8, 6
    pw, ph = w - left - right, plot_h - top
    lo = min([0.0, *values])
    hi = max([*values, 0.0]) * 1.1
    if hi <= lo:  # all zero (a counter that never moved) or no data
        hi = lo + 1
    ticks = _ticks(lo, hi)
    hi = max(hi, ticks[-1])

    def x(t: float) -> float:
        return left + (t - start) / (end - start) * pw

    def y(v: float) -> float:
        return top + ph - (v - lo) / (hi - lo) * ph

    out = [f'<svg width="{w}" height="{svg_h}" xmlns="http://www.w3.org/2000/svg">']
    for tv in ticks:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(tv):.1f}" y2="{y(tv):.1f}" '
                   'stroke="#2c3235"/>')
        out.append(f'<text x="{left - 6}" y="{y(tv) + 4:.1f}" text-anchor="end" '
                   f'class="axis">{_esc(fmt(tv, unit))}</text>')
    for i in range(5):
        t = start + (end - start) * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        out.append(f'<text x="{x(t):.1f}" y="{plot_h + 14}" text-anchor="{anchor}" '
                   f'class="axis">{time.strftime("%H:%M:%S", time.localtime(t))}</text>')
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for t, v in s.points:
            if math.isnan(v) or math.isinf(v):
                runs.append([])
            else:
                runs[-1].append(f"{x(t):.1f},{y(v):.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
            elif run:
                out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                           f'points="{" ".join(run)}"/>')
    out.append("</svg>")
    if not series:
        out.append('<div class="nodata">No data</div>')
    items = [f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>'
             f"{_esc(s.name)}</span>" for i, s in enumerate(shown)]
    if len(series) > len(shown):
        items.append(f"<span>+{len(series) - len(shown)} more</span>")
    out.append(f'<div class="legend">{"".join(items)}</div>')
    return "".join(out)


def _last(points: list[tuple[float, float]]) -> float:
    for _, v in reversed(points):
        if not math.isnan(v):
            return v
    return math.nan


def _stat_color(v: float, defaults: dict[str, Any]) -> str:
    color = "#73bf69"
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step.get("value") is None or v >= step["value"]:
            color = step["color"]
    return {"green": "#73bf69", "red": "#f2495c", "orange": "#ff9830",
            "blue": "#5794f2"}.get(color, color)


def _mapped(v: float, defaults: dict[str, Any]) -> str | None:
    for m in defaults.get("mappings", []):
        if m.get("type") == "value":
            hit = m["options"].get(f"{v:g}")
            if hit:
                return str(hit["text"])
    return None


def stat_html(panel: dict[str, Any], results: list[TargetResult], width: int) -> str:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit", "none")
    series = [s for r in results for s in r.series]
    if not series:
        return '<div class="nodata">No data</div>'
    name_mode = panel.get("options", {}).get("textMode") == "name"
    cells = []
    for s in series[:4]:
        v = _last(s.points)
        text = s.name if name_mode else (_mapped(v, defaults) or fmt(v, unit))
        color = "#ccccdc" if name_mode else _stat_color(v, defaults)
        # as large as fits the panel's width, as Grafana's auto size does
        size = max(11, min(32 if len(series) == 1 else 18, int(width / (0.6 * len(text) + 1))))
        cells.append(f'<div class="big" style="color:{color};font-size:{size}px">'
                     f"{_esc(text)}</div>")
    return f'<div class="stat n{len(cells)}">{"".join(cells)}</div>'


CSS = """
body { margin: 0; background: #111217; color: #ccccdc; font: 13px 'Noto Sans', 'Noto Sans CJK JP',
  sans-serif; }
header { height: 48px; display: flex; align-items: center; gap: 24px; padding: 0 16px;
  border-bottom: 1px solid #2c3235; }
header h1 { font-size: 18px; margin: 0; font-weight: 500; }
header .meta { color: #8e8e9e; }
header .alerts { margin-left: auto; }
header .alerts b { color: #f2495c; }
.grid { position: relative; margin: 8px; }
.row { position: absolute; font-size: 16px; font-weight: 500; padding-top: 6px; }
.panel { position: absolute; background: #181b1f; border: 1px solid #2c3235;
  border-radius: 2px; overflow: hidden; }
.panel h2 { font-size: 13px; font-weight: 500; margin: 6px 8px 0; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
.body { position: relative; margin: 4px 4px 0; }
.axis { fill: #8e8e9e; font-size: 11px; }
.legend { font-size: 11px; line-height: 18px; padding-left: 8px; display: flex;
  flex-wrap: wrap; column-gap: 12px; overflow: hidden; }
.legend i { display: inline-block; width: 12px; height: 3px; margin: 0 4px 3px 0; }
.nodata { position: absolute; top: 40%; width: 100%; text-align: center; color: #8e8e9e; }
.error { color: #f2495c; font-size: 11px; padding: 4px 8px; }
.stat { display: flex; flex-direction: column; justify-content: center; height: 100%; }
.stat .big { text-align: center; font-weight: 500; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
"""


def page_html(dashboard: dict[str, Any], results: dict[int, list[TargetResult]],
              start: float, end: float, alerts: list[str]) -> tuple[str, int]:
    """The page and its height in pixels."""
    col = (WIDTH - 2 * MARGIN + MARGIN) / 24
    parts = []
    bottom = 0
    for p in dashboard["panels"]:
        g = p["gridPos"]
        left, top = g["x"] * col, g["y"] * (CELL_H + MARGIN)
        w = int(g["w"] * col - MARGIN)
        h = int(g["h"] * CELL_H + (g["h"] - 1) * MARGIN)
        bottom = max(bottom, int(top + h))
        style = f"left:{left:.0f}px;top:{top:.0f}px;width:{w}px;height:{h}px"
        if p["type"] == "row":
            parts.append(f'<div class="row" style="{style}">{_esc(p["title"])}</div>')
            continue
        res = results.get(p["id"], [])
        errors = "".join(f'<div class="error">{_esc(r.error)}</div>' for r in res if r.error)
        body_h = h - 30
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "none")
        if p["type"] == "stat":
            body = stat_html(p, res, w - 16)
        else:
            body = timeseries_svg(res, unit, w - 8, body_h, start, end)
        parts.append(f'<div class="panel" style="{style}"><h2>{_esc(p["title"])}</h2>'
                     f'{errors}<div class="body" style="height:{body_h}px">{body}</div></div>')
    span = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(start))} – " \
           f"{time.strftime('%H:%M:%S', time.localtime(end))}"
    firing = ("firing: <b>" + _esc(", ".join(alerts)) + "</b>") if alerts else \
        "no alert firing"
    doc = (f'<!doctype html><html><head><meta charset="utf-8"><style>{CSS}</style></head>'
           f'<body><header><h1>{_esc(dashboard["title"])}</h1>'
           f'<span class="meta">{_esc(span)} · instance: All</span>'
           f'<span class="alerts">{firing}</span></header>'
           f'<div class="grid" style="height:{bottom}px">{"".join(parts)}</div></body></html>')
    return doc, bottom + HEADER_H


def screenshot(page: Path, png: Path, width: int, height: int, timeout: float = 90) -> None:
    """Headless Chromium's own screenshot of a local page (a throwaway profile)."""
    with tempfile.TemporaryDirectory(prefix="guard-chromium-") as profile:
        subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             f"--screenshot={png}", f"--window-size={width},{height}", page.as_uri()],
            check=True, capture_output=True, timeout=timeout)
    if not png.exists() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {png}")


def render(base: str, out: Path, start: float, scrape_interval: float,
           dashboard: dict[str, Any] | None = None) -> dict[int, list[TargetResult]]:
    """Query every panel from `start` to now and write the screenshot to `out`.
    `scrape_interval` is what Grafana's data source is told ($__rate_interval)."""
    dashboard = dashboard or load_dashboard()
    end = time.time()
    step = max(1.0, (end - start) / 300)
    results = query_all(base, dashboard, start, end, step, scrape_interval)
    page, height = page_html(dashboard, results, start, end, firing_alerts(base, dashboard))
    html_file = out.with_suffix(".html")
    html_file.write_text(page, encoding="utf-8")
    screenshot(html_file, out, WIDTH, height)
    return results


# --- the demo chain: guard dev, Prometheus, mail -----------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, QueryError):
            v = pred()
            if v:
                return v
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), 0.3):
        return True


@dataclass
class Guard:
    smtp_port: int
    web_port: int
    env: dict[str, str]  # its GUARD_* settings (also for `guard queue …`)
    proc: subprocess.Popen[bytes]


@dataclass
class Stack:
    workdir: Path
    guards: list[Guard]
    prometheus: str  # base URL
    scrape_interval: float


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _started(proc: subprocess.Popen[bytes], log: Path, *ports: int) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"{log.stem} exited {proc.returncode}: "
                           f"{log.read_text(errors='replace')[-2000:]}")
    return all(_port_open(p) for p in ports)


@contextlib.contextmanager
def _process(args: list[str], workdir: Path, log: Path,
             env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, cwd=workdir, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            _stop(proc)


@contextlib.contextmanager
def demo_stack(workdir: Path, scrape_interval: float = 1.0, instances: int = 1,
               database_url: str = "") -> Iterator[Stack]:
    """`guard dev` (`instances` of them on one database: SQLite in `workdir` for one,
    `database_url` for more) and a Prometheus scraping them, on free loopback ports."""
    database_url = database_url or f"sqlite:///{workdir / 'guard.db'}"
    with contextlib.ExitStack() as running:
        guards = []
        for i in range(instances):
            smtp_port, web_port, sink_port = (free_port() for _ in range(3))
            env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
            env.update({
                "GUARD_SMTP_LISTEN": f"127.0.0.1:{smtp_port}",
                "GUARD_WEB_LISTEN": f"127.0.0.1:{web_port}",
                "GUARD_UPSTREAM": f"smtp://127.0.0.1:{sink_port}",  # guard dev's own sink
                "GUARD_DATABASE_URL": database_url,
                "GUARD_SECRET_FILE": str(workdir / "guard.secret"),  # shared, as required
                "GUARD_INSPECT__WORKERS": "1",
                "GUARD_DELIVERY__POLL_INTERVAL": "0.2",
            })
            log = workdir / f"guard{i + 1}.log"
            proc = running.enter_context(_process(
                [sys.executable, "-m", "guard.cli", "dev"], workdir, log, env))
            # one after the other: the first creates the schema
            wait_until(lambda: _started(proc, log, smtp_port, web_port), 30,  # noqa: B023
                       f"guard dev {i + 1}")
            guards.append(Guard(smtp_port, web_port, env, proc))
        prom_port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": f"{scrape_interval:g}s",
                       "evaluation_interval": f"{scrape_interval:g}s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": "guard", "static_configs": [
                {"targets": [f"127.0.0.1:{g.web_port}" for g in guards]}]}]}))
        log = workdir / "prometheus.log"
        prom = running.enter_context(_process(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            workdir, log))
        base = f"http://127.0.0.1:{prom_port}"
        wait_until(lambda: _started(prom, log, prom_port) and urllib.request.urlopen(
            f"{base}/-/ready", timeout=2).status == 200, 30, "prometheus ready")
        stack = Stack(workdir, guards, base, scrape_interval)
        # every guard scraped once: rates need samples from before the mail
        wait_until(lambda: scraped(stack, 'up{job="guard"}') == instances, 30,
                   "the first scrape of every guard")
        yield stack


def _envelope(raw: bytes) -> tuple[str, list[str]]:
    msg = message_from_bytes(raw)
    sender = getaddresses([str(msg.get("From", ""))])[0][1]
    rcpts = [a for _, a in getaddresses([str(v) for k in ("To", "Cc")
                                         for v in msg.get_all(k, [])]) if a]
    return sender, rcpts


@dataclass
class Traffic:
    accepted: int = 0
    refused: int = 0


def _internal_mail(n: int) -> bytes:
    return (f"From: sato@example.co.jp\r\nTo: tanaka@example.co.jp\r\n"
            f"Subject: note {n}\r\n\r\nhello\r\n").encode()


def send_traffic(stack: Stack, seconds: float = 0.0, gap: float = 0.5) -> Traffic:
    """Each of the example policy's sample messages once (held, refused, passed) and
    plain internal mail; then, for `seconds`, one message every `gap` seconds (every
    fourth a sample, the others internal mail)."""
    samples = [p.read_bytes() for p in sorted(SAMPLES.glob("*.eml"))]
    counts = Traffic()
    deadline = time.monotonic() + seconds

    def send(s: smtplib.SMTP, raw: bytes) -> None:
        sender, rcpts = _envelope(raw)
        try:
            s.sendmail(sender, rcpts, raw)
            counts.accepted += 1
        except smtplib.SMTPResponseException:  # the policy refused it
            counts.refused += 1
            s.rset()

    ports = [g.smtp_port for g in stack.guards]
    with smtplib.SMTP("127.0.0.1", ports[0], timeout=30) as s:
        for i, raw in enumerate(samples):
            send(s, raw)
            send(s, _internal_mail(i))
    n = 0
    while time.monotonic() < deadline:  # one session a message, as mail clients do
        n += 1
        with smtplib.SMTP("127.0.0.1", ports[n % len(ports)], timeout=30) as s:
            send(s, samples[n // 4 % len(samples)] if n % 4 == 0 else _internal_mail(n))
        time.sleep(gap)
    return counts


def decide_holds(stack: Stack) -> int:
    """An administrator releases one held message and cancels another (`guard queue`):
    hold outcomes, notices and a near miss for the holds panels. Returns how many."""
    def guard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "guard.cli", *args], cwd=stack.workdir,
                              env=stack.guards[0].env, capture_output=True, text=True,
                              timeout=60)

    listing = guard("queue", "list", "--state", "held", "--json")
    held = [m["id"] for m in json.loads(listing.stdout or "[]")]
    done = 0
    if held:
        done += guard("queue", "release", held[0], "--reason", "demo").returncode == 0
    if len(held) > 1:
        done += guard("queue", "cancel", held[1], "--reason", "demo").returncode == 0
    return done


def scraped(stack: Stack, metric: str) -> float:
    """The value Prometheus has now for `sum(metric)` (0 when it has none)."""
    result = prom_get(stack.prometheus, "/api/v1/query", {"query": f"sum({metric})"})["result"]
    return float(result[0]["value"][1]) if result else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("dashboard.png"))
    ap.add_argument("--prometheus", help="base URL of a Prometheus that scrapes guard")
    ap.add_argument("--minutes", type=float, default=60, help="time range (not --demo)")
    ap.add_argument("--scrape-interval", type=float, default=15.0,
                    help="the Prometheus scrape interval in seconds ($__rate_interval)")
    ap.add_argument("--demo", action="store_true",
                    help="run guard dev + Prometheus + mail here, then draw")
    ap.add_argument("--seconds", type=float, default=90, help="--demo: seconds of mail")
    ap.add_argument("--instances", type=int, default=1,
                    help="--demo: guards on one database (more than 1 needs --database)")
    ap.add_argument("--database", default="",
                    help="--demo: database URL shared by the guards (default: SQLite in a "
                         "temporary folder), e.g. postgresql://postgres@127.0.0.1:5432/demo")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    if args.demo:
        for tool in (PROMETHEUS, CHROMIUM):
            if not shutil.which(tool):
                print(f"render.py: {tool} is not installed", file=sys.stderr)
                return 2
        if args.instances > 1 and not args.database.startswith("postgresql"):
            ap.error("--instances > 1 needs --database postgresql://… (SQLite is one process)")
        with tempfile.TemporaryDirectory(prefix="guard-demo-") as d, \
                demo_stack(Path(d), instances=args.instances,
                           database_url=args.database) as stack:
            start = time.time()
            traffic = send_traffic(stack, seconds=args.seconds / 2)
            decide_holds(stack)
            traffic2 = send_traffic(stack, seconds=args.seconds / 2)
            traffic.accepted += traffic2.accepted
            traffic.refused += traffic2.refused
            time.sleep(5 * stack.scrape_interval)  # the last scrapes and rule evaluations
            # rates over 20 s ($__rate_interval for a 5 s scrape interval): smooth lines
            # from a minute or two of mail
            results = render(stack.prometheus, out, start - 10, 5.0)
            print(f"render.py: {traffic.accepted} messages accepted, {traffic.refused} "
                  f"refused", file=sys.stderr)
    elif args.prometheus:
        results = render(args.prometheus.rstrip("/"), out, time.time() - args.minutes * 60,
                         args.scrape_interval)
    else:
        ap.error("give --prometheus URL or --demo")
    errors = [f"panel {pid}: {r.error}" for pid, rs in results.items() for r in rs if r.error]
    for e in errors:
        print(f"render.py: {e}", file=sys.stderr)
    print(f"render.py: wrote {out}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
