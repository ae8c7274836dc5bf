"""Link tokens: integrity, expiry, rotation."""

from __future__ import annotations

import base64
import time

import pytest

from guard.hold.tokens import NONCE_BYTES, TokenError, TokenExpired, TokenSigner

SECRET = b"s" * 32
MID = "0237ZZ6FLL8TBW5NPH"


def signer(kid: str = "k1", previous: tuple[str, ...] = (), secret: bytes = SECRET
           ) -> TokenSigner:
    return TokenSigner(secret, kid, previous)


def test_round_trip():
    s = signer()
    tok = s.issue(MID, "approve", "Boss@Example.co.jp", time.time() + 60)
    t = s.verify(tok, time.time())
    assert (t.message_id, t.action, t.actor, t.key_id) == (MID, "approve",
                                                           "boss@example.co.jp", "k1")
    raw_nonce = base64.urlsafe_b64decode(t.nonce + "==")
    assert len(raw_nonce) == NONCE_BYTES == 16  # 128 bits
    # every token is new: two tokens for the same thing differ
    assert tok != s.issue(MID, "approve", "boss@example.co.jp", time.time() + 60)


def test_every_field_is_signed():
    s = signer()
    tok = s.issue(MID, "approve", "boss@example.co.jp", time.time() + 600)
    parts = tok.split(".")
    other = signer().issue("0237ZZ6FLL8TBW5NPJ", "review", "alice@example.co.jp",
                           time.time() + 900).split(".")
    for i in range(7):  # version, key id, message, action, actor, expiry, nonce
        mutated = parts.copy()
        mutated[i] = other[i] if other[i] != parts[i] else "2"
        with pytest.raises(TokenError) as e:
            s.verify(".".join(mutated), time.time())
        assert e.value.status == 403 and not isinstance(e.value, TokenExpired)


def test_single_byte_changes_truncation_case_and_padding():
    s = signer()
    tok = s.issue(MID, "review", "alice@example.co.jp", time.time() + 600)
    now = time.time()
    alphabet = "AZaz09-_."
    for i in range(len(tok)):
        for c in alphabet:
            if c != tok[i]:
                with pytest.raises(TokenError):
                    s.verify(tok[:i] + c + tok[i + 1:], now)
                break
    for cut in (1, 5, len(tok) // 2, len(tok) - 1):
        with pytest.raises(TokenError):
            s.verify(tok[:cut], now)
    for bad in (tok.upper(), tok.lower(), tok + "=", tok + "==", tok + ".", " " + tok,
                tok.replace(".", "..", 1), "", "x" * 2000, tok + "é"):
        with pytest.raises(TokenError):
            s.verify(bad, now)


def test_an_approve_token_is_not_a_review_token():
    s = signer()
    tok = s.issue(MID, "approve", "boss@example.co.jp", time.time() + 600)
    forged = tok.replace(".approve.", ".review.")
    with pytest.raises(TokenError):
        s.verify(forged, time.time())


def test_expired_is_410_after_the_signature_check():
    s = signer()
    tok = s.issue(MID, "review", "alice@example.co.jp", time.time() + 1)
    with pytest.raises(TokenExpired) as e:
        s.verify(tok, time.time() + 2)
    assert e.value.status == 410
    # moving the expiry forward is tampering, not expiry
    parts = tok.split(".")
    parts[5] = str(int(parts[5]) + 86400)
    with pytest.raises(TokenError) as e2:
        s.verify(".".join(parts), time.time() + 2)
    assert not isinstance(e2.value, TokenExpired)


def test_key_rotation():
    old = signer("k1")
    tok = old.issue(MID, "review", "alice@example.co.jp", time.time() + 600)
    # rotated: k2 signs new links, k1 is still accepted during the grace period
    assert signer("k2", ("k1",)).verify(tok, time.time()).key_id == "k1"
    # retired: k1 removed from previous_key_ids → refused
    with pytest.raises(TokenError):
        signer("k2").verify(tok, time.time())
    # new tokens carry the new id and the old signer does not know it
    new = signer("k2", ("k1",)).issue(MID, "review", "alice@example.co.jp", time.time() + 60)
    assert new.split(".")[1] == "k2"
    with pytest.raises(TokenError):
        old.verify(new, time.time())


def test_changing_the_secret_invalidates_every_token():
    tok = signer().issue(MID, "review", "alice@example.co.jp", time.time() + 600)
    with pytest.raises(TokenError):
        signer(secret=b"t" * 32).verify(tok, time.time())


def test_issue_refuses_bad_input():
    s = signer()
    with pytest.raises(ValueError):
        s.issue(MID, "delete", "a@b", time.time())
    with pytest.raises(ValueError):
        s.issue("../etc", "review", "a@b", time.time())
