"""The verdicts of `guard policy test --json` for every sample in policies/samples, run
against the delivery history the corpus assumes (tests/make_corpus.HISTORY_*).

    .venv/bin/python -m tests.corpus_verdicts [POLICY_DIR] [OUT.json OUT.md]

Used by tests/test_policy_corpus.py and to write the before/after tables of a policy
change. Each sample is one run of the real command, in a process of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from guard.inspect.domains import registrable_domain
from guard.mail.addresses import domain_of
from guard.store import db, knowledge
from tests.make_corpus import CORPUS, HISTORY_ADDRESSES, HISTORY_DOMAINS
from tests.make_samples import SAMPLES

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "policies" / "samples"
EXPECTED: dict[str, tuple[str, str | None]] = {**SAMPLES, **CORPUS}
# a time long before the samples' dates: the history is older than every message
SEEDED_AT = 1_700_000_000.0


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env["GUARD_DATABASE_URL"] = f"sqlite:///{home / 'guard.db'}"
    return env


def guard(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guard.cli", *args], cwd=home, env=_env(home),
                          capture_output=True, text=True, timeout=120, check=False)


def seed_history(home: Path) -> None:
    """A store with the corpus's history: domains through `guard domains import`, the
    addresses as deliveries the guard recorded."""
    for args in (("db", "upgrade"),):
        r = guard(home, *args)
        assert r.returncode == 0, r.stderr
    csv = home / "known.csv"
    csv.write_text("domain\n" + "\n".join(HISTORY_DOMAINS) + "\n")
    r = guard(home, "domains", "import", str(csv))
    assert r.returncode == 0, r.stderr

    async def addresses() -> None:
        engine = db.create_engine(_env(home)["GUARD_DATABASE_URL"])
        async with engine.begin() as conn:
            await knowledge.learn_delivered(conn, SEEDED_AT, "sato@example.co.jp", [
                (a, registrable_domain(domain_of(a))) for a in HISTORY_ADDRESSES])
        await engine.dispose()

    asyncio.run(addresses())


def verdict(home: Path, policy: Path, eml: Path) -> dict[str, object]:
    r = guard(home, "policy", "test", str(eml), "--json", "--policy", str(policy))
    assert r.returncode == 0, f"{eml.name}: {r.stderr}"
    doc = json.loads(r.stdout)
    return {"action": doc["action"], "rule": doc.get("rule"),
            "reasons": sorted({f"{x['rule']}:{x['symbol']}" for x in doc["reasons"]}),
            "findings": sorted({f"{f['symbol']}@{f['where']}" for f in doc["findings"]})}


def all_verdicts(home: Path, policy: Path, names: list[str] | None = None
                 ) -> dict[str, dict[str, object]]:
    names = sorted(names or EXPECTED)
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = pool.map(lambda n: verdict(home, policy, SAMPLE_DIR / n), names)
        return dict(zip(names, got, strict=True))


def table(verdicts: dict[str, dict[str, object]]) -> str:
    lines = ["| sample | action | rule | expected |", "|---|---|---|---|"]
    for name, v in verdicts.items():
        want = EXPECTED.get(name)
        shown = f"{want[0]} {want[1] or '–'}" if want else "?"
        lines.append(f"| {name} | {v['action']} | {v['rule'] or '–'} | {shown} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    policy = (Path(argv[0]) if argv else ROOT / "policies").resolve()
    with tempfile.TemporaryDirectory() as tmp:
        seed_history(Path(tmp))
        got = all_verdicts(Path(tmp), policy)
    if len(argv) >= 3:
        Path(argv[1]).write_text(json.dumps(got, ensure_ascii=False, indent=1) + "\n")
        Path(argv[2]).write_text(table(got))
    print(table(got))


if __name__ == "__main__":
    main(sys.argv[1:])
