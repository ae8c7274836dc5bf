"""A PPAP password mail goes only where its attachment mail went, and only once that
mail is decided — also when it is decided while the password mail is inspected, and
whatever the password mail's own hold says about expiry. The pipeline's undo takes back
the drop notice it stored. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from guard.accept.pipeline import Decision, Pipeline
from guard.hold.acts import Actor
from guard.smtp.outcome import Accepted, Held, Outcome, TryLater
from guard.smtp.received import ReceivedMessage
from guard.store import links
from guard.store.faults import WriteTimeout
from tests.hold.conftest import (
    ALICE,
    BOB,
    BOSS,
    CAROL,
    DAVE,
    Harness,
    close_harness,
    make_settings,
    message_bytes,
    open_harness,
    verdict,
)

APPROVER = Actor("approver", BOSS, "web")
ADMIN = Actor("admin", "root", "cli")


@pytest.fixture
async def hs(db_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    h = await open_harness(make_settings(tmp_path, GUARD_DATABASE_URL=db_url))
    yield h
    await close_harness(h)


async def pair(hs: Harness, zip_verdict: dict[str, Any], *, zip_rcpts: list[str],
               pw_rcpts: list[str], pw_verdict: dict[str, Any] | None = None,
               zip_seconds: float | None = 3600) -> tuple[str, str]:
    zip_id = await hs.put(zip_verdict, rcpts=zip_rcpts, hold_seconds=zip_seconds)
    pw = await hs.put(pw_verdict or verdict("confirm"), rcpts=pw_rcpts)
    res = await hs.writer.submit(lambda conn, now: links.add_link(
        conn, now, pw, zip_id, actor="smtp:alice", key=str.lower))
    assert res == "held"
    return zip_id, pw


def only(audit: list[dict[str, Any]], action: str) -> dict[str, Any]:
    (a,) = [a for a in audit if a["action"] == action]
    return a


@pytest.mark.parametrize("kind", ["approve", "confirm"])
async def test_a_recipient_removed_from_the_zip_mail_does_not_get_its_password(
        hs: Harness, kind: str):
    zip_id, pw = await pair(hs, verdict(kind), zip_rcpts=[BOB, CAROL],
                            pw_rcpts=[BOB, CAROL])
    if kind == "approve":  # the approver takes CAROL out as they approve
        res = await hs.lc.approve(zip_id, APPROVER, drop=[CAROL])
    else:  # the sender confirms without her
        res = await hs.lc.release(zip_id, Actor("sender", ALICE, "web"), drop=[CAROL])
    assert res.ok, res
    assert await hs.state(pw) == "queued"
    assert await hs.rcpt_states(pw) == {BOB: "pending", CAROL: "dropped"}
    a = only(await hs.audit(pw), "release")
    assert a["detail"]["linked_to"] == zip_id and a["detail"]["dropped"] == [CAROL]
    assert "linked mail" in a["detail"]["dropped_why"]
    assert CAROL.encode() not in (await hs.content(pw)).split(b"\r\n\r\n", 1)[0]


async def test_the_password_mail_goes_to_no_one_the_zip_mail_never_had(hs: Harness):
    zip_id, pw = await pair(hs, verdict("confirm"), zip_rcpts=[BOB], pw_rcpts=[BOB, DAVE])
    assert (await hs.lc.release(zip_id, ADMIN)).ok
    assert await hs.rcpt_states(pw) == {BOB: "pending", DAVE: "dropped"}
    # none of its recipients is one of the zip mail's: it is not sent at all
    zip2, pw2 = await pair(hs, verdict("confirm"), zip_rcpts=[BOB], pw_rcpts=[CAROL])
    assert (await hs.lc.release(zip2, ADMIN)).ok
    assert await hs.state(pw2) == "cancelled"
    a = only(await hs.audit(pw2), "cancel")
    assert a["detail"]["reason"] == "linked_recipients_removed"
    assert a["detail"]["dropped"] == [CAROL]


# --- decided while the password mail was inspected ------------------------------------


def received(rcpts: list[str]) -> ReceivedMessage:
    return ReceivedMessage(mail_from=ALICE, rcpt_tos=rcpts, data=message_bytes("パスワード"),
                           client_ip="127.0.0.1", helo="mta.localhost", listener="trusted",
                           tls=False, user=None, mail_options=[])


async def accept_linked(hs: Harness, zip_id: str, meanwhile: Any,
                        rcpts: list[str]) -> tuple[Outcome, str]:
    """The pipeline stores a password mail held with a link to `zip_id`; `meanwhile`
    runs after inspection found the zip mail held, before the commit."""
    ids: list[str] = []

    async def decide(msg: ReceivedMessage, queue_id: str) -> Decision:
        ids.append(queue_id)
        await meanwhile()
        return Decision(action="hold", verdict=verdict("delay", on_expiry="send"),
                        hold_seconds=300, link_to=zip_id)

    outcome = await Pipeline(hs.writer, "guard.test", decide).accept(received(rcpts))
    return outcome, ids[0]


async def test_a_zip_mail_released_meanwhile_takes_the_password_mail_along(hs: Harness):
    zip_id = await hs.put(verdict("approve"), rcpts=[BOB, CAROL])

    async def approve() -> None:
        assert (await hs.lc.approve(zip_id, APPROVER, drop=[CAROL])).code == "approved"

    outcome, pw = await accept_linked(hs, zip_id, approve, [BOB, CAROL])
    assert outcome == Accepted("queued", pw)
    assert await hs.state(pw) == "queued"
    assert await hs.rcpt_states(pw) == {BOB: "pending", CAROL: "dropped"}
    a = only(await hs.audit(pw), "release")
    assert a["detail"]["linked_to"] == zip_id and a["detail"]["decided_before_commit"]
    # nobody is asked to confirm it alone
    assert (await hs.lc.notify(pw)).code == "not_held"


async def test_a_zip_mail_rejected_meanwhile_cancels_the_password_mail(hs: Harness):
    zip_id = await hs.put(verdict("approve"), rcpts=[BOB])

    async def reject() -> None:
        assert (await hs.lc.reject(zip_id, APPROVER, reason="no")).ok

    outcome, pw = await accept_linked(hs, zip_id, reject, [BOB])
    assert outcome == Accepted("cancelled", pw)
    a = only(await hs.audit(pw), "cancel")
    assert a["detail"]["reason"] == "linked_cancelled"


async def test_the_password_mail_never_expires_before_its_zip_mail(hs: Harness):
    async def nothing() -> None:
        return None

    zip_id = await hs.put(verdict("approve"), rcpts=[BOB], hold_seconds=2 * 86400)
    outcome, pw = await accept_linked(hs, zip_id, nothing, [BOB])
    assert isinstance(outcome, Held)
    row = await hs.row(pw)
    assert json.loads(row["verdict"])["on_expiry"] == "cancel"  # whatever the rule said
    zip_until = (await hs.row(zip_id))["hold_until"]
    assert row["hold_until"] == zip_until  # its delay's 5 minutes: as long as the zip's
    # due all the same (an admin shortened it): it waits for the zip mail
    await hs.lc.notify(pw)
    await hs.set_times(pw, hold_until=-1)
    await hs.service.timers.tick()
    assert await hs.state(pw) == "held"
    assert (await hs.row(pw))["hold_until"] == zip_until
    # a linked mail whose own expiry says send is cancelled when it does expire
    zip2, pw2 = await pair(hs, verdict("confirm"), zip_rcpts=[BOB], pw_rcpts=[BOB],
                           pw_verdict=verdict("delay", on_expiry="send"))
    assert (await hs.lc.cancel(zip2, ADMIN, reason="gone")).ok
    assert await hs.state(pw2) == "cancelled"


# --- the undo of a commit the client was not told about -----------------------------------


class UndoingWriter:
    """The writer's contract when the commit outlives `give_up_after`: the operation
    commits, its undo runs, the caller gets WriteTimeout (the client a 451)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    async def submit(self, op: Any, *, give_up_after: float | None = None,
                     undo: Any = None) -> Any:
        await self.real.submit(op)
        assert undo is not None
        await self.real.submit(undo)
        raise WriteTimeout("no commit in time", in_doubt=True)


async def test_a_withdrawn_message_takes_its_drop_notice_with_it(hs: Harness):
    async def decide(msg: ReceivedMessage, queue_id: str) -> Decision:
        return Decision(action="queue", verdict={"action": "pass", "reasons": []},
                        dropped={CAROL: "dropped by policy (rule withdrawn)"})

    pipeline = Pipeline(UndoingWriter(hs.writer), "guard.test", decide,  # type: ignore[arg-type]
                        drop_notice=hs.service.notices.dropped)
    outcome = await pipeline.accept(received([BOB, CAROL]))
    assert isinstance(outcome, TryLater)
    notices = await hs.notices()
    assert len(notices) == 1
    assert await hs.state(notices[0].id) == "rejected"
    assert only(await hs.audit(notices[0].id), "withdrawn")
