"""Header and envelope shape: bulk-mail marks, Bcc-only recipients and the sending
client, from real clients' header fields, through the parser and `guard policy test`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from guard.inspect.context import InspectContext
from guard.inspect.envelope import client_name, detect_bcc_only, detect_bulk, detect_client
from guard.mail.message import parse_message
from tests.conftest import ROOT


def headers_of(raw: str) -> dict[str, str]:
    view = parse_message(raw.replace("\n", "\r\n").encode(), "a@example.co.jp",
                         ["b@client.example"])
    return view.header_fields


BASE = ("From: 田中 <tanaka@example.co.jp>\nTo: b@client.example\nSubject: test\n"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n")

# Header fields as these clients write them (from real messages; values shortened).
CLIENTS = {
    "outlook": "X-Mailer: Microsoft Outlook 16.0\nThread-Index: AdnXyz1234abcd==\n"
               "Message-ID: <000001d9e0$1a2b3c40$4d5e6f70$@example.co.jp>\n",
    "outlook-web": "Message-ID: <TYCPR01MB1234567890ABCDEF@TYCPR01MB1234.jpnprd01.prod.outlook"
                   ".com>\nThread-Index: AQHZ1234==\n",
    "thunderbird": "User-Agent: Mozilla Thunderbird\nMessage-ID: <1c2d3e4f-aaaa-bbbb-cccc"
                   "-0123456789ab@example.co.jp>\n",
    "thunderbird-ua": "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0)\n"
                      " Gecko/20100101 Thunderbird/115.6.0\n",
    "iphone": "X-Mailer: iPhone Mail (21B101)\nMessage-ID: <ABCDEF01-2345-6789-ABCD-"
              "EF0123456789@example.co.jp>\n",
    "apple_mail": "X-Mailer: Apple Mail (2.3774.300.61.1.2)\n",
    "gmail": "Message-ID: <CAKx1y2z3+AbCdEfGhIjKlMnOpQrStUvWxYz@mail.gmail.com>\n",
    "copier": "X-Mailer: RICOH IM C3000\nMessage-ID: <20241001093000.0001@mfp01.example.co.jp>\n",
    "copier-sharp": "X-Mailer: SHARP MX-3661\n",
    "copier-bizhub": "X-Mailer: KONICA MINOLTA bizhub C300i\n",
}


@pytest.mark.parametrize("case", sorted(CLIENTS))
def test_client_names_from_real_header_shapes(case: str) -> None:
    fields = headers_of(BASE + CLIENTS[case] + "\nbody\n")
    found = client_name(fields)
    assert found is not None and found[0] == case.split("-")[0]


def test_an_unknown_client_is_named_unknown_and_silence_is_not_reported() -> None:
    fields = headers_of(BASE + "X-Mailer: OurOrderSystem 3.2\nMessage-ID: <1@erp.example>\n\nx\n")
    assert client_name(fields) == ("unknown", "OurOrderSystem 3.2")
    assert client_name(headers_of(BASE + "Message-ID: <1@erp.example>\n\nx\n")) is None


class _View:
    def __init__(self, rcpt: list[str], to: list[str], cc: list[str] | None = None,
                 fields: dict[str, str] | None = None) -> None:
        self.rcpt_tos, self.to_addrs, self.cc_addrs = rcpt, to, cc or []
        self.header_fields = fields or {}


def test_bcc_only_counts_envelope_recipients_not_in_to_or_cc() -> None:
    ctx = InspectContext(internal_domains=frozenset({"example.co.jp"}))
    view = _View(["A@client.example", "b@client.example", "boss@example.co.jp",
                  "x@other.example"], ["a@client.example"], ["B@Client.example"])
    [f] = detect_bcc_only(view, ctx)
    assert (f.symbol, f.count, f.evidence["external"]) == ("envelope.bcc_only", 2, 1)
    assert detect_bcc_only(_View(["a@client.example"], ["a@client.example"]), ctx) == []


def test_bulk_marks() -> None:
    fields = {"list-unsubscribe": "<mailto:unsub@example.co.jp>", "precedence": "Bulk"}
    found = {f.symbol: f.evidence for f in detect_bulk(_View([], [], fields=fields))}
    assert found == {"bulk.list_unsubscribe": {"header": "<mailto:unsub@example.co.jp>"},
                     "bulk.precedence": {"value": "bulk"}}
    assert detect_bulk(_View([], [], fields={"precedence": "first-class"})) == []
    assert detect_client(_View([], [], fields={})) == []


# --- through `guard policy test --json` and `guard policy check` -----------------------

POLICY = """\
    version: 1
    defaults:
      internal_domains: [example.co.jp]
      uninspectable: pass
    rules:
      - name: from-outlook
        conditions: [{symbol: client, evidence: {name: [Outlook]}}]
        action: tag
        tag: {subject_prefix: "[outlook] "}
      - name: from-copier
        conditions: [{symbol: client, evidence: {name: copier}}]
        action: confirm
      - name: mass-bcc
        conditions: [{symbol: envelope.bcc_only, min_count: 3}]
        action: confirm
      - name: newsletter
        conditions: [bulk.list_unsubscribe, {symbol: bulk.precedence, evidence: {value: Bulk}}]
        action: tag
        tag: {headers: {X-Bulk: "yes"}}
"""


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guard.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def _policy_test(tmp_path: Path, eml: str, *to: str) -> dict[str, Any]:
    (tmp_path / "policy.yaml").write_text(textwrap.dedent(POLICY), encoding="utf-8")
    path = tmp_path / "m.eml"
    path.write_bytes(eml.replace("\n", "\r\n").encode())
    args = ["policy", "test", str(path), "--json", "--policy", str(tmp_path / "policy.yaml"),
            "--no-history"]
    for t in to:
        args += ["--to", t]
    r = _cli(ROOT, *args)
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def test_policy_test_outlook_newsletter_with_bcc(tmp_path: Path) -> None:
    eml = (BASE + CLIENTS["outlook"] + "List-Unsubscribe: <https://example.co.jp/u?id=1>\n"
           "Precedence: bulk\n\nお知らせです\n")
    rcpts = ["b@client.example", *(f"m{i}@member.example" for i in range(4))]
    doc = _policy_test(tmp_path, eml, *rcpts)
    found = {f["symbol"]: f for f in doc["findings"]}
    assert found["client"]["evidence"] == {"name": "outlook",
                                           "header": "Microsoft Outlook 16.0"}
    assert found["envelope.bcc_only"]["count"] == 4
    assert found["bulk.precedence"]["evidence"] == {"value": "bulk"}
    assert "bulk.list_unsubscribe" in found
    rules = {r["rule"] for r in doc["reasons"]}
    assert {"from-outlook", "mass-bcc", "newsletter"} <= rules
    assert "from-copier" not in rules


def test_policy_test_copier_scan(tmp_path: Path) -> None:
    eml = (BASE + CLIENTS["copier"] + "\nScanned from RICOH IM C3000\n")
    doc = _policy_test(tmp_path, eml)
    assert doc["action"] == "confirm" and doc["rule"] == "from-copier"


def test_policy_check_refuses_an_unknown_client_name(tmp_path: Path) -> None:
    bad = textwrap.dedent(POLICY).replace("name: copier", "name: copyer")
    (tmp_path / "policy.yaml").write_text(bad, encoding="utf-8")
    r = _cli(ROOT, "policy", "check", str(tmp_path / "policy.yaml"))
    assert r.returncode != 0
    assert "policy.yaml:" in r.stderr + r.stdout and "copyer" in r.stderr + r.stdout
