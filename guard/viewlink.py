"""Read-only view links: what an officer's alert mail carries so that the incident report
of one message opens on a phone, where no bearer token can be sent.

    v1.<expires at>.<b64url mac>        (as ?k= on /reports/incidents/<queue id>)

The MAC is HMAC-SHA256 cut to 128 bits, under a key derived from the guard's secret
for this purpose only, over the version, the queue id of the page and the expiry: a link
shows one message's report until it expires and does nothing else (the page is
read-only). It is not single use, unlike the review links (hold/tokens.py): an officer
opens it again from the same mail. A forwarded alert forwards the view, so links live
`alerts.link_days` (default 14). Like every token, a link is never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

VERSION = "v1"
_SHAPE = re.compile(r"v1\.([1-9][0-9]{0,11})\.([A-Za-z0-9_-]{22})")
MAC_BYTES = 16  # 128 bits: a link stays short enough for a phone's mail


class ViewLinks:
    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"guard-view-link-v1", hashlib.sha256).digest()

    def _mac(self, queue_id: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{VERSION}.{queue_id}.{expires}".encode(),
                       hashlib.sha256).digest()[:MAC_BYTES]
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def sign(self, queue_id: str, expires: float) -> str:
        """A link for `queue_id`'s report, valid until `expires` (epoch seconds)."""
        at = int(expires)
        return f"{VERSION}.{at}.{self._mac(queue_id, at)}"

    def allows(self, link: str, queue_id: str, now: float) -> bool:
        """True when `link` is authentic, for this very queue id and not expired."""
        m = _SHAPE.fullmatch(link)
        if m is None:
            return False
        expires = int(m.group(1))
        # compared as text: base64 decoding would let the last character's unused bits vary
        want = self._mac(queue_id, expires)
        return hmac.compare_digest(m.group(2), want) and now < expires
