"""/misdelivery: "I sent this to the wrong person" (誤送信の報告), for the sender.

    GET  /misdelivery                 a field for the Message-ID (or the queue id)
    GET  /misdelivery?id=<…>          the message: its recipients to tick, a note
    POST /misdelivery                 opens the incident (incident/desk.report_misdelivery,
                                      as `guard incident report` does), alerts the officers
                                      (the audit row the alert dispatcher reads), and
                                      redirects (303) to
    GET  /misdelivery?incident=<id>   the incident opened, and the sender's other messages
                                      to those recipients (a reload reads, never reports)

The sender signs in with their guard user (the SMTP users file) by HTTP Basic on every
request. Like SMTP AUTH without TLS, Basic is refused (403, no challenge) unless the
request came over https — as uvicorn sees it: behind a TLS proxy, its
X-Forwarded-Proto, trusted from the addresses in FORWARDED_ALLOW_IPS (uvicorn's
default: 127.0.0.1) — or from a loopback client. Failures count per client address in
a limiter of the page's own (behind a proxy the addresses are the proxy's unless it is
trusted, and SMTP AUTH must not be locked out with them); a blocked address gets 429
without a password check, and at most CHECKS password checks (scrypt) run at once, more
get 503. Only the message's own sender may see or report it, looked up among their own
mail; an unknown Message-ID and someone else's message get the same answer, so the page
does not tell who sent what. The POST carries an HMAC of (user, message) so that
another site cannot post it with the browser's remembered credentials.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import html
import ipaddress
import logging
from typing import Protocol

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from guard.incident.desk import find, owns, report_misdelivery, reported
from guard.store import AsyncEngine
from guard.store import incidents as I
from guard.store.incidents import IncidentError, RecordedMessage
from guard.store.writer import BatchWriter
from guard.users import User, UserDirectory
from guard.web.plain import SECURITY_HEADERS, h
from guard.web.plain import document as plain_document
from guard.web.reports import STYLE

log = logging.getLogger("guard.web.misdelivery")

REALM = 'Basic realm="guard: report a misdelivery", charset="UTF-8"'  # ASCII: a header
MAX_FORM_BYTES = 64 * 1024
CHECKS = 2  # password checks at once (scrypt, 16 MiB each): the rest get 503


class FailureGate(Protocol):
    """The SMTP AUTH limiter (smtp/authlimit.AuthLimiter), as this page uses it."""

    def blocked_for(self, ip: str) -> float: ...

    def failed(self, ip: str) -> float: ...


def document(title: str, body: str, status: int = 200) -> HTMLResponse:
    return plain_document(title, body, status, style=STYLE)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _plain(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return HTMLResponse(text, status_code=status,
                        headers={**SECURITY_HEADERS, **(headers or {})})


class MisdeliveryPage:
    def __init__(self, engine: AsyncEngine, writer: BatchWriter, users: UserDirectory,
                 secret: bytes, gate: FailureGate | None) -> None:
        self.engine = engine
        self.writer = writer
        self.users = users
        self.key = hmac.new(secret, b"guard-misdelivery-form", hashlib.sha256).digest()
        self.gate = gate
        self._checks = asyncio.Semaphore(CHECKS)

    # --- who is asking ----------------------------------------------------------------------

    async def _user(self, request: Request) -> User | Response:
        ip = request.client.host if request.client else ""
        if request.url.scheme != "https" and not _loopback(ip):
            # no challenge: a browser must not be asked to send the password in clear
            return _plain(403, "403 このページは https でのみ使えます（パスワードを平文で送らない"
                          "ため）。 / This page works over https only (so that your password "
                          "is never sent in clear).\n")
        if self.gate is not None and (left := self.gate.blocked_for(ip)) > 0:
            return _plain(429, "429 試行が多すぎます。しばらくしてからお試しください。 / "
                          "Too many failed sign-ins; try again later.\n",
                          {"Retry-After": str(int(left) + 1)})
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "basic" or not value:
            return self._challenge()
        try:
            login, _, password = base64.b64decode(value.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            login, password = b"", b""
        user = None
        if login:
            if self._checks.locked():
                return _plain(503, "503 混み合っています。少し待ってからお試しください。 / "
                              "Busy; try again in a moment.\n", {"Retry-After": "2"})
            async with self._checks:
                user = await asyncio.to_thread(self.users.authenticate, login, password)
        if user is None:
            if self.gate is not None:
                self.gate.failed(ip)
            log.info("misdelivery page: failed sign-in from %s", ip)
            return self._challenge()
        return user

    def _challenge(self) -> Response:
        return _plain(401, "401 ガードのユーザー名とパスワード（メール送信と同じもの）で"
                      "サインインしてください。 / Sign in with your guard user and "
                      "password (the ones you send mail with).\n", {"WWW-Authenticate": REALM})

    def _token(self, user: User, queue_id: str) -> str:
        return hmac.new(self.key, f"{user.name}\x00{queue_id}".encode(),
                        hashlib.sha256).hexdigest()

    @staticmethod
    def _senders(user: User) -> list[str]:
        """What the messages.sender column holds for this user's mail: the user's name
        (authenticated submission) or one of their addresses (a trusted client)."""
        names = [user.name, *user.identities]
        return list(dict.fromkeys([*names, *(n.lower() for n in names)]))

    async def _mine(self, user: User, ident: str) -> list[RecordedMessage]:
        async with self.engine.connect() as conn:
            found = await find(conn, ident, senders=self._senders(user))
            out = []
            for qid, sender in found:
                if owns(sender, user.name, user.identities):
                    m = await I.recorded(conn, qid)
                    if m is not None:
                        out.append(m)
        return out

    # --- the pages --------------------------------------------------------------------------

    async def get(self, request: Request) -> Response:
        user = await self._user(request)
        if isinstance(user, Response):
            return user
        incident_id = (request.query_params.get("incident") or "").strip()[:64]
        if incident_id:
            return await self._reported(user, incident_id)
        ident = (request.query_params.get("id") or "").strip()[:998]
        if not ident:
            return self._ask()
        mine = await self._mine(user, ident)
        if not mine:
            return self._not_found(ident)
        return document("誤送信の報告 / Report a misdelivery",
                        "".join(self._form(user, m) for m in mine))

    async def post(self, request: Request) -> Response:
        user = await self._user(request)
        if isinstance(user, Response):
            return user
        form = await request.form(max_files=0, max_fields=500, max_part_size=MAX_FORM_BYTES)
        qid = str(form.get("queue_id") or "")[:64]
        if not hmac.compare_digest(str(form.get("check") or ""), self._token(user, qid)):
            return document("誤送信の報告 / Report a misdelivery", self._error(
                "このフォームは、サインインしているユーザーのものではないか、改ざんされています。"
                "メッセージを開き直してください。",
                "This form is not for the user signed in, or it was altered; open the "
                "message again."), 400)
        mine = [m for m in await self._mine(user, qid) if m.id == qid]
        if not mine:
            return self._not_found(qid)
        wrong = [str(v) for v in form.getlist("wrong")]
        note = str(form.get("note") or "")[:I.MAX_TEXT]
        reporter = f"web:{user.addresses[0] if user.addresses else user.name}"
        try:
            opened = await report_misdelivery(self.engine, self.writer, queue_id=qid,
                                              wrong_recipients=wrong, reporter=reporter,
                                              note=note)
        except IncidentError as e:
            return document("誤送信の報告 / Report a misdelivery",
                            self._error("報告できませんでした。", str(e))
                            + self._form(user, mine[0]), 400)
        # 303 to a page that reads: a reload or Back never posts the report again
        # (a second post of the same report opens nothing new: store/incidents.py)
        return Response(status_code=303, headers={
            **SECURITY_HEADERS, "Location": f"misdelivery?incident={opened.incident.id}"})

    async def _reported(self, user: User, incident_id: str) -> Response:
        async with self.engine.connect() as conn:
            got = await reported(conn, incident_id)
        if got is None or not owns(got[1], user.name, user.identities):
            return self._not_found(incident_id)
        inc, _sender, found = got
        rows = "".join(
            f"<tr><td><code>{html.escape(o.id)}</code></td><td>{html.escape(o.address)}</td>"
            f"<td>{html.escape(o.subject)}</td><td>{html.escape(o.state)}</td></tr>"
            for o in found)
        others = (f"<table id='others'><tr><th>{h('メッセージ', 'Message')}</th>"
                  f"<th>{h('宛先', 'To')}</th><th>{h('件名', 'Subject')}</th>"
                  f"<th>{h('状態', 'State')}</th></tr>{rows}</table>" if rows else
                  f"<p id='others'>{h('ありません', 'none')}</p>")
        return document("誤送信を報告しました / Misdelivery reported", (
            f"<h1>{h('誤送信を報告しました', 'Misdelivery reported')}</h1>"
            f"<p id='result'>インシデント <strong id='incident'>{html.escape(inc.id)}</strong> "
            "を登録し、担当者に通知しました。誤って届いたメールの削除を相手にお願いし、担当者の指示に"
            "従ってください。<br><span class='en'>Incident "
            f"{html.escape(inc.id)} is open and the officers are alerted. Ask the recipient "
            "to delete the message, and follow the officer's instructions.</span></p>"
            f"<p>{h('誤った宛先', 'Wrong recipients')}: <span id='wrong'>"
            f"{html.escape(', '.join(inc.wrong_recipients))}</span></p>"
            f"<h2>{h('同じ宛先に送った他のメール', 'Other messages you sent to them')}"
            f" (<span id='others-count'>{len(found)}</span>)</h2>{others}"))

    def _ask(self) -> Response:
        return document("誤送信の報告 / Report a misdelivery", (
            f"<h1>{h('誤送信の報告', 'I sent this to the wrong person')}</h1>"
            "<form method='get' action='misdelivery'><p><label>Message-ID "
            "（またはキューID / or queue id）<br><input name='id' size='60' required></label>"
            "</p><p><button type='submit'>探す / Find</button></p></form>"
            "<p>送信済みメールのヘッダーにある Message-ID を入力してください。<br><span "
            "class='en'>Paste the Message-ID header of the message you sent.</span></p>"))

    def _not_found(self, ident: str) -> Response:
        return document("見つかりません / Not found", (
            f"<h1>{h('見つかりません', 'Not found')}</h1><p id='not-found'>"
            f"{html.escape(ident)} に当たる、あなたが送信したメッセージの記録はありません。"
            "Message-ID を確かめてください（保存期間を過ぎた記録は削除されています）。<br>"
            f"<span class='en'>No message you sent is recorded as {html.escape(ident)}. "
            "Check the Message-ID (records are purged after the retention time).</span></p>"
            "<p><a href='misdelivery'>戻る / Back</a></p>"), 404)

    @staticmethod
    def _error(ja: str, en: str) -> str:
        return (f"<p id='error' class='prompt'>{html.escape(ja)}<br>"
                f"<span class='en'>{html.escape(en)}</span></p>")

    def _form(self, user: User, m: RecordedMessage) -> str:
        rows = []
        for i, r in enumerate(m.recipients):
            if r.state == "dropped":
                continue  # never sent there
            rows.append(f"<tr><td><input type='checkbox' name='wrong' id='wrong-{i}' "
                        f"value='{html.escape(r.address, True)}'></td><td><label "
                        f"for='wrong-{i}'>{html.escape(r.address)}</label></td>"
                        f"<td>{html.escape(r.state)}</td></tr>")
        return (f"<h1>{h('誤送信の報告', 'I sent this to the wrong person')}</h1>"
                f"<table class='meta'><tr><th>{h('件名', 'Subject')}</th>"
                f"<td>{html.escape(m.subject)}</td></tr><tr><th>Message-ID</th>"
                f"<td>{html.escape(m.message_id_header)}</td></tr>"
                f"<tr><th>{h('キューID', 'Queue id')}</th><td>{html.escape(m.id)}</td></tr>"
                f"<tr><th>{h('状態', 'State')}</th><td>{html.escape(m.state)}</td></tr></table>"
                "<form method='post' action='misdelivery'>"
                f"<input type='hidden' name='queue_id' value='{html.escape(m.id, True)}'>"
                f"<input type='hidden' name='check' value='{self._token(user, m.id)}'>"
                f"<h2>{h('誤って送った宛先を選んでください', 'Tick the wrong recipients')}</h2>"
                f"<table id='recipients'>{''.join(rows)}</table>"
                f"<p><label>{h('メモ（任意）', 'Note (optional)')}<br>"
                "<textarea name='note' rows='3' cols='60' maxlength='4000'></textarea>"
                "</label></p><p><button type='submit' id='report'>誤送信を報告する / "
                "Report the misdelivery</button></p></form>")

    def routes(self) -> list[BaseRoute]:
        return [Route("/misdelivery", self.get, methods=["GET", "HEAD"]),
                Route("/misdelivery", self.post, methods=["POST"])]
