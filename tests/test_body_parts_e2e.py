"""Own contact data and signatures through a running guard over SMTP: a full business
signature and the declared branch-office list (read by an extraction worker) pass to a
private address; a customer's address and phone are held."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Sink, TlsFiles, submit, wait_for
from tests.inspect.fixtures import xlsx
from tests.test_body_parts import BRANCHES, SIGNATURE, eml, write_policy
from tests.test_policy_e2e import _rows


def test_signature_and_branch_list_pass_customer_data_is_held(
        guard_factory, sink: Sink, tls: TlsFiles, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "policies", own=True)
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    g = guard_factory(sink.url, url, policy=str(policy))
    sender = "alice@example.co.jp"

    submit(g.smtp_port, tls, sender, ["friend@gmail.com"],
           eml("鈴木様\n\n資料を送ります。\nよろしくお願いいたします。\n\n" + SIGNATURE,
               sender=sender))
    book = xlsx([["支店名", "郵便番号", "住所", "TEL"], *[list(b) for b in BRANCHES]])
    submit(g.smtp_port, tls, sender, ["friend2@gmail.com"],
           eml("支店一覧です。\n", to="friend2@gmail.com", sender=sender,
               attachment=("支店一覧.xlsx", book)))
    submit(g.smtp_port, tls, sender, ["driver@gmail.com"],
           eml("お届け先: 鈴木一郎様\n〒150-0001 東京都渋谷区神宮前1-2-3\n"
               "TEL 090-1234-5678\n\n" + SIGNATURE, to="driver@gmail.com", sender=sender))

    delivered = sink.wait_count(2)
    assert sorted(r for m in delivered for r in m.rcpt_tos) == [
        "friend2@gmail.com", "friend@gmail.com"]
    held = wait_for(lambda: [r for r in _rows(url) if r["state"] == "held"], what="held")
    (row,) = held
    assert row["verdict"]["rule"] == "personal-data"
    wheres = {r["where"] for r in row["verdict"]["reasons"]}
    assert wheres == {"body"}
