#!/usr/bin/env python3
"""Scale-out benchmark: the same load through one guard on SQLite, one on PostgreSQL, and
1, 2 and 4 guards sharing one PostgreSQL database, in ONE run, with the database's work
per message for each.

    .venv/bin/python tests/bench/scale_bench.py                      # ~3 minutes today
    .venv/bin/python tests/bench/scale_bench.py --configs pg1 --profile prof/
    .venv/bin/python tests/bench/scale_bench.py --rounds 3 --out scale.json

Load: `--messages` (1,000) × `--size` (4 KiB) from Postfix's smtp-source, `--sessions`
(10) concurrent sessions in all, split evenly over the guards (one smtp-source per guard),
delivered to one smtp-sink and counted there (its own running counter): a message counts
when it has ARRIVED upstream.

PostgreSQL is a cluster of its own (initdb in $TMPDIR, a free port, default settings plus
pg_stat_statements), or `--pg-url` (then the statement counts need pg_stat_statements
preloaded there). Each configuration gets a fresh database. Before the timed load,
20 messages per guard warm up every connection, then the counters are reset; after the
last message arrived at the sink they are read:

  statements   pg_stat_statements calls in the guard's database (BEGIN/COMMIT included;
               an executemany counts once per row, like the server executes it)
  commits      pg_stat_database xact_commit (rollbacks beside it)
  waits        voluntary context switches of the database's server processes: a backend
               sleeps once per message from its client that it waits for (≈ round
               trips), once per WAL flush it waits for, once per lock wait
  lock waits   samples (every 20 ms) of server processes waiting for a lock
  errors       ERROR lines in the server log (deadlocks, serialization failures,
               unique violations) and the guards' retried batches ("one by one")
  CPU          utime+stime of the database's server processes (backends), and of the
               whole cluster (+ WAL writer, checkpointer, …), per message

Everything listens on 127.0.0.1; every child is ended by its PID (and dies with this
driver: PR_SET_PDEATHSIG); every wait is bounded. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import relay_bench as rb  # the processes, the sink, /proc readers

HOST = rb.HOST
DB = "guard_scale_bench"
CONFIGS = {"sqlite1": ("sqlite", 1), "pg1": ("pg", 1), "pg2": ("pg", 2), "pg4": ("pg", 4)}
WARMUP_PER_GUARD = 20


# --------------------------------------------------------------------------- PostgreSQL
@dataclass
class Cluster:
    """Our own PostgreSQL (or the one --pg-url names: then `datadir` is None)."""

    host: str
    port: int
    user: str
    bindir: Path | None = None
    datadir: Path | None = None
    run_as: str | None = None
    log: Path | None = None

    def url(self, db: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{db}"

    def postmaster_pid(self) -> int | None:
        if self.datadir is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        return None


def _as(user: str | None) -> dict[str, Any]:
    return {"user": user, "group": user} if user else {}


def start_cluster(root: Path) -> Cluster:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise SystemExit("initdb not found: apt-get install postgresql (or give --pg-url)")
    bindir = Path(found[-1]).parent
    run_as = "postgres" if os.geteuid() == 0 else None  # initdb refuses root
    if run_as:
        shutil.chown(root, run_as, run_as)
    c = Cluster(HOST, rb.free_port(), "postgres", bindir, root / "data", run_as,
                root / "server.log")
    subprocess.run([str(bindir / "initdb"), "-D", str(c.datadir), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True,
                   timeout=120, **_as(run_as))
    subprocess.run([str(bindir / "pg_ctl"), "-D", str(c.datadir), "-l", str(c.log), "-w",
                    "-o", f"-p {c.port} -k {root} -c listen_addresses={HOST} "
                    "-c shared_preload_libraries=pg_stat_statements "
                    "-c pg_stat_statements.track=all -c log_lock_waits=on "
                    "-c deadlock_timeout=200ms", "start"],
                   check=True, capture_output=True, timeout=120, **_as(run_as))
    return c


def stop_cluster(c: Cluster) -> None:
    if c.datadir is not None and c.bindir is not None:
        subprocess.run([str(c.bindir / "pg_ctl"), "-D", str(c.datadir), "-m", "fast", "-w",
                        "stop"], capture_output=True, timeout=120, **_as(c.run_as))


async def _pg(c: Cluster, db: str, *sql: str) -> list[list[Any]]:
    import asyncpg

    conn = await asyncpg.connect(host=c.host, port=c.port, user=c.user, database=db,
                                 timeout=10)
    try:
        return [[tuple(r) for r in await conn.fetch(s)] for s in sql]
    finally:
        await conn.close()


def pg(c: Cluster, db: str, *sql: str) -> list[list[Any]]:
    return asyncio.run(_pg(c, db, *sql))


def fresh_database(c: Cluster) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(host=c.host, port=c.port, user=c.user,
                                     database="postgres", timeout=10)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {DB}")
            with contextlib.suppress(asyncpg.PostgresError):
                await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        finally:
            await conn.close()

    asyncio.run(go())


def cluster_pids(c: Cluster) -> list[int]:
    """The postmaster's children (backends, WAL writer, checkpointer, …), or, for a
    server we did not start, the processes named postgres."""
    pm = c.postmaster_pid()
    if pm is not None:
        return [pm, *rb.descendants(pm)]
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{d}/comm").read_text().strip() in ("postgres", "postmaster"):
                    out.append(int(d))
    return out


def proc_counters(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, voluntary context switches) of one process."""
    st = rb._stat(pid)
    if st is None:
        return None
    cpu = (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
    vol = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                vol = int(line.split()[1])
    return cpu, vol


class LockSampler(threading.Thread):
    """Counts, every 20 ms, the guards' server processes that wait for a lock."""

    def __init__(self, c: Cluster) -> None:
        super().__init__(daemon=True)
        self.c = c
        self.samples = 0
        self.waiting = 0
        self.stop_flag = threading.Event()
        self.error = ""

    def run(self) -> None:
        import asyncpg

        async def go() -> None:
            conn = await asyncpg.connect(host=self.c.host, port=self.c.port,
                                         user=self.c.user, database="postgres", timeout=10)
            try:
                while not self.stop_flag.is_set():
                    n = await conn.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                        "AND wait_event_type = 'Lock'", DB)
                    self.samples += 1
                    self.waiting += int(n)
                    await asyncio.sleep(0.02)
            finally:
                await conn.close()

        try:
            asyncio.run(go())
        except Exception as e:  # reported, the run goes on
            self.error = f"{type(e).__name__}: {e}"


class DbWork:
    """Counters of the guards' database between `start()` and `stop()`."""

    def __init__(self, c: Cluster) -> None:
        self.c = c
        self.sampler = LockSampler(c)

    def _backends(self) -> set[int]:
        (rows,) = pg(self.c, "postgres",
                     f"SELECT pid FROM pg_stat_activity WHERE datname = '{DB}'")
        return {int(r[0]) for r in rows}

    def start(self) -> None:
        # (pg_stat_statements lives in the database `postgres`; it sees every database)
        pg(self.c, "postgres", "SELECT pg_stat_statements_reset()")
        pg(self.c, DB, "SELECT pg_stat_reset()")
        time.sleep(0.6)  # pg_stat_database is flushed by backends at most every 500 ms
        (self.db0,) = pg(self.c, DB, "SELECT xact_commit, xact_rollback, deadlocks FROM "
                         f"pg_stat_database WHERE datname = '{DB}'")
        self.procs0 = {p: v for p in cluster_pids(self.c) if (v := proc_counters(p))}
        self.log0 = self.c.log.stat().st_size if self.c.log and self.c.log.exists() else 0
        self.sampler.start()

    def stop(self, messages: int) -> dict[str, Any]:
        self.sampler.stop_flag.set()
        self.sampler.join(10)
        backends = self._backends()
        procs1 = {p: v for p in cluster_pids(self.c) if (v := proc_counters(p))}
        time.sleep(0.6)
        stmts, db1 = pg(self.c, "postgres",
                        "SELECT query, calls, total_exec_time FROM pg_stat_statements s "
                        f"JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '{DB}' "
                        "AND query NOT LIKE '%pg_stat%' ORDER BY calls DESC",
                        "SELECT xact_commit, xact_rollback, deadlocks FROM "
                        f"pg_stat_database WHERE datname = '{DB}'")

        def delta(pids: set[int] | None) -> tuple[float, int]:
            cpu = vol = 0.0
            for p, (c1, v1) in procs1.items():
                if pids is not None and p not in pids:
                    continue
                c0, v0 = self.procs0.get(p, (0.0, 0))
                cpu, vol = cpu + c1 - c0, vol + v1 - v0
            return cpu, int(vol)

        be_cpu, be_waits = delta(backends)
        all_cpu, _ = delta(None)
        errors: dict[str, int] = {}
        if self.c.log and self.c.log.exists():
            with open(self.c.log, "rb") as f:
                f.seek(self.log0)
                for line in f.read().decode(errors="replace").splitlines():
                    if "ERROR:" in line:
                        key = line.split("ERROR:", 1)[1].strip()[:60]
                        errors[key] = errors.get(key, 0) + 1
        calls = sum(int(r[1]) for r in stmts)
        commits = int(db1[0][0]) - int(self.db0[0][0])
        rollbacks = int(db1[0][1]) - int(self.db0[0][1])
        n = float(messages)
        return {
            "statements_per_msg": calls / n,
            "commits_per_msg": commits / n,
            "rollbacks": rollbacks,
            "deadlocks": int(db1[0][2]) - int(self.db0[0][2]),
            "waits_per_msg": be_waits / n,
            "lock_wait_samples": self.sampler.waiting,
            "samples": self.sampler.samples,
            "server_errors": errors,
            "backend_cpu_ms_per_msg": be_cpu / n * 1e3,
            "cluster_cpu_ms_per_msg": all_cpu / n * 1e3,
            "backends": len(backends),
            "top_statements": [(r[0][:120], int(r[1])) for r in stmts[:12]],
            "sampler_error": self.sampler.error,
        }


# --------------------------------------------------------------------------- guards
def start_guard(tmp: Path, name: str, db_url: str, sink_port: int, policy: str
                ) -> rb.Relay:
    port, web_port = rb.free_port(), rb.free_port()
    log = tmp / f"guard-{name}.log"
    # one secret (in tmp) for all instances
    env = rb.guard_env(tmp, port, web_port, sink_port, db_url)
    env.update({
        "GUARD_INSTANCE_ID": name,
        "GUARD_POLICY": str(Path(policy or rb.REPO / "policies").resolve()),
    })
    proc = rb.spawn(rb.guard_cmd(), cwd=tmp, env=env, stdout=open(log, "wb"),
                    stderr=subprocess.STDOUT)
    try:
        rb.wait_listening(port, proc, 90)
    except Exception as e:
        rb.stop(proc)
        raise RuntimeError(f"guard {name} did not start: {e}: "
                           f"{log.read_text(errors='replace')[-800:]}") from e
    return rb.Relay(proc, port, log, web_port)


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_sources(guards: list[rb.Relay], sessions: int, count: int, size: int, tmp: Path,
                timeout: float) -> tuple[float, list[str]]:
    """One smtp-source per guard, all at once, the messages and sessions split evenly."""
    t0 = time.perf_counter()
    procs = []
    for i, (g, m, s) in enumerate(zip(guards, split(count, len(guards)),
                                      split(max(sessions, len(guards)), len(guards)),
                                      strict=True)):
        err = open(tmp / f"source-{i}.err", "wb")
        procs.append(rb.spawn(rb.source_cmd(g.port, s, m, size, False),
                              stdout=subprocess.DEVNULL, stderr=err))
    problems = []
    deadline = time.monotonic() + timeout
    for i, p in enumerate(procs):
        try:
            rc = p.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            rb.stop(p, signal.SIGKILL)
            rc = -9
        if rc != 0:
            problems.append(f"smtp-source {i} exit {rc}: "
                            f"{(tmp / f'source-{i}.err').read_text(errors='replace')[-200:]}")
    return time.perf_counter() - t0, problems


def run_paced(guards: list[rb.Relay], sink: rb.Sink, cluster: Cluster,
              a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The database's work per message at the SAME load per instance for every N: each
    guard gets `--paced-sessions` sessions that send one message a second (smtp-source
    -w 1), `--paced-messages` in all. (At full load the instances share two cores, so
    each gets 1/N of the mail, and group commit makes batches N times smaller: that
    measures this machine, not what N instances on N machines would ask of the
    database.)"""
    base = sink.count
    total = a.paced_messages * len(guards)
    work = DbWork(cluster)
    work.start()
    t0 = time.perf_counter()
    procs = []
    for i, g in enumerate(guards):
        cmd = rb.source_cmd(g.port, a.paced_sessions, a.paced_messages, a.size, False)
        cmd[1:1] = ["-w", "1"]
        procs.append(rb.spawn(cmd, stdout=subprocess.DEVNULL,
                              stderr=open(tmp / f"paced-{i}.err", "wb")))
    for p in procs:
        try:
            p.wait(600)
        except subprocess.TimeoutExpired:
            rb.stop(p, signal.SIGKILL)
    t_done = sink.wait_for(base + total, timeout=120)
    out: dict[str, Any] = {"messages": total, "db": work.stop(total)}
    out["rate"] = total / ((t_done or time.perf_counter()) - t0)
    if t_done is None:
        out["problem"] = f"paced: sink has {sink.count - base} of {total}"
    return out


def guard_db_errors(g: rb.Relay) -> float:
    """guard_db_errors_total from one guard's /metrics (0 when absent)."""
    raw = ""
    with contextlib.suppress(OSError), \
            __import__("socket").create_connection((HOST, g.web_port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        while chunk := s.recv(65536):
            raw += chunk.decode(errors="replace")
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in raw.splitlines()
               if ln.startswith("guard_db_errors_total"))


def run_config(name: str, cluster: Cluster | None, a: argparse.Namespace) -> dict[str, Any]:
    kind, n = CONFIGS[name]
    r: dict[str, Any] = {"config": name, "guards": n, "messages": a.messages,
                         "size": a.size, "sessions": a.sessions, "problems": [],
                         "loadavg_start": os.getloadavg()}
    tmp = Path(tempfile.mkdtemp(prefix=f"scale-bench-{name}-"))
    sink = spy = None
    guards: list[rb.Relay] = []
    try:
        sink = rb.Sink(tmp)
        if kind == "pg":
            assert cluster is not None
            fresh_database(cluster)
            url = cluster.url(DB)
        else:
            url = f"sqlite:///{tmp / 'guard.db'}"
        # the first one alone (it creates the tables), then the others together
        guards.append(start_guard(tmp, "g1", url, sink.port, a.policy))
        for i in range(2, n + 1):
            guards.append(start_guard(tmp, f"g{i}", url, sink.port, a.policy))
        wall, problems = run_sources(guards, len(guards), WARMUP_PER_GUARD * n, a.size, tmp,
                                     60)
        if problems or sink.wait_for(WARMUP_PER_GUARD * n, 60) is None:
            raise RuntimeError(f"warm-up failed: {problems}, sink={sink.count}")
        base = sink.count
        work = DbWork(cluster) if kind == "pg" and cluster is not None else None
        if work is not None:
            work.start()
        if a.profile:
            a.profile.mkdir(parents=True, exist_ok=True)
            out = a.profile / f"scale-{name}-g1.txt"
            spy = rb.spawn([str(rb.REPO / ".venv" / "bin" / "py-spy"), "record", "--format",
                            "raw", "--rate", "200", "--nonblocking", "-p",
                            str(guards[0].proc.pid), "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=open(tmp / "spy.err", "wb"))
            time.sleep(1.0)
            r["profile"] = str(out)
        cpu0 = sum(rb.proc_cpu(g.proc.pid, tree=True) for g in guards)
        t0 = time.perf_counter()
        wall, problems = run_sources(guards, a.sessions, a.messages, a.size, tmp, 600)
        r["problems"] += problems
        t_done = sink.wait_for(base + a.messages, timeout=max(120.0, wall * 5))
        r["accept_rate"] = a.messages / wall
        if t_done is None:
            r["problems"].append(f"not drained: sink has {sink.count - base} of {a.messages}")
            r["e2e_rate"] = None
        else:
            r["e2e_s"] = t_done - t0
            r["e2e_rate"] = a.messages / (t_done - t0)
        r["guard_cpu_ms_per_msg"] = (sum(rb.proc_cpu(g.proc.pid, tree=True) for g in guards)
                                     - cpu0) / a.messages * 1e3
        if work is not None:
            r["db"] = work.stop(a.messages)
        if spy is not None:
            rb.stop(spy, signal.SIGINT, grace=30)
            spy = None
        if kind == "pg" and cluster is not None and a.paced_messages:
            r["paced"] = run_paced(guards, sink, cluster, a, tmp)
        r["guard_db_errors"] = sum(guard_db_errors(g) for g in guards)
        retried = sum(g.log.read_text(errors="replace").count("retrying one by one")
                      for g in guards)
        r["batches_retried"] = retried
        for g in guards:
            if g.proc.poll() is not None:
                r["problems"].append(f"a guard exited with {g.proc.returncode}")
            if k := rb.log_problems(g.log):
                r["problems"].append(f"{k} warning/error lines in {g.log.name}")
        time.sleep(1.0)  # nothing more may arrive: each message once
        expected = a.messages + (len(guards) * a.paced_messages if r.get("paced") else 0)
        if sink.count != base + expected:
            r["problems"].append(f"sink has {sink.count - base}, sent {expected}")
        r["loadavg_end"] = os.getloadavg()
        db = r.get("db") or {}
        paced = (r.get("paced") or {}).get("db") or {}
        print(f"  {name:8} e2e {rb.fmt(r['e2e_rate'], '6.0f')}/s  accept "
              f"{r['accept_rate']:6.0f}/s  guards {r['guard_cpu_ms_per_msg']:.2f} ms/msg"
              + (f"  db: {db['statements_per_msg']:.1f} stmts, {db['commits_per_msg']:.2f} "
                 f"commits, {db['waits_per_msg']:.1f} waits, {db['backend_cpu_ms_per_msg']:.2f}"
                 f" ms backend CPU per msg; lock-wait samples {db['lock_wait_samples']}, "
                 f"server errors {sum(db['server_errors'].values())}" if db else "")
              + (f"\n  {name:8} paced {r['paced']['rate']:.0f}/s ({a.paced_sessions} sessions"
                 f" × 1 msg/s per guard): {paced['statements_per_msg']:.1f} stmts, "
                 f"{paced['commits_per_msg']:.2f} commits, {paced['waits_per_msg']:.1f} waits,"
                 f" {paced['backend_cpu_ms_per_msg']:.2f} ms backend CPU per msg; lock-wait "
                 f"samples {paced['lock_wait_samples']}" if paced else "")
              + (f"  PROBLEMS: {r['problems']}" if r["problems"] else ""), flush=True)
        return r
    except Exception as e:  # one broken configuration must not lose the others
        r["problems"].append(f"{type(e).__name__}: {e}")
        r.setdefault("e2e_rate", None)
        print(f"  {name}: FAILED {e}", flush=True)
        for g in guards:
            with contextlib.suppress(OSError):
                print("    " + g.log.read_text(errors="replace")[-1500:].replace(
                    "\n", "\n    "), flush=True)
        return r
    finally:
        rb.stop(spy, signal.SIGINT, grace=30)
        for g in guards:
            rb.stop_relay(g)
        if sink is not None:
            sink.close()
        shutil.rmtree(tmp, ignore_errors=True)


def median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def table(results: list[dict[str, Any]], configs: list[str]) -> str:
    rate = {c: median([r["e2e_rate"] for r in results if r["config"] == c]) for c in configs}

    def ratio(x: str, y: str) -> str:
        if rate.get(x) and rate.get(y):
            return f"{rate[x] / rate[y]:.2f}×"  # type: ignore[operator]
        return "–"

    def m(dbs: list[dict[str, Any]], key: str, spec: str) -> str:
        v = median([d[key] for d in dbs])
        return "–" if v is None else format(v, spec)

    lines = ["Full load (all guards and PostgreSQL share this machine's cores):", "",
             "| config | guards | e2e msg/s | vs sqlite1 | vs pg1 | guards CPU ms/msg | "
             "PG backend CPU ms/msg |", "|---|---|---|---|---|---|---|"]
    for c in configs:
        rs = [r for r in results if r["config"] == c]
        dbs = [r["db"] for r in rs if r.get("db")]
        lines.append(
            f"| {c} | {CONFIGS[c][1]} | {rb.fmt(rate[c], '.0f')} | {ratio(c, 'sqlite1')} | "
            f"{ratio(c, 'pg1')} | "
            f"{rb.fmt(median([r.get('guard_cpu_ms_per_msg') for r in rs]), '.2f')} | "
            f"{m(dbs, 'backend_cpu_ms_per_msg', '.2f')} |")
    lines += ["", "Database work per message (full load | equal load per instance):", "",
              "| config | statements | commits | waits (≈ round trips) | lock-wait samples | "
              "errors | backend CPU ms |", "|---|---|---|---|---|---|---|"]
    for c in configs:
        if CONFIGS[c][0] != "pg":
            continue
        rs = [r for r in results if r["config"] == c]
        full = [r["db"] for r in rs if r.get("db")]
        paced = [r["paced"]["db"] for r in rs if (r.get("paced") or {}).get("db")]
        errs = [sum(d["server_errors"].values()) for d in full + paced]
        errs += [r.get("batches_retried", 0) for r in rs]
        lines.append(
            f"| {c} | {m(full, 'statements_per_msg', '.1f')} \\| "
            f"{m(paced, 'statements_per_msg', '.1f')} | {m(full, 'commits_per_msg', '.2f')} "
            f"\\| {m(paced, 'commits_per_msg', '.2f')} | {m(full, 'waits_per_msg', '.1f')} "
            f"\\| {m(paced, 'waits_per_msg', '.1f')} | "
            f"{m(full + paced, 'lock_wait_samples', '.0f')} | {max(errs) if errs else '–'} | "
            f"{m(full, 'backend_cpu_ms_per_msg', '.2f')} \\| "
            f"{m(paced, 'backend_cpu_ms_per_msg', '.2f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="sqlite1,pg1,pg2,pg4",
                   help="subset of sqlite1,pg1,pg2,pg4 (run in this order, per round)")
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--sessions", type=int, default=10,
                   help="concurrent SMTP sessions in all, split over the guards")
    p.add_argument("--rounds", type=int, default=1, help="repeat, interleaved; medians")
    p.add_argument("--paced-sessions", type=int, default=10,
                   help="per guard, one message a second each (the equal-load phase)")
    p.add_argument("--paced-messages", type=int, default=150,
                   help="per guard in the equal-load phase (0: skip it)")
    p.add_argument("--pg-url", default="",
                   help="an existing server (postgresql://user@host:port/any) instead of "
                        "our own cluster; the database guard_scale_bench is dropped there")
    p.add_argument("--policy", default="", help="GUARD_POLICY (default: the shipped one)")
    p.add_argument("--profile", type=Path, default=None,
                   help="directory: py-spy the first guard during the timed load")
    p.add_argument("--out", type=Path, default=None, help="write JSON results here")
    a = p.parse_args(argv)
    configs = [c for c in a.configs.split(",") if c]
    if bad := [c for c in configs if c not in CONFIGS]:
        p.error(f"unknown configs: {bad}")
    for tool in (rb.SMTP_SOURCE, rb.SMTP_SINK):
        if not os.access(tool, os.X_OK):
            p.error(f"{tool} not found: apt-get install postfix (the daemon is not needed)")
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print(f"scale bench {started}: {a.messages} × {a.size} B, {a.sessions} sessions, "
          f"configs {configs}, rounds {a.rounds}", flush=True)
    cluster: Cluster | None = None
    root = None
    needs_pg = any(CONFIGS[c][0] == "pg" for c in configs)
    try:
        if needs_pg and a.pg_url:
            from urllib.parse import urlsplit

            u = urlsplit(a.pg_url)
            cluster = Cluster(u.hostname or HOST, u.port or 5432, u.username or "postgres")
        elif needs_pg:
            root = Path(tempfile.mkdtemp(prefix="scale-bench-pg-"))
            cluster = start_cluster(root)
        if cluster is not None:
            (ver,) = pg(cluster, "postgres", "SELECT version()")
            print(f"  PostgreSQL: {ver[0][0]}", flush=True)
        results = []
        for rnd in range(a.rounds):
            for c in configs:
                r = run_config(c, cluster, a)
                r["round"] = rnd
                results.append(r)
        print()
        print(table(results, configs))
        if a.out:
            a.out.write_text(json.dumps({"started": started, "args": {
                k: str(v) for k, v in vars(a).items()}, "machine": rb.machine(),
                "git": rb.git_state(), "results": results}, indent=1, default=str))
        return 1 if any(r["problems"] for r in results) else 0
    finally:
        if cluster is not None and root is not None:
            stop_cluster(cluster)
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
