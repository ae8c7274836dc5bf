"""The web listener's plain pages (the index, the development outbox, the incident and
misdelivery pages): a small HTML frame, a Japanese-with-English label, and the headers
every such page carries. The review pages have their own, stricter ones
(review_render.py)."""

from __future__ import annotations

import html

from starlette.responses import HTMLResponse

SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


def h(ja: str, en: str) -> str:
    """A label in Japanese with the English alongside (both already HTML)."""
    return f"{ja} <span class='en'>/ {en}</span>"


def document(title: str, body: str, status: int = 200, *, style: str = "",
             headers: dict[str, str] | None = None) -> HTMLResponse:
    """A whole page: `body` is HTML, `style` the page's CSS (no scripts, ever)."""
    return HTMLResponse(
        "<!doctype html><html lang='ja'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{style}</style></head>"
        f"<body>{body}</body></html>", status_code=status,
        headers={**SECURITY_HEADERS, **(headers or {})})


def page(title: str, body: str) -> HTMLResponse:
    doc = (f"<!doctype html><html lang='ja'><head><meta charset='utf-8'>"
           f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
           f"<title>{html.escape(title)}</title><style>"
           "body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:60rem}"
           "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;"
           "padding:.4rem;text-align:left;vertical-align:top}pre{white-space:pre-wrap;"
           "background:#f6f6f6;padding:1rem;overflow-wrap:anywhere}</style></head><body>"
           f"{body}</body></html>")
    return HTMLResponse(doc, headers=SECURITY_HEADERS)
