"""Review pages: what a notice's link opens (docs/review-threat-model.md).

    GET  /review/<message id>/<token>   shows the held message; never changes anything
    POST /review/<message id>/<token>   acts: confirm, send now, cancel, approve, reject

Mail scanners fetch links, some without a User-Agent, some run the page and submit its
forms. So: GET, HEAD and OPTIONS only read; a POST needs the CSRF value of a page
fetched with its cookie, and a deliberate human step that a default form submission
does not contain (review_form.py). The token in the path authenticates the link holder
(HMAC, bound to message, action and person; single use). Tokens are never logged: log
lines name the message id only.

The pages are built from a HoldService: they ask `hold.links` what a link shows and
call `hold.lifecycle` to act, like the CLI and the timers (review_routes()).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from guard import metrics
from guard.hold.acts import Actor, Link, Result
from guard.hold.links import EXPIRED, GONE, LinkView
from guard.hold.service import HoldService
from guard.mail.addresses import address_key
from guard.ownmail import review_base_url
from guard.web.review_form import deliberate_step
from guard.web.review_render import HERE, REVIEW_HEADERS, ReviewRenderer

log = logging.getLogger("guard.web.review")

CSRF_COOKIE = "guard_csrf"
MAX_FORM_BYTES = 256 * 1024

# a refused link: (HTTP status, the page's text)
REFUSED = {EXPIRED: (410, "error.expired"), GONE: (410, "error.gone")}
FORBIDDEN_PAGE = (403, "error.forbidden")


def review_routes(hold: HoldService, secret: bytes) -> list[BaseRoute]:
    """The review pages' routes, for the web listener (guard/app.py puts them first)."""
    return ReviewPages(hold, secret).routes()


class ReviewPages:
    def __init__(self, hold: HoldService, secret: bytes) -> None:
        self.hold = hold
        self.settings = hold.settings
        self.lifecycle = hold.lifecycle
        self.view = ReviewRenderer(hold.settings, hold.languages)
        base = urlsplit(review_base_url(hold.settings))
        self.origin = f"{base.scheme}://{base.netloc}".lower()
        self.secure_cookie = base.scheme == "https"
        self._csrf_key = hmac.new(secret, b"guard review csrf key", hashlib.sha256).digest()
        try:
            self._css: bytes | None = (HERE / "static" / "review.css").read_bytes()
        except OSError:  # pages still work unstyled
            log.warning("review.css missing from the installation; pages are unstyled")
            self._css = None

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/review-assets/review.css", self.stylesheet, methods=["GET"]),
            Route("/review/{mid}/{token}", self.show, methods=["GET"]),  # and HEAD
            Route("/review/{mid}/{token}", self.act, methods=["POST"]),
            Route("/review/{mid}/{token}", self.options, methods=["OPTIONS"]),
        ]

    async def stylesheet(self, request: Request) -> Response:
        if self._css is None:
            return Response(status_code=404)
        return Response(self._css, media_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600",
                                 "X-Content-Type-Options": "nosniff"})

    async def options(self, request: Request) -> Response:
        metrics.REVIEW_REQUESTS.labels("OPTIONS", "ok").inc()
        return Response(status_code=204, headers={**REVIEW_HEADERS,
                                                  "Allow": "GET, HEAD, POST, OPTIONS"})

    # --- the link ----------------------------------------------------------------------

    async def _load(self, request: Request, *, with_content: bool) -> LinkView | HTMLResponse:
        """What the link shows, or its refusal page: 403 (tampered, wrong message, wrong
        person), 410 (expired link, message gone)."""
        page = await self.hold.links.open(request.path_params["mid"],
                                          request.path_params["token"],
                                          with_content=with_content)
        if isinstance(page, str):
            status, key = REFUSED.get(page, FORBIDDEN_PAGE)
            return self.view.message(request, status, key)
        return page

    def _csrf_value(self, cookie: str, nonce: str) -> str:
        mac = hmac.new(self._csrf_key, f"{cookie}|{nonce}".encode(), hashlib.sha256)
        return mac.hexdigest()

    # --- GET ---------------------------------------------------------------------------

    async def show(self, request: Request) -> Response:
        if not request.headers.get("user-agent"):
            metrics.LINK_SCANNER_HITS.inc()
        page = await self._load(request, with_content=True)
        if isinstance(page, HTMLResponse):
            metrics.REVIEW_REQUESTS.labels(request.method, str(page.status_code)).inc()
            return page
        metrics.REVIEW_REQUESTS.labels(request.method, "200").inc()
        log.info("review page %s shown (%s)", page.msg.id, request.method)
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if len(cookie) != 32 or not cookie.isalnum():
            cookie = secrets.token_hex(16)
        response = await self.view.page(request, page,
                                        self._csrf_value(cookie, page.token.nonce), 200)
        # set on every view: SameSite=Strict, so a cross-site form cannot send it back
        response.set_cookie(CSRF_COOKIE, cookie, max_age=86400, path="/", httponly=True,
                            samesite="strict", secure=self.secure_cookie)
        return response

    # --- POST --------------------------------------------------------------------------

    def _foreign(self, request: Request) -> bool:
        """A cross-site POST (Origin or Sec-Fetch-Site says so). "null" carries no origin
        (browsers send it under Referrer-Policy: no-referrer) and proves nothing either
        way: the CSRF value decides then."""
        origin = request.headers.get("origin", "").lower()
        own = f"{request.url.scheme}://{request.url.netloc}".lower()
        if origin and origin != "null" and origin not in (self.origin, own):
            return True
        return request.headers.get("sec-fetch-site", "") in ("cross-site", "same-site")

    async def act(self, request: Request) -> Response:
        page = await self._load(request, with_content=False)
        if isinstance(page, HTMLResponse):
            metrics.REVIEW_REQUESTS.labels("POST", str(page.status_code)).inc()
            return page
        if page.used:
            return self._refused(request, page, 409, "error.used")
        if page.msg.state != "held":
            return self._refused(request, page, 409, "error.not_held")
        try:
            if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
                return self._refused(request, page, 413, "error.forbidden")
            form = await request.form(max_files=0, max_fields=2000, max_part_size=64 * 1024)
        except Exception:
            return self._refused(request, page, 400, "error.forbidden")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = str(form.get("csrf") or "")
        csrf = self._csrf_value(cookie, page.token.nonce)
        if self._foreign(request) or not cookie or not sent or not hmac.compare_digest(sent, csrf):
            return self._refused(request, page, 403, "error.csrf")
        op = str(form.get("op") or "")
        if op not in page.ops:
            return self._refused(request, page, 403, "error.forbidden")
        actor = Actor(page.role, address_key(page.token.actor), "web",
                      request.client.host if request.client else "")
        link = Link(page.token.nonce, float(page.token.expires_at))
        step = deliberate_step(self.lifecycle, page, op, form)
        if isinstance(step, str):
            page.data = await self.hold.links.content(page.msg.id)
            metrics.REVIEW_REQUESTS.labels("POST", "400").inc()
            return await self.view.page(request, page, csrf, 400, form, [step])
        result = await step(actor, link)
        log.info("review %s: %s by %s → %s", page.msg.id, op, page.role, result.code)
        return self._outcome(request, page, result)

    def _refused(self, request: Request, page: LinkView, status: int, key: str
                 ) -> HTMLResponse:
        metrics.REVIEW_REQUESTS.labels("POST", str(status)).inc()
        return self.view.message(request, status, key, page, page.msg.state)

    def _outcome(self, request: Request, page: LinkView, result: Result) -> HTMLResponse:
        if result.ok:
            metrics.REVIEW_REQUESTS.labels("POST", "200").inc()
            return self.view.message(request, 200, f"done.{result.code}", page, result.state)
        status, key = {
            "used": (409, "error.used"), "not_held": (409, "error.not_held"),
            "already": (409, "error.not_held"), "not_found": (410, "error.gone"),
        }.get(result.code, (403, "error.forbidden"))
        return self._refused(request, page, status, key)
