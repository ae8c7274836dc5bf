"""Review pages: what a notice's link opens (docs/review-threat-model.md).

    GET  /review/<message id>/<token>   shows the held message; never changes anything
    POST /review/<message id>/<token>   acts: confirm, send now, cancel, approve, reject

Mail scanners fetch links, some without a User-Agent, some run the page and submit its
forms. So: GET, HEAD and OPTIONS only read; a POST needs the CSRF value of a page
fetched with its cookie, and a deliberate human step that a default form submission
does not contain (a Send/Remove choice for every recipient; the recipient domain typed
by an approver; a reason to cancel or reject). The token in the path authenticates
the link holder (HMAC, bound to message, action and person; single use). Tokens are
never logged: log lines name the message id only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from guard.config import Settings
from guard.hold import metrics
from guard.hold.lifecycle import CANCEL_REASONS, Actor, Lifecycle, Link, Result, allowed_approvers
from guard.hold.model import Hold, parse_hold
from guard.hold.notify.language import Languages
from guard.hold.notify.notices import format_time, lang_of, review_base_url, timezone_of
from guard.hold.notify.texts import TEXTS, text
from guard.hold.preview import Preview, build_preview
from guard.hold.tokens import LinkToken, TokenError, TokenExpired, TokenSigner
from guard.mail.addresses import address_key, domain_of, normalize_domain
from guard.store import AsyncEngine
from guard.store import holds as H
from guard.store.db import db_now

log = logging.getLogger("guard.web.review")

HERE = Path(__file__).parent
CSRF_COOKIE = "guard_csrf"
MAX_FORM_BYTES = 256 * 1024
MAX_DOMAIN_INPUTS = 3

# Stricter than the rest of the web listener: no inline style or script at all, one
# stylesheet of our own, forms only to ourselves, never framed.
REVIEW_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store, max-age=0",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}

SENDER_OPS = {"delay": ("send_now", "cancel"), "confirm": ("confirm", "cancel"),
              "approve": ("cancel",)}
APPROVER_OPS = ("approve", "reject")


def allowed_ops(role: str, kind: str) -> tuple[str, ...]:
    if role == "sender":
        return SENDER_OPS.get(kind, ())
    return APPROVER_OPS if kind == "approve" else ()


@dataclass
class Page:
    """Everything a request learned about its link, read in one read transaction."""

    token: LinkToken
    role: str  # sender | approver
    msg: H.MessageRow
    hold: Hold
    hold_row: H.HoldRow | None
    rcpts: list[H.RecipientRow]
    approvals: list[str]
    used: bool
    data: bytes | None = None
    ops: tuple[str, ...] = ()
    errors: list[str] = field(default_factory=list)


class ReviewPages:
    def __init__(self, engine: AsyncEngine, settings: Settings, secret: bytes,
                 signer: TokenSigner, lifecycle: Lifecycle, languages: Languages) -> None:
        self.engine = engine
        self.settings = settings
        self.signer = signer
        self.lifecycle = lifecycle
        self.languages = languages
        self.tz = timezone_of(settings)
        base = urlsplit(review_base_url(settings))
        self.origin = f"{base.scheme}://{base.netloc}".lower()
        self.prefix = base.path.rstrip("/")
        self.secure_cookie = base.scheme == "https"
        self._csrf_key = hmac.new(secret, b"guard review csrf key", hashlib.sha256).digest()
        try:
            self._css: bytes | None = (HERE / "static" / "review.css").read_bytes()
        except OSError:  # pages still work unstyled
            log.warning("review.css missing from the installation; pages are unstyled")
            self._css = None
        self.env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                               autoescape=select_autoescape(default=True),
                               trim_blocks=True, lstrip_blocks=True)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/review-assets/review.css", self.stylesheet, methods=["GET"]),
            Route("/review/{mid}/{token}", self.show, methods=["GET"]),  # and HEAD
            Route("/review/{mid}/{token}", self.act, methods=["POST"]),
            Route("/review/{mid}/{token}", self.options, methods=["OPTIONS"]),
        ]

    # --- rendering ---------------------------------------------------------------------

    def _lang(self, request: Request, page: Page | None) -> str:
        asked = request.query_params.get("lang", "")
        if asked in ("ja", "en", "both"):
            return asked
        if page is None:
            return self.settings.review.default_language
        return self.languages.for_person(
            address=page.token.actor, name=page.msg.sender if page.role == "sender" else "",
            policy=page.hold.language)

    def _render(self, name: str, lang: str, status: int, headers: dict[str, str] | None = None,
                **ctx: Any) -> HTMLResponse:
        def t(key: str) -> Markup:
            ja, en = TEXTS[key]
            return both(ja, en)

        def plain(key: str) -> str:
            """A phrase as plain text, where no markup may go (the tab's title)."""
            return text(key, lang_of(lang))

        def both(ja: str, en: str) -> Markup:
            if lang == "ja":
                return Markup('<span lang="ja">{}</span>').format(ja)
            if lang == "en":
                return Markup('<span lang="en">{}</span>').format(en)
            return Markup('<span lang="ja">{}</span><span class="en" lang="en">{}</span>'
                          ).format(ja, en)

        html = self.env.get_template(name).render(
            t=t, both=both, plain=plain, lang=lang, prefix=self.prefix, **ctx)
        return HTMLResponse(html, status_code=status, headers={**REVIEW_HEADERS,
                                                               **(headers or {})})

    def _message(self, request: Request, status: int, key: str, page: Page | None = None,
                 state: str = "") -> HTMLResponse:
        lang = self._lang(request, page)
        title = "title.done" if status == 200 else "title.error"
        state_key = f"state.{state}" if f"state.{state}" in TEXTS else ""
        return self._render("message.html", lang, status, title=title, key=key,
                            state_key=state_key, subject=page.msg.subject if page else "")

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

    async def _load(self, request: Request, *, with_content: bool) -> Page | HTMLResponse:
        """Verify the token and read the hold. Refusals: 403 (tampered, wrong message,
        wrong person), 410 (expired link, message gone)."""
        mid = request.path_params["mid"]
        async with self.engine.connect() as conn:
            now = await db_now(conn)
            try:
                token = self.signer.verify(request.path_params["token"], now)
            except TokenExpired:
                return self._message(request, 410, "error.expired")
            except TokenError:
                return self._message(request, 403, "error.forbidden")
            if token.message_id != mid:
                return self._message(request, 403, "error.forbidden")
            msg = await H.get_message(conn, mid)
            if msg is None or msg.state == "rejected":
                return self._message(request, 410, "error.gone")
            hold = parse_hold(msg.verdict, mail_from=msg.mail_from, sender=msg.sender)
            hold_row = await H.get_hold(conn, mid)
            role = "sender" if token.action == "review" else "approver"
            actor = address_key(token.actor)
            if role == "sender":
                allowed = actor == address_key(msg.mail_from)
            else:
                allowed = (hold.kind == "approve" and not hold.is_sender(actor)
                           and actor in allowed_approvers(hold, hold_row, self.settings))
            if not allowed:
                return self._message(request, 403, "error.forbidden")
            page = Page(token, role, msg, hold, hold_row, await H.get_recipients(conn, mid),
                        await H.get_approvals(conn, mid), await H.nonce_used(conn, token.nonce))
            page.ops = allowed_ops(role, hold.kind)
            if with_content and msg.state == "held" and not page.used:
                page.data = await H.get_content(conn, mid)
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
        response = await self._page(request, page, cookie, 200)
        # set on every view: SameSite=Strict, so a cross-site form cannot send it back
        response.set_cookie(CSRF_COOKIE, cookie, max_age=86400, path="/", httponly=True,
                            samesite="strict", secure=self.secure_cookie)
        return response

    async def _page(self, request: Request, page: Page, cookie: str, status: int,
                    form: FormData | None = None) -> HTMLResponse:
        lang = self._lang(request, page)
        msg, hold = page.msg, page.hold
        active = msg.state == "held" and not page.used
        preview: Preview | None = None
        if page.data is not None:
            preview = await asyncio.to_thread(build_preview, page.data)
        removable = page.role == "approver" and "approve" in page.ops and active and len(
            [r for r in page.rcpts if r.state == "pending"]) > 1
        rcpts = []
        for r in page.rcpts:
            rcpts.append({
                "idx": r.idx, "address": r.address, "state": r.state,
                "reasons": [{"ja": x.reason_ja, "en": x.reason_en}
                            for x in hold.reasons_for(r.address)],
                "risky": bool(hold.reasons_for(r.address)),
                "tick": r.state == "pending" and hold.needs_tick(r.address),
                "removable": removable and r.state == "pending",
                "choice": form.get(f"rcpt-{r.idx}") if form else None})
        # each finding once: with its recipient, with its attachment, or under "why"
        files = []
        risky_files = hold.risky_attachments
        names = set()
        for a in preview.attachments if preview else []:
            names.add(a.name)
            files.append({"name": a.name, "size": a.size, "type": a.content_type,
                          "members": a.members, "more_members": a.more_members,
                          "reasons": [{"ja": x.reason_ja, "en": x.reason_en}
                                      for x in risky_files.get(a.name, [])]})
        for name, rs in risky_files.items():
            if name not in names:
                files.append({"name": name, "size": None, "type": "", "members": [],
                              "more_members": 0, "reasons": [
                                  {"ja": x.reason_ja, "en": x.reason_en} for x in rs]})
        reasons = [{"ja": x.reason_ja, "en": x.reason_en} for x in hold.general_reasons()]
        to_cc = len(preview.to) + len(preview.cc) if preview else 0
        return self._render(
            "review.html", lang, status, title="title.review", page=page, msg=msg, hold=hold,
            active=active,
            ops=page.ops if active else (), role=page.role, rcpts=rcpts, files=files,
            reasons=reasons, preview=preview, errors=page.errors, removable=removable,
            csrf=self._csrf_value(cookie, page.token.nonce),
            received=format_time(msg.received_at, self.tz),
            until=format_time(msg.hold_until, self.tz), required=hold.approvals_required,
            approvals=page.approvals, domains=self._domains(page),
            bcc_offered=to_cc >= 2 or any(x.symbol.startswith("visible_external")
                                          for x in hold.reasons),
            bcc_recommended=any(x.symbol.startswith("visible_external") for x in hold.reasons),
            cancel_reasons=CANCEL_REASONS, form=form or {},
            policy_message={"ja": hold.message_ja, "en": hold.message_en}
            if (hold.message_ja or hold.message_en) else None)

    def _domains(self, page: Page) -> list[str]:
        """Domains an approver must type: the risky recipients' (at most three)."""
        live = [r.address for r in page.rcpts if r.state == "pending"]
        risky = [a for a in live if page.hold.needs_tick(a)] or live
        out: list[str] = []
        for a in risky:
            d = domain_of(a)
            if d and d not in out:
                out.append(d)
        return sorted(out)[:MAX_DOMAIN_INPUTS]

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
        if (self._foreign(request) or not cookie or not sent
                or not hmac.compare_digest(sent, self._csrf_value(cookie, page.token.nonce))):
            return self._refused(request, page, 403, "error.csrf")
        op = str(form.get("op") or "")
        if op not in page.ops:
            return self._refused(request, page, 403, "error.forbidden")
        actor = Actor(page.role, address_key(page.token.actor), "web",
                      request.client.host if request.client else "")
        link = Link(page.token.nonce, float(page.token.expires_at))
        step = self._deliberate_step(page, op, form)
        if isinstance(step, str):
            page.errors.append(step)
            async with self.engine.connect() as conn:
                page.data = await H.get_content(conn, page.msg.id)
            metrics.REVIEW_REQUESTS.labels("POST", "400").inc()
            return await self._page(request, page, cookie, 400, form)
        result = await step(actor, link)
        log.info("review %s: %s by %s → %s", page.msg.id, op, page.role, result.code)
        return self._outcome(request, page, result)

    def _deliberate_step(self, page: Page, op: str, form: FormData
                         ) -> str | Callable[[Actor, Link], Any]:
        """The part of the form a scanner does not fill in; an error key if missing."""
        mid, lc = page.msg.id, self.lifecycle
        if op in ("confirm", "send_now"):
            remove: list[str] = []
            for r in page.rcpts:
                if r.state != "pending" or not page.hold.needs_tick(r.address):
                    continue
                choice = form.get(f"rcpt-{r.idx}")
                if choice not in ("send", "remove"):
                    return "error.tick_all"
                if choice == "remove":
                    remove.append(r.address)
            bcc = form.get("bcc") == "on"
            return lambda actor, link: lc.release(mid, actor, link=link, drop=remove, bcc=bcc)
        if op == "cancel":
            reason = str(form.get("cancel_reason") or "")
            if reason not in CANCEL_REASONS:
                return "error.reason"
            note = str(form.get("note") or "")[:1000]
            return lambda actor, link: lc.cancel(mid, actor, reason=reason, note=note,
                                                 link=link)
        if op == "approve":
            pending = [r for r in page.rcpts if r.state == "pending"]
            out = [r.address for r in pending if form.get(f"rcpt-{r.idx}") == "remove"]
            if out and len(out) >= len(pending):
                return "error.none_left"  # nobody left to send to: that is a rejection
            want = self._domains(page)
            typed = [_typed_domain(str(form.get(f"domain-{i}") or ""))
                     for i in range(len(want))]
            # compared as sets: the approver may type them in any order
            if not want or sorted(typed) != want:
                return "error.domain"
            return lambda actor, link: lc.approve(mid, actor, link=link, drop=out)
        if op == "reject":
            reason = str(form.get("reject_reason") or "").strip()
            if not reason:
                return "error.reason"
            return lambda actor, link: lc.reject(mid, actor, reason=reason[:1000], link=link)
        return "error.forbidden"

    def _refused(self, request: Request, page: Page, status: int, key: str) -> HTMLResponse:
        metrics.REVIEW_REQUESTS.labels("POST", str(status)).inc()
        return self._message(request, status, key, page, page.msg.state)

    def _outcome(self, request: Request, page: Page, result: Result) -> HTMLResponse:
        if result.ok:
            metrics.REVIEW_REQUESTS.labels("POST", "200").inc()
            return self._message(request, 200, f"done.{result.code}", page, result.state)
        status, key = {
            "used": (409, "error.used"), "not_held": (409, "error.not_held"),
            "already": (409, "error.not_held"), "not_found": (410, "error.gone"),
        }.get(result.code, (403, "error.forbidden"))
        return self._refused(request, page, status, key)


def _typed_domain(value: str) -> str:
    # a whole address typed is fine too; "straße.de" is xn--strae-oqa.de, not strasse.de
    return normalize_domain(value.strip().rpartition("@")[2])

