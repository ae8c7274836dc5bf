"""A small policy with per-recipient actions, shared by the CLI and the running-guard
tests: suppressed recipients are dropped, first-time domains are held apart."""

from __future__ import annotations

from pathlib import Path

POLICY = """\
version: 1
defaults:
  internal_domains: [example.co.jp]
  language: both
lists:
  suppression:
    withdrawn: withdrawn.csv
rules:
  - name: withdrawn-members
    conditions: [{symbol: suppressed, evidence: {list: withdrawn}}]
    action: drop
  - name: first-time-domain
    scope: {direction: outbound-external}
    conditions: [{symbol: new_domain}]
    action: confirm
    split: true
  - name: people-list
    conditions: [{symbol: pii.people_list}]
    action: confirm
    split: true
"""

WITHDRAWN = "email,date,note\nito.hanako@example.com,2023-12-31,会員退会\n"


def write_policy(folder: Path, policy: str = POLICY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.yaml").write_text(policy, encoding="utf-8")
    (folder / "withdrawn.csv").write_text(WITHDRAWN, encoding="utf-8")
    return folder / "policy.yaml"
