"""The deliberate human step of a review form: the part a mail scanner that submits
forms does not fill in. A Send/Remove choice for every recipient to confirm, the
recipient domains typed by an approver, a reason to cancel or reject. Without it the
action is refused with the error key the page shows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.datastructures import FormData

from guard.hold.acts import CANCEL_REASONS, Actor, Link, Result
from guard.hold.lifecycle import Lifecycle
from guard.hold.links import LinkView
from guard.mail.addresses import domain_of, normalize_domain

MAX_DOMAIN_INPUTS = 3

Step = Callable[[Actor, Link], Awaitable[Result]]


def domains_to_type(page: LinkView) -> list[str]:
    """Domains an approver must type: the risky recipients' (at most three)."""
    live = [r.address for r in page.rcpts if r.state == "pending"]
    risky = [a for a in live if page.hold.needs_tick(a)] or live
    out: list[str] = []
    for a in risky:
        d = domain_of(a)
        if d and d not in out:
            out.append(d)
    return sorted(out)[:MAX_DOMAIN_INPUTS]


def deliberate_step(lc: Lifecycle, page: LinkView, op: str, form: FormData) -> str | Step:
    """The lifecycle call the form asks for; an error key if its deliberate part is missing."""
    mid = page.msg.id
    if op in ("confirm", "send_now"):
        remove: list[str] = []
        for r in page.rcpts:
            if r.state != "pending" or not page.hold.needs_tick(r.address):
                continue
            choice = form.get(f"rcpt-{r.idx}")
            if choice not in ("send", "remove"):
                return "error.tick_all"
            if choice == "remove":
                remove.append(r.address)
        bcc = form.get("bcc") == "on"
        return lambda actor, link: lc.release(mid, actor, link=link, drop=remove, bcc=bcc)
    if op == "cancel":
        reason = str(form.get("cancel_reason") or "")
        if reason not in CANCEL_REASONS:
            return "error.reason"
        note = str(form.get("note") or "")[:1000]
        return lambda actor, link: lc.cancel(mid, actor, reason=reason, note=note, link=link)
    if op == "approve":
        pending = [r for r in page.rcpts if r.state == "pending"]
        out = [r.address for r in pending if form.get(f"rcpt-{r.idx}") == "remove"]
        if out and len(out) >= len(pending):
            return "error.none_left"  # nobody left to send to: that is a rejection
        want = domains_to_type(page)
        typed = [_typed_domain(str(form.get(f"domain-{i}") or "")) for i in range(len(want))]
        # compared as sets: the approver may type them in any order
        if not want or sorted(typed) != want:
            return "error.domain"
        return lambda actor, link: lc.approve(mid, actor, link=link, drop=out)
    if op == "reject":
        reason = str(form.get("reject_reason") or "").strip()
        if not reason:
            return "error.reason"
        return lambda actor, link: lc.reject(mid, actor, reason=reason[:1000], link=link)
    return "error.forbidden"


def _typed_domain(value: str) -> str:
    # a whole address typed is fine too; "straße.de" is xn--strae-oqa.de, not strasse.de
    return normalize_domain(value.strip().rpartition("@")[2])
