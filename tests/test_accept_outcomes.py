"""The pipeline's answer is a type; only guard.smtp.replies words the reply line. The
lines are the ones clients have always read."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from guard.accept.pipeline import POLICY_REFUSAL, Decision, Pipeline
from guard.smtp.outcome import Accepted, Held, Outcome, Rejected, TryLater
from guard.smtp.received import ReceivedMessage
from guard.smtp.replies import TEXT_MAX, UNAVAILABLE, reply
from guard.store import db, migrate, reads
from guard.store.faults import StoreUnavailable
from guard.store.writer import BatchWriter
from tests.conftest import simple_message

MSG = ReceivedMessage(mail_from="alice@example.co.jp", rcpt_tos=["bob@example.net"],
                      data=simple_message("outcomes"), client_ip="127.0.0.1",
                      helo="mta.localhost", listener="trusted", tls=False, user=None,
                      mail_options=[])


@pytest.mark.parametrize(("outcome", "line"), [
    (Accepted("queued", "Q1"), "250 2.0.0 Ok: queued as Q1"),
    (Held("approve", "Q2"), "250 2.0.0 Ok: held as Q2"),
    (POLICY_REFUSAL, "550 5.7.1 Message refused by policy"),
    (Rejected(554, "5.7.0", "No My Number outside"), "554 5.7.0 No My Number outside"),
    (TryLater("queue database unavailable"),
     "451 4.3.0 Error: queue database unavailable, try again later"),
    (UNAVAILABLE, "451 4.3.0 Error: queue temporarily unavailable, try again later"),
])
def test_each_outcome_has_its_reply_line(outcome: Outcome, line: str) -> None:
    assert reply(outcome) == line
    # the front processes get the outcome over a socket pair, pickled
    assert reply(pickle.loads(pickle.dumps(outcome))) == line


def test_a_refusal_is_one_line_of_ascii_unless_the_session_allows_utf8() -> None:
    refusal = Rejected(550, "5.7.1", "No My\r\nNumber\x00 outside\tplease",
                       "マイナンバーは\r\n送れません / No My Number outside")
    assert reply(refusal) == "550 5.7.1 No My Number outside please"
    assert reply(refusal, utf8=True) == (
        "550 5.7.1 マイナンバーは 送れません / No My Number outside")
    # without a UTF-8 text the ASCII one serves both
    assert reply(Rejected(550, "5.7.1", "日本語 only"), utf8=True) == "550 5.7.1 only"
    long = reply(Rejected(550, "5.7.1", "x" * 1000))
    assert len(long) == len("550 ") + TEXT_MAX and long.startswith("550 5.7.1 xxx")


def test_something_else_is_no_outcome() -> None:
    with pytest.raises(TypeError):
        reply("250 2.0.0 Ok")  # type: ignore[arg-type]


class _Decider:
    def __init__(self, decision: Decision) -> None:
        self.decision = decision

    async def __call__(self, msg: ReceivedMessage, queue_id: str) -> Decision:
        return self.decision


async def _accept(url: str, decision: Decision) -> tuple[Outcome, dict[str, str]]:
    engine = db.create_engine(url)
    await migrate.upgrade(engine)
    writer = BatchWriter(engine)
    writer.start()
    try:
        outcome = await Pipeline(writer, "guard.test", _Decider(decision)).accept(MSG)
        async with engine.connect() as conn:
            counts = await reads.count_by_state(conn)
        return outcome, {k: str(v) for k, v in counts.items() if v}
    finally:
        await writer.close()
        await engine.dispose()


HOLD = {"action": "approve", "reasons": []}


@pytest.mark.parametrize(("decision", "kind", "state"), [
    (Decision(verdict={"action": "pass", "reasons": []}), Accepted, "queued"),
    (Decision(action="hold", verdict=HOLD), Held, "held"),
    (Decision(action="reject", verdict={"action": "reject", "reasons": []}), Rejected,
     "rejected"),
    (Decision(action="reject", verdict={"action": "reject", "reasons": []},
              rejection=Rejected(554, "5.7.0", "Not this")), Rejected, "rejected"),
])
async def test_the_pipeline_answers_with_the_type_of_what_it_committed(
        tmp_path: Path, decision: Decision, kind: type, state: str) -> None:
    outcome, counts = await _accept(f"sqlite:///{tmp_path / 'guard.db'}", decision)
    assert type(outcome) is kind
    assert counts == {state: "1"}
    if isinstance(outcome, Accepted):
        assert outcome.state == "queued"
        assert reply(outcome) == f"250 2.0.0 Ok: queued as {outcome.id}"
    elif isinstance(outcome, Held):
        assert outcome.kind == "approve"
        assert reply(outcome) == f"250 2.0.0 Ok: held as {outcome.hold_id}"
    else:
        assert outcome == (decision.rejection or POLICY_REFUSAL)


class _DownWriter:
    async def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("the database is away")


async def test_an_unavailable_store_is_try_later_not_an_exception() -> None:
    pipeline = Pipeline(_DownWriter(), "guard.test",  # type: ignore[arg-type]
                        _Decider(Decision(verdict={"action": "pass", "reasons": []})))
    outcome = await pipeline.accept(MSG)
    assert outcome == TryLater("queue database unavailable")
    assert reply(outcome) == "451 4.3.0 Error: queue database unavailable, try again later"
