"""/reports: the near-miss report of a month and the yearly rule review as pages, with
small bar charts drawn as inline SVG (no script, nothing fetched), in Japanese with
English, printable (the browser's print gives the PDF).

Who may see them: the web listener serves people and has no admin login, so these
pages are guarded like /metrics there: with `metrics.token` set a request must carry
`Authorization: Bearer <token>`; without one they are served only when the web
listener is on a loopback address (guard/app.py decides, as for /metrics).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from guard.report import periods, render
from guard.report.nearmiss import NearMissReport
from guard.report.read import PolicyFacts, near_miss_report, rules_report
from guard.report.rules import RuleCount, RulesReport
from guard.store import AsyncEngine
from guard.web.plain import SECURITY_HEADERS

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:62rem;color:#111}"
    "table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border-bottom:1px solid #ddd;"
    "padding:.25rem .5rem;text-align:left}td.n{text-align:right}"
    "section{break-inside:avoid;page-break-inside:avoid}svg{display:block;margin:.25rem 0}"
    "nav a{margin-right:1rem}.en{color:#555}"
    "@media print{nav,form{display:none}body{margin:0;max-width:none;font-size:10pt}"
    "a{color:inherit;text-decoration:none}}"
)
BAR_WIDTH = 300
ROW = 18
LABEL = 220


def bar_chart(rows: Sequence[tuple[str, int]], title: str) -> str:
    """A horizontal bar chart: one row per key, the bar's length its share of the
    largest count."""
    if not rows:
        return ""
    top = max(n for _k, n in rows) or 1
    width = LABEL + BAR_WIDTH + 50
    parts = [f"<svg role='img' width='{width}' "
             f"height='{ROW * len(rows) + 4}' aria-label='{html.escape(title, True)}'>"]
    for i, (key, n) in enumerate(rows):
        y = i * ROW + 2
        w = round(BAR_WIDTH * n / top)
        label = key if len(key) <= 32 else key[:31] + "…"
        parts.append(
            f"<text x='{LABEL - 6}' y='{y + 13}' text-anchor='end' font-size='12'>"
            f"{html.escape(label)}</text>"
            f"<rect x='{LABEL}' y='{y + 2}' width='{w}' height='{ROW - 5}' fill='#4a78b0'/>"
            f"<text x='{LABEL + w + 4}' y='{y + 13}' font-size='12'>{n}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: Sequence[tuple[str, int]], ja: str, en: str) -> str:
    body = "".join(f"<tr><td>{html.escape(k)}</td><td class='n'>{n}</td></tr>"
                   for k, n in rows) or "<tr><td>—</td><td class='n'>0</td></tr>"
    return (f"<table><tr><th>{ja} <span class='en'>/ {en}</span></th>"
            f"<th>件数 <span class='en'>/ Count</span></th></tr>{body}</table>")


def _doc(title: str, body: str) -> HTMLResponse:
    nav = ("<nav><a href='/reports/near-misses'>ヒヤリハット / Near misses</a>"
           "<a href='/reports/rules'>ルールの見直し / Rule review</a></nav>")
    return HTMLResponse(
        "<!doctype html><html lang='ja'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"{nav}{body}</body></html>", headers=SECURITY_HEADERS)


def near_miss_page(r: NearMissReport) -> str:
    out = [f"<h1>ヒヤリハット報告 {r.period.label} <span class='en'>/ Near-miss report"
           f"</span></h1>",
           f"<p>ヒヤリハット件数 <span class='en'>/ Near misses</span>: "
           f"<strong id='total'>{r.total}</strong></p>",
           "<p>保留された送信を、送信者・管理者が取り消した、または承認者が却下した件数です。"
           "<br><span class='en'>Held messages that the sender or an admin cancelled, or "
           "an approver rejected.</span></p>"]
    for key, ja, en, rows in render.near_miss_sections(r):
        out.append(f"<section id='{key}'><h2>{ja} <span class='en'>/ {en}</span></h2>"
                   f"{bar_chart(rows, f'{ja} / {en}')}{_table(rows, ja, en)}</section>")
    senders = [(render.sender_name(s), s.count) for s in r.top_senders]
    note = "実名 / real names" if r.named else "匿名化 / anonymised"
    out.append(f"<section id='senders'><h2>送信者（上位） <span class='en'>/ Top senders"
               f"</span> — {note}</h2>{bar_chart(senders, '送信者 / Senders')}"
               f"{_table(senders, '送信者', 'Sender')}</section>")
    return "".join(out)


def rules_page(r: RulesReport) -> str:
    head = "".join(f"<th>{ja}<br><span class='en'>{en}</span></th>"
                   for _k, ja, en in render.RULE_COLUMNS)

    def table(counts: Sequence[RuleCount]) -> str:
        rows = []
        for c in counts:
            cells = "".join(f"<td class='n'>{getattr(c, k)}</td>"
                            for k, _ja, _en in render.RULE_COLUMNS)
            med = render.minutes(c.median_approval_seconds)
            rows.append(f"<tr id='rule-{html.escape(c.rule, True)}'>"
                        f"<td>{html.escape(c.rule)}</td>{cells}"
                        f"<td class='n'>{med}</td></tr>")
        return (f"<table><tr><th>ルール<br><span class='en'>Rule</span></th>{head}"
                "<th>承認までの中央値（分）<br><span class='en'>median approval (min)</span>"
                f"</th></tr>{''.join(rows)}</table>")

    fired = [(c.rule, c.fired) for c in r.rules]
    never = "".join(f"<li>{html.escape(n)}</li>" for n in r.never_fired) or "<li>なし / none</li>"
    stamps = "".join(f"<li>{html.escape(c.rule)}: {c.approved + c.confirmed}/{c.held}</li>"
                     for c in r.rubber_stamps) or "<li>なし / none</li>"
    removed = table(r.removed) if r.removed else "<p>なし / none</p>"
    return (f"<h1>ルールの年次見直し {r.period.label} <span class='en'>/ Yearly rule review"
            "</span></h1>"
            f"<section id='fired'><h2>ルール別の検知 <span class='en'>/ Fired per rule</span>"
            f"</h2>{bar_chart(fired, '検知 / fired')}</section>"
            f"<section id='rules'><h2>ルール別 <span class='en'>/ Per rule</span></h2>"
            f"{table(r.rules)}</section>"
            "<section id='never'><h2>一度も検知しなかったルール <span class='en'>/ Rules "
            f"that never fired</span></h2><ul>{never}</ul></section>"
            "<section id='stamps'><h2>形だけの承認の疑い <span class='en'>/ Rubber stamps "
            f"(≥ {r.min_holds} holds, ≥ 95 % approved or confirmed)</span></h2>"
            "<p>ルールが広すぎるか、承認者が内容を見ていない可能性があります。<br>"
            "<span class='en'>The rule may be too wide, or the approvers do not look."
            f"</span></p><ul>{stamps}</ul></section>"
            "<section id='removed'><h2>削除されたルール <span class='en'>/ Removed rules"
            f"</span></h2>{removed}</section>")


class ReportPages:
    def __init__(self, engine: AsyncEngine, facts: Callable[[], PolicyFacts], tz: tzinfo,
                 allowed: Callable[[Request], bool] | None) -> None:
        """`allowed` None: every request (the listener is on loopback)."""
        self.engine = engine
        self.facts = facts
        self.tz = tz
        self.allowed = allowed

    def _refused(self, request: Request) -> Response | None:
        if self.allowed is None or self.allowed(request):
            return None
        return PlainTextResponse("401 Unauthorized: /reports needs the metrics bearer token\n",
                                 status_code=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="guard reports"'})

    async def near_misses(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        now = datetime.now(self.tz)
        try:
            period = periods.month(request.query_params.get("month")
                                   or f"{now.year:04d}-{now.month:02d}", self.tz)
        except periods.PeriodError as e:
            return PlainTextResponse(f"400 {e}\n", status_code=400)
        names = request.query_params.get("names") == "1"
        async with self.engine.connect() as conn:
            r = await near_miss_report(conn, period, self.facts(), self.tz, names=names)
        return _doc(f"ヒヤリハット {period.label}", near_miss_page(r))

    async def rules(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        try:
            period = periods.year(request.query_params.get("year")
                                  or str(datetime.now(self.tz).year), self.tz)
            min_holds = int(request.query_params.get("min_holds") or 10)
        except (periods.PeriodError, ValueError) as e:
            return PlainTextResponse(f"400 {e}\n", status_code=400)
        async with self.engine.connect() as conn:
            r = await rules_report(conn, period, self.facts(), min_holds=max(min_holds, 1))
        return _doc(f"ルールの見直し {period.label}", rules_page(r))

    def routes(self) -> list[BaseRoute]:
        return [Route("/reports/near-misses", self.near_misses),
                Route("/reports/rules", self.rules)]
