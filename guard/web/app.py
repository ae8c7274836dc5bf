"""The web listener: the index, /metrics (scrape.py), /healthz, /readyz and /livez
(health.py), the review pages (review.py, given as routes by guard/app.py) and, under
`guard dev`, the development outbox (outbox.py). One Starlette app; each page's job is in
its own module.

To add a page: a module of its own with a function that returns its routes, added in
create_app(); a page about held mail asks the HoldService (as review.py does), never
the store's hold tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, tzinfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from guard.devsink import CaptureHandler
from guard.web.health import HealthCheck
from guard.web.outbox import outbox_routes
from guard.web.plain import page
from guard.web.scrape import MetricsEndpoint


def create_app(health: HealthCheck, metrics: MetricsEndpoint | None,
               outbox: CaptureHandler | None = None, tz: tzinfo = UTC, *,
               routes: Sequence[BaseRoute] = ()) -> Starlette:
    """`routes` (the review pages) are matched before the listener's own; `metrics`
    None: /metrics is not served here (its own listener, or not protected)."""

    async def healthz(request: Request) -> Response:
        code, doc = await health.report()
        return JSONResponse(doc, status_code=code, headers={"Cache-Control": "no-store"})

    async def readyz(request: Request) -> Response:
        code, doc = await health.intake()
        return JSONResponse(doc, status_code=code, headers={"Cache-Control": "no-store"})

    async def livez(request: Request) -> Response:
        # the event loop answers; nothing else is asked, so that a database outage never
        # gets a liveness probe to restart every guard
        return Response("ok\n", media_type="text/plain", headers={"Cache-Control": "no-store"})

    async def index(request: Request) -> Response:
        links = ["<li><a href='/healthz'>/healthz</a></li>"]
        if metrics is not None:
            links.insert(0, "<li><a href='/metrics'>/metrics</a></li>")
        if outbox is not None:
            links.insert(0, "<li><a href='/dev/outbox'>/dev/outbox</a> — 開発用の配送先 "
                            "(development upstream: delivered mail)</li>")
        return page("guard", "<h1>guard</h1><ul>" + "".join(links) + "</ul>")

    own: list[BaseRoute] = [Route("/", index), Route("/healthz", healthz),
                            Route("/readyz", readyz), Route("/livez", livez)]
    if metrics is not None:
        own += metrics.routes()
    if outbox is not None:
        own += outbox_routes(outbox, tz)
    return Starlette(routes=[*routes, *own])


def metrics_app(metrics: MetricsEndpoint) -> Starlette:
    """The listener of `metrics.listen`: /metrics only (for Prometheus, not people)."""
    return Starlette(routes=metrics.routes())
