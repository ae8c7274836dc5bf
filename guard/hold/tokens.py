"""Link tokens: what a notice's link carries instead of a login.

    1.<key id>.<message id>.<action>.<b64url actor>.<expires at>.<b64url nonce>.<b64url mac>

The MAC is HMAC-SHA256 over everything before it, under a key derived from the secret
and the key id, so the version, key id, message, action, actor, expiry and nonce are all
covered: changing any of them (or one byte, the case, the padding) is refused. The
nonce is 128 random bits; it is what makes a token single use (the used nonces are
stored with the action that consumed them, in the same transaction).

Rotation: tokens name their key id. New tokens use `key_id`; ids in
`previous_key_ids` are still accepted, anything else is refused. Changing the secret
itself invalidates every outstanding token (docs/review-threat-model.md).

Tokens are credentials: never log them (the web layer logs the message id only).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from guard.mail.addresses import address_key

VERSION = "1"
# "review": the sender's page (confirm, send now, cancel); "approve": an approver's page
# (approve or reject). A token for one can never do the other's actions.
ACTIONS = ("review", "approve")
NONCE_BYTES = 16
MAX_TOKEN_LENGTH = 600

_KID = re.compile(r"[A-Za-z0-9_-]{1,16}")
_MSGID = re.compile(r"[0-9A-Z]{1,32}")
_B64 = re.compile(r"[A-Za-z0-9_-]+")
_EXP = re.compile(r"[1-9][0-9]{0,11}")


class TokenError(Exception):
    """Malformed, tampered, unknown key: 403."""

    status = 403


class TokenExpired(TokenError):
    """Authentic but past its expiry: 410."""

    status = 410


@dataclass(frozen=True)
class LinkToken:
    key_id: str
    message_id: str
    action: str
    actor: str
    expires_at: int
    nonce: str


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    """Strict: the only accepted spelling of a value is the one _b64e produces."""
    if not _B64.fullmatch(text):
        raise TokenError("bad base64")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise TokenError("bad base64") from e
    if _b64e(raw) != text:  # non-canonical trailing bits
        raise TokenError("bad base64")
    return raw


class TokenSigner:
    def __init__(self, secret: bytes, key_id: str, previous_key_ids: Iterable[str] = ()) -> None:
        if not _KID.fullmatch(key_id):
            raise ValueError(f"bad key id {key_id!r}")
        self._secret = secret
        self.key_id = key_id
        self._accepted = {key_id, *previous_key_ids}

    def _key(self, key_id: str) -> bytes:
        # one key per id, derived from the secret: rotating the id changes the key
        return hmac.new(self._secret, b"guard link token key\x00" + key_id.encode("ascii"),
                        hashlib.sha256).digest()

    def _mac(self, key_id: str, signed: str) -> bytes:
        return hmac.new(self._key(key_id), signed.encode("ascii"), hashlib.sha256).digest()

    def issue(self, message_id: str, action: str, actor: str, expires_at: float) -> str:
        if action not in ACTIONS:
            raise ValueError(f"unknown token action {action!r}")
        if not _MSGID.fullmatch(message_id):
            raise ValueError(f"bad message id {message_id!r}")
        parts = [VERSION, self.key_id, message_id, action,
                 _b64e(address_key(actor).encode("utf-8")), str(int(expires_at)),
                 _b64e(secrets.token_bytes(NONCE_BYTES))]
        signed = ".".join(parts)
        return signed + "." + _b64e(self._mac(self.key_id, signed))

    def verify(self, token: str, now: float) -> LinkToken:
        """The token's fields, or TokenError (403) / TokenExpired (410)."""
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise TokenError("malformed")
        parts = token.split(".")
        if len(parts) != 8:
            raise TokenError("malformed")
        version, kid, msgid, action, actor_b64, exp, nonce, mac_b64 = parts
        if (version != VERSION or not _KID.fullmatch(kid) or not _MSGID.fullmatch(msgid)
                or action not in ACTIONS or not _EXP.fullmatch(exp)):
            raise TokenError("malformed")
        if kid not in self._accepted:
            raise TokenError("unknown or retired key id")
        mac = _b64d(mac_b64)
        if len(_b64d(nonce)) != NONCE_BYTES:
            raise TokenError("malformed")
        want = self._mac(kid, token[: len(token) - len(mac_b64) - 1])
        if not hmac.compare_digest(mac, want):
            raise TokenError("bad signature")
        # only now is the content trusted; expiry after the MAC, so that a changed
        # expiry is "tampered" (403), not "expired" (410)
        try:
            actor = _b64d(actor_b64).decode("utf-8")
        except UnicodeDecodeError as e:
            raise TokenError("malformed") from e
        if int(exp) <= now:
            raise TokenExpired("expired")
        return LinkToken(kid, msgid, action, actor, int(exp), nonce)
