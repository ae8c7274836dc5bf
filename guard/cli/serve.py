"""`guard serve` (the production shape), `guard dev` (embedded defaults, the shipped
example policy, a development upstream whose mail shows at /dev/outbox), and `guard
health`, which asks a running guard on this machine how it is (a container's
HEALTHCHECK, a systemd or cron check)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from guard.cli.common import settings_of
from guard.config import Settings, parse_hostport, parse_upstream_url, require_base_url
from guard.eventloop import run_loop
from guard.logs import setup_logging


def add_commands(sub: Any) -> None:
    sub.add_parser("serve", help="run the guard (production shape)").set_defaults(
        func=cmd_serve)
    sub.add_parser("dev", help="run on embedded defaults with a development upstream"
                   ).set_defaults(func=lambda a: cmd_serve(a, dev=True))
    hp = sub.add_parser("health", help="ask the guard running here: exit 0 when healthy")
    hp.add_argument("--ready", action="store_true",
                    help="only whether it can take mail now (/readyz: the database)")
    hp.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    hp.set_defaults(func=cmd_health)


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
        if not dev:
            require_base_url(settings)  # holds send links; `guard dev` links to its listener
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


def local_web_url(settings: Settings) -> str:
    """The web listener as this machine reaches it (0.0.0.0 / :: → loopback)."""
    host, port = parse_hostport(settings.web.listen, 8025)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def cmd_health(args: argparse.Namespace) -> int:
    """One line: `ok`, or `unhealthy: ` and the problems /healthz names; exit 0 or 1."""
    url = local_web_url(settings_of(args)) + ("/readyz" if args.ready else "/healthz")
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as r:
            r.read()
        print("ok")
        return 0
    except urllib.error.HTTPError as e:
        try:
            problems = "; ".join(json.loads(e.read()).get("problems", [])) or str(e.code)
        except ValueError:
            problems = f"HTTP {e.code}"
        print(f"unhealthy: {problems}")
    except OSError as e:  # nothing listening, a timeout
        print(f"unhealthy: {url}: {getattr(e, 'reason', e)}")
    return 1
