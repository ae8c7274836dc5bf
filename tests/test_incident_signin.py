"""The misdelivery page's sign-in, on the page object with crafted requests (no
database needed): at most CHECKS password checks run at once (each is scrypt, 16 MiB),
a further sign-in gets 503 with Retry-After instead of queueing on the shared executor;
plain HTTP from another host is refused before any check, without a challenge."""

from __future__ import annotations

import asyncio
import base64
import threading
from typing import Any

from starlette.requests import Request

from guard.users import User
from guard.web.misdelivery import CHECKS, MisdeliveryPage


class SlowUsers:
    """authenticate() blocks until released: a slow scrypt, counted."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def authenticate(self, login: bytes, password: bytes) -> User | None:
        self.calls += 1
        self.release.wait(10)
        return User("alice", ("alice@example.co.jp",))


def request(scheme: str, client: str) -> Request:
    token = base64.b64encode(b"alice:pw").decode()
    return Request({"type": "http", "method": "GET", "scheme": scheme, "path": "/misdelivery",
                    "query_string": b"", "server": ("guard.example", 443),
                    "client": (client, 40000), "root_path": "",
                    "headers": [(b"authorization", f"Basic {token}".encode())]})


async def test_at_most_two_password_checks_at_once_and_no_password_over_plain_http():
    users = SlowUsers()
    page = MisdeliveryPage(engine=Any, writer=Any, users=users,  # type: ignore[arg-type]
                           secret=b"s" * 32, gate=None)
    # plain HTTP from another host: refused before any check, and no prompt
    refused = await page._user(request("http", "192.0.2.7"))
    assert getattr(refused, "status_code", None) == 403
    assert "www-authenticate" not in refused.headers and users.calls == 0  # type: ignore
    busy = [asyncio.create_task(page._user(request("https", "192.0.2.7")))
            for _ in range(CHECKS)]
    for _ in range(200):
        if users.calls == CHECKS:
            break
        await asyncio.sleep(0.01)
    assert users.calls == CHECKS
    third = await page._user(request("https", "192.0.2.8"))
    assert getattr(third, "status_code", None) == 503
    assert third.headers["retry-after"] and users.calls == CHECKS  # type: ignore[union-attr]
    users.release.set()
    assert all(isinstance(u, User) for u in await asyncio.gather(*busy))
    # free again; loopback over plain HTTP is the guard's own machine
    assert isinstance(await page._user(request("http", "127.0.0.1")), User)
