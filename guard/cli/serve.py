"""`guard serve` (the production shape) and `guard dev` (embedded defaults, the shipped
example policy, a development upstream whose mail shows at /dev/outbox)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from guard.cli.common import settings_of
from guard.config import Settings, parse_upstream_url
from guard.eventloop import run_loop
from guard.logs import setup_logging


def add_commands(sub: Any) -> None:
    sub.add_parser("serve", help="run the guard (production shape)").set_defaults(
        func=cmd_serve)
    sub.add_parser("dev", help="run on embedded defaults with a development upstream"
                   ).set_defaults(func=lambda a: cmd_serve(a, dev=True))


def dev_sink(settings: Settings) -> str:
    """Where `guard dev` runs its development upstream: where the upstream setting points,
    when that is plain SMTP on this machine ("": a real upstream was configured)."""
    security, host, port, _, _ = parse_upstream_url(settings.upstream.url)
    if security == "plain" and host in ("127.0.0.1", "localhost", "::1"):
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return ""


def cmd_serve(args: argparse.Namespace, dev: bool = False) -> int:
    settings = settings_of(args, dev)
    if settings.smtp.front_processes:
        from guard import multiproc

        multiproc.enable()  # before prometheus_client is imported (by guard.app)
    from guard.app import GuardApp, require_policy

    if settings.inspect.enabled:
        require_policy(settings)  # before anything starts: no sample, no pass-everything
    setup_logging(settings.log.level, settings.log.format)
    app = GuardApp(settings, dev_sink_listen=dev_sink(settings) if dev else "")
    if dev:
        sink = app.dev_sink_listen
        where = (f"delivered mail at http://{settings.web.listen}/dev/outbox" if sink
                 else f"relaying to {settings.upstream.url}")
        print(f"guard dev: SMTP on {settings.smtp.listen} (no AUTH, loopback only), "
              f"web on http://{settings.web.listen}/ , {where} , database "
              f"{settings.database.url}, policy {settings.policy.path}",
              file=sys.stderr, flush=True)
    run_loop(app.run_until_signal())
    return 0
