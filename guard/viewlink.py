"""Read-only view links: what an officer's alert mail carries so that the incident report
of one message opens on a phone, where no bearer token can be sent.

    v1.<queue id>.<expires at>.<b64url mac>

The MAC is HMAC-SHA256, under a key derived from the guard's secret for this purpose
only, over the version, the queue id and the expiry: a link shows one message's report
until it expires and does nothing else (the page is read-only). It is not single use,
unlike the review links (hold/tokens.py): an officer opens it again from the same mail.
A forwarded alert forwards the view, so links live `alerts.link_days` (default 14).
Like every token, a link is never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

VERSION = "v1"
_SHAPE = re.compile(r"v1\.([0-9A-Z]{1,32})\.([1-9][0-9]{0,11})\.([A-Za-z0-9_-]{43})")


class ViewLinks:
    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"guard-view-link-v1", hashlib.sha256).digest()

    def _mac(self, queue_id: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{VERSION}.{queue_id}.{expires}".encode(),
                       hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def sign(self, queue_id: str, expires: float) -> str:
        """A link for `queue_id`'s report, valid until `expires` (epoch seconds)."""
        at = int(expires)
        return f"{VERSION}.{queue_id}.{at}.{self._mac(queue_id, at)}"

    def allows(self, link: str, queue_id: str, now: float) -> bool:
        """True when `link` is authentic, for this very queue id and not expired."""
        m = _SHAPE.fullmatch(link)
        if m is None or m.group(1) != queue_id:
            return False
        expires = int(m.group(2))
        try:
            given = base64.urlsafe_b64decode(m.group(3) + "=")
        except (binascii.Error, ValueError):
            return False
        want = base64.urlsafe_b64decode(self._mac(queue_id, expires) + "=")
        return hmac.compare_digest(given, want) and now < expires
