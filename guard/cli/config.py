"""`guard config show`: the effective settings as JSON, secrets masked, and where the
secret lives (never its value)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from guard.cli.common import settings_of
from guard.config import masked


def add_commands(sub: Any) -> None:
    cp = sub.add_parser("config", help="configuration").add_subparsers(
        dest="config_cmd", required=True)
    cs = cp.add_parser("show", help="print the effective settings (secrets masked)")
    cs.add_argument("--dev", action="store_true", help="with the `guard dev` defaults")
    cs.set_defaults(func=cmd_config_show)


def cmd_config_show(args: argparse.Namespace) -> int:
    settings = settings_of(args, dev=args.dev)
    doc = masked(settings.model_dump())
    from guard.secret import NoSecretHome, secret_home

    try:  # where the secret lives, never its value
        doc["secret_location"] = secret_home(settings).describe()
    except NoSecretHome as e:
        doc["secret_location"] = f"none: {e}"
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0
