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
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from guard import multiproc
from guard.devsink import CaptureHandler
from guard.hold.notify.notices import format_time
from guard.hold.preview import build_preview
from guard.relay.client import Upstream
from guard.store import AsyncEngine, reads
from guard.store.faults import describe
from guard.store.writer import BatchWriter

SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


# /healthz answers within this many seconds whatever the database does (a probe still
# running from an earlier request is waited on, not started again)
HEALTH_DEADLINE = 3.0
# a write that has waited longer than this means the write path is stuck (a held lock,
# a server that does not answer): the writer also commits a timer's claim every second
WRITE_STALL_SECONDS = 5.0
# delivery is broken when the last attempt got no usable session for one of these
# reasons; "refused" (nothing listening) is judged by the live connection probe instead
_BROKEN_SESSION = ("tls", "auth", "timeout", "error")


@dataclass
class PolicyStatus:
    """What the policy watcher last did, for /healthz."""

    state: str = "none"  # loaded | none (no policy: everything passes) | off (inspection off)
    source: str = ""
    rules: int = 0
    loaded_at: float | None = None
    last_error: str = ""  # the last reload that failed (the previous policy stays)
    last_error_at: float | None = None

    def loaded(self, source: str, rules: int) -> None:
        self.state, self.source, self.rules, self.loaded_at = "loaded", source, rules, time.time()

    def failed(self, error: str) -> None:
        self.last_error, self.last_error_at = error[:500], time.time()


def _when(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t).astimezone().isoformat(
        timespec="seconds")


class HealthCheck:
    """The database (a read, and the writer's state), the upstream (a connection probe
    cached for a few seconds, and the last delivery attempt), the policy."""

    def __init__(self, engine: AsyncEngine, upstream_addr: tuple[str, int], *,
                 writer: BatchWriter | None = None, upstream: Upstream | None = None,
                 policy: PolicyStatus | None = None) -> None:
        self.engine = engine
        self.upstream_addr = upstream_addr
        self.writer = writer
        self.upstream_client = upstream
        self.policy = policy
        self._upstream: tuple[float, str] = (0.0, "unknown")
        self._read_probe: asyncio.Task[float | None] | None = None

    async def _read(self) -> float | None:
        async with self.engine.connect() as conn:
            return await reads.oldest_deferred_age(conn)

    async def database(self) -> tuple[str, float | None]:
        """("ok" or "error: …", age of the oldest deferred message), within the deadline."""
        if self._read_probe is None or self._read_probe.done():
            self._read_probe = asyncio.create_task(self._read(), name="guard-health-db")
            # a probe that outlives its request ends unobserved: fetch its exception
            self._read_probe.add_done_callback(lambda t: t.cancelled() or t.exception())
        probe = self._read_probe
        done, _ = await asyncio.wait({probe}, timeout=HEALTH_DEADLINE)
        if not done:
            return f"error: no answer within {HEALTH_DEADLINE:g} s", None
        try:
            return "ok", probe.result()
        except Exception as e:
            return f"error: {describe(e)}", None

    def write_path(self) -> tuple[str, dict[str, Any]]:
        if self.writer is None:
            return "unknown", {}
        h = self.writer.health
        info: dict[str, Any] = {
            "last_write_error": None if h.last_error is None else {
                "error": h.last_error.error, "at": _when(h.last_error.at)},
            "write_failing_since": _when(h.failing_since),
            "write_waiting_seconds": round(self.writer.waiting_seconds(), 1)}
        if h.failing and h.last_error is not None:
            return f"error: {h.last_error.error}", info
        waited = self.writer.waiting_seconds()
        if waited > WRITE_STALL_SECONDS:
            return f"error: a write has waited {waited:.0f} s", info
        return "ok", info

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

    def delivery(self) -> tuple[str, dict[str, Any] | None]:
        last = self.upstream_client.last_attempt if self.upstream_client else None
        if last is None:
            return "ok", None
        report = {"result": last.result, "detail": last.detail, "at": _when(last.at),
                  "failed_sessions_in_a_row": last.session_failures}
        if last.result in _BROKEN_SESSION:
            return f"error: the last delivery attempt failed ({last.result}): {last.detail}", \
                report
        return "ok", report

    async def report(self) -> tuple[int, dict[str, Any]]:
        (read, oldest), up = await asyncio.gather(self.database(), self.upstream())
        write, write_info = self.write_path()
        delivery, last_attempt = self.delivery()
        problems = [f"{name}: {v}" for name, v in (
            ("database read", read), ("database write", write), ("upstream", up),
            ("delivery", delivery)) if v not in ("ok", "unknown")]
        doc: dict[str, Any] = {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "database": {"read": read, "write": write, **write_info},
            "upstream": up,
            "delivery": {"last_attempt": last_attempt,
                         "oldest_deferred_seconds": None if oldest is None
                         else round(oldest, 1)},
        }
        if self.policy is not None:
            p = self.policy
            doc["policy"] = {"state": p.state, "source": p.source, "rules": p.rules,
                             "loaded_at": _when(p.loaded_at),
                             "last_reload_error": p.last_error or None,
                             "last_reload_error_at": _when(p.last_error_at)}
        return (503 if problems else 200), doc


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
        code, doc = await health.report()
        return JSONResponse(doc, status_code=code, headers={"Cache-Control": "no-store"})

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
