"""The review page of a message whose bytes the retention sweep deleted says so (over
real HTTP against a running guard), and once its row is gone too the link says the
message is gone: never an error page."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from guard.store import retention
from guard.store.schema import messages
from tests.hold.conftest import ALICE, GuardThread, verdict
from tests.hold.test_review_web import held, notice_link, open_page, state

PURGED_JA = "このメールの本文は保存期間（7日）を過ぎたため削除されました"


def age_and_sweep(g: GuardThread, mid: str, days: float) -> retention.Counts:
    """Date the message's last change `days` back, then run the sweep's own purge."""
    assert g.app is not None

    async def go() -> Any:
        async def back(conn: Any, now: float) -> None:
            await conn.execute(update(messages).where(messages.c.id == mid)
                               .values(updated_at=now - days * retention.DAY))

        await g.app.writer.submit(back)
        s = g.settings
        ages = retention.Ages(s.delivery.retention_days * retention.DAY,
                              s.retention.audit_days * retention.DAY)
        return await g.app.writer.submit(lambda c, now: retention.purge(c, now, ages))

    result: retention.Counts = g.call(go())
    return result


def test_purged_message_page(guard: GuardThread):
    mid = held(guard, "p", verdict("confirm"), subject="見積書の送付")
    link = notice_link(guard, mid, ALICE, "held")
    r, forms = open_page(guard, link)
    assert r.status == 200 and PURGED_JA not in r.body
    (cancel,) = [f for f in forms if f.get("op") == "cancel"]
    p = guard.http("POST", link, form={**cancel, "cancel_reason": "wrong_recipient"},
                   cookies=r.cookies)
    assert p.status == 200 and state(guard, mid) == "cancelled"

    # decided a day ago: the bytes are still within delivery.retention_days
    assert age_and_sweep(guard, mid, 1).bodies == 0
    r, _ = open_page(guard, link)
    assert r.status == 200 and PURGED_JA not in r.body

    assert age_and_sweep(guard, mid, 8).bodies == 1
    r, _ = open_page(guard, link)
    assert r.status == 200, r.body
    assert PURGED_JA in r.body and "見積書の送付" in r.body  # the row is still there
    en = guard.http("GET", link + "?lang=en", headers={"User-Agent": "Mozilla/5.0 test"})
    assert "retention period (7 days) is over" in en.body

    # a year and more: the row goes too; the link says the message is gone
    assert age_and_sweep(guard, mid, 400).messages == 1
    r, _ = open_page(guard, link)
    assert r.status == 410
