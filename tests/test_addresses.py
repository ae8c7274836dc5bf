"""One address and domain normaliser (guard.mail.addresses), one table of cases, every consumer.

Each case pairs an address as an admin configures it (a policy scope, a group, a
suppression list, imported domains, the customers file, the internal domains, history)
with one as it arrives in the envelope, and says whether the two are the same mailbox
and the same domain. The same table runs against each consumer through the entry point
the guard uses: `guard policy test`, `guard lists import`, `guard domains import`, the
store's history, the decider's To/Cc rewrite, the hold model; and over SMTP at the end.
"""

from __future__ import annotations

import asyncio
import smtplib
import textwrap
from dataclasses import dataclass
from email.header import Header
from pathlib import Path
from typing import Any

import pytest

from guard.accept.decide import Inspector, PolicyDecider
from guard.cli.main import main as guard_main
from guard.hold.model import parse_hold
from guard.inspect.domains import history_entry
from guard.mail import addresses as A
from guard.policy import PolicyError, load_policy
from guard.smtp.received import ReceivedMessage
from guard.store import db, knowledge, migrate
from guard.store.writer import BatchWriter
from tests.conftest import Sink, TlsFiles, submit

SECRET = "test-secret-for-address-normalisation-0123456789"
SENDER = "alice@example.co.jp"  # the company is example.co.jp in every policy here
CUSTOMER = "例え商事"  # named in the test message's subject


@dataclass(frozen=True)
class Case:
    id: str
    configured: str  # as an admin writes it: policy, list, customers file, history
    envelope: str  # as it arrives in RCPT TO
    same_mailbox: bool
    same_domain: bool
    lookalike: str | None = None  # the look-alike kind expected when they differ

    @property
    def configured_domain(self) -> str:
        return self.configured.rpartition("@")[2]


CASES = [
    # non-transitional IDNA 2008: ß is a letter of its own, not "ss"
    Case("sharp-s-u-label-is-its-a-label", "info@straße.de", "info@xn--strae-oqa.de",
         True, True),
    Case("a-label-is-its-sharp-s-u-label", "info@xn--strae-oqa.de", "info@straße.de",
         True, True),
    Case("sharp-s-is-not-ss", "info@straße.de", "info@strasse.de", False, False),
    Case("sharp-s-a-label-is-not-ss", "info@xn--strae-oqa.de", "info@strasse.de",
         False, False),
    Case("capital-sharp-s-is-sharp-s", "info@STRAẞE.DE", "info@xn--strae-oqa.de",
         True, True),
    Case("upper-case-ss", "info@STRASSE.de", "info@strasse.de", True, True),
    Case("full-width-domain", "info@ＡＢＣ.co.jp", "info@abc.co.jp", True, True),
    Case("japanese-idn", "info@例え.jp", "info@xn--r8jz45g.jp", True, True),
    Case("japanese-idn-upper-case-a-label", "info@日本語.jp", "info@XN--WGV71A119E.JP",
         True, True),
    Case("trailing-dot", "info@client-corp.co.jp", "info@client-corp.co.jp.", True, True),
    Case("upper-case-domain", "info@CLIENT-CORP.CO.JP", "info@client-corp.co.jp",
         True, True),
    Case("mixed-case-local-part", "Tanaka.Ichiro@client-corp.co.jp",
         "tanaka.ichiro@client-corp.co.jp", True, True),
    Case("nfkc-local-part", "ｔａｎａｋａ@client-corp.co.jp", "tanaka@client-corp.co.jp",
         True, True),
    Case("homograph-cyrillic-a", "info@example-trading.co.jp",
         "info@exаmple-trading.co.jp", False, False, lookalike="skeleton"),
    Case("another-mailbox-same-domain", "sato@client-corp.co.jp",
         "tanaka@client-corp.co.jp", False, True),
]
IDS = [c.id for c in CASES]


# ---------------------------------------------------------------- the module itself


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_table_in_guard_addresses(case: Case) -> None:
    assert (A.address_key(case.configured) == A.address_key(case.envelope)) is case.same_mailbox
    assert (A.domain_of(case.configured) == A.domain_of(case.envelope)) is case.same_domain
    # the strict form (what admins type) agrees with the lenient one (the envelope)
    domain = A.ascii_domain(case.configured_domain)
    assert domain == A.normalize_domain(case.configured_domain) == A.domain_of(case.configured)
    assert domain.isascii() and domain == domain.lower() and not domain.endswith(".")


def test_keys_and_forms() -> None:
    assert A.ascii_domain("straße.de") == "xn--strae-oqa.de"  # not strasse.de (IDNA 2003)
    assert A.normalize_domain("STRASSE.de") == "strasse.de"
    assert A.normalize_domain("ＡＢＣ.co.jp.") == "abc.co.jp"
    # stray dots are dropped when comparing (as keys always did), refused when typed
    assert A.normalize_domain(".example.co.jp..") == "example.co.jp"
    with pytest.raises(A.InvalidAddress):
        A.ascii_domain(".example.co.jp..")
    assert A.domain_to_unicode("xn--strae-oqa.de") == "straße.de"
    # the stored and shown form keeps the local part's case; the key folds it
    assert A.address_form("<Tanaka@例え.JP>") == "Tanaka@xn--r8jz45g.jp"
    assert A.address_key("<Tanaka@例え.JP>") == "tanaka@xn--r8jz45g.jp"
    assert A.address_form("ｔａｎａｋａ＠ａｂｃ．ｃｏ．ｊｐ") == "tanaka@abc.co.jp"
    # lower case, not full case folding: a ß in a local part stays a ß, as in domains
    assert A.address_key("Straße@example.de") == "straße@example.de"
    # a quoted local part that needs no quotes is the plain one
    assert A.valid_address_key('"Tanaka"@example.co.jp') == "tanaka@example.co.jp"


@pytest.mark.parametrize(("text", "why"), [
    ("", "empty domain"),
    ("exa_mple.co.jp", "not a valid domain"),
    ("-bad-.co.jp", "not a valid domain"),
    ("xn--zz.co.jp", "not a valid domain"),
    ("a..b.co.jp", "not a valid domain"),
    ("a" * 64 + ".co.jp", "not a valid domain"),
    ("a." * 130 + "jp", "longer than 253"),
    ("exa mple.co.jp", "not a valid domain"),
])
def test_invalid_domains_are_one_line_errors_when_typed_and_themselves_in_the_envelope(
        text: str, why: str) -> None:
    with pytest.raises(A.InvalidAddress) as e:
        A.ascii_domain(text)
    assert why in str(e.value) and "\n" not in str(e.value)
    # the lenient form never raises: NFKC, lower case, equal to itself only
    assert A.normalize_domain(text.upper()) == A.normalize_domain(text) == text.lower()
    assert A.domain_of(f"Info@{text.upper()}") == text.lower()


@pytest.mark.parametrize("text", ["", "postmaster", "tanaka@", "@abc.co.jp", "a@b@c.jp",
                                  "Tanaka <tanaka@abc.co.jp>", "info@exa_mple.co.jp"])
def test_invalid_addresses(text: str) -> None:
    with pytest.raises(A.InvalidAddress) as e:
        A.valid_address_key(text)
    assert str(e.value) and "\n" not in str(e.value)
    key = A.address_key(text)  # never raises
    assert key == A.address_key(text.upper())
    assert A.domain_of(text) == ("" if "@" not in text else key.rpartition("@")[2])


def test_no_at_sign_has_no_domain() -> None:
    assert A.address_key("PostMaster") == "postmaster"
    assert A.address_form(" PostMaster ") == "PostMaster"
    assert A.domain_of("postmaster") == ""


# ---------------------------------------------------------------- the CLI, as typed


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Any:
    """Run `guard ...` in this process, in its own directory, store and secret."""
    monkeypatch.chdir(tmp_path)
    for name in ("GUARD_CONFIG", "GUARD_POLICY", "GUARD_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GUARD_DATABASE_URL", f"sqlite:///{tmp_path / 'guard.db'}")
    monkeypatch.setenv("GUARD_SECRET", SECRET)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = guard_main(list(argv))
        out = capsys.readouterr()
        return rc, out.out, out.err

    assert run("db", "upgrade")[0] == 0
    return run


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_policy(folder: Path, case: Case) -> Path:
    """Every consumer that `guard policy test` reaches, configured with case.configured."""
    folder.mkdir(exist_ok=True)
    (folder / "customers.csv").write_text(
        f"name,domains\n{CUSTOMER},{case.configured_domain}\n", encoding="utf-8")
    (folder / "policy.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        defaults:
          internal_domains: [example.co.jp]
          uninspectable: pass
        lists:
          customers: customers.csv
        groups:
          team:
            members: [{_q(case.configured)}]
            approvers: [{_q(case.configured)}, boss@example.co.jp]
        rules:
          - name: scoped
            scope: {{recipient_domains: [{_q(case.configured_domain)}]}}
            action: confirm
          - name: by-sender
            scope: {{senders: [{_q(case.configured)}]}}
            action: tag
          - name: by-group
            scope: {{groups: [team]}}
            action: tag
          - name: suppressed
            conditions: [suppressed]
            action: confirm
          - name: new-domain
            conditions: [new_domain]
            action: confirm
          - name: customer
            conditions: [customer_mismatch, customer_to_noncustomer]
            action: confirm
          - name: approval
            scope: {{senders: ["*@*"]}}
            action: approve
            approver_group: team
        """), encoding="utf-8")
    return folder


def message(to: str, subject: str = f"{CUSTOMER} 御中 お見積りの件") -> bytes:
    """A plain message; the To field as given (UTF-8 if it must be, RFC 6532)."""
    return (f"From: {SENDER}\r\nTo: {to}\r\n"
            f"Subject: {Header(subject, 'utf-8').encode()}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "お世話になっております。\r\n").encode()


def policy_test(cli: Any, tmp_path: Path, case: Case, *, mail_from: str = SENDER,
                policy: Path | None = None) -> dict[str, Any]:
    import json

    eml = tmp_path / "m.eml"
    eml.write_bytes(message("someone@client.example"))
    rc, out, err = cli("policy", "test", str(eml), "--json", "--to", case.envelope,
                       "--from", mail_from, "--policy",
                       str(policy or write_policy(tmp_path / "policies", case)))
    assert rc == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def rules(doc: dict[str, Any]) -> set[str]:
    return {r["rule"] for r in doc["reasons"]}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_policy_rule_scope(cli: Any, tmp_path: Path, case: Case) -> None:
    doc = policy_test(cli, tmp_path, case)
    assert ("scoped" in rules(doc)) is case.same_domain, doc["reasons"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_policy_sender_groups_and_approvers(cli: Any, tmp_path: Path, case: Case) -> None:
    """The sender is compared by key: `senders:`, group members, and the rule that the
    sender never approves their own mail."""
    doc = policy_test(cli, tmp_path, case, mail_from=case.envelope)
    assert ("by-sender" in rules(doc)) is case.same_mailbox
    assert ("by-group" in rules(doc)) is case.same_mailbox
    assert doc["action"] == "approve"
    assert "boss@example.co.jp" in doc["approvers"]
    assert len(doc["approvers"]) == (1 if case.same_mailbox else 2), doc["approvers"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_suppression_list_digest(cli: Any, tmp_path: Path, case: Case) -> None:
    """`guard lists import` hashes the configured address; the envelope's digest meets
    it exactly when they are one mailbox."""
    csv = tmp_path / "optout.csv"
    csv.write_text(f"email\n{case.configured}\n", encoding="utf-8")
    policy = write_policy(tmp_path / "policies", case)
    rc, _, err = cli("lists", "import", "optout", str(csv), "--policy", str(policy))
    assert rc == 0, err
    doc = policy_test(cli, tmp_path, case, policy=policy)
    assert ("suppressed" in rules(doc)) is case.same_mailbox, doc["reasons"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_imported_domain_history(cli: Any, tmp_path: Path, case: Case) -> None:
    csv = tmp_path / "known.csv"
    csv.write_text(f"domain\n{case.configured_domain}\n", encoding="utf-8")
    rc, _, err = cli("domains", "import", str(csv))
    assert rc == 0, err
    doc = policy_test(cli, tmp_path, case)
    assert ("new-domain" in rules(doc)) is not case.same_domain, doc["reasons"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_customer_matching(cli: Any, tmp_path: Path, case: Case) -> None:
    """The subject names the customer whose domain is the configured one: a mismatch
    exactly when the recipient is elsewhere."""
    doc = policy_test(cli, tmp_path, case)
    assert ("customer" in rules(doc)) is not case.same_domain, doc["reasons"]


def write_internal_policy(folder: Path, case: Case) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "policy.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        defaults:
          internal_domains: [example.co.jp, {_q(case.configured_domain)}]
          uninspectable: pass
        rules:
          - name: external
            scope: {{direction: outbound-external}}
            action: tag
          - name: to-bcc
            action: bcc
        """), encoding="utf-8")
    return folder / "policy.yaml"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_internal_domain_direction(cli: Any, tmp_path: Path, case: Case) -> None:
    doc = policy_test(cli, tmp_path, case,
                      policy=write_internal_policy(tmp_path / "internal", case))
    assert ("external" in rules(doc)) is not case.same_domain, doc["reasons"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_internal_domain_in_the_to_cc_fix(tmp_path: Path, case: Case) -> None:
    """The decider's bcc edit keeps the company's mailboxes in To: the envelope address
    stays exactly when its domain is the configured internal one."""
    policy = load_policy(write_internal_policy(tmp_path / "internal", case))
    decider = PolicyDecider(Inspector(None, SECRET.encode()), lambda: policy)
    data = message(f"{case.envelope}, partner@partner.example", subject="ご連絡")
    received = ReceivedMessage(
        mail_from=SENDER, rcpt_tos=[case.envelope, "partner@partner.example"], data=data,
        client_ip="127.0.0.1", helo="client.localhost", listener="submission", tls=True,
        user=None, mail_options=[])
    decision = asyncio.run(decider(received, "Q1"))
    assert decision.data is not None
    head = decision.data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    (to_line,) = [ln for ln in head.split("\r\n") if ln.startswith("To:")]
    assert "partner@partner.example" not in to_line
    # (a trailing dot is no addr-spec in a header, RFC 5322: the fix takes such a
    # mailbox out like any it cannot read; its recipient still gets the mail)
    kept = case.same_domain and not case.envelope.endswith(".")
    assert (case.envelope in to_line) is kept, to_line


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hold_sender_identity(case: Case) -> None:
    hold = parse_hold({"action": "approve", "approvers": [case.configured, "boss@example.co.jp"]},
                      mail_from=case.envelope, sender="alice")
    assert hold.is_sender(case.configured) is case.same_mailbox
    assert len(hold.approvers) == (1 if case.same_mailbox else 2)
    # a recipient outside the sender's own domain is ticked one by one
    assert hold.needs_tick(case.configured) is not case.same_domain


# ---------------------------------------------------------------- history from deliveries


async def _learn_then_inspect(url: str, policy: Path, case: Case) -> list[Any]:
    engine = db.create_engine(url)
    await migrate.upgrade(engine)
    writer = BatchWriter(engine)
    writer.start()
    try:
        # what the delivery worker records when mail to the configured address is delivered
        entry = history_entry(case.configured)
        await writer.submit(lambda conn, now: knowledge.learn_delivered(
            conn, now, "alice", [entry]))
        ins = await Inspector(engine, SECRET.encode()).inspect(
            load_policy(policy), message(case.envelope, subject="ご連絡"), SENDER,
            [case.envelope], "alice")
        return ins.findings
    finally:
        await writer.close()
        await engine.dispose()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_delivered_history_and_lookalike(tmp_path: Path, case: Case) -> None:
    findings = asyncio.run(_learn_then_inspect(
        f"sqlite:///{tmp_path / 'guard.db'}", write_policy(tmp_path / "policies", case), case))
    symbols = [f.symbol for f in findings]
    assert ("new_domain" in symbols) is not case.same_domain, symbols
    looks = [f.evidence["kind"] for f in findings if f.symbol == "lookalike"]
    if case.same_mailbox:
        assert looks == []  # the known mailbox itself, however it is spelt
    else:
        assert looks == ([case.lookalike] if case.lookalike else []), looks


# ---------------------------------------------------------------- invalid input, as typed


def test_policy_refuses_an_invalid_scope_domain_in_one_line(cli: Any, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "policy.yaml").write_text(textwrap.dedent("""\
        version: 1
        rules:
          - name: scoped
            scope: {recipient_domains: [exa_mple.co.jp]}
            action: confirm
        """), encoding="utf-8")
    rc, _, err = cli("policy", "check", str(folder / "policy.yaml"))
    assert rc == 1
    (line,) = err.strip().splitlines()
    assert "policy.yaml:4:" in line and "exa_mple.co.jp" in line and "domain name" in line
    with pytest.raises(PolicyError):
        load_policy(folder / "policy.yaml")


def test_lists_import_names_the_bad_row(cli: Any, tmp_path: Path) -> None:
    csv = tmp_path / "optout.csv"
    csv.write_text("email\nok@example.net\ninfo@exa_mple.co.jp\n", encoding="utf-8")
    case = Case("bad-row", "ok@example.net", "ok@example.net", True, True)
    rc, _, err = cli("lists", "import", "optout", str(csv), "--policy",
                     str(write_policy(tmp_path / "policies", case)))
    assert rc == 1
    assert f"{csv}:3: invalid address" in err and "Traceback" not in err


def test_an_envelope_domain_idna_refuses_is_judged_not_crashed(cli: Any,
                                                               tmp_path: Path) -> None:
    case = Case("invalid", "info@example-trading.co.jp", "Info@EXA_MPLE.co.jp", False, False)
    doc = policy_test(cli, tmp_path, case)
    assert "scoped" not in rules(doc)
    assert "new-domain" in rules(doc)  # a domain never mailed, like any other


# ---------------------------------------------------------------- over SMTP


def test_smtp_rule_scoped_to_a_u_label_domain(guard_factory: Any, sink: Sink, tls: TlsFiles,
                                             tmp_path: Path) -> None:
    """A rule scoped to `straße.de` refuses mail to xn--strae-oqa.de (the same domain, as
    the envelope carries it) and lets mail to strasse.de (another domain) through."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent("""\
        version: 1
        defaults:
          internal_domains: [example.co.jp]
          uninspectable: pass
        rules:
          - name: no-mail-to-strasse
            scope: {recipient_domains: [straße.de]}
            action: reject
            message: {ja: この宛先には送れません。, en: No mail to this domain.}
        """), encoding="utf-8")
    g = guard_factory(sink.url, policy=str(policy))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        submit(g.smtp_port, tls, SENDER, ["info@xn--strae-oqa.de"],
               message("info@xn--strae-oqa.de"))
    assert refused.value.smtp_code == 550
    assert b"No mail to this domain." in refused.value.smtp_error
    assert submit(g.smtp_port, tls, SENDER, ["info@STRASSE.de"],
                  message("info@STRASSE.de")) == {}
    (got,) = sink.wait_count(1)
    assert got.rcpt_tos == ["info@STRASSE.de"]
