"""Every transition of a hold, every expiry default, escalation, two approvals, races."""

from __future__ import annotations

import asyncio

from guard.hold.acts import Actor, Link
from tests.hold.conftest import (
    ALICE,
    BOB,
    BOSS,
    BOSS2,
    CAROL,
    DAVE,
    DEPUTY,
    Harness,
    close_harness,
    make_settings,
    message_bytes,
    open_harness,
    verdict,
)

SENDER = Actor("sender", ALICE, "web", "192.0.2.10")
ADMIN = Actor("admin", "root", "cli")


def approver(addr: str) -> Actor:
    return Actor("approver", addr, "web", "192.0.2.20")


def link(n: str = "n" * 22) -> Link:
    return Link(n, 2e9)


async def test_first_notice_goes_out_once(hs: Harness):
    mid = await hs.put(verdict("confirm"), notify=False)
    first = await hs.lc.notify(mid)
    assert first.code == "notified" and first.queued == 1
    again = await hs.lc.notify(mid)
    assert again.code == "already"
    (n,) = await hs.notices(mid)
    assert n.kind == "held" and ALICE in n.to
    assert n.mail_from == ""  # the null sender: a notice never bounces back
    audit = [a["action"] for a in await hs.audit(mid)]
    assert audit == ["held", "notified"]
    assert await hs.state(mid) == "held"


async def test_approve_hold_asks_the_approvers_and_tells_the_sender(hs: Harness):
    mid = await hs.put(verdict("approve", approvers=[BOSS, BOSS2]))
    notices = await hs.notices(mid)
    kinds = sorted((n.kind, n.to) for n in notices)
    assert kinds == sorted([("approval_request", BOSS), ("approval_request", BOSS2),
                            ("held", ALICE)])
    # the links are personal: each carries its own actor
    assert len({n.link for n in notices}) == 3


async def test_sender_confirms_and_held_time_does_not_count(hs: Harness):
    mid = await hs.put(verdict("confirm"))
    before = await hs.row(mid)
    await asyncio.sleep(0.05)
    res = await hs.lc.release(mid, SENDER, link=link())
    assert res.code == "released" and res.state == "queued"
    after = await hs.row(mid)
    assert after["state"] == "queued"
    # the delivery lifetime starts again at the release
    assert after["queued_at"] > before["queued_at"] + 0.04
    assert after["next_attempt_at"] == after["queued_at"]
    assert hs.woken[0] >= 1  # the delivery worker was woken
    (a,) = [a for a in await hs.audit(mid) if a["action"] == "release"]
    assert a["actor"] == "web:sender:alice@example.co.jp"
    assert a["detail"]["ip"] == "192.0.2.10" and a["detail"]["by"] == "sender"
    assert (a["from_state"], a["to_state"]) == ("held", "queued")
    # the sender did it: nobody else to tell
    assert [n.kind for n in await hs.notices(mid)] == ["held"]


async def test_a_used_link_does_nothing_more(hs: Harness):
    mid = await hs.put(verdict("confirm"))
    mid2 = await hs.put(verdict("confirm"))
    assert (await hs.lc.release(mid, SENDER, link=link("x" * 22))).ok
    again = await hs.lc.release(mid, SENDER, link=link("x" * 22))
    assert again.code == "used"
    # the same nonce cannot act on another message either
    assert (await hs.lc.cancel(mid2, SENDER, reason="other", link=link("x" * 22))).code == "used"
    assert await hs.state(mid2) == "held"


async def test_drop_a_recipient_and_release_to_the_rest(hs: Harness):
    mid = await hs.put(verdict("confirm"))
    res = await hs.lc.release(mid, SENDER, drop=[CAROL.upper()])
    assert res.code == "released" and res.detail["dropped"] == [CAROL]
    assert await hs.rcpt_states(mid) == {BOB: "pending", CAROL: "dropped"}


async def test_dropping_every_recipient_cancels(hs: Harness):
    mid = await hs.put(verdict("confirm"))
    res = await hs.lc.release(mid, SENDER, drop=[BOB, CAROL])
    assert res.code == "cancelled"
    assert await hs.state(mid) == "cancelled"
    (a,) = [a for a in await hs.audit(mid) if a["action"] == "cancel"]
    assert a["detail"]["near_miss"] is True
    assert a["detail"]["reason"] == "all_recipients_removed"


async def test_drop_recipient_transition(hs: Harness):
    mid = await hs.put(verdict("confirm"))
    assert (await hs.lc.drop_recipient(mid, BOB, SENDER)).code == "dropped"
    assert await hs.state(mid) == "held"
    assert (await hs.lc.drop_recipient(mid, BOB, SENDER)).code == "not_found"
    assert (await hs.lc.drop_recipient(mid, CAROL, SENDER)).code == "cancelled"
    actions = [a["action"] for a in await hs.audit(mid)]
    assert actions == ["held", "notified", "drop_recipient", "cancel"]


async def test_move_to_bcc_rewrites_only_to_and_cc(hs: Harness):
    data = message_bytes(to=f"Bob <{BOB}>, {CAROL}", cc="x@example.com")
    mid = await hs.put(verdict("confirm"), data=data)
    assert (await hs.lc.release(mid, SENDER, bcc=True)).code == "released"
    new = await hs.content(mid)
    assert b"\r\nTo: undisclosed-recipients:;\r\n" in new
    assert b"Cc:" not in new and b"Bcc" not in new and BOB.encode() not in new.split(
        b"\r\n\r\n")[0]
    # every other byte is unchanged
    old_lines = [ln for ln in data.split(b"\r\n") if not ln.startswith((b"To:", b"Cc:"))]
    new_lines = [ln for ln in new.split(b"\r\n") if not ln.startswith(b"To:")]
    assert old_lines == new_lines
    assert (await hs.row(mid))["size"] == len(new)
    (a,) = [a for a in await hs.audit(mid) if a["action"] == "release"]
    assert a["detail"]["bcc"] is True


async def test_move_to_bcc_keeps_the_companys_addresses_of_the_verdict(hs: Harness):
    """The review page's Bcc box: the company's domains stored with the verdict stay in
    To/Cc (the policy may have changed since; the verdict is what was judged)."""
    data = message_bytes(to=f"Bob <{BOB}>, Tanaka <tanaka@example.co.jp>", cc=CAROL)
    mid = await hs.put(verdict("confirm", internal_domains=["example.co.jp"]), data=data)
    assert (await hs.lc.release(mid, SENDER, bcc=True)).code == "released"
    head = (await hs.content(mid)).split(b"\r\n\r\n")[0]
    assert b"\r\nTo: Tanaka <tanaka@example.co.jp>\r\n" in head
    assert BOB.encode() not in head and CAROL.encode() not in head and b"Cc:" not in head


async def test_sender_cancels_a_near_miss(hs: Harness):
    mid = await hs.put(verdict("confirm"))
    res = await hs.lc.cancel(mid, SENDER, reason="wrong_recipient", note="宛先違い")
    assert res.code == "cancelled" and await hs.state(mid) == "cancelled"
    (a,) = [a for a in await hs.audit(mid) if a["action"] == "cancel"]
    assert a["detail"] == {**a["detail"], "near_miss": True, "reason": "wrong_recipient",
                           "note": "宛先違い", "by": "sender", "hold_kind": "confirm"}
    assert sorted(a["detail"]["symbols"]) == ["lookalike", "new_domain", "pii.my_number"]
    from guard.store import holds as H

    async with hs.engine.connect() as conn:
        (nm,) = await H.near_misses(conn, 0)
    assert nm["message_id"] == mid and nm["actor"] == "web:sender:alice@example.co.jp"
    # the sender did it: no notice to themselves
    assert [n.kind for n in await hs.notices(mid)] == ["held"]


async def test_admin_cancel_tells_the_sender(hs: Harness):
    mid = await hs.put(verdict("approve"))
    res = await hs.lc.cancel(mid, ADMIN, reason="admin", note="誤送信の疑い")
    assert res.code == "cancelled"
    told = {(n.kind, n.to) for n in await hs.notices(mid) if n.kind == "cancelled"}
    assert told == {("cancelled", ALICE), ("cancelled", BOSS)}
    (n,) = [n for n in await hs.notices(mid) if n.kind == "cancelled" and n.to == ALICE]
    assert "誤送信の疑い" in n.body


async def test_admin_release_tells_the_sender(hs: Harness):
    mid = await hs.put(verdict("approve"))
    assert (await hs.lc.release(mid, ADMIN, reason="checked by phone")).code == "released"
    assert {n.to for n in await hs.notices(mid) if n.kind == "released"} == {ALICE, BOSS}


async def test_approve_releases_and_tells_everyone(hs: Harness):
    mid = await hs.put(verdict("approve", approvers=[BOSS, BOSS2]))
    res = await hs.lc.approve(mid, approver(BOSS), link=link())
    assert res.code == "approved" and await hs.state(mid) == "queued"
    told = {n.to for n in await hs.notices(mid) if n.kind == "approved"}
    assert told == {ALICE, BOSS2}  # the sender and the other approver, not the actor
    (a,) = [a for a in await hs.audit(mid) if a["action"] == "approve"]
    assert a["detail"]["approver"] == BOSS and a["to_state"] == "queued"


async def test_two_approvals_needed(hs: Harness):
    mid = await hs.put(verdict("approve", approvers=[BOSS, BOSS2], approvals_required=2))
    first = await hs.lc.approve(mid, approver(BOSS))
    assert first.code == "approval_partial" and await hs.state(mid) == "held"
    assert (await hs.lc.approve(mid, approver(BOSS))).code == "already"
    assert await hs.state(mid) == "held"
    second = await hs.lc.approve(mid, approver(BOSS2))
    assert second.code == "approved" and await hs.state(mid) == "queued"
    kinds = [(n.kind, n.to) for n in await hs.notices(mid) if n.kind != "held"
             and n.kind != "approval_request"]
    assert ("approval_partial", ALICE) in kinds and ("approval_partial", BOSS2) in kinds
    assert ("approved", ALICE) in kinds and ("approved", BOSS) in kinds


async def test_self_approval_is_refused(hs: Harness):
    # a rule that names the sender as an approver: the sender is never asked ...
    mid = await hs.put(verdict("approve", approvers=[ALICE, BOSS]))
    assert {n.to for n in await hs.notices(mid) if n.kind == "approval_request"} == {BOSS}
    # ... and cannot approve, whatever role they claim
    assert (await hs.lc.approve(mid, approver(ALICE))).code == "forbidden"
    assert (await hs.lc.approve(mid, Actor("approver", "Alice@Example.co.jp", "web"))
            ).code == "forbidden"
    # the sender's own "release" cannot bypass an approval either
    assert (await hs.lc.release(mid, SENDER)).code == "forbidden"
    assert await hs.state(mid) == "held"
    # and someone who is not an approver cannot approve
    assert (await hs.lc.approve(mid, approver("mallory@example.co.jp"))).code == "forbidden"


async def test_no_approver_falls_back_to_admins(tmp_path):
    h = await open_harness(make_settings(
        tmp_path, GUARD_REVIEW__ADMIN_ADDRESSES=f"{ALICE},admin@example.co.jp"))
    try:
        mid = await h.put(verdict("approve", approvers=[ALICE]))
        asked = {n.to for n in await h.notices(mid) if n.kind == "approval_request"}
        assert asked == {"admin@example.co.jp"}  # never the sender, even as an admin
        assert (await h.lc.approve(mid, approver("admin@example.co.jp"))).code == "approved"
    finally:
        await close_harness(h)


async def test_reject_cancels_and_tells_the_sender_why(hs: Harness):
    mid = await hs.put(verdict("approve", approvers=[BOSS, BOSS2]))
    res = await hs.lc.reject(mid, approver(BOSS2), reason="添付ファイルが別の顧客のものです")
    assert res.code == "rejected" and await hs.state(mid) == "cancelled"
    (n,) = [n for n in await hs.notices(mid) if n.kind == "rejected" and n.to == ALICE]
    assert "添付ファイルが別の顧客のものです" in n.body and BOSS2 in n.body
    assert {n.to for n in await hs.notices(mid) if n.kind == "rejected"} == {ALICE, BOSS}
    (a,) = [a for a in await hs.audit(mid) if a["action"] == "reject"]
    assert a["detail"]["near_miss"] is True and a["to_state"] == "cancelled"


async def test_expiry_defaults(hs: Harness):
    delay = await hs.put(verdict("delay"))
    confirm = await hs.put(verdict("confirm"))
    approve = await hs.put(verdict("approve"))
    for mid in (delay, confirm, approve):
        await hs.set_times(mid, hold_until=-1)
    report = await hs.service.timers.tick()
    assert sorted(report.expired) == sorted([delay, confirm, approve])
    assert await hs.state(delay) == "queued"  # delay: sent when the time is up
    assert await hs.state(confirm) == "expired"  # confirm/approve: cancelled ...
    assert await hs.state(approve) == "expired"
    # ... and never silently: the sender (and the approver) are told
    assert {n.to for n in await hs.notices(confirm) if n.kind == "expired"} == {ALICE}
    assert {n.to for n in await hs.notices(approve) if n.kind == "expired"} == {ALICE, BOSS}
    assert [n.kind for n in await hs.notices(delay)] == ["held"]
    (a,) = [a for a in await hs.audit(delay) if a["action"] == "expire"]
    assert a["detail"]["on_expiry"] == "send" and a["to_state"] == "queued"


async def test_expiry_by_rule_can_send_an_approval(hs: Harness):
    mid = await hs.put(verdict("approve", on_expiry="send"))
    await hs.set_times(mid, hold_until=-1)
    assert (await hs.lc.expire(mid)).code == "released"
    assert await hs.state(mid) == "queued"
    assert {n.to for n in await hs.notices(mid) if n.kind == "released"} == {ALICE, BOSS}


async def test_expiry_is_by_the_database_clock(hs: Harness):
    mid = await hs.put(verdict("delay"), hold_seconds=60)
    assert (await hs.lc.expire(mid)).code == "not_due"
    assert (await hs.service.timers.tick()).expired == []
    assert await hs.state(mid) == "held"
    await hs.set_times(mid, hold_until=-0.001)
    assert (await hs.service.timers.tick()).expired == [mid]


async def test_no_time_limit_when_the_verdict_has_none(hs: Harness):
    mid = await hs.put(verdict("approve", expiry_minutes=None), hold_seconds=None)
    assert (await hs.row(mid))["hold_until"] is None
    report = await hs.service.timers.tick()
    assert report.expired == [] and await hs.state(mid) == "held"


async def test_hold_until_from_the_verdict_when_the_row_has_none(hs: Harness):
    mid = await hs.put(verdict("delay", delay_minutes=10), hold_seconds=None)
    row = await hs.row(mid)
    assert abs(row["hold_until"] - (row["received_at"] + 600)) < 1


async def test_escalation_to_the_backup(hs: Harness):
    mid = await hs.put(verdict("approve", backup_approvers=[DEPUTY],
                               escalate_after_minutes=30))
    # before escalation, the backup may not act
    assert (await hs.lc.approve(mid, approver(DEPUTY))).code == "forbidden"
    assert (await hs.service.timers.tick()).escalated == []
    await hs.set_times(mid, escalate_at=-1)
    assert (await hs.service.timers.tick()).escalated == [mid]
    assert (await hs.service.timers.tick()).escalated == []  # once
    (req,) = [n for n in await hs.notices(mid) if n.kind == "approval_request"
              and n.to == DEPUTY]
    assert "backup" in req.subject.lower() or "代理" in req.subject
    assert (await hs.lc.approve(mid, approver(DEPUTY))).code == "approved"
    actions = [a["action"] for a in await hs.audit(mid)]
    assert actions == ["held", "notified", "escalate", "approve"]


async def test_no_escalation_without_anyone_to_escalate_to(hs: Harness):
    mid = await hs.put(verdict("approve"))
    from guard.store import holds as H

    async with hs.engine.connect() as conn:
        row = await H.get_hold(conn, mid)
    assert row is not None and row.escalate_at is None


async def test_concurrent_actions_release_once(hs: Harness):
    mid = await hs.put(verdict("approve", approvers=[BOSS, BOSS2]))
    results = await asyncio.gather(
        hs.lc.approve(mid, approver(BOSS)), hs.lc.approve(mid, approver(BOSS2)),
        hs.lc.release(mid, ADMIN), hs.lc.cancel(mid, ADMIN, reason="admin"),
        hs.lc.approve(mid, approver(BOSS)))
    assert sum(r.ok for r in results) == 1
    moves = [a for a in await hs.audit(mid) if a["from_state"] == "held"
             and a["to_state"] != "held"]
    assert len(moves) == 1


async def test_cancel_during_delay_wins_if_committed_first(hs: Harness):
    mid = await hs.put(verdict("delay"))
    await hs.set_times(mid, hold_until=-1)  # due, but the cancel commits first
    cancel = asyncio.ensure_future(hs.lc.cancel(mid, SENDER, reason="wrong_recipient"))
    await asyncio.sleep(0)  # the cancel is submitted to the writer first
    expire = asyncio.ensure_future(hs.lc.expire(mid))
    c, e = await asyncio.gather(cancel, expire)
    assert c.code == "cancelled" and e.code == "not_held"
    assert await hs.state(mid) == "cancelled"
    # and the other way round: once sent on expiry, a late cancel changes nothing
    mid2 = await hs.put(verdict("delay"))
    await hs.set_times(mid2, hold_until=-1)
    assert (await hs.lc.expire(mid2)).code == "released"
    assert (await hs.lc.cancel(mid2, SENDER, reason="other")).code == "not_held"
    assert await hs.state(mid2) == "queued"


async def test_admin_hold_of_a_queued_message(hs: Harness):
    mid = await hs.put(verdict("pass"), state="queued")
    res = await hs.lc.hold(mid, ADMIN, reason="宛先を確認中", kind="approve", hold_seconds=600)
    assert res.code == "held" and await hs.state(mid) == "held"
    # the timers send its first notices like for any hold
    assert (await hs.service.timers.tick()).notified == [mid]
    assert {n.kind for n in await hs.notices(mid)} == {"held"}  # no approver: admins asked
    # a message being delivered (leased) cannot be held
    mid2 = await hs.put(verdict("pass"), state="queued")

    async def lease(conn, now):
        from sqlalchemy import update

        from guard.store.schema import messages

        await conn.execute(update(messages).where(messages.c.id == mid2).values(
            lease_owner="w", lease_until=now + 60))

    await hs.writer.submit(lease)
    assert (await hs.lc.hold(mid2, ADMIN, reason="x")).code == "forbidden"


async def test_every_transition_writes_one_audit_row(hs: Harness):
    mid = await hs.put(verdict("approve", approvers=[BOSS, BOSS2], approvals_required=2,
                               backup_approvers=[DEPUTY]))
    await hs.set_times(mid, escalate_at=-1)
    await hs.service.timers.tick()
    await hs.lc.approve(mid, approver(BOSS))
    await hs.lc.approve(mid, approver(DEPUTY))
    rows = await hs.audit(mid)
    assert [(a["action"], a["from_state"], a["to_state"]) for a in rows] == [
        ("held", "", "held"), ("notified", "held", "held"), ("escalate", "held", "held"),
        ("approve", "held", "held"), ("approve", "held", "queued")]
    assert all(a["actor"] and a["at"] for a in rows)


async def test_drop_recipient_rewrites_in_the_same_transaction(hs: Harness):
    from tests.hold.test_remove_recipient import expected_after_removing_carol, sent_bytes

    sent = sent_bytes("r5")
    mid = await hs.put(verdict("confirm"), data=sent, rcpts=[BOB, CAROL, DAVE])
    # the envelope in A-label form and another case: the header's form still matches
    res = await hs.lc.drop_recipient(mid, "CAROL@example.org", SENDER)
    assert res.code == "dropped"
    stored = await hs.content(mid)
    assert stored == expected_after_removing_carol(sent)
    assert await hs.original(mid) == sent  # replay reads the message as it was received
    row = await hs.row(mid)
    assert row["size"] == len(stored) and row["state"] == "held"
    (a,) = [a for a in await hs.audit(mid) if a["action"] == "drop_recipient"]
    assert a["detail"]["address"] == CAROL
