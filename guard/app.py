"""Wiring: store + writer + inspection + delivery worker + web in this process; the SMTP
sessions here too, or in `smtp.front_processes` child processes (guard.smtp.front)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiosmtpd
import aiosmtplib
import uvicorn

from guard import metrics, multiproc
from guard.accept.decide import Inspector, KnowledgeCache, PolicyDecider
from guard.accept.pipeline import Decider, Pipeline, queue_everything
from guard.alert.dispatch import AlertDispatcher
from guard.config import (
    ConfigError,
    Settings,
    describe_database,
    parse_hostport,
    parse_upstream_url,
)
from guard.devsink import CaptureHandler, capture_protocol_factory
from guard.hold.service import HoldService
from guard.ids import instance_id
from guard.inspect.isolate import ExtractionPool
from guard.knowledge.listsync import (
    LIST_KEY,
    ListKey,
    ListKeyError,
    ListSourceError,
    key_mismatches,
    sync_policy_lists,
)
from guard.ownmail import timezone_of
from guard.policy import Policy, PolicyWatcher
from guard.relay.client import Upstream
from guard.relay.worker import DeliveryWorker
from guard.report.read import PolicyFacts
from guard.secret import load_or_create_secret, secret_home
from guard.smtp.authlimit import AuthLimiter, LocalAuthGate
from guard.smtp.front import SmtpFronts
from guard.smtp.handler import GuardHandler
from guard.smtp.listeners import (
    bind,
    listener_plan,
    serve_listener,
    server_tls_context,
    upstream_loop,
)
from guard.smtp.outcome import Accepted, Held, Outcome, Rejected
from guard.smtp.received import ReceivedMessage
from guard.store import db, knowledge, migrate, retention
from guard.store.faults import describe, log_failure
from guard.store.writer import BatchWriter
from guard.users import UserDirectory
from guard.viewlink import ViewLinks
from guard.web.app import create_app, metrics_app
from guard.web.health import HealthCheck, PolicyStatus
from guard.web.incidents import IncidentReportPage
from guard.web.misdelivery import MisdeliveryPage
from guard.web.reports import ReportPages
from guard.web.review import review_routes
from guard.web.scrape import MetricsEndpoint

log = logging.getLogger("guard")


def policy_path(settings: Settings) -> Path | None:
    """The configured policy (None: none configured; never a fallback to the example)."""
    return Path(settings.policy.path) if settings.policy.path else None


def require_policy(settings: Settings) -> Path:
    """The configured policy, which must exist: a production guard never runs the sample
    policy or no policy at all because a setting was forgotten."""
    path = policy_path(settings)
    if path is None:
        raise ConfigError("no policy configured: set policy.path (GUARD_POLICY) to your policy "
                          "file or folder (`guard dev` runs the shipped example)")
    if not path.exists():
        raise ConfigError(f"policy.path (GUARD_POLICY) {path}: no such file or folder")
    return path


def loop_id(secret: bytes) -> str:
    """This guard's mark in its Received: lines: the same for every instance that shares
    the secret, different for another guard (two guards in a chain are not a loop)."""
    return hmac.new(secret, b"guard mail loop id", hashlib.sha256).hexdigest()[:12]


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".")[:3] if x.isdigit())


def assert_library_versions() -> None:
    """Refuse to run on versions with known SMTP smuggling / injection bugs."""
    if _version(aiosmtpd.__version__) < (1, 4, 6):
        raise ConfigError(f"aiosmtpd {aiosmtpd.__version__} < 1.4.6 (CVE-2024-27305/34083)")
    if _version(aiosmtplib.__version__) < (5, 1, 3):
        raise ConfigError(f"aiosmtplib {aiosmtplib.__version__} < 5.1.3 (command injection)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _QuietUvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # we handle signals ourselves
        yield


class GuardApp:
    def __init__(self, settings: Settings, *, dev_sink_listen: str = "",
                 decide: Decider | None = None) -> None:
        self.settings = settings
        self.dev_sink_listen = dev_sink_listen
        self.decide = decide  # None: inspection and the policy decide
        self.watcher: PolicyWatcher | None = None
        self.pool: ExtractionPool | None = None
        self.secret = b""
        self.list_key = ListKey(b"", "")
        self.inspector: Inspector | None = None
        d = settings.database
        self.engine = db.create_engine(d.url, connect_timeout=d.connect_timeout,
                                       statement_timeout=d.statement_timeout)
        self.writer = BatchWriter(self.engine, d.batch_max,
                                  statement_timeout=d.statement_timeout)
        self.policy_status = PolicyStatus()
        self.outbox: CaptureHandler | None = CaptureHandler() if dev_sink_listen else None
        self.servers: list[asyncio.base_events.Server] = []
        self.bound: dict[str, tuple[str, int]] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._web: _QuietUvicorn | None = None
        self._metrics_web: _QuietUvicorn | None = None
        self.metrics = MetricsEndpoint(
            self.engine, token=settings.metrics.token,
            default_escalate_seconds=settings.review.default_escalate_after_minutes * 60)
        self.worker: DeliveryWorker | None = None
        self.hold: HoldService | None = None
        self.alerts: AlertDispatcher | None = None
        self.pipeline: Pipeline | None = None
        self.fronts: SmtpFronts | None = None
        self._stopped = asyncio.Event()
        sm = settings.smtp
        self.auth_limiter = AuthLimiter(sm.auth_failures_per_address, sm.auth_failure_window,
                                        sm.auth_block_seconds)

    async def start(self) -> None:
        s = self.settings
        assert_library_versions()
        if s.metrics.listen:  # a bad value stops the start here, in one line
            parse_hostport(s.metrics.listen)
        # first: with PostgreSQL and no secret configured the guard stops here, in one line
        self.secret = load_or_create_secret(s)
        _, up_host, up_port, _, _ = parse_upstream_url(s.upstream.url)
        own = await upstream_loop(listener_plan(s), up_host, up_port)
        if own is not None:
            raise ConfigError(f"upstream.url (GUARD_UPSTREAM) {up_host}:{up_port} is this guard's "
                              f"own {own}: mail would loop; set it to the mail server the "
                              "guard relays to")
        await self._open_database()
        self.writer.start()
        self.list_key = ListKey(self.secret, secret_home(s).describe())
        async with self.engine.connect() as conn:
            mismatch = key_mismatches(await knowledge.list_rows(conn), self.list_key)
        if mismatch:  # before anything is written: a guard started by mistake with
            raise ConfigError(mismatch)  # another secret must not re-hash the file lists
        stamp = self.list_key.stamp
        # the key lists must be hashed with here: `guard lists import` checks it
        await self.writer.submit(lambda conn, now: knowledge.set_meta(conn, now, LIST_KEY, stamp))
        if self.decide is None:
            if s.inspect.enabled:
                self.decide = await self._start_inspection()
            else:
                log.warning("inspection is off (inspect.enabled = false): relaying as is")
                self.policy_status.state = "off"
                self.decide = queue_everything

        upstream = Upstream(s.upstream, s.smtp.hostname)
        self.worker = DeliveryWorker(self.writer, upstream, s.delivery,
                                     s.smtp.hostname, name=s.instance_id or instance_id())
        if self.inspector is not None and self.inspector.known is not None:
            self.worker.on_learned = self.inspector.known.learned
            self.worker.only_new = self.inspector.known.unknown
        assert self.decide is not None
        self.alerts = alerts = AlertDispatcher(self.engine, self.writer, s, self._current_policy,
                                               on_queued=self.worker.wake,
                                               links=ViewLinks(self.secret))
        worker_wake = self.worker.wake

        def released() -> None:  # a hold was decided: deliver it, and alert if it was severe
            worker_wake()
            alerts.wake()

        self.hold = HoldService(self.engine, self.writer, s, self.secret,
                                on_release=released,
                                internal_domains=self._internal_domains)
        mark = loop_id(self.secret)
        self.pipeline = Pipeline(self.writer, s.smtp.hostname, self.decide, loop_id=mark,
                                 commit_timeout=s.database.commit_timeout,
                                 drop_notice=self.hold.notices.dropped)
        pipeline, worker, hold = self.pipeline, self.worker, self.hold

        async def accept(msg: ReceivedMessage) -> Outcome:
            outcome = await pipeline.accept(msg)
            if isinstance(outcome, Accepted | Held):
                worker.wake()
            if isinstance(outcome, Held):
                hold.wake()  # the timers send the first notices now
            if isinstance(outcome, Held | Rejected):
                alerts.wake()  # perhaps a severe event: a first report
            return outcome

        plan = listener_plan(s, mark)
        tls = server_tls_context(s)  # here too with fronts: a bad certificate stops the start
        if self.outbox is not None:
            host, port = parse_hostport(self.dev_sink_listen)
            srv = await asyncio.get_running_loop().create_server(
                capture_protocol_factory(self.outbox, "dev-upstream.localdomain"), host, port)
            self.servers.append(srv)
            self.bound["dev_sink"] = srv.sockets[0].getsockname()[:2]

        sockets = [(cfg, bind(host, port)) for cfg, host, port in plan]
        for cfg, sock in sockets:
            self.bound[cfg.kind] = sock.getsockname()[:2]
            log.info("SMTP %s listener on %s:%d", cfg.kind, *self.bound[cfg.kind])
        fronts = s.smtp.front_processes
        if fronts and not multiproc.active():
            log.warning("SMTP sessions run in this process: metrics are not set up for "
                        "several processes (`guard serve` and `guard dev` do that)")
            fronts = 0
        if fronts:
            self.fronts = SmtpFronts(s, sockets, accept, fronts, self.auth_limiter)
            await self.fronts.start()
        else:
            gate = LocalAuthGate(self.auth_limiter) if s.smtp.auth_failures_per_address else None
            handler = GuardHandler(accept, s.smtp.max_recipients, failure_gate=gate)
            users = UserDirectory(s.smtp.users_file)
            for cfg, sock in sockets:
                self.servers.append(await serve_listener(handler, cfg, sock, users, tls))

        try:
            await self.worker.reclaim_dead_leases()
        except Exception:  # they run out by themselves (delivery.lease_seconds)
            log.exception("could not take back the leases of stopped processes")
        self.worker.start()
        health = HealthCheck(self.engine, (up_host, up_port), writer=self.writer,
                             upstream=upstream, policy=self.policy_status)
        web = create_app(health, self._metrics_on_web(), self.outbox, timezone_of(s),
                         routes=[*review_routes(self.hold, self.secret),
                                 *self._report_routes(), *self._misdelivery_routes()])
        self._web = await self._serve_web(web, s.web.listen, "web")
        if s.metrics.listen:
            self._metrics_web = await self._serve_web(metrics_app(self.metrics),
                                                      s.metrics.listen, "metrics")
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="guard-housekeeping"))
        self._tasks.append(asyncio.create_task(self.hold.run_timers(), name="guard-holds"))
        self._tasks.append(asyncio.create_task(self.alerts.run(), name="guard-alerts"))
        log.info("guard %s (leases %s) started: upstream %s, database %s", self.worker.name,
                 self.worker.owner, upstream.describe(),
                 self.engine.url.render_as_string(hide_password=True))

    def _metrics_on_web(self) -> MetricsEndpoint | None:
        """/metrics on the web listener, which serves people: not when it has a listener
        of its own, and only with a token unless the web listener is on loopback."""
        s = self.settings
        if s.metrics.listen:
            return None
        if s.metrics.token or _loopback(parse_hostport(s.web.listen)[0]):
            return self.metrics
        log.warning("/metrics is not served: web.listen %s is reachable from other hosts; "
                    "set metrics.token (GUARD_METRICS_TOKEN) or metrics.listen "
                    "(GUARD_METRICS_LISTEN) for Prometheus", s.web.listen)
        return None

    def _report_routes(self) -> list[Any]:
        """/reports/…: people's pages with no login of their own, so guarded like
        /metrics on this listener: the metrics token when one is set, else loopback only.
        An incident report also opens with the view link of an officer's alert mail."""
        s = self.settings

        def facts() -> PolicyFacts:
            if self.watcher is None:  # a decider given in code: no policy to name rules
                return PolicyFacts((), lambda sender: None)
            return PolicyFacts.of(self.watcher.current)

        def policy() -> Policy | None:
            return None if self.watcher is None else self.watcher.current

        def incidents(allowed: Any) -> list[Any]:
            return IncidentReportPage(self.engine, policy, timezone_of(s), allowed,
                                      ViewLinks(self.secret)).routes()

        if s.metrics.token:
            allowed = self.metrics.allowed
        elif _loopback(parse_hostport(s.web.listen)[0]):
            allowed = None
        else:
            log.warning("/reports is served only to the links of alert mails: web.listen %s "
                        "is reachable from other hosts; set metrics.token "
                        "(GUARD_METRICS_TOKEN) to serve it", s.web.listen)
            return incidents(lambda request: False)
        return [*ReportPages(self.engine, facts, timezone_of(s), allowed).routes(),
                *incidents(allowed)]

    def _misdelivery_routes(self) -> list[Any]:
        """/misdelivery: a sender reports mail sent to the wrong person. It has its own
        sign-in (the SMTP users, HTTP Basic), its failures counted as SMTP AUTH's are but
        in a limiter of its own: behind a proxy one address may stand for everyone, and
        SMTP AUTH must not be locked with it."""
        s = self.settings
        assert self.writer is not None
        sm = s.smtp
        gate = AuthLimiter(sm.auth_failures_per_address, sm.auth_failure_window,
                           sm.auth_block_seconds) if sm.auth_failures_per_address else None
        return MisdeliveryPage(self.engine, self.writer, UserDirectory(s.smtp.users_file),
                               self.secret, gate).routes()

    async def _serve_web(self, app: Any, listen: str, name: str) -> _QuietUvicorn:
        host, port = parse_hostport(listen)
        server = _QuietUvicorn(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                              lifespan="off", access_log=False))
        self._tasks.append(asyncio.create_task(server.serve(), name=f"guard-{name}"))
        for _ in range(100):  # wait until the socket is bound
            if server.started:
                break
            await asyncio.sleep(0.02)
        if server.servers:
            self.bound[name] = server.servers[0].sockets[0].getsockname()[:2]
        return server

    async def _open_database(self) -> None:
        """Schema, durability, and one real write: a database that cannot be read or
        written (a read-only file or filesystem, a full disk, a server that is down) is
        refused here with one line, not found at the first message."""
        s = self.settings
        where = describe_database(s.database.url)
        try:
            if s.database.auto_upgrade:
                # migrations may take longer than a statement deadline, and may wait for
                # another instance's migration lock: an engine without one
                upgrading = db.create_engine(s.database.url,
                                             connect_timeout=s.database.connect_timeout)
                try:
                    await migrate.upgrade(upgrading)
                finally:
                    await upgrading.dispose()
            current, head = await migrate.current_revision(self.engine)
            if current != head:
                raise ConfigError(
                    f"database schema at {current}, need {head}: run `guard db upgrade`")
            await db.check_durability(self.engine)
        except (ConfigError, db.DurabilityError):
            raise
        except Exception as e:
            raise ConfigError(f"database {where}: cannot be used: {describe(e)}") from e
        try:
            await db.check_writable(self.engine)
        except Exception as e:
            raise ConfigError(f"database {where}: cannot be written: {describe(e)}") from e

    async def _start_inspection(self) -> Decider:
        s = self.settings
        path = require_policy(s)
        actor = f"policy:{s.instance_id or instance_id()}"
        key = self.list_key
        known: list[KnowledgeCache] = []  # the inspector's, once it exists
        started = False

        async def prepare(policy: Policy) -> None:
            # the policy's suppression lists into the store before the policy is taken;
            # a list it would give a second source refuses the policy (guard/knowledge/listsync.py)
            await sync_policy_lists(self.engine, self.writer, key, policy, actor)
            async with self.engine.connect() as conn:
                mismatch = key_mismatches(await knowledge.list_rows(conn), key,
                                          policy.store_lists)
            if mismatch:
                if not started:
                    raise ListKeyError(mismatch)  # at start: do not start
                log.error("%s", mismatch)  # imported meanwhile by a command with another key
            for cache in known:
                cache.invalidate()

        async def changed(policy: Policy) -> None:
            metrics.POLICY_RELOADS.labels("ok").inc()
            metrics.STATE.policy_loaded(policy.digest, len(policy.rules))
            self.policy_status.loaded(str(policy.source), len(policy.rules))
            log.info("policy loaded: %s (%d rules)", policy.source, len(policy.rules))

        def failed(error: Exception) -> None:
            metrics.POLICY_RELOADS.labels("error").inc()
            metrics.STATE.policy_failed()
            self.policy_status.failed(str(error))
            log.error("policy not reloaded, keeping the last good one: %s", error)

        self.watcher = PolicyWatcher(path, on_change=changed, on_error=failed,
                                     interval=s.policy.reload_interval, prepare=prepare)
        try:
            await changed(await self.watcher.start())
        except (ListSourceError, ListKeyError) as e:
            raise ConfigError(str(e)) from None
        started = True
        watcher = self.watcher

        def current() -> Policy:
            return watcher.current

        self.pool = ExtractionPool(
            workers=s.inspect.workers or None,
            per_attachment_timeout=s.inspect.per_attachment_timeout,
            per_message_timeout=s.inspect.per_message_timeout,
            memory_limit_mb=s.inspect.memory_limit_mb)
        self.inspector = inspector = Inspector(self.engine, self.secret, self.pool)
        if inspector.known is not None:
            known.append(inspector.known)
        return PolicyDecider(inspector, current)

    def _current_policy(self) -> Policy | None:
        """The policy alerts are addressed by (None: a decider given in code)."""
        return None if self.watcher is None else self.watcher.current

    def _internal_domains(self) -> Sequence[str]:
        """The current policy's internal domains, in its order (notices' From: address)."""
        if self.watcher is None:
            return ()
        return self.watcher.current.doc.defaults.internal_domains

    async def _housekeeping(self) -> None:
        ages = retention.Ages(self.settings.delivery.retention_days * retention.DAY,
                              self.settings.retention.audit_days * retention.DAY)
        while True:
            try:
                await self.metrics.refresh()  # read between scrapes too
                await self.writer.submit(lambda conn, now: retention.purge(
                    conn, now, ages, limit=retention.SWEEP_LIMIT))
            except Exception as e:
                log_failure(log, "housekeeping failed", e)
            await asyncio.sleep(60)

    async def stop(self) -> None:
        for srv in self.servers:
            srv.close()
        if self.fronts is not None:  # before the writer: they finish handed-over messages
            await self.fronts.stop()
        for server in (self._web, self._metrics_web):
            if server is not None:
                server.should_exit = True
        if self.worker is not None:
            await self.worker.stop()
        if self.watcher is not None:
            await self.watcher.stop()
        if self.pool is not None:
            await self.pool.close()
        for t in self._tasks:
            if t.get_name() not in ("guard-web", "guard-metrics"):
                t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(t, 5)
        await self.writer.close()
        await self.engine.dispose()
        self._stopped.set()

    async def run_until_signal(self) -> None:
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")
        await self.stop()
