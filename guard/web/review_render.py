"""The review pages as HTML: the held message for its sender or approver, and the
one-line result pages (done, refused). Bilingual by the language of the person the link
was made for (or ?lang=ja|en|both); every value escaped by the templates."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse

from guard.config import Settings
from guard.hold.acts import CANCEL_REASONS
from guard.hold.links import LinkView
from guard.hold.notify.language import Languages
from guard.hold.notify.notices import lang_of
from guard.hold.notify.texts import TEXTS, text
from guard.hold.preview import Preview, build_preview
from guard.ownmail import format_time, review_base_url, timezone_of
from guard.web.review_form import domains_to_type

HERE = Path(__file__).parent

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


class ReviewRenderer:
    def __init__(self, settings: Settings, languages: Languages) -> None:
        self.settings = settings
        self.languages = languages
        self.tz = timezone_of(settings)
        self.prefix = urlsplit(review_base_url(settings)).path.rstrip("/")
        self.env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                               autoescape=select_autoescape(default=True),
                               trim_blocks=True, lstrip_blocks=True)

    def lang(self, request: Request, page: LinkView | None) -> str:
        asked = request.query_params.get("lang", "")
        if asked in ("ja", "en", "both"):
            return asked
        if page is None:
            return self.settings.review.default_language
        return self.languages.for_person(
            address=page.token.actor, name=page.msg.sender if page.role == "sender" else "",
            policy=page.hold.language)

    def render(self, name: str, lang: str, status: int, headers: dict[str, str] | None = None,
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

    def message(self, request: Request, status: int, key: str, page: LinkView | None = None,
                state: str = "") -> HTMLResponse:
        """A result page: done (200) or refused, with the message's subject and state."""
        lang = self.lang(request, page)
        title = "title.done" if status == 200 else "title.error"
        state_key = f"state.{state}" if f"state.{state}" in TEXTS else ""
        return self.render("message.html", lang, status, title=title, key=key,
                           state_key=state_key, subject=page.msg.subject if page else "")

    async def page(self, request: Request, page: LinkView, csrf: str, status: int,
                   form: FormData | None = None, errors: list[str] | None = None
                   ) -> HTMLResponse:
        """The held message: recipients, attachments, reasons, and the forms open to
        this person (none once it is no longer held or the link was used)."""
        lang = self.lang(request, page)
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
        return self.render(
            "review.html", lang, status, title="title.review", page=page, msg=msg, hold=hold,
            active=active,
            ops=page.ops if active else (), role=page.role, rcpts=rcpts, files=files,
            reasons=reasons, preview=preview, errors=errors or [], removable=removable,
            csrf=csrf,
            received=format_time(msg.received_at, self.tz),
            until=format_time(msg.hold_until, self.tz), required=hold.approvals_required,
            approvals=page.approvals, domains=domains_to_type(page),
            bcc_offered=to_cc >= 2 or any(x.symbol.startswith("visible_external")
                                          for x in hold.reasons),
            bcc_recommended=any(x.symbol.startswith("visible_external") for x in hold.reasons),
            cancel_reasons=CANCEL_REASONS, form=form or {},
            waits_for=page.waits_for, linked=page.linked,
            policy_message={"ja": hold.message_ja, "en": hold.message_en}
            if (hold.message_ja or hold.message_en) else None,
            purged=self._purged() if page.bytes_purged else None)

    def _purged(self) -> dict[str, str]:
        days = f"{self.settings.delivery.retention_days:g}"
        ja, en = TEXTS["help.purged"]
        return {"ja": ja.format(days=days), "en": en.format(days=days)}
