"""The web listener: /metrics, /healthz, the development outbox (and, later, review pages).

The development outbox shows delivered mail as people read it: headers decoded, the
text decoded by its charset (an HTML-only body as its text), attachments by name, and
web links clickable (http/https only, escaped); /dev/outbox/<n>/raw has the source."""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, tzinfo
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from guard import multiproc
from guard.devsink import CaptureHandler
from guard.hold.preview import build_preview
from guard.notify.notices import format_time

SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


class HealthCheck:
    """Database and upstream reachability, the upstream probe cached for a few seconds."""

    def __init__(self, engine: AsyncEngine, upstream_addr: tuple[str, int]) -> None:
        self.engine = engine
        self.upstream_addr = upstream_addr
        self._upstream: tuple[float, str] = (0.0, "unknown")

    async def database(self) -> str:
        try:
            async with self.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(text("SELECT 1")), 5)
            return "ok"
        except Exception as e:
            return f"error: {type(e).__name__}"

    async def upstream(self) -> str:
        checked, status = self._upstream
        if time.monotonic() - checked < 10:
            return status
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(*self.upstream_addr), 3)
            w.close()
            status = "ok"
        except Exception as e:
            status = f"error: {type(e).__name__}"
        self._upstream = (time.monotonic(), status)
        return status


def _page(title: str, body: str) -> HTMLResponse:
    doc = (f"<!doctype html><html lang='ja'><head><meta charset='utf-8'>"
           f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
           f"<title>{html.escape(title)}</title><style>"
           "body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:60rem}"
           "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;"
           "padding:.4rem;text-align:left;vertical-align:top}pre{white-space:pre-wrap;"
           "background:#f6f6f6;padding:1rem;overflow-wrap:anywhere}</style></head><body>"
           f"{body}</body></html>")
    return HTMLResponse(doc, headers=SECURITY_HEADERS)


_URL = re.compile(r"https?://[^\s<>\"'\u3000-\u30ff\uff01-\uff5e]+")


def linkify(text: str) -> str:
    """Escaped text with its http(s) links as anchors (the link text is the URL)."""
    out, pos = [], 0
    for m in _URL.finditer(text):
        url = m.group(0).rstrip(".,;:!?)")
        out.append(html.escape(text[pos:m.start()]))
        out.append(f'<a href="{html.escape(url, quote=True)}" rel="noreferrer">'
                   f"{html.escape(url)}</a>")
        pos = m.start() + len(url)
    out.append(html.escape(text[pos:]))
    return "".join(out)


def create_app(health: HealthCheck, refresh_metrics: Callable[[], Awaitable[None]],
               outbox: CaptureHandler | None = None, tz: tzinfo = UTC) -> Starlette:
    async def metrics(request: Request) -> Response:
        await refresh_metrics()
        return Response(multiproc.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        db, up = await asyncio.gather(health.database(), health.upstream())
        ok = db == "ok" and up == "ok"
        return JSONResponse({"status": "ok" if ok else "degraded", "database": db,
                             "upstream": up}, status_code=200 if ok else 503,
                            headers={"Cache-Control": "no-store"})

    async def index(request: Request) -> Response:
        links = ["<li><a href='/metrics'>/metrics</a></li>",
                 "<li><a href='/healthz'>/healthz</a></li>"]
        if outbox is not None:
            links.insert(0, "<li><a href='/dev/outbox'>/dev/outbox</a> — 開発用の配送先 "
                            "(development upstream: delivered mail)</li>")
        return _page("guard", "<h1>guard</h1><ul>" + "".join(links) + "</ul>")

    async def outbox_list(request: Request) -> Response:
        assert outbox is not None
        rows = "".join(
            f"<tr><td><a href='/dev/outbox/{m.n}'>{m.n}</a></td>"
            f"<td>{html.escape(format_time(m.at, tz))}</td>"
            f"<td>{html.escape(m.mail_from or '<>')}</td>"
            f"<td>{html.escape(', '.join(m.rcpt_tos))}</td>"
            f"<td>{html.escape(m.subject)}</td></tr>"
            for m in reversed(outbox.messages))
        return _page("outbox", "<h1>配送済み / Delivered (development upstream)</h1>"
                     "<table><tr><th>#</th><th>time</th><th>from</th><th>to</th>"
                     f"<th>subject</th></tr>{rows}</table>")

    async def outbox_show(request: Request) -> Response:
        assert outbox is not None
        m = outbox.get(int(request.path_params["n"]))
        if m is None:
            return PlainTextResponse("not found", status_code=404)
        pv = await asyncio.to_thread(build_preview, m.data, 200_000)
        rows = [("Subject", pv.subject), ("From", pv.from_), ("To", ", ".join(pv.to)),
                ("Cc", ", ".join(pv.cc)), ("Envelope", f"{m.mail_from or '<>'} → "
                                                       f"{', '.join(m.rcpt_tos)}"),
                ("Received", format_time(m.at, tz))]
        meta = "".join(f"<tr><th>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in rows if v)
        files = "".join(f"<li>{html.escape(a.name)} ({a.size:,} B, {html.escape(a.content_type)})"
                        "</li>" for a in pv.attachments)
        note = "<p><em>HTML: shown as text</em></p>" if pv.from_html else ""
        cut = "<p><em>(cut: too long to show)</em></p>" if pv.truncated else ""
        return _page(f"message {m.n}",
                     f"<h1>#{m.n}: {html.escape(pv.subject or m.subject)}</h1>"
                     f"<table>{meta}</table>{note}<pre id='body'>{linkify(pv.text)}</pre>{cut}"
                     + (f"<h2>Attachments</h2><ul id='files'>{files}</ul>" if files else "")
                     + f"<p><a href='/dev/outbox/{m.n}/raw'>raw source</a> · "
                       "<a href='/dev/outbox'>outbox</a></p>")

    async def outbox_raw(request: Request) -> Response:
        assert outbox is not None
        m = outbox.get(int(request.path_params["n"]))
        if m is None:
            return PlainTextResponse("not found", status_code=404)
        return Response(m.data, media_type="text/plain; charset=utf-8",
                        headers={**SECURITY_HEADERS, "Content-Disposition": "inline"})

    routes: list[Any] = [Route("/", index), Route("/metrics", metrics),
                         Route("/healthz", healthz)]
    if outbox is not None:
        routes += [Route("/dev/outbox", outbox_list),
                   Route("/dev/outbox/{n:int}", outbox_show),
                   Route("/dev/outbox/{n:int}/raw", outbox_raw)]
    return Starlette(routes=routes)
