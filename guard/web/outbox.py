"""The development outbox (`guard dev`): delivered mail as people read it.

Headers decoded, the text decoded by its charset (an HTML-only body as its text),
attachments by name, and web links clickable (http/https only, escaped);
/dev/outbox/<n>/raw has the source."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import tzinfo

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from guard.devsink import CaptureHandler
from guard.hold.preview import build_preview
from guard.ownmail import format_time
from guard.web.plain import SECURITY_HEADERS, page

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


def outbox_routes(outbox: CaptureHandler, tz: tzinfo) -> list[BaseRoute]:
    async def outbox_list(request: Request) -> Response:
        rows = "".join(
            f"<tr><td><a href='/dev/outbox/{m.n}'>{m.n}</a></td>"
            f"<td>{html.escape(format_time(m.at, tz))}</td>"
            f"<td>{html.escape(m.mail_from or '<>')}</td>"
            f"<td>{html.escape(', '.join(m.rcpt_tos))}</td>"
            f"<td>{html.escape(m.subject)}</td></tr>"
            for m in reversed(outbox.messages))
        return page("outbox", "<h1>配送済み / Delivered (development upstream)</h1>"
                    "<table><tr><th>#</th><th>time</th><th>from</th><th>to</th>"
                    f"<th>subject</th></tr>{rows}</table>")

    async def outbox_show(request: Request) -> Response:
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
        return page(f"message {m.n}",
                    f"<h1>#{m.n}: {html.escape(pv.subject or m.subject)}</h1>"
                    f"<table>{meta}</table>{note}<pre id='body'>{linkify(pv.text)}</pre>{cut}"
                    + (f"<h2>Attachments</h2><ul id='files'>{files}</ul>" if files else "")
                    + f"<p><a href='/dev/outbox/{m.n}/raw'>raw source</a> · "
                      "<a href='/dev/outbox'>outbox</a></p>")

    async def outbox_raw(request: Request) -> Response:
        m = outbox.get(int(request.path_params["n"]))
        if m is None:
            return PlainTextResponse("not found", status_code=404)
        return Response(m.data, media_type="text/plain; charset=utf-8",
                        headers={**SECURITY_HEADERS, "Content-Disposition": "inline"})

    return [Route("/dev/outbox", outbox_list),
            Route("/dev/outbox/{n:int}", outbox_show),
            Route("/dev/outbox/{n:int}/raw", outbox_raw)]
