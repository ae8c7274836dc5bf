"""Every symbol a detector reports is in the symbol table of policies/README.md.

An admin writes conditions from that table: a symbol missing there is one nobody can
use on purpose. Two ways to find the symbols, so a new one cannot slip past:
- statically: every `Finding(...)` in guard/ (its symbol a literal, or an f-string of a
  known family whose members are listed here from the code);
- by running: every finding of the shipped samples and of messages shaped to trip the
  header, envelope and people-list detectors.
"""

from __future__ import annotations

import ast
import re

import pytest

from guard.accept.decide import Inspector
from guard.inspect.pii import detect
from guard.inspect.run import _PROBLEM_TEXT
from guard.policy import load_policy
from tests.conftest import EXAMPLE_POLICY, ROOT

README = ROOT / "policies" / "README.md"


def documented() -> set[str]:
    """The symbols in the first column of the README's symbol table (`a`, `b.*`)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("| symbol | meaning | count |")
    rows = [line.strip() for line in text[start:].splitlines()]
    out: set[str] = set()
    for row in rows[2:]:
        if not row.startswith("|"):
            break
        out.update(re.findall(r"`([a-z_][a-z0-9_.]*\*?)`", row.split("|")[1]))
    return out


def is_documented(symbol: str, table: set[str]) -> bool:
    return symbol in table or any(
        s.endswith("*") and symbol.startswith(s[:-1]) for s in table)


# f-string symbol families and their members, read from the code that makes them
FAMILIES: dict[str, set[str]] = {
    "pii.": {k for k in detect._SYMBOL_ORDER},
    "uninspectable.": {k.split(":")[0] for k in _PROBLEM_TEXT},
    "malformed.": {"address", "header"},  # guard/inspect/run.problem_findings
}


def _prefix(arg: ast.expr) -> str | None:
    """The constant start of f"family.{x}" or "family." + x."""
    if (isinstance(arg, ast.JoinedStr) and arg.values
            and isinstance(arg.values[0], ast.Constant)):
        return str(arg.values[0].value)
    if (isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Add)
            and isinstance(arg.left, ast.Constant) and isinstance(arg.left.value, str)):
        return arg.left.value
    return None


def static_symbols() -> tuple[set[str], set[str]]:
    """(the symbol of every Finding(...) in guard/, known families expanded; the
    constant prefixes of symbols built from a family name and a variable part)."""
    found: set[str] = set()
    prefixes: set[str] = set()
    unknown: list[str] = []
    for path in sorted((ROOT / "guard").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # module constants: SYMBOL = "new_address"
        constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                     and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                     for t in n.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "Finding"):
                continue
            arg = node.args[0] if node.args else next(
                (k.value for k in node.keywords if k.arg == "symbol"), None)
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if isinstance(arg, ast.IfExp):  # MISMATCH if ... else TO_NONCUSTOMER
                branches = [arg.body, arg.orelse]
                if all(isinstance(b, ast.Name) and b.id in constants for b in branches):
                    found.update(constants[b.id] for b in branches
                                 if isinstance(b, ast.Name))
                    continue
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if arg.value:  # (the engine's reason for a rule without conditions)
                    found.add(arg.value)
            elif isinstance(arg, ast.Name) and arg.id in constants:
                found.add(constants[arg.id])
            elif isinstance(arg, ast.Attribute) and arg.attr == "symbol":
                continue  # a finding copied from another one
            elif arg is not None and (prefix := _prefix(arg)) is not None:
                if prefix in FAMILIES:
                    found.update(prefix + m for m in FAMILIES[prefix])
                else:
                    prefixes.add(prefix)
            else:
                unknown.append(where)
    assert not unknown, (
        f"Finding(...) whose symbol this test cannot read: {unknown}; write it as a literal "
        "or a module constant, or add its family to FAMILIES")
    return found, prefixes


def test_every_symbol_in_the_code_is_in_the_readme_table() -> None:
    table = documented()
    symbols, prefixes = static_symbols()
    assert {"pii.postal_code", "pii.people_list", "client", "envelope.bcc_only"} <= symbols
    missing = sorted(s for s in symbols if not is_documented(s, table))
    assert not missing, f"add these to the symbol table in policies/README.md: {missing}"
    # a family built at run time (f"sender_volume.{period}"): the table must name it or
    # its members; which members are reported, the battery below checks
    undocumented = sorted(p for p in prefixes if not any(s.startswith(p) for s in table))
    assert not undocumented, f"no symbol of these families in the table: {undocumented}"


def test_the_table_check_fails_on_an_undocumented_symbol() -> None:
    assert not is_documented("pii.shoe_size", documented())
    assert is_documented("uninspectable.whatever", {"uninspectable.*"})


# The contract's symbols other detectors add (issue 16): documented before they land.
CONTRACT = {"new_address", "customer_to_noncustomer", "sender_volume.hour",
            "sender_volume.day", "ppap.password", "bulk.list_unsubscribe",
            "bulk.precedence", "envelope.bcc_only", "client"}


def test_the_contract_symbols_are_documented() -> None:
    table = documented()
    assert sorted(s for s in CONTRACT if not is_documented(s, table)) == []


def _battery() -> list[tuple[bytes, str, list[str]]]:
    """(message, envelope sender, recipients): the samples and a few shaped messages."""
    out = []
    for path in sorted((ROOT / "policies" / "samples").glob("*.eml")):
        out.append((path.read_bytes(), "sato@example.co.jp", ["x@client.example"]))
    rows = "氏名\t住所\t携帯\n" + "".join(
        f"山田 太郎{i}\t東京都千代田区千代田{i}-1\t090-1234-56{i:02d}\n" for i in range(5))
    shaped = ("From: sato@example.co.jp\r\nTo: a@client.example\r\nSubject: x\r\n"
              "X-Mailer: RICOH IM C3000\r\nList-Unsubscribe: <mailto:u@example.co.jp>\r\n"
              "Precedence: bulk\r\nMIME-Version: 1.0\r\n"
              "Content-Type: text/plain; charset=utf-8\r\n\r\n" + rows + "〒100-0001\r\n")
    out.append((shaped.encode(), "sato@example.co.jp",
                ["a@client.example", "hidden@other.example"]))
    return out


@pytest.mark.parametrize("case", range(len(_battery())))
async def test_every_reported_symbol_is_in_the_readme_table(case: int) -> None:
    data, mail_from, rcpts = _battery()[case]
    policy = load_policy(EXAMPLE_POLICY)
    ins = await Inspector(None, b"k" * 32).inspect(policy, data, mail_from, rcpts, mail_from)
    table = documented()
    symbols = {f.symbol for f in ins.findings}
    missing = sorted(s for s in symbols if not is_documented(s, table))
    assert not missing, f"reported but not in policies/README.md: {missing}"
    if case == len(_battery()) - 1:  # the shaped message reaches the new detectors
        assert {"client", "bulk.precedence", "bulk.list_unsubscribe", "envelope.bcc_only",
                "pii.people_list", "pii.postal_code"} <= symbols, symbols
