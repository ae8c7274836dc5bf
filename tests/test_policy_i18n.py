"""Policy errors in Japanese: the catalog (guard/policy/i18n.py) has no dead entries, and
real errors come out in Japanese through the `guard` command, positions unchanged."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import email_validator
import pytest
import yaml

from guard.cli.common import language
from guard.policy.i18n import CATALOG, PHRASES, Entry, entries_for, localize_line, translate
from tests.conftest import ROOT

_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")

# One real English message per catalog entry (the text the code produces today).
SAMPLES = [
    "missing required key 'name'",
    "unknown key 'groupz' (did you mean 'groups'?); expected one of direction, senders, groups",
    "unknown key 'zzz'; expected one of direction, senders, groups",
    "unknown key 'zzz'",
    "expected one of pass, tag, bcc, delay, confirm, approve, reject; got 'hold'",
    "expected a number >= 1; got 0",
    "expected a number > 0; got 0",
    "expected a number <= 10080; got 20000",
    "expected a number < 1; got 1.5",
    "expected at most 200 characters; got 'xxx'",
    "expected a domain name like example.co.jp or *.example.co.jp; got 'a b'",
    "expected a domain name like example.co.jp; got 'a b'",
    "expected an address or pattern like tanaka@example.co.jp or *@example.co.jp; got 'x'",
    "expected a mail address like tanaka@example.co.jp (no wildcards); got '*@x.jp'",
    "expected a name of ASCII letters, digits, '_', '-' or '.'; got '規則'",
    "expected a group name without spaces; got 'a b'",
    "expected a finding symbol like pii.my_number or a family like pii; got 'PII'",
    "expected text on one line without control characters; got 'a\\nb'",
    "expected a valid regular expression; got '(' (missing ), unterminated subpattern at "
    "position 0)",
    "expected a regular expression RE2 supports (no backreferences or look-around); "
    "got '(a)\\\\1' (invalid escape sequence: \\1)",
    "expected an enhanced status code like 5.7.1; got '57'",
    "expected header names starting with X-; got 'Subject'",
    "unknown group 'x'; expected one of (no groups are defined) or sender",
    "unknown group 'x'; expected one of (no groups are defined)",
    "unknown group 'marketing'; expected one of sales, hr or sender",
    "unknown group 'marketing'; expected one of sales, hr",
    "expected at least 2 approvers for approvals_required 2; got 1",
    "escalate_after needs backup_approvers to escalate to",
    "expected an address in ASCII (alert mail cannot be sent to a non-ASCII address); "
    "got '山田@example.co.jp'",
    "alerts has no officers: severe events of senders outside the listed groups alert nobody",
    "duplicate rule name 'a'",
    "duplicate keyword name 'k'",
    "tag has no effect on a rejected message (nothing is delivered)",
    "delay_minutes applies to action delay, not to confirm",
    "expected ASCII text: the English text goes into the SMTP reply",
    "no detector reports the family 'pi' (known: keyword, pii); this condition never matches",
    "no detector reports the family 'aproved' (known: keyword, pii); under not, this "
    "condition holds for every message",
    "unknown place 'quoted': no finding is there, so this never holds; did you mean "
    "body.quoted? (places: subject, body, new_text, attachment:NAME, header:NAME)",
    "unknown place 'xyz': no finding is there, so this never holds (places: subject, body, "
    "new_text, attachment:NAME, header:NAME)",
    "this rule has no scope and no conditions: it will delay every message",
    "unknown evidence 'x' for pii (known: none: pii has no evidence to test)",
    "unknown evidence 'lst' for suppressed (known: list)",
    "no keyword named 'x'; expected one of (no keywords are defined)",
    "no keyword named 'x'; expected one of confidential",
    "no list 'w' in lists.suppression; fine if it is imported with `guard lists import` "
    "(declare it `w: {source: store}` to say so)",
    "approval by the sender's group needs defaults.approver_group for senders outside "
    "every group",
    "uninspectable: approve needs defaults.approver_group for senders outside every group",
    "group 'hr' has no approvers",
    "duplicate rule name 'a' (first defined at policy.yaml:3:11)",
    "policy file not found",
    "file not found: policies/groups.yaml",
    "include cycle: policy.yaml -> groups.yaml -> policy.yaml",
    "policies/groups.yaml is included twice",
    "expected a file name or a list of file names",
    "already set at policy.yaml:2:1",
    "cannot read: Permission denied",
    "expected UTF-8 text (save the file as UTF-8)",
    "expected a mapping of sections (defaults:, groups:, rules: ...)",
    "YAML syntax error: found character '\\t' that cannot start any token",
    "found character '\\t' that cannot start any token (while scanning for the next token)",
    "expected <block end>, but found '<block mapping start>' (while parsing a block "
    "collection)",
    "expected the node content, but found '<stream end>' (while parsing a flow node)",
    "mapping values are not allowed here",
    "sequence entries are not allowed here",
    "could not find expected ':' (while scanning a simple key)",
    "found undefined alias 'nope'",
    "found unknown escape character 'd' (while scanning a double-quoted scalar)",
    "found unexpected end of stream (while scanning a quoted scalar)",
    "expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)",
    "expected ',' or '}', but got '<stream end>' (while parsing a flow mapping)",
    "could not determine a constructor for the tag '!!python/object:os.system'",
    "expected <block end>, but found '<block end>' (while parsing a block mapping)",
    "YAML error: unacceptable character #x0007",
    "document too large (too many nodes or alias expansions)",
    "recursive YAML alias",
    "unsupported YAML tag !foo",
    "unsupported YAML node",
    "expected a plain text key",
    "expected a text key; got 1 (quote it)",
    "duplicate key 'rules' (first at line 3)",
    "the file is not UTF-8, Shift_JIS (cp932) or EUC-JP text",
    "the file is larger than 50 MB",
    "the file contains NUL bytes: not a text CSV file",
    "unreadable CSV: unexpected end of data",
    "the file holds no addresses",
    "the file holds no domains",
    "the file holds no customers",
    "no column of e-mail addresses found",
    "no column of domains found",
    "the header has no name column",
    "empty address",
    "invalid address: no '@'",
    "empty customer name",
    "customer 'ABC商事' is already on line 2",
    "empty domain",
    "'a@b.jp' is an address, not a domain",
    "'nodot' has no dot: not a mail domain",
    "'-x-.jp' is not a valid domain",
    "expected a whole number; got 'ten'",
    "unknown key 'symbol' (did you mean 'any'?); a group holds only its 'all' (put "
    "'symbol' in a condition inside it)",
    "unknown key 'symbol'; a group holds only its 'all' (put 'symbol' in a condition "
    "inside it)",
    "expected at least 2 items; got a list",
    "expected at least 1 item; got a list",
    "unknown recipient class 'contractor' (did you mean 'partner:contractor' or "
    "'list:contractor'?); expected customer, partner, partner:KIND (a kind in partners.csv, "
    "like partner:contractor) or list:NAME (a suppression list)",
    "unknown recipient class 'customers' (did you mean 'customer'?); expected customer, "
    "partner, partner:KIND (a kind in partners.csv, like partner:contractor) or list:NAME "
    "(a suppression list)",
    "unknown recipient class 'x y'; expected customer, partner, partner:KIND (a kind in "
    "partners.csv, like partner:contractor) or list:NAME (a suppression list)",
    "expected a place like body, subject, attachment, attachment:名簿.xlsx or new_text; "
    "got 'bdy'",
    "expected one condition; for several write {not: {any: [...]}} (none of them holds) "
    "or {not: {all: [...]}} (not all of them hold)",
    "conditions nested 5 groups deep; at most 4 (all, any, not inside one another): write "
    "them flatter",
    "pii.card findings carry no line count, so min_percent never holds; it applies to "
    "pii.people_list, pii.records",
    "partner:contractor needs lists.partners (the partners.csv file, with a kind column)",
    "customer needs lists.customers (the customers.csv file)",
    "no partner in partners.csv has the kind 'courier' (kinds there: none: add a kind "
    "column); this never holds until one does",
    "no partner in partners.csv has the kind 'courier' (kinds there: contractor, "
    "supplier); this never holds until one does",
    "the file holds no rows",
    "expected a header row naming the columns: name, postal_code, address, phone, fax, "
    "domain (or 支店名, 郵便番号, 住所, 電話, FAX, ドメイン)",
    "expected a phone or fax number like 03-1234-5678 or +81 3-1234-5678; got '12'",
    "expected a postal code of 7 digits like 100-0005; got '100'",
    "expected a postal address with its block number like 東京都千代田区丸の内1-2-3; "
    "got '千代田区丸の内'",
    "expected one of bulk, junk, list; got 'mass'",
    "list opt_out: lists/opt_out.csv has bad rows (line 2: empty address; line 3: invalid "
    "address: no '@'): the guard has no entries for it",
    "list opt_out: lists/opt_out.csv has bad rows (line 2: empty address): the guard keeps "
    "the 120 entries of the last good sync",
    "list withdrawn is managed in the store, which this test does not read (--no-history)",
    "list withdrawn is managed in the store but has not been imported: "
    "`guard lists import withdrawn FILE`",
    "list opt_out: the policy names the file lists/opt_out.csv, but the store manages this "
    "list (imported with `guard lists import`, 12 entries): declare it "
    "`opt_out: {source: store}`, or run `guard lists remove opt_out` to let the file take "
    "over",
    "list withdrawn (managed in the store) was hashed with key 0123abcd (digest scheme "
    "hmac-sha256-v1), this guard's key is 4567ef01 (scheme hmac-sha256-v1, secret: "
    "/var/lib/guard/guard.secret): run with the secret it was imported with, or, if the "
    "secret was changed on purpose, import it again with this guard's settings "
    "(`guard lists import withdrawn FILE --new-key`)",
    # an old system's history: guard history import, guard policy test --history
    "no RecipientAddress column in the header",
    "no delivered recipients found (read as postfix)",
    "no syslog time at the start",
    "bad gzip file: Compressed file ended before the end-of-stream marker was reached",
    "invalid address 'yamada@': There must be something after the @-sign.",
    "unreadable time 'yesterday'",
    "history maillog (read as postfix): nothing imported (2 bad rows)",
    "history maillog (read as postfix): nothing imported (80 bad rows, 30 not shown)",
    "cannot read maillog: No such file or directory",
    "An email address must have an @-sign.",
    "invalid address: There must be something before the @-sign.",
    "The part after the @-sign is not valid. It should have a period.",
    "The part after the @-sign is a special-use or reserved name that cannot be used with "
    "email.",
    "An email address cannot have two periods in a row.",
    "An email address cannot have a period and a hyphen next to each other.",
    "The email address contains invalid characters before the @-sign: SPACE.",
    "The part after the @-sign contains invalid characters: '_'.",
    "cannot tell the internal domains: the policy does not load (policy.yaml:3:5: "
    "rules[0].action: expected one of pass, tag; got 'hold'); fix it first "
    "(`guard policy check`) or give --policy",
]


def test_every_entry_translates_a_real_message() -> None:
    """Every entry is used: a real message for each, translated into Japanese by it (alone
    or inside another, as a YAML problem inside "YAML syntax error: ...")."""
    used: set[Entry] = set()
    for sample in SAMPLES:
        entries = entries_for(sample)
        assert entries, f"no catalog entry for {sample!r}"
        used.update(entries)
        ja = translate(sample, "ja")
        assert ja != sample and _JAPANESE.search(ja), (sample, ja)
        assert translate(sample, "en") == sample
    dead = [e.en for e in CATALOG if e not in used]
    assert not dead, f"catalog entries no sample uses: {dead}"


_ORIGINS = {"guard.policy": ROOT / "guard" / "policy",
            "guard.knowledge": ROOT / "guard" / "knowledge",
            "guard.inspect": ROOT / "guard" / "inspect",
            "guard.cli": ROOT / "guard" / "cli",
            "email_validator": Path(email_validator.__file__).parent,
            "yaml": Path(yaml.__file__).parent}


@cache
def _source_literals(origin: str) -> tuple[str, ...]:
    """The constant parts of every string the code of `origin` writes (f-strings split at
    their fields; adjacent literals are one string to the parser)."""
    out: list[str] = []
    for path in sorted(_ORIGINS[origin].glob("*.py")):
        if path.name == "i18n.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out += re.split(r"%[srd]", node.value)  # PyYAML formats with %
    return tuple(out)


@cache
def _produced(fragment: str, origin: str = "guard.policy") -> bool:
    """Whether the code writes this text between two values it fills in: inside one of
    its literals, or joined at run time from the end of one literal, whole literals, and
    the start of another ("?)" + "; expected one of ", "expected a number " + ">=" + " ")."""
    literals = [lit for lit in _source_literals(origin) if lit]
    if not fragment.strip() or any(fragment in lit for lit in literals):
        return True

    @cache
    def rest_ok(rest: str) -> bool:  # whole literals, then the start of one
        return any(lit.startswith(rest) for lit in literals) or any(
            rest.startswith(lit) and rest_ok(rest[len(lit):])
            for lit in literals if len(lit) < len(rest))

    return any(any(lit.endswith(fragment[:i]) for lit in literals) and rest_ok(fragment[i:])
               for i in range(1, len(fragment)))


def test_no_dead_entries_every_entry_is_still_written_by_the_code() -> None:
    """An English message reworded in the code leaves its entry dead: this fails, naming it."""
    dead = [(e.en, lit) for e in CATALOG for lit in e.literals()
            if not _produced(lit, e.origin)]
    assert not dead, "catalog text the code no longer writes: " + "; ".join(
        f"{lit!r} (entry {en!r})" for en, lit in dead)
    phrases = [p for p in PHRASES if not _produced(p)]
    assert not phrases, f"phrases the policy code no longer writes: {phrases}"


def test_unknown_messages_stay_english() -> None:
    assert translate("something new went wrong", "ja") == "something new went wrong"
    assert translate("Input should be a valid UUID; got 'x'", "ja") == \
        "Input should be a valid UUID; got 'x'"


def test_localize_line_keeps_the_position() -> None:
    line = "p.yaml:9:7: warning: rules[2].action: this rule has no scope and no conditions: " \
        "it will delay every message"
    assert localize_line(line, "ja") == (
        "p.yaml:9:7: 警告: rules[2].action: このルールには scope も conditions もありません。"
        "すべてのメールに delay が適用されます")
    assert localize_line(line, "en") == line


@pytest.mark.parametrize(("env", "flag", "expected"), [
    ({"LANG": "ja_JP.UTF-8"}, None, "ja"),
    ({"LC_MESSAGES": "ja_JP.eucJP", "LANG": "C"}, None, "ja"),
    ({"LC_ALL": "C.UTF-8", "LANG": "ja_JP.UTF-8"}, None, "en"),  # LC_ALL wins, as in POSIX
    ({"LC_ALL": "ja_JP.UTF-8", "LANG": "en_US.UTF-8"}, None, "ja"),
    ({}, None, "en"),
    ({"LANG": "ja_JP.UTF-8"}, "en", "en"),
    ({"LANG": "C"}, "ja", "ja"),
])
def test_language_from_flag_and_locale(env: dict[str, str], flag: str | None,
                                       expected: str) -> None:
    class Args:
        lang = flag

    assert language(Args(), env) == expected  # type: ignore[arg-type]


# --- through the real command -------------------------------------------------------


def _guard(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("GUARD_", "LC_", "LANG"))}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "guard.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=60)


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _positions(text: str) -> list[str]:
    return [line.split(": ", 1)[0] for line in text.strip().splitlines()]


VALIDATION = """\
version: 1
keywords:
  - name: repeated
    pattern: "(a)\\\\1"
rules:
  - name: hold-all
    action: hold
  - name: by-group
    action: tag
    scope:
      groupz: [sales]
"""

SEMANTIC = """\
version: 1
groups:
  sales: {members: ["*@example.co.jp"]}
rules:
  - name: marketing-only
    action: tag
    scope: {groups: [marketing]}
"""

WARNING = """\
version: 1
rules:
  - name: slow-down
    action: delay
"""


def test_validation_errors_in_japanese_through_the_cli(tmp_path: Path) -> None:
    """Unknown key with did-you-mean, wrong action, a regex RE2 refuses: same positions."""
    v = _write(tmp_path / "v", {"policy.yaml": VALIDATION})
    en = _guard(v, "policy", "check", "policy.yaml")
    ja = _guard(v, "policy", "check", "policy.yaml", "--lang", "ja")
    assert en.returncode == ja.returncode == 1
    assert "did you mean 'groups'?" in en.stderr
    assert "不明なキー 'groupz' です（'groups' の誤りではありませんか？）" in ja.stderr
    # the actions as the schema lists them (a new action does not break this test)
    assert re.search(r"rules\[0\]\.action: 次のいずれかを指定してください: pass, tag, bcc, "
                     r"[a-z, ]+, reject（指定された値: 'hold'）", ja.stderr), ja.stderr
    assert "keywords[0].pattern: RE2 で使えない正規表現です" in ja.stderr
    assert _positions(ja.stderr) == _positions(en.stderr) == [
        "policy.yaml:4:14", "policy.yaml:7:13", "policy.yaml:11:7"]
    # the locale asks for Japanese just as the flag does (precedence: the test above)
    assert _guard(v, "policy", "check", "policy.yaml", LANG="ja_JP.UTF-8").stderr == ja.stderr


def test_unknown_group_include_cycle_and_warning_in_japanese(tmp_path: Path) -> None:
    s = _write(tmp_path / "s", {"policy.yaml": SEMANTIC})
    r = _guard(s, "policy", "check", "policy.yaml", "--lang", "ja")
    assert r.returncode == 1
    assert r.stderr.strip() == ("policy.yaml:7:22: rules[0].scope.groups[0]: 不明なグループ "
                                "'marketing' です。次のいずれかを指定してください: sales")

    c = _write(tmp_path / "c", {"policy.yaml": "version: 1\ninclude: [groups.yaml]\n",
                                "groups.yaml": "include: [policy.yaml]\n"})
    r = _guard(c, "policy", "check", "policy.yaml", "--lang", "ja")
    assert r.stderr.strip() == ("groups.yaml:1:11: include[0]: include が循環しています: "
                                "policy.yaml -> groups.yaml -> policy.yaml")

    w = _write(tmp_path / "w", {"policy.yaml": WARNING})
    r = _guard(w, "policy", "check", "policy.yaml", "--lang", "ja")
    assert r.returncode == 0
    assert "policy.yaml:4:13: 警告: rules[0].action: このルールには scope も conditions も" \
        "ありません" in r.stderr
    assert "OK — ルール 1 件、グループ 0 件、配信停止リスト 0 件" in r.stdout


def test_bad_csv_in_japanese_through_policy_test(tmp_path: Path) -> None:
    p = _write(tmp_path / "p", {
        "policy.yaml": "version: 1\nlists:\n  partners: partners.csv\n"
                       "rules:\n  - {name: mark, action: tag}\n",
        "partners.csv": "domain\nsato@partner.example\nnodot\n",
        "m.eml": "From: sato@example.co.jp\nTo: buyer@client.example\nSubject: t\n\nhi\n"})
    args = ("policy", "test", "--no-history", "--policy", "policy.yaml", "m.eml")
    ja = _guard(p, *args, LANG="ja_JP.UTF-8")
    assert ja.returncode == 1
    csv = p.resolve() / "partners.csv"
    assert ja.stderr.strip() == (
        f"guard: {csv}:2:1: 'sato@partner.example' はアドレスです。ドメインを指定して"
        f"ください {csv}:3:1: 'nodot' にはドットがないため、メールのドメインではありません")


def test_bad_suppression_list_in_japanese_through_policy_test(tmp_path: Path) -> None:
    """A bad opt-out CSV: `guard policy test` warns, in Japanese, naming the rows."""
    p = _write(tmp_path / "p", {
        "policy.yaml": "version: 1\nlists:\n  suppression:\n    opt_out: opt_out.csv\n"
                       "rules:\n  - {name: mark, action: tag}\n",
        "opt_out.csv": "email,date\n,2026-12-01\nyamada.example.co.jp,2026-12-02\n",
        "m.eml": "From: sato@example.co.jp\nTo: buyer@client.example\nSubject: t\n\nhi\n"})
    r = _guard(p, "policy", "test", "--no-history", "--policy", "policy.yaml", "m.eml",
               "--lang", "ja")
    assert r.returncode == 0, r.stderr
    warning = next(line for line in r.stderr.splitlines() if "opt_out" in line)
    assert warning.startswith("警告: リスト opt_out: "), warning
    assert "に誤った行があります（2 行目: アドレスが空です。3 行目: アドレスが正しくありません: " \
        in warning
    assert warning.endswith("）。このリストに使えるエントリーはありません"), warning


def test_split_and_linked_password_errors_in_japanese_through_the_cli(tmp_path: Path) -> None:
    """Keys merged with per-recipient actions and PPAP: `split` on a rule that does not
    hold, a `linked_password` that is not one of its values."""
    s = _write(tmp_path / "s", {"policy.yaml": "version: 1\nrules:\n  - name: mark\n"
                                "    action: tag\n    split: true\n"})
    r = _guard(s, "policy", "check", "policy.yaml", "--lang", "ja")
    assert r.returncode == 1
    assert r.stderr.strip() == ("policy.yaml:5:12: rules[0].split: split はアクション delay, "
                                "confirm, approve で使うキーです（tag には使えません）")
    lp = _write(tmp_path / "lp", {"policy.yaml": "version: 1\ndefaults:\n"
                                  "  linked_password: hold\nrules: []\n"})
    r = _guard(lp, "policy", "check", "policy.yaml", "--lang", "ja")
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "policy.yaml:3:20: defaults.linked_password: 次のいずれかを指定してください: "
        "hold_with_attachment, policy（指定された値: 'hold'）")


MAILLOG = """\
Dec  1 09:15:02 mx postfix/qmgr[123]: 4AB12: from=<sato@example.co.jp>, size=100, nrcpt=1
Dec  1 09:15:03 mx postfix/smtp[456]: 4AB12: to=<buyer@>, relay=mx.client.example, status=sent
garbage postfix/smtp[456]: 4AB13: to=<buyer@client.example>, relay=x, status=sent (250 ok)
"""


def test_bad_history_rows_in_japanese_through_policy_test_and_history_import(
        tmp_path: Path) -> None:
    """`guard policy test --history` and `guard history import` name each bad row of a
    Postfix log in Japanese, positions and the row's text unchanged."""
    p = _write(tmp_path / "p", {
        "policy.yaml": "version: 1\ndefaults:\n  internal_domains: [example.co.jp]\n"
                       "rules:\n  - {name: mark, action: tag}\n",
        "maillog": MAILLOG,
        "m.eml": "From: sato@example.co.jp\nTo: buyer@client.example\nSubject: t\n\nhi\n"})
    ja = _guard(p, "policy", "test", "--policy", "policy.yaml", "m.eml", "--history", "maillog",
                LANG="ja_JP.UTF-8")
    assert ja.returncode == 1
    lines = ja.stderr.strip().splitlines()
    assert lines[0].startswith("maillog:2: アドレス 'buyer@' が正しくありません: "
                               "@ の後に何もありません。: Dec  1 09:15:03 mx"), lines
    assert lines[1] == ("maillog:3: 行の先頭に syslog の時刻がありません: " +
                        MAILLOG.splitlines()[2]), lines
    assert lines[2] == ("履歴 maillog（postfix として読み込み）: 何も取り込んでいません"
                        "（誤った行 2 行）"), lines
    imported = _guard(p, "history", "import", "maillog", "--policy", "policy.yaml", "--dry-run",
                      "--lang", "ja")
    assert imported.returncode == 1
    assert imported.stderr == ja.stderr
