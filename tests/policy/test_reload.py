"""Hot reload: changes are picked up, a bad edit keeps the last good policy."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from guard.policy import Policy, PolicyError, PolicyWatcher

GOOD = "rules:\n  - {name: first, action: tag}\n"
BETTER = "rules:\n  - {name: first, action: tag}\n  - {name: second, action: bcc}\n"
BAD = "rules:\n  - {name: first, action: hold}\n"


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def names(policy: Policy) -> list[str]:
    return [r.name for r in policy.rules]


class Recorder:
    def __init__(self) -> None:
        self.changes: list[Policy] = []
        self.errors: list[Exception] = []
        self.event = asyncio.Event()

    def on_change(self, policy: Policy) -> None:
        self.changes.append(policy)
        self.event.set()

    async def on_error(self, exc: Exception) -> None:  # async callbacks work too
        self.errors.append(exc)
        self.event.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self.event.wait(), timeout=3)
        self.event.clear()


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    write(path, GOOD)
    return path


async def test_background_task_picks_up_a_valid_change(policy_file: Path) -> None:
    rec = Recorder()
    async with PolicyWatcher(policy_file, rec.on_change, rec.on_error, interval=0.02) as watcher:
        assert names(watcher.current) == ["first"]
        write(policy_file, BETTER)
        await rec.wait()
        assert names(watcher.current) == ["first", "second"]
        assert rec.changes == [watcher.current]
        assert rec.errors == []


async def test_invalid_edit_keeps_last_good_and_reports_once(
    policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    async with PolicyWatcher(policy_file, rec.on_change, rec.on_error, interval=0.02) as watcher:
        good = watcher.current
        with caplog.at_level(logging.ERROR, logger="guard.policy"):
            write(policy_file, BAD)
            await rec.wait()
        assert watcher.current is good
        [error] = rec.errors
        assert isinstance(error, PolicyError)
        assert f"{policy_file}:2:27: rules[0].action" in str(error)
        assert "keeping the last good policy" in caplog.text
        # the same bad file is not reported again at every poll
        await asyncio.sleep(0.15)
        assert len(rec.errors) == 1 and rec.changes == []
        # fixing it is picked up
        write(policy_file, BETTER)
        await rec.wait()
        assert names(watcher.current) == ["first", "second"]


async def test_change_in_an_included_file(tmp_path: Path) -> None:
    write(tmp_path / "rules.yaml", GOOD)
    main = tmp_path / "policy.yaml"
    write(main, "include: [rules.yaml]\n")
    watcher = PolicyWatcher(tmp_path, interval=60, settle=0.001)
    await watcher.start()
    try:
        assert await watcher.check() is False  # nothing changed
        write(tmp_path / "rules.yaml", BETTER)
        assert await watcher.check() is True
        assert names(watcher.current) == ["first", "second"]
    finally:
        await watcher.stop()


async def test_creating_a_missing_include_triggers_the_next_attempt(tmp_path: Path) -> None:
    main = tmp_path / "policy.yaml"
    write(main, GOOD)
    rec = Recorder()
    watcher = PolicyWatcher(main, rec.on_change, rec.on_error, interval=60, settle=0.001)
    await watcher.start()
    try:
        write(main, "include: [more.yaml]\n" + GOOD)
        assert await watcher.check() is False
        assert "file not found" in str(rec.errors[0])
        assert names(watcher.current) == ["first"]
        write(tmp_path / "more.yaml", "rules: [{name: extra, action: pass}]\n")
        assert await watcher.check() is True
        assert names(watcher.current) == ["extra", "first"]
    finally:
        await watcher.stop()


async def test_change_in_a_referenced_list_triggers_reload(tmp_path: Path) -> None:
    write(tmp_path / "partners.csv", "domain\na.example\n")
    main = tmp_path / "policy.yaml"
    write(main, "lists: {partners: partners.csv}\n")
    rec = Recorder()
    watcher = PolicyWatcher(main, rec.on_change, interval=60, settle=0.001)
    await watcher.start()
    write(tmp_path / "partners.csv", "domain\na.example\nb.example\n")
    assert await watcher.check() is True
    assert len(rec.changes) == 1
    await watcher.stop()


async def test_deleted_file_keeps_the_last_good_policy(policy_file: Path) -> None:
    rec = Recorder()
    watcher = PolicyWatcher(policy_file, rec.on_change, rec.on_error, interval=60, settle=0.001)
    good = await watcher.start()
    await asyncio.to_thread(policy_file.unlink)
    assert await watcher.check() is False
    assert watcher.current is good
    assert "policy file not found" in str(rec.errors[0])
    await watcher.stop()


async def test_a_failing_callback_does_not_stop_the_watcher(policy_file: Path) -> None:
    calls: list[Policy] = []

    def broken(policy: Policy) -> None:
        calls.append(policy)
        raise RuntimeError("metrics are down")

    watcher = PolicyWatcher(policy_file, broken, interval=60, settle=0.001)
    await watcher.start()
    write(policy_file, BETTER)
    assert await watcher.check() is True
    write(policy_file, GOOD + "\n# comment\n")
    assert await watcher.check() is True
    assert len(calls) == 2
    assert names(watcher.current) == ["first"]
    await watcher.stop()


async def test_start_refuses_an_invalid_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    write(path, BAD)
    watcher = PolicyWatcher(path)
    with pytest.raises(PolicyError):
        await watcher.start()
    with pytest.raises(RuntimeError):
        _ = watcher.current


async def test_a_policy_refused_by_prepare_keeps_the_last_good_and_is_retried(
        policy_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    """prepare (the list sync) may refuse a policy whose files are fine: the last good
    policy stays, the refusal is reported once, and it is tried again without an edit
    (the fix can be a command, e.g. `guard lists remove`)."""
    rec = Recorder()
    refuse = {"on": False}
    prepared: list[list[str]] = []

    async def prepare(policy: Policy) -> None:
        prepared.append(names(policy))
        if refuse["on"] and "second" in names(policy):
            raise RuntimeError("list withdrawn: two sources")

    async with PolicyWatcher(policy_file, rec.on_change, rec.on_error, interval=0.02,
                             prepare=prepare, retry_interval=0.1) as watcher:
        assert prepared == [["first"]]  # before the first policy is taken too
        refuse["on"] = True
        with caplog.at_level(logging.ERROR, logger="guard.policy"):
            write(policy_file, BETTER)
            await rec.wait()
            assert [str(e) for e in rec.errors] == ["list withdrawn: two sources"]
            assert names(watcher.current) == ["first"]
            # retried without an edit, quietly while the refusal is the same
            n = len(prepared)
            await asyncio.sleep(0.5)
            assert len(prepared) >= n + 2
            assert len(rec.errors) == 1
            assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1
        refuse["on"] = False
        await rec.wait()
        assert names(watcher.current) == ["first", "second"]
        assert rec.changes == [watcher.current]


async def test_start_refused_by_prepare_raises(policy_file: Path) -> None:
    async def prepare(policy: Policy) -> None:
        raise RuntimeError("no")

    watcher = PolicyWatcher(policy_file, prepare=prepare)
    with pytest.raises(RuntimeError):
        await watcher.start()
    await watcher.stop()
