"""Keyed digests of addresses: how a suppression list is kept without being a mailing list.

A list entry is HMAC-SHA256 of the address's comparison key (guard.mail.addresses
.address_key) under the guard's secret, so the store of people who asked to stop holds
no addresses, and any spelling of one mailbox ("Tanaka@ABC.co.jp", full-width, a U-label
domain) gives the same digest on the list and on the envelope.
"""

from __future__ import annotations

import hmac
from hashlib import sha256

from guard.mail.addresses import valid_address_key

__all__ = ["DIGEST_SCHEME", "address_digest", "canonical_digest", "key_fingerprint"]

# How an address becomes a digest: its key form (address_key) under HMAC-SHA256. Every
# stored list records the scheme it was hashed with; bump this when the key form
# changes, so lists hashed the old way are re-synced (file) or reported (store) instead
# of silently never matching.
DIGEST_SCHEME = 1


def key_fingerprint(key: bytes) -> str:
    """A short, non-reversible id of the key behind the digests (16 hex characters):
    two lists match each other only if they were hashed under the same fingerprint."""
    return hmac.new(key, b"guard list key fingerprint v1", sha256).hexdigest()[:16]


def canonical_digest(key: bytes, canonical: str) -> bytes:
    """HMAC-SHA256 of an address already in key form (guard.mail.addresses.address_key)."""
    return hmac.new(key, canonical.encode("utf-8"), sha256).digest()


def address_digest(key: bytes, address: str) -> bytes:
    """HMAC-SHA256 of the key of an address (guard.mail.addresses); ValueError if not valid.

    Any spelling of one mailbox ("Tanaka@ABC.co.jp", full-width, U-label domain)
    gives the same digest, the one detect_suppressed computes for the envelope.
    """
    return canonical_digest(key, valid_address_key(address))
