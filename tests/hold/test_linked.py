"""PPAP: password mails linked to a held attachment mail follow each of its ways out
of "held" (approve, reject, expiry by send or cancel, an admin's release) in its
transaction, one audit row each naming the link; alone, only an admin releases one."""

from __future__ import annotations

from typing import Any

import pytest

from guard.hold.acts import Actor
from guard.hold.lifecycle import LINKED_AFTER_SECONDS
from guard.store import links
from tests.hold.conftest import ALICE, BOSS, Harness, verdict

ADMIN = Actor("admin", "root", "cli")


async def linked_pair(hs: Harness, zip_verdict: dict[str, Any], zip_seconds: float = 3600
                      ) -> tuple[str, str]:
    zip_id = await hs.put(zip_verdict, hold_seconds=zip_seconds)
    pw = await hs.put(verdict("confirm"))
    await hs.writer.submit(lambda conn, now: links.add_link(
        conn, now, pw, zip_id, actor="smtp:alice", key=str.lower))
    return zip_id, pw


async def audit_of(hs: Harness, mid: str, action: str) -> dict[str, Any]:
    (a,) = [a for a in await hs.audit(mid) if a["action"] == action]
    return a


async def test_last_approval_releases_the_password_mail_after_it(hs: Harness):
    zip_id, pw = await linked_pair(hs, verdict("approve"))
    res = await hs.lc.approve(zip_id, Actor("approver", BOSS, "web"))
    assert res.code == "approved" and res.queued >= 2
    assert await hs.state(pw) == "queued"
    a = await audit_of(hs, pw, "release")
    assert a["detail"]["linked_to"] == zip_id and a["detail"]["with"] == "release"
    assert a["actor"] == f"web:approver:{BOSS}"
    zip_row, pw_row = await hs.row(zip_id), await hs.row(pw)
    assert pw_row["next_attempt_at"] == pytest.approx(
        zip_row["next_attempt_at"] + LINKED_AFTER_SECONDS)


async def test_rejection_cancels_the_password_mail(hs: Harness):
    zip_id, pw = await linked_pair(hs, verdict("approve"))
    assert (await hs.lc.reject(zip_id, Actor("approver", BOSS, "web"), reason="no")).ok
    assert await hs.state(pw) == "cancelled"
    a = await audit_of(hs, pw, "cancel")
    assert a["detail"]["reason"] == "linked_cancelled" and a["detail"]["linked_to"] == zip_id


@pytest.mark.parametrize(("on_expiry", "zip_state", "pw_state"),
                         [("send", "queued", "queued"), ("cancel", "expired", "cancelled")])
async def test_expiry_takes_the_password_mail_along(hs: Harness, on_expiry: str,
                                                    zip_state: str, pw_state: str):
    zip_id, pw = await linked_pair(hs, verdict("confirm", on_expiry=on_expiry))
    await hs.set_times(zip_id, hold_until=-1)
    await hs.service.timers.tick()
    assert (await hs.state(zip_id), await hs.state(pw)) == (zip_state, pw_state)
    assert (await audit_of(hs, pw, "release" if pw_state == "queued" else "cancel")
            )["actor"].startswith("timer:")


async def test_alone_only_an_admin_releases_it_and_cancelling_is_open(hs: Harness):
    zip_id, pw = await linked_pair(hs, verdict("confirm"))
    sender = Actor("sender", ALICE, "web")
    res = await hs.lc.release(pw, sender)
    assert res.code == "forbidden" and await hs.state(pw) == "held"
    assert (await hs.lc.release(pw, ADMIN, reason="zip sent another way")).ok
    assert await hs.state(zip_id) == "held"
    zip2, pw2 = await linked_pair(hs, verdict("confirm"))
    assert (await hs.lc.cancel(pw2, sender, reason="other")).ok
    assert await hs.state(zip2) == "held"
    # an admin who releases the attachment mail releases its password mail with it
    zip3, pw3 = await linked_pair(hs, verdict("confirm"))
    assert (await hs.lc.release(zip3, ADMIN)).ok
    assert await hs.state(pw3) == "queued"


async def test_its_hold_lasts_as_long_as_the_one_it_goes_with(hs: Harness):
    zip_id, pw = await linked_pair(hs, verdict("approve"), zip_seconds=2 * 86400)
    assert (await hs.row(pw))["hold_until"] == (await hs.row(zip_id))["hold_until"]
    # a zip that ends sooner does not shorten it
    zip2, pw2 = await linked_pair(hs, verdict("confirm"), zip_seconds=60)
    assert (await hs.row(pw2))["hold_until"] > (await hs.row(zip2))["hold_until"]
