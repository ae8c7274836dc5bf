"""/metrics: who may read it, and the database-wide gauges read for it.

Who: with `metrics.token` set, a request must carry `Authorization: Bearer <token>`
(401 otherwise); guard/app.py decides on which listener the page is served (its own
`metrics.listen`, or the web listener — there only with a token or on a loopback
address, since that listener serves people).

What: the queue, the holds and the lists are read from the shared database
(guard/store/figures.py) at scrape time, at most once per `max_age` seconds however
many Prometheus servers scrape, and within a deadline: a database that does not answer
leaves the last reading (its timestamp shows its age) and /metrics still answers.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from guard import metrics, multiproc
from guard.store import AsyncEngine
from guard.store.faults import log_failure
from guard.store.figures import read_figures

log = logging.getLogger("guard.web")

READ_DEADLINE = 3.0


class MetricsEndpoint:
    def __init__(self, engine: AsyncEngine, *, token: str = "",
                 default_escalate_seconds: float = 3600.0, max_age: float = 5.0) -> None:
        self.engine = engine
        self._token = token.encode()
        self.default_escalate_seconds = default_escalate_seconds
        self.max_age = max_age
        self._read_at = -float("inf")  # time.monotonic() of the last reading
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Read the database-wide gauges unless a reading is younger than max_age."""
        async with self._lock:  # scrapes at the same time share one reading
            if time.monotonic() - self._read_at < self.max_age:
                return
            try:
                async with asyncio.timeout(READ_DEADLINE), self.engine.connect() as conn:
                    f = await read_figures(conn, self.default_escalate_seconds)
            except Exception as e:
                log_failure(log, "metrics: the database-wide gauges were not read", e)
                return
            metrics.STATE.set_database(
                queue={s: (w.count, w.oldest_age) for s, w in f.queue.items()},
                holds={k: (p.count, p.oldest_age, p.past_escalation)
                       for k, p in f.holds.items()},
                lists={n: (v.members, v.synced_at) for n, v in f.lists.items()}, at=f.at)
            self._read_at = time.monotonic()

    def allowed(self, request: Request) -> bool:
        if not self._token:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                  self._token)

    async def page(self, request: Request) -> Response:
        if not self.allowed(request):
            return PlainTextResponse("401 Unauthorized: /metrics needs its bearer token\n",
                                     status_code=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="guard metrics"'})
        await self.refresh()
        body = multiproc.exposition(metrics.STATE)
        return Response(body, media_type=CONTENT_TYPE_LATEST,
                        headers={"Cache-Control": "no-store"})

    def routes(self) -> list[BaseRoute]:
        return [Route("/metrics", self.page)]
