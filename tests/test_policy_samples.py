"""Every shipped sample message gets the action and rule its name promises."""

from __future__ import annotations

import pytest

from guard.accept.decide import Inspector
from guard.policy import load_policy
from tests.conftest import EXAMPLE_POLICY, ROOT
from tests.make_corpus import build as build_corpus
from tests.make_samples import SAMPLES, build

SAMPLE_DIR = ROOT / "policies" / "samples"


@pytest.fixture(scope="module")
def policy():
    return load_policy(EXAMPLE_POLICY)


def _envelope(data: bytes) -> tuple[str, list[str]]:
    from email import message_from_bytes
    from email.policy import default
    from email.utils import getaddresses

    m = message_from_bytes(data, policy=default)
    return "sato@example.co.jp", [a for _, a in getaddresses([str(m["to"])])]


@pytest.mark.parametrize("name", sorted(SAMPLES))
async def test_shipped_sample_triggers_its_rule(policy, name: str):
    data = (SAMPLE_DIR / name).read_bytes()
    mail_from, rcpts = _envelope(data)
    ins = await Inspector(None, b"k" * 32).inspect(policy, data, mail_from, rcpts, mail_from)
    action, rule = SAMPLES[name]
    assert (ins.verdict.action.value, ins.verdict.rule) == (action, rule), [
        (r.rule, r.symbol) for r in ins.verdict.reasons]


def test_generator_writes_every_listed_sample():
    built = build()
    assert set(built) == set(SAMPLES)
    assert {p.name for p in SAMPLE_DIR.glob("*.eml")} == set(SAMPLES) | set(build_corpus())
