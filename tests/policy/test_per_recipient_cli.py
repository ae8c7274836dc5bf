"""Per-recipient actions through `guard policy test --json --explain` and `guard policy
check`: who is dropped, which part goes now and which waits, and why a hold is not
split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

from tests.inspect.fixtures import xlsx
from tests.policy.per_recipient_policy import POLICY, write_policy

ALICE = "alice@example.co.jp"
WITHDRAWN = "ito.hanako@example.com"
COLLEAGUES = ["tanaka@example.co.jp", "suzuki@example.co.jp"]
NEW = "buyer@newclient.example"
PEOPLE = [["氏名", "住所", "電話番号", "メールアドレス"]] + [
    [f"山田 太郎{i}", f"東京都千代田区丸の内1-{i}-1", f"03-1234-{5600 + i}",
     f"taro{i}@example.org"] for i in range(12)]


def guard(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env["GUARD_SECRET"] = "per-recipient-test-secret-0123456789"
    return subprocess.run([sys.executable, "-m", "guard.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def eml(tmp_path: Path, to: list[str], people: bool = False) -> Path:
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = ALICE
    m["To"] = ", ".join(to)
    m["Subject"] = "ご案内"
    m.set_content("ご確認ください。\n")
    if people:
        m.add_attachment(xlsx(PEOPLE), maintype="application",
                         subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                         filename="名簿.xlsx")
    path = tmp_path / "m.eml"
    path.write_bytes(m.as_bytes())
    return path


def verdict(tmp_path: Path, to: list[str], policy: str = POLICY, people: bool = False
            ) -> dict[str, Any]:
    policy_file = write_policy(tmp_path / "p", policy)
    r = guard(tmp_path, "policy", "test", str(eml(tmp_path, to, people)), "--policy",
              str(policy_file), "--no-history", "--json", "--explain")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_drop_and_split_are_explained(tmp_path: Path) -> None:
    v = verdict(tmp_path, [COLLEAGUES[0], WITHDRAWN, NEW, COLLEAGUES[1]])
    assert v["action"] == "confirm" and v["rule"] == "first-time-domain"
    assert [d["address"] for d in v["dropped"]] == [WITHDRAWN]
    assert v["dropped"][0]["rule"] == "withdrawn-members"
    assert v["split"]["now"] == {"recipients": COLLEAGUES, "action": "pass", "rule": None,
                                 "rules": []}
    assert v["split"]["held"]["recipients"] == [NEW]
    assert v["split"]["held"]["action"] == "confirm"
    assert v["per_recipient"] == [
        f"drop {WITHDRAWN}: rule withdrawn-members, suppressed: {WITHDRAWN} is on the "
        "suppression list 'withdrawn'",
        f"send now to {', '.join(COLLEAGUES)}: pass",
        f"hold (confirm) {NEW}: rule first-time-domain"]


def test_a_content_finding_holds_the_whole_message(tmp_path: Path) -> None:
    v = verdict(tmp_path, [COLLEAGUES[0], NEW], people=True)
    assert v["action"] == "confirm" and v["split"] is None
    assert "concerns the whole message" in v["no_split"]
    assert "pii.people_list" in v["no_split"]
    assert v["per_recipient"][-1].startswith("no split: rule people-list holds for pii.people_list")


def test_without_split_the_whole_message_waits(tmp_path: Path) -> None:
    policy = POLICY.replace("    split: true\n", "", 1)  # first-time-domain: no split
    v = verdict(tmp_path, [COLLEAGUES[0], NEW], policy)
    assert v["action"] == "confirm" and v["split"] is None and v["no_split"] == ""
    v = verdict(tmp_path, [COLLEAGUES[0], NEW],
                policy.replace("  language: both\n", "  language: both\n  split_holds: true\n"))
    assert v["split"]["held"]["recipients"] == [NEW]


def test_every_recipient_dropped_is_a_reject(tmp_path: Path) -> None:
    v = verdict(tmp_path, [WITHDRAWN])
    assert v["action"] == "reject" and v["rule"] == "withdrawn-members"
    assert v["reject_text"].startswith("5.7.1 Not sent: every recipient was dropped")
    assert v["per_recipient"][-1] == "no recipient left: the message is refused"


def test_split_on_a_rule_that_does_not_hold_is_an_error_at_its_line(tmp_path: Path) -> None:
    bad = POLICY.replace("    action: drop\n", "    action: drop\n    split: true\n", 1)
    policy_file = write_policy(tmp_path / "p", bad)
    r = guard(tmp_path, "policy", "check", str(policy_file))
    assert r.returncode != 0
    line = bad.splitlines().index("    split: true") + 1
    assert f"policy.yaml:{line}:" in r.stdout + r.stderr, r.stdout + r.stderr
    assert "split applies to action delay, confirm, approve, not to drop" in r.stdout + r.stderr


def test_what_concerned_only_the_dropped_recipient_no_longer_counts(tmp_path: Path) -> None:
    # without history example.com is new too, but only the dropped recipient is there:
    # the first-time-domain hold (here for any direction) concerned nobody left
    policy = POLICY.replace("    scope: {direction: outbound-external}\n", "", 1)
    assert policy != POLICY
    v = verdict(tmp_path, [COLLEAGUES[0], WITHDRAWN], policy)
    assert v["action"] == "drop" and v["rule"] == "withdrawn-members"
    assert [d["address"] for d in v["dropped"]] == [WITHDRAWN]
    assert {r["rule"] for r in v["reasons"]} == {"withdrawn-members"}
    assert v["per_recipient"] == [f"drop {WITHDRAWN}: rule withdrawn-members, suppressed: "
                            f"{WITHDRAWN} is on the suppression list 'withdrawn'"]
