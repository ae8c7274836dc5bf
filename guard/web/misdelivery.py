"""/misdelivery: "I sent this to the wrong person" (誤送信の報告), for the sender.

    GET  /misdelivery                 a field for the Message-ID (or the queue id)
    GET  /misdelivery?id=<…>          the message: its recipients to tick, a note
    POST /misdelivery                 opens the incident (incident/desk.report_misdelivery,
                                      as `guard incident report` does), alerts the officers
                                      (the audit row the alert dispatcher reads), and lists
                                      the sender's other messages to those recipients

The sender signs in with their guard user (the SMTP users file) by HTTP Basic on every
request; failures count per client address in the same limiter as SMTP AUTH, and a
blocked address gets 429 without a password check. Only the message's own sender may
see or report it; an unknown Message-ID and someone else's message get the same answer,
so the page does not tell who sent what. The POST carries an HMAC of (user, message)
so that another site cannot post it with the browser's remembered credentials.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import html
import logging
from typing import Protocol

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from guard.incident.desk import find, owns, report_misdelivery
from guard.store import AsyncEngine
from guard.store import incidents as I
from guard.store.incidents import IncidentError, RecordedMessage
from guard.store.writer import BatchWriter
from guard.users import User, UserDirectory
from guard.web.incidents import document

log = logging.getLogger("guard.web.misdelivery")

REALM = 'Basic realm="guard: report a misdelivery", charset="UTF-8"'  # ASCII: a header
MAX_FORM_BYTES = 64 * 1024


class FailureGate(Protocol):
    """The SMTP AUTH limiter (smtp/authlimit.AuthLimiter), as this page uses it."""

    def blocked_for(self, ip: str) -> float: ...

    def failed(self, ip: str) -> float: ...


def _h(ja: str, en: str) -> str:
    return f"{ja} <span class='en'>/ {en}</span>"


class MisdeliveryPage:
    def __init__(self, engine: AsyncEngine, writer: BatchWriter, users: UserDirectory,
                 secret: bytes, gate: FailureGate | None) -> None:
        self.engine = engine
        self.writer = writer
        self.users = users
        self.key = hmac.new(secret, b"guard-misdelivery-form", hashlib.sha256).digest()
        self.gate = gate

    # --- who is asking ----------------------------------------------------------------------

    async def _user(self, request: Request) -> User | Response:
        ip = request.client.host if request.client else ""
        if self.gate is not None and (left := self.gate.blocked_for(ip)) > 0:
            return HTMLResponse("429 試行が多すぎます。しばらくしてからお試しください。 / "
                                "Too many failed sign-ins; try again later.\n", status_code=429,
                                headers={"Retry-After": str(int(left) + 1)})
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "basic" or not value:
            return self._challenge()
        try:
            login, _, password = base64.b64decode(value.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            login, password = b"", b""
        user = await asyncio.to_thread(self.users.authenticate, login, password) if login \
            else None
        if user is None:
            if self.gate is not None:
                self.gate.failed(ip)
            log.info("misdelivery page: failed sign-in from %s", ip)
            return self._challenge()
        return user

    def _challenge(self) -> Response:
        return HTMLResponse("401 ガードのユーザー名とパスワード（メール送信と同じもの）で"
                            "サインインしてください。 / Sign in with your guard user and "
                            "password (the ones you send mail with).\n", status_code=401,
                            headers={"WWW-Authenticate": REALM, "Cache-Control": "no-store"})

    def _token(self, user: User, queue_id: str) -> str:
        return hmac.new(self.key, f"{user.name}\x00{queue_id}".encode(),
                        hashlib.sha256).hexdigest()

    async def _mine(self, user: User, ident: str) -> list[RecordedMessage]:
        async with self.engine.connect() as conn:
            found = await find(conn, ident)
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
                "フォームの有効期限が切れたか、改ざんされています。もう一度開いてください。",
                "The form is not valid here; open it again."), 400)
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
        inc = opened.incident
        rows = "".join(
            f"<tr><td><code>{html.escape(o.id)}</code></td><td>{html.escape(o.address)}</td>"
            f"<td>{html.escape(o.subject)}</td><td>{html.escape(o.state)}</td></tr>"
            for o in opened.others)
        others = (f"<table id='others'><tr><th>{_h('メッセージ', 'Message')}</th>"
                  f"<th>{_h('宛先', 'To')}</th><th>{_h('件名', 'Subject')}</th>"
                  f"<th>{_h('状態', 'State')}</th></tr>{rows}</table>" if rows else
                  f"<p id='others'>{_h('ありません', 'none')}</p>")
        return document("誤送信を報告しました / Misdelivery reported", (
            f"<h1>{_h('誤送信を報告しました', 'Misdelivery reported')}</h1>"
            f"<p id='result'>インシデント <strong id='incident'>{html.escape(inc.id)}</strong> "
            "を登録し、担当者に通知しました。誤って届いたメールの削除を相手にお願いし、担当者の指示に"
            "従ってください。<br><span class='en'>Incident "
            f"{html.escape(inc.id)} is open and the officers are alerted. Ask the recipient "
            "to delete the message, and follow the officer's instructions.</span></p>"
            f"<h2>{_h('同じ宛先に送った他のメール', 'Other messages you sent to them')}"
            f" (<span id='others-count'>{len(opened.others)}</span>)</h2>{others}"))

    def _ask(self) -> Response:
        return document("誤送信の報告 / Report a misdelivery", (
            f"<h1>{_h('誤送信の報告', 'I sent this to the wrong person')}</h1>"
            "<form method='get' action='misdelivery'><p><label>Message-ID "
            "（またはキューID / or queue id）<br><input name='id' size='60' required></label>"
            "</p><p><button type='submit'>探す / Find</button></p></form>"
            "<p>送信済みメールのヘッダーにある Message-ID を入力してください。<br><span "
            "class='en'>Paste the Message-ID header of the message you sent.</span></p>"))

    def _not_found(self, ident: str) -> Response:
        return document("見つかりません / Not found", (
            f"<h1>{_h('見つかりません', 'Not found')}</h1><p id='not-found'>"
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
        return (f"<h1>{_h('誤送信の報告', 'I sent this to the wrong person')}</h1>"
                f"<table class='meta'><tr><th>{_h('件名', 'Subject')}</th>"
                f"<td>{html.escape(m.subject)}</td></tr><tr><th>Message-ID</th>"
                f"<td>{html.escape(m.message_id_header)}</td></tr>"
                f"<tr><th>{_h('キューID', 'Queue id')}</th><td>{html.escape(m.id)}</td></tr>"
                f"<tr><th>{_h('状態', 'State')}</th><td>{html.escape(m.state)}</td></tr></table>"
                "<form method='post' action='misdelivery'>"
                f"<input type='hidden' name='queue_id' value='{html.escape(m.id, True)}'>"
                f"<input type='hidden' name='check' value='{self._token(user, m.id)}'>"
                f"<h2>{_h('誤って送った宛先を選んでください', 'Tick the wrong recipients')}</h2>"
                f"<table id='recipients'>{''.join(rows)}</table>"
                f"<p><label>{_h('メモ（任意）', 'Note (optional)')}<br>"
                "<textarea name='note' rows='3' cols='60' maxlength='4000'></textarea>"
                "</label></p><p><button type='submit' id='report'>誤送信を報告する / "
                "Report the misdelivery</button></p></form>")

    def routes(self) -> list[BaseRoute]:
        return [Route("/misdelivery", self.get, methods=["GET", "HEAD"]),
                Route("/misdelivery", self.post, methods=["POST"])]
