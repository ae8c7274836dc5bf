"""The policy's `alerts:` section: who gets alert mail. A bad value is one line naming
file:line:column; the compiled policy carries what the dispatcher reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from guard.policy import load_policy
from tests.policy.helpers import errors, write

GROUPS = """
version: 1
groups:
  sales:
    members: [alice@example.co.jp]
"""


def test_the_section_compiles_into_the_policy(tmp_path: Path) -> None:
    path = write(tmp_path, "policy.yaml", GROUPS + """
alerts:
  officers: [privacy@example.co.jp, security-desk@example.co.jp]
  by_group: {sales: sales-head@example.co.jp}
  digest_to: privacy@example.co.jp
  min_records: 20
""")
    a = load_policy(path).doc.alerts
    assert a.officers == ["privacy@example.co.jp", "security-desk@example.co.jp"]
    assert a.by_group == {"sales": ["sales-head@example.co.jp"]}
    assert (a.digest_to, a.show_addresses, a.min_records) == (["privacy@example.co.jp"],
                                                              False, 20)
    assert load_policy(write(tmp_path, "none.yaml", "version: 1\n")).doc.alerts.officers == []


def test_bad_values_are_one_line_each(tmp_path: Path) -> None:
    path = write(tmp_path, "policy.yaml", GROUPS + """
alerts:
  officers: [privacy]
  by_group:
    salse: [x@example.co.jp]
  show_addresses: sometimes
  min_records: 0
""")
    assert errors(path) == [
        f"{path}:7:14: alerts.officers[0]: expected a mail address like tanaka@example.co.jp "
        "(no wildcards); got 'privacy'",
        f"{path}:10:19: alerts.show_addresses: expected true or false; got 'sometimes'",
        f"{path}:11:16: alerts.min_records: expected a number >= 1; got 0",
    ]
    path = write(tmp_path, "groups.yaml", GROUPS + """
alerts:
  officers: [privacy@example.co.jp]
  by_group:
    salse: [x@example.co.jp]
""")
    assert errors(path) == [f"{path}:9:5: alerts.by_group.salse: unknown group 'salse'; "
                            "expected one of sales"]


def test_guard_policy_check_says_it_in_japanese_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "policy.yaml", GROUPS + """
alerts:
  by_group:
    salse: [x@example.co.jp]
""")
    done = subprocess.run([sys.executable, "-m", "guard.cli", "policy", "check", "--lang", "ja",
                           str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert f"{path}:8:5: alerts.by_group.salse: 不明なグループ 'salse' です。次のいずれかを" \
           "指定してください: sales" in lines
    assert any("alerts.officers: alerts に officers がありません" in line for line in lines)


def test_a_non_ascii_alert_address_is_refused_in_one_line(tmp_path: Path) -> None:
    """Alert mail is plain SMTP without SMTPUTF8: such an officer would get no alerts
    (they were dropped with a log line while the dispatcher moved on)."""
    path = write(tmp_path, "policy.yaml", GROUPS + """
alerts:
  officers: [privacy@example.co.jp, 山田@example.co.jp]
  by_group: {sales: [営業@example.co.jp]}
""")
    assert errors(path) == [
        f"{path}:7:37: alerts.officers[1]: expected an address in ASCII (alert mail cannot "
        "be sent to a non-ASCII address); got '山田@example.co.jp'",
        f"{path}:8:22: alerts.by_group.sales[0]: expected an address in ASCII (alert mail "
        "cannot be sent to a non-ASCII address); got '営業@example.co.jp'"]
    done = subprocess.run([sys.executable, "-m", "guard.cli", "policy", "check", "--lang", "ja",
                           str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert f"{path}:7:37: alerts.officers[1]: 半角英数字（ASCII）のアドレスを指定してください" \
           "（ASCII 以外のアドレスには通知メールを送れません。指定された値: " \
           "'山田@example.co.jp'）" in lines, lines
