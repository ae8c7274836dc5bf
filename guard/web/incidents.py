"""/reports/incidents/{id}: the incident report as a printable page (the browser's print
gives the PDF), Japanese with English alongside. `id` is an incident id or the guard's
queue id: a message with an incident shows it, one without shows the incident-style
report of what the guard recorded (so a severe hold is reportable too). Guarded like the
other /reports pages (web/reports.py): the metrics token, or a loopback listener, opens
the full report. A view link (`?k=`, guard/viewlink.py) for this very id — what the
officers' alert mails carry so that the report opens on a phone, and what a forwarded
mail forwards — opens only the first report, at the alert's level: recipients by
organisation unless the policy's alerts.show_addresses, no subject, no reporter's
note, no officer's fields, no other messages. An incident whose message row retention
purged still shows, from the incident row, and says so."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from datetime import tzinfo
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from guard.incident import render
from guard.incident.desk import load_report
from guard.incident.report import PURGED_NOTE, UNKNOWN, IncidentReport, link_first
from guard.policy import Policy
from guard.store import AsyncEngine
from guard.store.db import db_now
from guard.viewlink import ViewLinks
from guard.web.plain import document as plain_document
from guard.web.plain import h
from guard.web.reports import STYLE

PRINT_STYLE = (
    "h1{font-size:1.4rem}h2{font-size:1.15rem;border-bottom:2px solid #333;margin-top:1.5rem}"
    "h3{font-size:1rem;margin:1rem 0 .25rem}table{width:100%}th{width:auto;background:#f3f3f3}"
    ".blank{color:#a00;font-style:italic}.prompt{border:2px solid #a60;padding:.5rem .75rem;"
    "background:#fff8ec}.may_apply{color:#a00;font-weight:bold}.meta td:first-child{width:14rem}"
    "@page{size:A4;margin:14mm}"
    "@media print{h2{break-after:avoid}tr{break-inside:avoid}.prompt{background:none}}"
)


def _e(s: Any) -> str:
    text = str(s if s not in (None, "") else "—")
    cls = " class='blank'" if text == UNKNOWN else ""
    return f"<span{cls}>{html.escape(text)}</span>" if cls else html.escape(text)


def _kv(rows: Sequence[tuple[str, str, str]], values: dict[str, str], sid: str) -> str:
    body = "".join(f"<tr id='{sid}-{k}'><th>{ja} <span class='en'>/ {en}</span></th>"
                   f"<td>{_e(values.get(k))}</td></tr>" for k, ja, en in rows)
    return f"<table class='meta'>{body}</table>"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], tid: str) -> str:
    h = "".join(f"<th>{c}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table id='{tid}'><tr>{h}</tr>{b or '<tr><td>—</td></tr>'}</table>"


def _title(r: IncidentReport) -> str:
    return h(*(html.escape(p) for p in render.title(r).split(" / ", 1)))


def _purged(r: IncidentReport) -> str:
    return (f"<p class='prompt' id='purged'>{html.escape(PURGED_NOTE)}</p>"
            if r.purged else "")


def link_page(r: IncidentReport, show_addresses: bool) -> str:
    """What a view link opens: the first report (report.link_first) and nothing more."""
    meta = [("kind", "種別", "Kind"), ("stage", "段階", "Stage"),
            ("queue_id", "メッセージ", "Message")]
    values = {"kind": render.KIND.get(r.kind, r.kind),
              "stage": render.STAGE.get(r.stage, r.stage),
              "queue_id": f"{r.queue_id} {r.message_id_header}"}
    return (f"<h1>{_title(r)}</h1>{_purged(r)}{_kv(meta, values, 'meta')}"
            f"<section id='first'><h2>{h('第一報', 'First report')}</h2>"
            f"{_kv(render.FIRST, link_first(r, show_addresses), 'first')}</section>"
            "<p id='link-only'>これはアラートのリンクで開ける第一報です。"
            "全文（5W1H、宛先、判断の記録、担当者記入欄）はレポートのトークンで開いてください。"
            "<br><span class='en'>This is "
            "the first report an alert's link opens. The full report (5W1H, recipients, "
            "every decision, the officer's fields) needs the reports token.</span></p>")


def report_page(r: IncidentReport) -> str:
    meta = [("kind", "種別", "Kind"), ("stage", "段階", "Stage"),
            ("queue_id", "メッセージ", "Message"), ("subject", "件名", "Subject"),
            ("state", "状態", "State")]
    values = {"kind": render.KIND.get(r.kind, r.kind),
              "stage": render.STAGE.get(r.stage, r.stage),
              "queue_id": f"{r.queue_id} {r.message_id_header}", "subject": r.subject,
              "state": r.state}
    if r.incident:
        meta += [("opened", "報告者", "Reported by"), ("wrong", "誤った宛先", "Wrong recipients"),
                 ("note", "報告者のメモ", "Reporter's note")]
        values.update(opened=f"{r.incident['opened_by']} ({r.incident['opened_at']})",
                      wrong=", ".join(r.incident["wrong_recipients"]),
                      note=r.incident["reporter_note"])
    where = [(_e(x.address), _e(x.domain), _e(x.organisation), _e(x.kind), _e(x.state),
              "<strong>はい / yes</strong>" if x.wrong else "") for x in r.where]
    what = [(f"{_e(i.ja)} <span class='en'>/ {_e(i.en)}</span>",
             f"<code>{_e(i.symbol)}</code>", _e(i.where), str(i.count)) for i in r.what]
    decisions = [(_e(d.at), _e(d.actor),
                  f"{_e(d.ja)} <span class='en'>/ {_e(d.en)}</span>",
                  f"{_e(d.from_state)} → {_e(d.to_state)}", _e(d.note))
                 for d in r.decisions]
    views = "".join(f"<tr id='view-{k}'><th>{h(ja, en)}</th><td>{_e(v)}</td></tr>"
                    for k, ja, en, v in r.viewpoints)
    appi = "".join(f"<tr id='appi-{c.key}'><th>{h(c.ja, c.en)}</th>"
                   f"<td class='{c.status}'>{_e(render.STATUS[c.status])}</td>"
                   f"<td>{_e(c.why)}</td></tr>" for c in r.appi)
    out = [f"<h1>{_title(r)}</h1>", _purged(r),
           _kv(meta, values, "meta"),
           f"<section id='first'><h2>{h('第一報', 'First report')}</h2>"
           f"{_kv(render.FIRST, r.first, 'first')}</section>",
           f"<section id='w5h1'><h2>5W1H</h2>"
           f"<h3>{h('誰が', 'Who')}</h3>{_kv(render.WHO, r.who, 'who')}"
           f"<h3>{h('いつ', 'When')}</h3>{_kv(render.WHEN, r.when, 'when')}"
           f"<h3>{h('どこへ', 'Where')}</h3>"
           + _table([h("宛先", "Recipient"), h("ドメイン", "Domain"), h("組織", "Organisation"),
                     h("区分", "Kind"), h("状態", "State"), h("誤送信", "Wrong")], where, "where")
           + f"<h3>{h('何を', 'What: data types and record counts')}</h3>"
           + _table([h("データ", "Data"), h("シンボル", "Symbol"), h("場所", "Where"),
                     h("件数", "Count")], what, "what")
           + f"<h3>{h('なぜ・どのように', 'Why and how')}</h3>{_kv(render.WHY, r.why, 'why')}"
           + f"<h3>{h('判断の記録', 'Every decision')}</h3>"
           + _table([h("日時", "At"), h("誰が", "Actor"), h("操作", "Action"),
                     h("状態", "State"), h("詳細", "Detail")], decisions, "decisions")
           + "</section>",
           f"<section id='viewpoints'><h2>"
           f"{h('公表判断の5つの観点', 'Five viewpoints for publication')}"
           f"</h2><table>{views}</table></section>",
           f"<section id='appi'><h2>"
           f"{h('個人情報保護法の報告基準', 'APPI reporting criteria (2022)')}</h2>"
           f"<table>{appi}</table><p class='prompt' id='appi-prompt'>"
           f"{html.escape(r.appi_prompt)}</p></section>",
           f"<section id='officer'><h2>{h('担当者記入欄', 'For the officer')}</h2>"
           f"{_kv(render.OFFICER, r.officer, 'officer')}</section>"]
    if r.incident is not None:
        others = [(_e(o["received_at"]), f"<code>{_e(o['id'])}</code>", _e(o["address"]),
                   _e(o["subject"]), _e(o["state"])) for o in r.others]
        heading = h("同じ送信者から同じ宛先への他のメール",
                    "Other messages from the same sender to the same recipients")
        head = [h("日時", "At"), h("メッセージ", "Message"), h("宛先", "To"),
                h("件名", "Subject"), h("状態", "State")]
        out.append(f"<section id='others'><h2>{heading}</h2>"
                   f"{_table(head, others, 'others-table')}</section>")
    return "".join(out)


def document(title: str, body: str, status: int = 200) -> HTMLResponse:
    return plain_document(title, body, status, style=STYLE + PRINT_STYLE)


class IncidentReportPage:
    def __init__(self, engine: AsyncEngine, policy: Callable[[], Policy | None], tz: tzinfo,
                 allowed: Callable[[Request], bool] | None,
                 links: ViewLinks | None = None) -> None:
        """`allowed` None: every request (the listener is on loopback)."""
        self.engine = engine
        self.policy = policy
        self.tz = tz
        self.allowed = allowed
        self.links = links

    async def show(self, request: Request) -> Response:
        ident = str(request.path_params["id"])[:64]
        link = request.query_params.get("k", "")[:200]
        full = self.allowed is None or self.allowed(request)
        policy = self.policy()
        async with self.engine.connect() as conn:
            # links are signed with the database's clock (alert/dispatch): checked by it
            by_link = (not full and bool(link) and self.links is not None
                       and self.links.allows(link, ident, await db_now(conn)))
            if not full and not by_link:
                return PlainTextResponse(
                    "401 Unauthorized: /reports needs the metrics bearer token or a valid "
                    "link from an alert mail\n", status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="guard reports"'})
            r = await load_report(conn, ident, self.tz, policy=policy)
        if r is None:
            return document("見つかりません / Not found",
                            f"<h1>見つかりません <span class='en'>/ Not found</span></h1>"
                            f"<p>インシデントまたはメッセージ {html.escape(ident)} の記録は"
                            "ありません"
                            "（保存期間を過ぎて削除された可能性があります）。<br>"
                            "<span class='en'>No "
                            f"incident or message {html.escape(ident)} is recorded (it may "
                            "have been purged after the retention time).</span></p>", 404)
        if not full:
            show = policy is not None and policy.doc.alerts.show_addresses
            return document(render.title(r), link_page(r, show))
        return document(render.title(r), report_page(r))

    def routes(self) -> list[BaseRoute]:
        return [Route("/reports/incidents/{id}", self.show)]
