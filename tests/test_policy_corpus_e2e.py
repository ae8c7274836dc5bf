"""One sample of each client shape of the corpus (Outlook, Thunderbird, iPhone Mail, a
copier's scan-to-mail, a business system's CP932 output) sent over SMTP to a running
guard with the shipped policy: each is delivered, held or refused as its table says."""

from __future__ import annotations

import asyncio
import shutil
import smtplib
from email import message_from_bytes
from email.policy import default
from email.utils import getaddresses
from pathlib import Path

from guard.store import db, reads
from guard.users import add_user
from tests.conftest import EXAMPLE_POLICY, USER_PASSWORD, Sink, TlsFiles, submit, wait_for
from tests.corpus_verdicts import SAMPLE_DIR
from tests.make_corpus import CORPUS, E2E, HISTORY_DOMAINS

HELD = {"delay", "confirm", "approve"}


def _envelope(data: bytes) -> tuple[str, list[str]]:
    m = message_from_bytes(data, policy=default)
    (_, sender), = getaddresses([str(m["from"])])
    return sender, [a for _, a in getaddresses([str(m[h]) for h in ("to", "cc") if m[h]])]


def _rows(url: str) -> list[dict]:
    async def go() -> list[dict]:
        engine = db.create_engine(url)
        async with engine.connect() as conn:
            rows = await reads.list_messages(conn)
        await engine.dispose()
        return rows

    return asyncio.run(go())


def test_one_sample_per_client_is_delivered_held_or_refused_as_its_table_says(
        guard_factory, sink: Sink, tls: TlsFiles, tmp_path: Path) -> None:
    policy = tmp_path / "policies"
    shutil.copytree(EXAMPLE_POLICY, policy, ignore=shutil.ignore_patterns("samples"))
    senders = {_envelope((SAMPLE_DIR / n).read_bytes())[0] for n in E2E}
    for i, sender in enumerate(sorted(senders)):
        add_user(tmp_path / "users.yaml", f"corpus{i}", USER_PASSWORD, [sender], "ja")
    login = {s: f"corpus{i}" for i, s in enumerate(sorted(senders))}
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    g = guard_factory(sink.url, url, policy=str(policy))
    known = tmp_path / "known.csv"
    known.write_text("domain\n" + "\n".join(HISTORY_DOMAINS) + "\n")
    assert g.cli("domains", "import", str(known)).returncode == 0

    delivered, held, refused = [], [], []
    for name in E2E:
        data = (SAMPLE_DIR / name).read_bytes()
        sender, rcpts = _envelope(data)
        action, rule = CORPUS[name]
        try:
            submit(g.smtp_port, tls, sender, rcpts, data, user=login[sender])
        except smtplib.SMTPDataError as e:
            assert (action, e.smtp_code) == ("reject", 550), (name, e)
            refused.append(name)
            continue
        assert action != "reject", name
        (delivered if action not in HELD else held).append((name, rcpts, rule))

    for name, rcpts, _ in delivered:
        wait_for(lambda r=rcpts: [m for m in sink.messages if sorted(m.rcpt_tos) == sorted(r)],
                 what=f"{name} at the sink")
    rows = wait_for(lambda: len([r for r in _rows(url) if r["state"] == "held"]) >= len(held)
                    and _rows(url), what="held messages")
    for name, rcpts, rule in held:
        (row,) = [r for r in rows if r["state"] == "held" and r["recipients"] == rcpts]
        assert row["verdict"]["rule"] == rule, name
        assert not [m for m in sink.messages if set(rcpts) & set(m.rcpt_tos)], name
    assert [n for n in E2E if CORPUS[n][0] == "reject"] == refused
    assert {n for n, _, _ in delivered} | {n for n, _, _ in held} | set(refused) == set(E2E)


def test_the_subset_has_one_sample_of_each_client() -> None:
    assert sorted(n.split("-")[1] for n in E2E) == sorted(
        ["outlook", "thunderbird", "iphone", "copier", "cp932"])
