"""HoldService: the hold lifecycle, its timers and what review links show, wired for one
process.

    hold = HoldService(engine, writer, settings, load_or_create_secret(settings),
                       on_release=worker.wake)
    tasks       += hold.run_timers()      # first notices, expiry, escalation
    after a 250 "held as <id>":  await hold.notify_held(id)   (or hold.wake())

The review pages (guard/web/review.py) are built from a HoldService: they ask
`hold.links` what a link shows and call `hold.lifecycle` to act; hold knows no web.

`on_release` is called after any commit that queued mail (a released message, notices)
so the delivery worker sends it at once instead of at its next poll.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from guard.config import Settings
from guard.hold.acts import Result
from guard.hold.lifecycle import Lifecycle
from guard.hold.links import ReviewLinks
from guard.hold.notify.language import Languages
from guard.hold.notify.notices import NoticeFactory
from guard.hold.timers import HoldTimers
from guard.hold.tokens import TokenSigner
from guard.ids import instance_id
from guard.store import AsyncEngine
from guard.store.writer import BatchWriter

log = logging.getLogger("guard.hold")


class HoldService:
    def __init__(self, engine: AsyncEngine, writer: BatchWriter, settings: Settings,
                 secret: bytes, *, on_release: Callable[[], None] | None = None,
                 internal_domains: Callable[[], Sequence[str]] = tuple) -> None:
        self.engine = engine
        self.writer = writer
        self.settings = settings
        r = settings.review
        self.signer = TokenSigner(secret, r.key_id, r.previous_key_ids)
        self.languages = Languages(settings.smtp.users_file, r.default_language)
        # the policy's internal domains: the default From: of notices is noreply@ the first
        self.notices = NoticeFactory(settings, self.signer, self.languages, internal_domains)
        self.lifecycle = Lifecycle(writer, settings, self.notices, on_queued=on_release,
                                   instance=settings.instance_id or instance_id())
        self.timers = HoldTimers(engine, self.lifecycle, r.tick_seconds)
        self.links = ReviewLinks(engine, self.signer, settings)

    async def run_timers(self) -> None:
        """Run forever (cancel to stop): safe to run in every instance."""
        await self.timers.run()

    def wake(self) -> None:
        """Something was held: let the timers send its first notice now."""
        self.timers.wake()

    async def notify_held(self, queue_id: str) -> Result | None:
        """Send the first notices of a message that was just held. Idempotent; if it
        fails, the timers send them at their next pass (no hold waits silently)."""
        try:
            return await self.lifecycle.notify(queue_id)
        except Exception:
            log.exception("first notice for %s failed; the timers will retry", queue_id)
            self.timers.wake()
            return None
