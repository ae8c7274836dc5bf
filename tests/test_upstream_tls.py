"""The guard's side as a client: STARTTLS required with certificate checks, no fallback."""

from __future__ import annotations

import asyncio
import ssl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from guard.store import db, reads
from tests.conftest import Sink, TlsFiles, free_port, simple_message, submit, wait_for


def _server_ctx(tls: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return ctx


def _state(url: str) -> list[dict]:
    async def go():
        engine = db.create_engine(url)
        async with engine.connect() as conn:
            rows = await reads.list_messages(conn)
        await engine.dispose()
        return rows

    return asyncio.run(go())


def _last_reply(url: str) -> str:
    async def go():
        engine = db.create_engine(url)
        async with engine.connect() as conn:
            (row,) = await reads.list_messages(conn)
            shown = await reads.show_message(conn, row["id"])
        await engine.dispose()
        return shown["recipients"][0]["last_reply"]

    return asyncio.run(go())


def test_starttls_upstream_with_trusted_ca_delivers(guard_factory, tls: TlsFiles, tmp_path):
    sink = Sink(tls_context=_server_ctx(tls)).start()
    try:
        g = guard_factory(f"smtp+starttls://localhost:{sink.port}",
                          upstream_ca_file=str(tls.ca_file))
        submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
               simple_message("over tls"))
        (m,) = sink.wait_count(1)
        assert b"Subject: over tls" in m.data
    finally:
        sink.stop()


def test_untrusted_upstream_certificate_defers(guard_factory, tls: TlsFiles, tmp_path):
    sink = Sink(tls_context=_server_ctx(tls)).start()
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    try:
        g = guard_factory(f"smtp+starttls://localhost:{sink.port}", url)  # no CA configured
        submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
               simple_message("untrusted"))
        wait_for(lambda: any(r["state"] == "deferred" for r in _state(url)), what="deferred")
        assert "CERTIFICATE_VERIFY_FAILED" in _last_reply(url)
        assert sink.messages == []
    finally:
        sink.stop()


def test_starttls_required_means_no_plaintext_fallback(guard_factory, sink: Sink,
                                                       tls: TlsFiles, tmp_path):
    # this upstream does not offer STARTTLS at all (a stripping attacker's view)
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    g = guard_factory(f"smtp+starttls://127.0.0.1:{sink.port}", url)
    submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
           simple_message("must not go in clear"))
    wait_for(lambda: any(r["state"] == "deferred" for r in _state(url)), what="deferred")
    assert sink.messages == []


def test_implicit_tls_upstream_with_relay_credentials(guard_factory, tls: TlsFiles):
    logins: list[bytes] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        logins.append(auth_data.login)
        return AuthResult(success=auth_data.password == b"relay-secret")

    sink = Sink()
    port = free_port()
    controller = Controller(
        sink_handler(sink), hostname="127.0.0.1", port=port, ssl_context=_server_ctx(tls),
        server_hostname="sink.localhost", authenticator=authenticator, auth_required=True,
        auth_require_tls=False, decode_data=False)
    controller.start()
    try:
        g = guard_factory(f"smtps://relayuser:relay-secret@localhost:{port}",
                          upstream_ca_file=str(tls.ca_file))
        submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
               simple_message("smtps"))
        sink.wait_count(1)
        assert logins == [b"relayuser"]
        # the password never reaches the logs
        assert "relay-secret" not in g.logs()
    finally:
        controller.stop()


def sink_handler(sink: Sink):
    from tests.conftest import _SinkHandler

    return _SinkHandler(sink)
