"""Assembly and lifecycle: pollers and dispatchers in one task group, and the shutdown choreography.

On SIGTERM/SIGINT: stop fetching (a page being committed either lands whole or not at all), let the
sinks drain what is spooled for up to ``shutdown_grace_secs``, log one summary line, exit 0. A
second signal stops at once; the spool still holds everything not delivered.

On SIGHUP (logrotate's ``postrotate``): the file sinks close their files and open their paths again,
between batches, and collection goes on. SIGHUP is caught from the start of :meth:`Collector.run`
to its very end, so one arriving while starting or shutting down never kills the process.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio

from collector import __version__
from collector.api.auth import make_authenticator
from collector.api.client import MimecastClient, tls_setting
from collector.api.files import FileHost
from collector.api.inflight import PageGate
from collector.api.pacer import PacerRegistry
from collector.collect.poller import Poller, StreamSpec
from collector.config.errors import CollectorError
from collector.config.model import AccountConfig, Config, StateConfig
from collector.config.options import Secret
from collector.delivery.backpressure import SpoolGate
from collector.delivery.dispatcher import Dispatcher, SpoolSignal
from collector.logs import get_logger, redact, register_secret
from collector.logtypes import COMPILED
from collector.service.health import HealthServer
from collector.service.ownership import LeaseOwnership, Ownership, SoleOwner
from collector.service.systemd import Notifier
from collector.service.telemetry import Telemetry
from collector.sinks import SinkContext, create_sink
from collector.sinks.base import SinkError, SinkSettings
from collector.state.base import StateStore
from collector.state.lock import StateLock
from collector.state.pg_store import PostgresStore
from collector.state.store import Store
from collector.timeutil import iso
from collector.workers import PageBuilder

EXIT_OK = 0
EXIT_STREAM_FAILED = 1
EXIT_SOFTWARE = 70
EXIT_CANTCREAT = 73
EXIT_IOERR = 74


class StartupError(CollectorError):
    """Something the collector needs at start cannot be had (a sink's target, the health port)."""


@dataclass
class RunResult:
    exit_code: int
    failed_streams: list[str] = field(default_factory=list)


def _shielded(close: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    async def shielded() -> None:
        with anyio.CancelScope(shield=True):
            await close()

    return shielded


def register_config_secrets(config: Config) -> None:
    """Every secret in the config is masked in logs from now on."""
    holders: list[AccountConfig | SinkSettings | StateConfig] = [config.state, *config.accounts, *config.sinks]
    for holder in holders:  # every Secret field, so one added later cannot be forgotten here
        for f in dataclasses.fields(holder):
            value = getattr(holder, f.name)
            if isinstance(value, Secret):
                register_secret(value.reveal())
    for settings in config.sinks:
        for f in dataclasses.fields(settings):
            value = getattr(settings, f.name)
            if isinstance(value, dict):  # HTTP headers: tokens travel here
                for item in value.values():
                    register_secret(str(item))


def _http_session(connections: int, **options: Any) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector, headers={"User-Agent": f"mimecast-collector/{__version__}"}, **options
    )


async def check_sinks(config: Config, *, timeout_secs: float = 20.0) -> dict[str, str | None]:
    """Open each sink and run its health check, sending no event: {sink name: problem, or None if fine}."""
    failures: dict[str, str | None] = {}
    context = SinkContext(config.state.path.parent)
    for settings in config.sinks:
        sink = create_sink(settings, context)
        try:
            with anyio.fail_after(timeout_secs):
                await sink.open()
                await sink.health_check()
        except SinkError as error:
            failures[settings.name] = str(error)
        except TimeoutError:
            failures[settings.name] = f"no answer within {timeout_secs:g} s"
        else:
            failures[settings.name] = None
        finally:
            with anyio.CancelScope(shield=True):
                await sink.close()
    return failures


class Collector:
    def __init__(
        self,
        config: Config,
        *,
        once: bool = False,
        handle_signals: bool = True,
        telemetry: Telemetry | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.once = once
        self.handle_signals = handle_signals
        self.telemetry = telemetry or Telemetry()
        self.clock = clock
        self.pollers: list[Poller] = []
        self.dispatchers: list[Dispatcher] = []
        self.notifier = notifier or Notifier()
        self.health: HealthServer | None = None
        self.ready = anyio.Event()
        self.ownership: Ownership = SoleOwner()
        self._stop_requested = anyio.Event()
        self._hangups: AsyncIterator[signal.Signals] | None = None
        self._log = get_logger()

    def request_stop(self) -> None:
        self._stop_requested.set()

    async def run(self) -> RunResult:
        register_config_secrets(self.config)
        async with AsyncExitStack() as stack:
            if self.handle_signals:  # first in, last out: see the module docstring
                self._hangups = stack.enter_context(anyio.open_signal_receiver(signal.SIGHUP))
            store = await self._open_store(stack)
            self.telemetry.record_waiting = store.record_waiting  # so `status` can show a stream held back
            signal_, acked = SpoolSignal(), SpoolSignal()
            self.dispatchers = await self._dispatchers(stack, store, signal_, acked)
            gate = SpoolGate(
                store,
                self.config.state,
                self.telemetry,
                acked,
                lambda: {
                    d.settings.name: d.offset for d in self.dispatchers if self.ownership.holds("sink", d.settings.name)
                },
            )
            session = await stack.enter_async_context(_http_session(64))
            # Batch files (SIEM API 2.0) come from another host: their own session, with no cookie jar,
            # so nothing the API set can reach it; requests there carry no credentials (api/files.py).
            files_session = await stack.enter_async_context(_http_session(16, cookie_jar=aiohttp.DummyCookieJar()))
            builder = PageBuilder(self.config.service.worker_count, self.telemetry)  # starts with the first big page
            stack.push_async_callback(builder.close)
            self.pollers = self._pollers(session, files_session, store, signal_, gate, builder=builder)
            if isinstance(store, PostgresStore):
                items = {"stream": [p.spec.name for p in self.pollers], "sink": [s.name for s in self.config.sinks]}
                lease_secs = self.config.state.lease_secs
                self.ownership = LeaseOwnership(store, items, self.telemetry, lease_secs=lease_secs, once=self.once)
            if self.config.service.listen:
                self.health = HealthServer(
                    self.config.service.listen,
                    self.telemetry,
                    lambda: [p for p in self.pollers if self.ownership.holds("stream", p.spec.name)],
                    self.clock,
                    standby_ok=isinstance(store, PostgresStore),  # a replica may own nothing for now
                )
                try:
                    await self.health.start()
                except OSError as exc:
                    raise StartupError(
                        f"service.listen: cannot listen on {self.config.service.listen}: {exc.strerror}"
                    ) from None
                stack.push_async_callback(self.health.stop)
                self._log.info("health_endpoint_listening", address=self.health.address)
            self.notifier.notify("READY=1", f"STATUS=collecting {len(self.pollers)} streams")
            try:
                return await self._supervise(store)
            finally:
                self.notifier.notify("STOPPING=1")

    async def _open_store(self, stack: AsyncExitStack) -> StateStore:
        """SQLite behind an exclusive lock file, or PostgreSQL shared with other replicas."""
        state = self.config.state
        store: StateStore
        if state.backend == "postgresql":
            pg = await PostgresStore.connect(state)  # waits for a database that is not up yet
            pg.on_availability = self.telemetry.state_availability
            store = pg
        else:
            lock = StateLock(state.path)
            lock.acquire()
            stack.callback(lock.release)
            store = await Store.open(lock.state_path, synchronous=state.synchronous)
        stack.push_async_callback(store.close)
        return store

    async def _dispatchers(
        self, stack: AsyncExitStack, store: StateStore, signal_: SpoolSignal, acked: SpoolSignal
    ) -> list[Dispatcher]:
        names = [settings.name for settings in self.config.sinks]
        dispatchers = []
        for settings in self.config.sinks:
            sink = create_sink(settings, SinkContext(self.config.state.path.parent, self.telemetry))
            try:
                await sink.open()
            except SinkError as error:
                raise StartupError(f"sink {settings.name!r} cannot start: {error}") from None
            stack.push_async_callback(_shielded(sink.close))
            dispatchers.append(
                Dispatcher(settings, sink, store, self.telemetry, signal_, all_sinks=names, on_ack=acked.notify)
            )
        return dispatchers

    def _pollers(
        self,
        session: aiohttp.ClientSession,
        files_session: aiohttp.ClientSession,
        store: StateStore,
        signal_: SpoolSignal,
        gate: SpoolGate,
        *,
        builder: PageBuilder,
    ) -> list[Poller]:
        pacers = PacerRegistry()
        pages = PageGate()  # every account's client: the process-wide limit on fetched pages
        pollers = []
        now = int(self.clock())
        for account in self.config.accounts:
            timeout = aiohttp.ClientTimeout(
                total=account.request_timeout_secs, sock_connect=account.connect_timeout_secs
            )
            auth = make_authenticator(account, session, timeout=timeout, ssl=tls_setting(account), proxy=account.proxy)
            client = MimecastClient(account, session, auth, pacers, self.telemetry, pages=pages)
            files = FileHost(account, files_session)
            for spec in StreamSpec.for_account(account):
                pollers.append(
                    Poller(
                        spec,
                        client,
                        store,
                        self.telemetry,
                        on_commit=signal_.notify,
                        before_fetch=gate.before_fetch,
                        once_until=now - account.lag_secs if self.once else None,
                        dedup_retention_secs=self.config.state.dedup_retention_secs,
                        clock=self.clock,
                        files=files,
                        builder=builder,
                    )
                )
        return pollers

    async def _supervise(self, store: StateStore) -> RunResult:
        results: dict[str, bool] = {}
        collection_done = anyio.Event()
        collection, delivery = anyio.CancelScope(), anyio.CancelScope()
        self._log.info(
            "collector_started",
            version=__version__,
            compiled=COMPILED,
            streams=[p.spec.name for p in self.pollers],
            sinks=[d.settings.name for d in self.dispatchers],
            mode="once" if self.once else "daemon",
        )

        async def collect() -> None:
            with collection:
                async with anyio.create_task_group() as tg:
                    for poller in self.pollers:
                        tg.start_soon(self._run_poller, poller, results)
            await self.ownership.release_all("stream")  # another replica may go on at once
            if not isinstance(self.ownership, SoleOwner):  # the spool is shared: drain what is there now
                last = None
                with anyio.move_on_after(5):  # a database that does not answer: drain until the grace ends
                    last = (await store.usage()).last_seq
                for dispatcher in self.dispatchers:
                    dispatcher.drain_through = last
            collection_done.set()  # dispatchers now drain what is spooled, then return

        async def stop_on_request() -> None:
            await self._stop_requested.wait()
            grace = self.config.service.shutdown_grace_secs
            self._log.info("shutdown_started", grace_secs=grace)
            self.notifier.notify("STOPPING=1")
            collection.cancel()
            delivery.deadline = anyio.current_time() + grace

        async with anyio.create_task_group() as outer:
            outer.start_soon(self.ownership.run)
            outer.start_soon(collect)
            outer.start_soon(stop_on_request)
            outer.start_soon(self.notifier.watchdog)
            if self.handle_signals:
                outer.start_soon(self._signals, delivery)
            if self._hangups is not None:  # SIGHUPs queued while starting are acted on now
                outer.start_soon(self._reopen_on_hangup, self._hangups)
            self.ready.set()
            with delivery:
                async with anyio.create_task_group() as tg:
                    for dispatcher in self.dispatchers:
                        deliver = functools.partial(dispatcher.run, until_drained=collection_done)
                        name = dispatcher.settings.name
                        tg.start_soon(
                            functools.partial(
                                self.ownership.owned,
                                "sink",
                                name,
                                deliver,
                                until=collection_done,
                                wind_down=dispatcher.wind_down,
                            )
                        )
            # Delivery can end before collection does: in once-mode on replicas, a sink another
            # replica holds is not this one's to drain, and the streams still go on to the end.
            await collection_done.wait()
            await self.ownership.leave()
            outer.cancel_scope.cancel()
        failed = sorted(name for name, ok in results.items() if not ok)
        self._summary(failed, drained=not delivery.cancel_called)
        return RunResult(EXIT_STREAM_FAILED if failed else EXIT_OK, failed)

    async def _run_poller(self, poller: Poller, results: dict[str, bool]) -> None:
        result = await self.ownership.owned("stream", poller.spec.name, poller.run)
        if result is not None:  # None: another replica runs it
            results[poller.spec.name] = result

    async def _signals(self, delivery: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            count = 0
            async for signum in received:
                count += 1
                if count == 1:
                    self._log.info("signal_received", signal=signal.Signals(signum).name)
                    self.request_stop()
                else:
                    self._log.warning("second_signal_stopping_now", signal=signal.Signals(signum).name)
                    delivery.cancel()

    async def _reopen_on_hangup(self, hangups: AsyncIterator[signal.Signals]) -> None:
        async for _ in hangups:
            await self.reopen_files()

    async def reopen_files(self) -> list[str]:
        """Reopen the files the sinks keep open (after logrotate moved them); one log line; the names."""
        reopened: list[str] = []
        failed: dict[str, str] = {}
        for dispatcher in self.dispatchers:
            try:
                if await dispatcher.reopen():
                    reopened.append(dispatcher.settings.name)
            except Exception as exc:  # even a sink's bug: it opens the file again at its next batch; go on
                failed[dispatcher.settings.name] = redact(str(exc) if isinstance(exc, SinkError) else repr(exc))
        if failed:
            self._log.warning(
                "files_reopen_failed",
                signal="SIGHUP",
                sinks=reopened,
                failed=failed,
                hint="events stay spooled; the sink tries to open its file again before each batch",
            )
        else:
            self._log.info("files_reopened", signal="SIGHUP", sinks=reopened)
        return reopened

    def _summary(self, failed: list[str], *, drained: bool) -> None:
        t = self.telemetry
        positions: dict[str, Any] = {
            p.spec.name: iso(p.state.window_start) for p in self.pollers if p.state is not None
        }
        self._log.info(
            "collector_stopped",
            events_fetched=int(t.total(t.events_fetched)),
            events_spooled=int(t.total(t.events_spooled)),
            events_delivered={d.settings.name: d.delivered for d in self.dispatchers},
            positions=positions,
            failed_streams=failed,
            drained=drained,
            pid=os.getpid(),
        )
