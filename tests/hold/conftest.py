"""Hold tests: a store with a HoldService (no network), and a whole guard in a thread.

- `hs`: SQLite in tmp_path, migrated, a BatchWriter and a HoldService; helpers to put
  held messages in, move hold times into the past, read states, audit rows and the
  notices that were queued. The lifecycle is driven directly.
- `guard`: a real GuardApp (trusted SMTP listener, web listener, delivery worker) with
  a second hold service in front of its own, wired the way guard/app.py wires one
  (review routes, timers, a wake-up after a 250 "held as"), delivering to a `Sink`.
  A test decider holds every message that carries `X-Test-Hold: <name>` with the
  verdict registered under that name. Tests talk to it with smtplib, http.client and Chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import re
import smtplib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import select, update

from guard.accept.pipeline import Decision, summarize_headers
from guard.config import Settings, load_settings
from guard.hold.service import HoldService
from guard.ids import new_queue_id
from guard.secret import load_or_create_secret
from guard.smtp.outcome import Held, Outcome
from guard.store import db, migrate
from guard.store import queue as q
from guard.store.holds_schema import hold_approvals, holds, used_tokens
from guard.store.schema import audit, contents, messages, recipients
from guard.store.writer import BatchWriter
from guard.web.review import review_routes
from tests.conftest import Sink, free_port, wait_for

ALICE = "alice@example.co.jp"
BOSS = "boss@example.co.jp"
BOSS2 = "boss2@example.co.jp"
DEPUTY = "deputy@example.co.jp"
BOB = "bob@example.net"
CAROL = "carol@example.org"
DAVE = "dave@example.co.jp"  # internal

USERS_YAML = """users:
  alice: {addresses: [alice@example.co.jp], language: ja}
  boss: {addresses: [boss@example.co.jp], language: ja}
  boss2: {addresses: [boss2@example.co.jp], language: en}
  deputy: {addresses: [deputy@example.co.jp], language: en}
"""

LINK = re.compile(r"(https?://[^\s]+/review/[0-9A-Z]+/[A-Za-z0-9._-]+)")


def reason(symbol: str, ja: str, en: str, rcpts: list[str], where: str = "rcpt",
           **evidence: Any) -> dict[str, Any]:
    return {"rule": f"rule.{symbol}", "symbol": symbol, "where": where, "evidence": evidence,
            "score": 0.9, "count": 1, "reason_ja": ja, "reason_en": en, "recipients": rcpts}


NEW_DOMAIN_BOB = reason("new_domain", "初めての送信先ドメイン example.net",
                        "first message to example.net", [BOB], domain="example.net")
LOOKALIKE_CAROL = reason("lookalike", "似ているアドレス: もしかして carol@example.com ?",
                         'look-alike address: did you mean "carol@example.com"?', [CAROL],
                         similar_to="carol@example.com")
PII_FILE = reason("pii.my_number", "添付ファイル 顧客.xlsx にマイナンバー (3 件)",
                  "My Number in the attachment 顧客.xlsx (3)", [], where="attachment:顧客.xlsx")


def verdict(action: str = "confirm", **kw: Any) -> dict[str, Any]:
    v: dict[str, Any] = {
        "action": action, "reasons": [NEW_DOMAIN_BOB, LOOKALIKE_CAROL, PII_FILE],
        "delay_minutes": 5, "expiry_minutes": 1440, "on_expiry": None,
        "approvers": [BOSS] if action == "approve" else [], "backup_approvers": [],
        "approvals_required": 1, "escalate_after_minutes": 60, "language": "both",
        "sender_address": ALICE, "message_ja": "", "message_en": ""}
    v.update(kw)
    return v


def message_bytes(subject: str = "お見積りの件", to: str = f"Bob <{BOB}>",
                  cc: str = CAROL, body: str = "いつもお世話になっております。\r\n",
                  extra: str = "") -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = f"Alice <{ALICE}>"
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{time.time_ns()}@example.co.jp>"
    for line in filter(None, extra.split("\n")):
        k, _, v = line.partition(": ")
        msg[k] = v
    msg.set_content(body)
    msg.add_attachment(b"PK\x03\x04 not really a spreadsheet", maintype="application",
                       subtype="octet-stream", filename="顧客.xlsx")
    return msg.as_bytes()


def make_settings(tmp_path: Path, **env: str) -> Settings:
    users = tmp_path / "users.yaml"
    users.write_text(USERS_YAML, encoding="utf-8")
    base = {
        "GUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'guard.db'}",
        "GUARD_SECRET_FILE": str(tmp_path / "guard.secret"),
        "GUARD_USERS_FILE": str(users),
        "GUARD_HOSTNAME": "guard.localhost",
        "GUARD_WEB_LISTEN": "127.0.0.1:8025",
        "GUARD_REVIEW__TICK_SECONDS": "0.2",
    }
    base.update(env)
    return load_settings(None, base)


@dataclass
class Notice:
    id: str
    to: str
    kind: str
    for_id: str
    subject: str
    body: str
    raw: bytes
    mail_from: str = ""

    @property
    def link(self) -> str:
        m = LINK.search(self.body)
        assert m, f"no link in notice {self.kind}:\n{self.body}"
        return m.group(1)

    @property
    def links(self) -> list[str]:
        return LINK.findall(self.body)


def parse_notice(raw: bytes, id_: str = "", mail_from: str = "") -> Notice:
    m = BytesParser(policy=policy.default).parsebytes(raw)
    body = m.get_body(("plain",))
    return Notice(id_, m["To"].addresses[0].addr_spec, str(m["X-Guard-Notice"]),
                  str(m["X-Guard-Queue-Id"]), str(m["Subject"]),
                  body.get_content() if body else "", raw, mail_from)


# --- the store-level harness -------------------------------------------------------------


@dataclass
class Harness:
    settings: Settings
    engine: Any
    writer: BatchWriter
    service: HoldService
    secret: bytes
    woken: list[int] = field(default_factory=lambda: [0])

    @property
    def lc(self) -> Any:
        return self.service.lifecycle

    async def put(self, v: dict[str, Any] | None = None, *, rcpts: list[str] | None = None,
                  data: bytes | None = None, hold_seconds: float | None = 3600,
                  mail_from: str = ALICE, sender: str = "alice", notify: bool = True,
                  state: str = "held", header_from: str | None = None) -> str:
        v = verdict() if v is None else v
        data = data if data is not None else message_bytes()
        s = summarize_headers(data)
        mid = new_queue_id()
        m = q.NewMessage(id=mid, state=state, mail_from=mail_from, sender=sender,
                         rcpt_tos=rcpts or [BOB, CAROL], data=data, subject=s.subject,
                         header_from=s.header_from if header_from is None else header_from,
                         message_id_header=s.message_id,
                         verdict=v, hold_seconds=hold_seconds, actor=f"smtp:{sender}")
        await self.writer.submit(lambda conn, now: q.insert_message(conn, now, m))
        if notify and state == "held":
            res = await self.lc.notify(mid)
            assert res.code == "notified", res
        return mid

    async def set_times(self, mid: str, *, hold_until: float | None = None,
                        escalate_at: float | None = None) -> None:
        """Move a hold's deadlines relative to the database clock (seconds from now)."""

        async def op(conn: Any, now: float) -> None:
            if hold_until is not None:
                await conn.execute(update(messages).where(messages.c.id == mid)
                                   .values(hold_until=now + hold_until))
            if escalate_at is not None:
                await conn.execute(update(holds).where(holds.c.message_id == mid)
                                   .values(escalate_at=now + escalate_at))

        await self.writer.submit(op)

    async def row(self, mid: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            r = (await conn.execute(select(messages).where(messages.c.id == mid))).first()
            return dict(r._mapping)

    async def state(self, mid: str) -> str:
        return str((await self.row(mid))["state"])

    async def rcpt_states(self, mid: str) -> dict[str, str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(recipients.c.address, recipients.c.state)
                                      .where(recipients.c.message_id == mid))
            return {r.address: r.state for r in rows}

    async def content(self, mid: str) -> bytes:
        async with self.engine.connect() as conn:
            return bytes((await conn.execute(select(contents.c.data).where(
                contents.c.message_id == mid))).scalar_one())

    async def original(self, mid: str) -> bytes | None:
        """The bytes as received, kept when the stored ones were edited (replay)."""
        async with self.engine.connect() as conn:
            v = (await conn.execute(select(contents.c.original).where(
                contents.c.message_id == mid))).scalar_one()
            return None if v is None else bytes(v)

    async def audit(self, mid: str) -> list[dict[str, Any]]:
        import json

        async with self.engine.connect() as conn:
            rows = await conn.execute(select(audit).where(audit.c.message_id == mid)
                                      .order_by(audit.c.id))
            return [{**dict(r._mapping), "detail": json.loads(r.detail)} for r in rows]

    async def notices(self, for_id: str | None = None) -> list[Notice]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(messages.c.id, messages.c.mail_from, messages.c.state, contents.c.data)
                .join(contents, contents.c.message_id == messages.c.id)
                .where(messages.c.sender == "guard").order_by(messages.c.received_at))
            out = [parse_notice(bytes(r.data), r.id, r.mail_from) for r in rows]
        return [n for n in out if for_id is None or n.for_id == for_id]

    async def snapshot(self) -> tuple[Any, ...]:
        """Everything a request could change, to prove that it changed nothing."""
        async with self.engine.connect() as conn:
            # notices are delivered meanwhile by the worker: only held mail counts here
            notices = {r.id for r in await conn.execute(
                select(messages.c.id).where(messages.c.sender == "guard"))}
            out = []
            for t in (messages, recipients, contents, audit, holds, hold_approvals,
                      used_tokens):
                key = t.c.id if t is messages else t.c.message_id
                out.append(sorted(tuple(r) for r in await conn.execute(select(t))
                                  if r._mapping[key.name] not in notices))
            return tuple(out)


async def open_harness(settings: Settings) -> Harness:
    engine = db.create_engine(settings.database.url)
    await migrate.upgrade(engine)
    writer = BatchWriter(engine)
    writer.start()
    secret = load_or_create_secret(settings)
    woken = [0]

    def wake() -> None:
        woken[0] += 1

    service = HoldService(engine, writer, settings, secret, on_release=wake)
    return Harness(settings, engine, writer, service, secret, woken)


async def close_harness(h: Harness) -> None:
    await h.writer.close()
    await h.engine.dispose()


@pytest.fixture
async def hs(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await open_harness(make_settings(tmp_path))
    yield h
    await close_harness(h)


# --- a whole guard in a thread ----------------------------------------------------------


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: str
    cookies: dict[str, str]


def http_request(method: str, url: str, form: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None
                 ) -> HttpResult:
    """One request to a guard's web listener; the cookies it sets come back by name."""
    u = urlsplit(url)
    path = u.path + (f"?{u.query}" if u.query else "")
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=30)
    hdrs = dict(headers or {})
    body = None
    if form is not None:
        body = urlencode(form).encode()
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    if cookies:
        hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read().decode("utf-8", "replace")
        got = {}
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, _, rest = v.partition("=")
                got[name] = rest.split(";", 1)[0]
        return HttpResult(r.status, {k.lower(): v for k, v in r.getheaders()}, data, got)
    finally:
        conn.close()


class GuardThread:
    """GuardApp + HoldService on their own event loop, driven from synchronous tests."""

    def __init__(self, settings: Settings, sink: Sink) -> None:
        self.settings = settings
        self.sink = sink
        self.verdicts: dict[str, tuple[dict[str, Any], float | None]] = {}
        self.decided: list[str] = []  # subjects the decider saw (notices never appear)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.app: Any = None
        self.hold: HoldService | None = None
        self.harness: Harness | None = None

    async def _decide(self, msg: Any, queue_id: str) -> Decision:
        head = BytesParser(policy=policy.default).parsebytes(msg.data, headersonly=True)
        self.decided.append(str(head.get("subject", "")))
        key = str(head.get("x-test-hold", "") or "")
        if key in self.verdicts:
            v, seconds = self.verdicts[key]
            return Decision(action="hold", verdict=v, hold_seconds=seconds)
        return Decision(verdict={"action": "pass", "reasons": []})

    async def _start(self) -> None:
        from guard.app import GuardApp

        self.app = GuardApp(self.settings, decide=self._decide)
        await self.app.start()
        app = self.app
        # --- a HoldService wired the way guard/app.py wires its own ------------------------
        secret = load_or_create_secret(self.settings)
        self.hold = HoldService(app.engine, app.writer, self.settings, secret,
                                on_release=app.worker.wake)
        app._web.config.app.router.routes[:0] = review_routes(self.hold, secret)
        app._tasks.append(asyncio.create_task(self.hold.run_timers(), name="guard-holds"))
        original = app.pipeline.accept
        hold = self.hold

        async def accept(msg: Any) -> Outcome:
            outcome = await original(msg)
            if isinstance(outcome, Held):
                hold.wake()  # the timers send the first notices now
            return outcome

        app.pipeline.accept = accept
        # ---------------------------------------------------------------------------------
        self.harness = Harness(self.settings, app.engine, app.writer, self.hold, b"")

    def start(self) -> GuardThread:
        self.thread.start()
        self.call(self._start(), 30)
        return self

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self.app.stop(), 30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def web(self) -> tuple[str, int]:
        return self.app.bound["web"]

    @property
    def base(self) -> str:
        return f"http://{self.web[0]}:{self.web[1]}"

    def send(self, data: bytes, rcpts: list[str], mail_from: str = ALICE) -> str:
        host, port = self.app.bound["trusted"]
        with smtplib.SMTP(host, port, local_hostname="client.localhost", timeout=30) as s:
            s.ehlo()
            code, reply = s.docmd("MAIL", f"FROM:<{mail_from}>")
            assert code == 250, reply
            for r in rcpts:
                code, reply = s.docmd("RCPT", f"TO:<{r}>")
                assert code == 250, reply
            code, reply = s.data(data)
        assert code == 250, reply
        return reply.decode().rsplit(" ", 1)[1]

    def sink_notices(self, n: int, kind: str | None = None, to: str | None = None,
                     timeout: float = 15) -> list[Notice]:
        def found() -> list[Notice]:
            with self.sink.lock:
                msgs = list(self.sink.messages)
            out = [parse_notice(m.data, "", m.mail_from) for m in msgs
                   if b"X-Guard-Notice:" in m.data]
            out = [x for x in out if (kind is None or x.kind == kind)
                   and (to is None or to in x.to)]
            return out if len(out) >= n else []

        return wait_for(found, timeout, what=f"{n} {kind or ''} notices at the sink")

    def delivered(self, subject_part: str, timeout: float = 15) -> Any:
        def found() -> Any:
            with self.sink.lock:
                for m in self.sink.messages:
                    if b"X-Guard-Notice:" not in m.data and subject_part.encode() in m.data:
                        return m
            return None

        return wait_for(found, timeout, what=f"delivery of {subject_part!r}")

    def http(self, method: str, url: str, form: dict[str, str] | None = None,
             headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None
             ) -> HttpResult:
        return http_request(method, url, form, headers, cookies)


@pytest.fixture
def guard(tmp_path: Path, sink: Sink) -> Iterator[GuardThread]:
    settings = make_settings(
        tmp_path, GUARD_SMTP_MODE="trusted", GUARD_SMTP_LISTEN=f"127.0.0.1:{free_port()}",
        GUARD_WEB_LISTEN=f"127.0.0.1:{free_port()}", GUARD_UPSTREAM=sink.url,
        GUARD_DELIVERY__MIN_BACKOFF="1", GUARD_DELIVERY__MAX_BACKOFF="2",
        GUARD_DELIVERY__POLL_INTERVAL="0.2", GUARD_LOG_LEVEL="INFO")
    g = GuardThread(settings, sink).start()
    yield g
    g.stop()


FORM = re.compile(r"<form method=\"post\"[^>]*>(.*?)</form>", re.S)
INPUT = re.compile(r"<(input|button|textarea)\b([^>]*)>", re.S)
ATTR = re.compile(r'([a-z-]+)(?:="([^"]*)")?')


def forms_of(html: str) -> list[dict[str, str]]:
    """What a form-submitting bot sends: each form's hidden fields, defaults and its
    submit button, nothing chosen or typed."""
    import html as htmlmod

    out = []
    for body in FORM.findall(html):
        fields: dict[str, str] = {}
        for tag, attrs in INPUT.findall(body):
            a = {k: htmlmod.unescape(v or "") for k, v in ATTR.findall(attrs)}
            kind = a.get("type", "")
            if tag == "input" and kind in ("radio", "checkbox") and "checked" not in a:
                continue
            if "name" in a:
                fields[a["name"]] = a.get("value", "")
        out.append(fields)
    return out
