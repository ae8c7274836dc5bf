"""How an SMTP session is set up: without patching the SMTP library, and with the same
commands, AUTH mechanisms and handler hooks that the library would find by itself."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from guard.smtp.handler import GuardHandler
from guard.smtp.listenerconfig import ListenerConfig
from guard.smtp.received import ListenerKind
from guard.smtp.server import GuardSMTP
from tests.conftest import ROOT


def test_importing_the_guard_leaves_the_smtp_library_as_it_is() -> None:
    code = (
        "import sys, inspect\n"
        # what the pipeline and the front processes' messages need: no SMTP library
        "import guard.smtp.received, guard.smtp.outcome, guard.smtp.replies\n"
        "import guard.accept.pipeline, guard.accept.decide\n"
        "assert 'aiosmtpd' not in sys.modules, sorted(m for m in sys.modules if 'smtpd' in m)\n"
        # the whole program: the library's module is still its own
        "import aiosmtpd.smtp\n"
        "import guard.app, guard.smtp.handler, guard.smtp.front\n"
        "assert aiosmtpd.smtp.inspect is inspect, aiosmtpd.smtp.inspect\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def _config(kind: ListenerKind) -> ListenerConfig:
    return ListenerConfig(kind=kind, hostname="guard.test", max_message_size=1000,
                          max_recipients=10, max_connections=10, timeout=30,
                          auth_failures=3, max_hops=50)


def _named(obj: object, prefix: str) -> set[str]:
    # every member the library would see with a full dir(): the names it looks for
    return {n[len(prefix):] for n in object.__dir__(obj) if n.startswith(prefix)}


# (aiosmtpd warns about AUTH without STARTTLS: on the smtps listener TLS is implicit)
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("kind", ["submission", "smtps", "trusted"])
def test_a_session_finds_every_command_mechanism_and_hook(kind: ListenerKind) -> None:
    async def build() -> GuardSMTP:
        return GuardSMTP(GuardHandler(lambda msg: None, 10),  # type: ignore[arg-type, return-value]
                         _config(kind), None, None)

    session = asyncio.run(build())
    assert set(session._smtp_methods) == _named(session, "smtp_")
    assert {"EHLO", "HELO", "MAIL", "RCPT", "DATA", "STARTTLS", "AUTH"} <= set(
        session._smtp_methods)
    assert set(session._handle_hooks) == _named(session.event_handler, "handle_")
    assert set(session._handle_hooks) == {"MAIL", "RCPT", "DATA", "exception"}
    # a trusted listener offers no AUTH; the others PLAIN and LOGIN, ours
    expected = set() if kind == "trusted" else {"PLAIN", "LOGIN"}
    assert set(session._auth_methods) == expected
    for method in session._auth_methods.values():
        assert method.is_builtin and method.method.__func__.__qualname__.startswith("GuardSMTP.")
