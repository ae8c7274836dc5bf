"""/healthz tells what is wrong: the last delivery attempt's result
(tls, auth, refused, timeout), the oldest deferred message's age, the policy's state,
and a 503 when delivery is broken, even while the upstream's port answers."""

from __future__ import annotations

import json
import shutil
import socketserver
import ssl
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import (
    PASS_ALL,
    Sink,
    TlsFiles,
    _SinkHandler,
    free_port,
    simple_message,
    submit,
    wait_for,
)


def _server_ctx(tls: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return ctx


def healthz(g: Any) -> tuple[int, dict[str, Any]]:
    code, body = g.http("/healthz")
    return code, json.loads(body)


def _states(g: Any) -> list[str]:
    r = g.cli("queue", "list", "--json")
    assert r.returncode == 0, r.stderr
    return [m["state"] for m in json.loads(r.stdout)]


def _attempted(g: Any) -> tuple[int, dict[str, Any]] | None:
    code, doc = healthz(g)
    return (code, doc) if doc["delivery"]["last_attempt"] else None


def test_an_upstream_certificate_that_does_not_verify_is_a_503_naming_tls(
        guard_factory, tls: TlsFiles):
    sink = Sink(tls_context=_server_ctx(tls)).start()  # a certificate of a CA we do not trust
    try:
        g = guard_factory(f"smtp+starttls://localhost:{sink.port}")
        submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
               simple_message("untrusted"))
        wait_for(lambda: _states(g) == ["deferred"], what="the message deferred")
        code, doc = healthz(g)
        assert code == 503, doc
        assert doc["upstream"] == "ok"  # its port answers: that alone said "fine" before
        last = doc["delivery"]["last_attempt"]
        assert last["result"] == "tls", last
        assert "CERTIFICATE_VERIFY_FAILED" in last["detail"], last
        assert last["at"] and last["failed_sessions_in_a_row"] >= 1
        assert any(p.startswith("delivery:") and "tls" in p for p in doc["problems"]), doc
        # the message waits: its age is shown, and grows
        first = wait_for(lambda: healthz(g)[1]["delivery"]["oldest_deferred_seconds"],
                         what="a deferred message")
        assert first >= 0
        later = wait_for(lambda: (v := healthz(g)[1]["delivery"]["oldest_deferred_seconds"])
                         and v > first and v, what="an older deferred message")
        assert later > first
        assert doc["database"] == {**doc["database"], "read": "ok", "write": "ok"}
        assert doc["policy"]["state"] == "loaded"
        assert doc["policy"]["source"] == str(PASS_ALL)
        assert sink.messages == []
    finally:
        sink.stop()


def test_a_verified_upstream_is_200_with_the_last_attempt_ok(guard_factory, tls: TlsFiles):
    sink = Sink(tls_context=_server_ctx(tls)).start()
    try:
        g = guard_factory(f"smtp+starttls://localhost:{sink.port}",
                          upstream_ca_file=str(tls.ca_file))
        submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
               simple_message("trusted"))
        sink.wait_count(1)
        code, doc = wait_for(lambda: _attempted(g), what="a delivery attempt")
        assert code == 200, doc
        assert doc["status"] == "ok" and doc["problems"] == []
        assert doc["delivery"]["last_attempt"]["result"] == "ok"
        assert doc["delivery"]["oldest_deferred_seconds"] is None
    finally:
        sink.stop()


def test_upstream_credentials_refused_is_a_503_naming_auth(guard_factory, tls: TlsFiles):
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        # handled=False: aiosmtpd answers 535 itself
        return AuthResult(success=auth_data.password == b"the-right-one", handled=False)

    sink = Sink()
    port = free_port()
    controller = Controller(
        _SinkHandler(sink), hostname="127.0.0.1", port=port, ssl_context=_server_ctx(tls),
        server_hostname="sink.localhost", authenticator=authenticator, auth_required=True,
        auth_require_tls=False, decode_data=False)
    controller.start()
    try:
        g = guard_factory(f"smtps://relayuser:a-wrong-one@localhost:{port}",
                          upstream_ca_file=str(tls.ca_file))
        submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
               simple_message("auth"))
        code, doc = wait_for(lambda: _attempted(g), what="a delivery attempt")
        assert code == 503, doc
        assert doc["delivery"]["last_attempt"]["result"] == "auth", doc
        assert "535" in doc["delivery"]["last_attempt"]["detail"]
        assert "a-wrong-one" not in json.dumps(doc)
        assert sink.messages == []
    finally:
        controller.stop()


def test_a_policy_that_fails_to_reload_is_reported_and_the_old_one_kept(
        guard_factory, sink: Sink, tls: TlsFiles, tmp_path: Path):
    policy = tmp_path / "policy.yaml"
    shutil.copy(PASS_ALL, policy)
    g = guard_factory(sink.url, policy=str(policy), policy__reload_interval="0.2")
    code, doc = healthz(g)
    assert code == 200, doc
    assert doc["policy"]["state"] == "loaded" and doc["policy"]["last_reload_error"] is None
    policy.write_text("rules: [this is: not: valid\n", encoding="utf-8")
    doc = wait_for(lambda: (d := healthz(g)[1])["policy"]["last_reload_error"] and d,
                   what="the failed reload")
    assert doc["policy"]["state"] == "loaded"  # the last good policy still runs
    assert doc["policy"]["last_reload_error_at"]
    assert str(policy) in doc["policy"]["last_reload_error"]
    # mail still flows: a reload error alone is not an outage
    submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"], simple_message("x"))
    sink.wait_count(1)
    code, doc = wait_for(lambda: _attempted(g), what="a delivery attempt")
    assert code == 200, doc


def test_nothing_listening_upstream_is_a_503_naming_refused(guard_factory, tls: TlsFiles):
    port = free_port()  # nothing listens there
    g = guard_factory(f"smtp://127.0.0.1:{port}")
    submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
           simple_message("nobody home"))
    wait_for(lambda: _states(g) == ["deferred"], what="the message deferred")
    code, doc = healthz(g)
    assert code == 503, doc
    assert doc["delivery"]["last_attempt"]["result"] == "refused", doc
    assert doc["upstream"].startswith("error"), doc
    # mail still queues: the guard stays ready (an upstream outage must not take every
    # guard out of a load balancer) and alive
    code, body = g.http("/readyz")
    assert code == 200 and json.loads(body) == {"status": "ok", "problems": []}, body
    assert g.http("/livez") == (200, "ok\n")
    # `guard health` (the container's HEALTHCHECK) says the same in one line
    r = g.cli("health")
    assert r.returncode == 1 and r.stdout.startswith("unhealthy: upstream: error"), r.stdout
    r = g.cli("health", "--ready")
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr


def test_an_upstream_that_refuses_at_the_greeting_is_a_503(guard_factory, tls: TlsFiles):
    """Its port answers (the connection probe says ok), but every session is refused."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Refuse554)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        g = guard_factory(f"smtp://127.0.0.1:{server.server_address[1]}")
        submit(g.smtp_port, tls, "alice@example.co.jp", ["bob@example.net"],
               simple_message("refused at greeting"))
        wait_for(lambda: _states(g) == ["deferred"], what="the message deferred")
        code, doc = healthz(g)
        assert code == 503, doc
        assert doc["upstream"] == "ok"
        last = doc["delivery"]["last_attempt"]
        assert last["result"] == "error" and "554" in last["detail"], last
    finally:
        server.shutdown()
        server.server_close()


class _Refuse554(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"554 5.3.2 not accepting mail from you\r\n")
        self.rfile.readline()  # QUIT, or the client just closes
