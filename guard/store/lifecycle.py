"""The message lifecycle, declared: every state a message row can be in, and every move
between states with the audit action that records it.

`queue.insert_message()` and `queue.transition()` refuse a move that is not in MOVES
(IllegalMove, raised before anything is written), so this table is the whole truth about
what can happen to a message; the diagram in docs/architecture.md is printed from it
(`python -m guard.store.lifecycle`) and a test fails when the two differ.

How to add a move: add a Move row here (from, to, audit action, the function that makes
it, when), have that function call `queue.transition()` with the same action, exercise
it in tests/test_lifecycle_table.py, and paste the new block into docs/architecture.md
(`python -m guard.store.lifecycle --write docs/architecture.md`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class State(StrEnum):
    """What a stored message is waiting for (messages.state). "Delivering" is not a
    state: it is a lease on a queued or deferred row."""

    QUEUED = "queued"  # due for delivery
    DEFERRED = "deferred"  # a recipient got 4xx: tried again later
    DELIVERED = "delivered"  # final: every recipient settled, at least one 2xx
    BOUNCED = "bounced"  # final: no recipient delivered
    HELD = "held"  # waiting for a person or a time (hold lifecycle)
    CANCELLED = "cancelled"  # final: a person said no
    EXPIRED = "expired"  # final: the hold's time ran out and its default was cancel
    REJECTED = "rejected"  # final: answered 5xx, or withdrawn after a 451


class RecipientState(StrEnum):
    """Where one recipient of a message stands (recipients.state)."""

    PENDING = "pending"  # not settled yet: tried at the next attempt
    DELIVERED = "delivered"
    FAILED = "failed"  # 5xx, or 4xx until the message's lifetime ran out
    DROPPED = "dropped"  # taken out of a held message by a person, or by a drop rule


# Waiting for delivery: what a worker claims, retries and leases.
ACTIVE_STATES: tuple[State, ...] = (State.QUEUED, State.DEFERRED)
# Nothing more will happen: the bytes are purged after the retention time.
FINAL_STATES: tuple[State, ...] = (State.DELIVERED, State.BOUNCED, State.CANCELLED,
                                   State.EXPIRED, State.REJECTED)


@dataclass(frozen=True)
class Move:
    source: State | None  # None: the message is stored (insert_message)
    target: State
    action: str  # audit.action of the row this move writes
    by: str  # the function that makes it
    when: str


def _moves(sources: Iterable[State | None], target: State, action: str, by: str,
           when: str) -> list[Move]:
    return [Move(s, target, action, by, when) for s in sources]


_ACTIVE = ACTIVE_STATES
_HELD = (State.HELD,)
_INSERT = (None,)

MOVES: tuple[Move, ...] = tuple([
    # -- stored at DATA (the accept pipeline), or written by the guard itself
    *_moves(_INSERT, State.QUEUED, "accepted", "queue.insert_message",
            "accepted at DATA (with a split hold: the part that goes now); also the "
            "notices and DSNs the guard writes"),
    *_moves(_INSERT, State.HELD, "held", "queue.insert_message",
            "accepted at DATA with a hold verdict (delay, confirm, approve; with a split "
            "hold: the part for the held recipients)"),
    *_moves(_INSERT, State.REJECTED, "rejected", "queue.insert_message",
            "answered 5xx at DATA (envelope, verdict and bytes kept for replay)"),
    # -- delivery attempts (the relay worker, holding the lease)
    *_moves(_ACTIVE, State.DELIVERED, "delivered", "delivery.record_attempt",
            "every recipient 2xx"),
    *_moves(_ACTIVE, State.DELIVERED, "delivered_partially", "delivery.record_attempt",
            "some recipients 2xx, the others failed for good"),
    *_moves(_ACTIVE, State.DEFERRED, "deferred", "delivery.record_attempt",
            "a recipient got 4xx: tried again with backoff"),
    *_moves(_ACTIVE, State.BOUNCED, "bounced", "delivery.record_attempt",
            "no recipient delivered (5xx, or the delivery lifetime ran out)"),
    # -- the CLI
    Move(State.QUEUED, State.QUEUED, "retry", "queue.retry_now, queue.retry_all",
         "`guard queue retry`: due now"),
    Move(State.DEFERRED, State.DEFERRED, "retry", "queue.retry_now, queue.retry_all",
         "`guard queue retry`: due now"),
    # -- the writer's undo of an accept whose client was answered 451
    *_moves((State.QUEUED, State.HELD), State.REJECTED, "withdrawn",
            "queue.withdraw_unanswered",
            "committed after its client was answered 451: the client sends it again"),
    # -- the hold lifecycle (review pages, `guard holds`, the timers)
    *_moves(_ACTIVE, State.HELD, "hold", "hold.lifecycle.hold",
            "an admin holds a message that is not being delivered"),
    Move(State.HELD, State.HELD, "notified", "hold.lifecycle.notify",
         "the first notices of a hold are sent"),
    Move(State.HELD, State.HELD, "approve", "hold.lifecycle.approve",
         "an approval, not the last one needed"),
    Move(State.HELD, State.HELD, "escalate", "hold.lifecycle.escalate",
         "nobody acted in time: the backup approvers are asked"),
    Move(State.HELD, State.HELD, "drop_recipient", "hold.lifecycle.drop_recipient",
         "one recipient taken out, others remain"),
    Move(State.HELD, State.QUEUED, "release", "hold.lifecycle.release, links.add_link",
         "the sender confirms or sends now, or an admin releases (a linked PPAP password "
         "mail: with its attachment mail, `hold.lifecycle._follow`, or as it is stored "
         "when that mail was released meanwhile, `links.add_link`)"),
    Move(State.HELD, State.QUEUED, "approve", "hold.lifecycle.approve",
         "the last approval needed"),
    Move(State.HELD, State.QUEUED, "expire", "hold.lifecycle.expire",
         "the hold's time is up and its default is send"),
    Move(State.HELD, State.EXPIRED, "expire", "hold.lifecycle.expire",
         "the hold's time is up and its default is cancel"),
    Move(State.HELD, State.CANCELLED, "cancel",
         "hold.lifecycle.cancel, hold.lifecycle.release, hold.lifecycle.drop_recipient, "
         "links.add_link",
         "the sender or an admin cancels, or the last recipient is taken out (a linked "
         "PPAP password mail: with its attachment mail, or when none of its recipients "
         "is one that mail goes to)"),
    Move(State.HELD, State.CANCELLED, "reject", "hold.lifecycle.reject",
         "an approver says no"),
])

ALLOWED: frozenset[tuple[State | None, State, str]] = frozenset(
    (m.source, m.target, m.action) for m in MOVES)
ACTIONS: tuple[str, ...] = tuple(dict.fromkeys(m.action for m in MOVES))
# the audit action of storing a message in each state it may be stored in
INSERT_ACTIONS: dict[State, str] = {m.target: m.action for m in MOVES if m.source is None}


class IllegalMove(ValueError):
    """A state change that is not in MOVES: a bug in the caller, never a lost race."""


def check_move(source: str | None, target: str, action: str) -> None:
    """Raise IllegalMove unless (source, target, action) is a declared move."""
    if (source, target, action) in ALLOWED:  # a State is the str it holds: one lookup
        return
    try:
        key = (None if source is None else State(source), State(target), action)
    except ValueError:
        key = None
    if key is None or key not in ALLOWED:
        shown = "(insert)" if source is None else source
        raise IllegalMove(f"{shown} → {target} by {action!r} is not a move of the message "
                          "lifecycle (guard/store/lifecycle.py MOVES)")


def insert_action(state: str) -> str:
    """The audit action of storing a message in `state` (IllegalMove if it may not be)."""
    try:
        return INSERT_ACTIONS[State(state)]
    except (ValueError, KeyError):
        raise IllegalMove(f"a message cannot be stored as {state!r} (insertable: "
                          f"{', '.join(INSERT_ACTIONS)})") from None


# --- the drawing in docs/architecture.md -------------------------------------------------

BEGIN = "<!-- lifecycle:begin -->"
END = "<!-- lifecycle:end -->"


def mermaid() -> str:
    """A Mermaid state diagram: one arrow per (from, to), labelled with its actions."""
    edges: dict[tuple[str, str], list[str]] = {}
    for m in MOVES:
        src = "[*]" if m.source is None else str(m.source)
        actions = edges.setdefault((src, str(m.target)), [])
        if m.action not in actions:
            actions.append(m.action)
    lines = ["stateDiagram-v2"]
    lines += [f"    {s} --> {t}: {', '.join(a)}" for (s, t), a in edges.items()]
    lines += [f"    {s} --> [*]" for s in FINAL_STATES]
    return "\n".join(lines)


def table() -> str:
    """Every move, one markdown row each."""
    rows = ["| from | to | audit action | made by | when |", "|---|---|---|---|---|"]
    for m in MOVES:
        src = "(stored)" if m.source is None else f"`{m.source}`"
        by = ", ".join(f"`{name}`" for name in m.by.split(", "))
        rows.append(f"| {src} | `{m.target}` | `{m.action}` | {by} | {m.when} |")
    return "\n".join(rows)


def block() -> str:
    """What docs/architecture.md holds between BEGIN and END (markers included)."""
    return "\n".join([
        BEGIN,
        "<!-- printed by `python -m guard.store.lifecycle` from MOVES; edit the table, "
        "not this -->",
        "",
        "```mermaid",
        mermaid(),
        "```",
        "",
        table(),
        END,
    ])


def replace_block(doc: str) -> str:
    """`doc` with the text between its markers replaced by block()."""
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {BEGIN} … {END} markers")
    return doc[:start] + block() + doc[end + len(END):]


def current_block(doc: str) -> str:
    """The block `doc` holds now, markers included ("" if it has none)."""
    start, end = doc.find(BEGIN), doc.find(END)
    return doc[start:end + len(END)] if 0 <= start < end else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m guard.store.lifecycle",
                                description="Print the message lifecycle (Mermaid + table).")
    p.add_argument("--write", metavar="DOC", help="replace the block between the lifecycle "
                   "markers in DOC (docs/architecture.md) instead of printing it")
    args = p.parse_args(argv)
    if args.write:
        path = Path(args.write)
        path.write_text(replace_block(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    sys.stdout.write(block() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
