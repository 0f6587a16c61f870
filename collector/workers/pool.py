"""Worker processes that turn a page's records into spool-ready events, so pages use every core.

Normalizing and serializing are most of the CPU an event costs (bench/stages.py), and they are pure:
records in, (key, time, JSON document, normalized) out. A :class:`PageBuilder` sends whole pages of a
windowed stream to a pool of ``[service] workers`` processes and gets the events back with their
documents already serialized; the poller commits them exactly as before, in one transaction. The
workers hold no state and no secrets, so killing one loses nothing: the page it had is built again
(by a fresh pool, or in this process when the pool breaks twice in a row), and nothing of it was
committed. They ignore SIGINT and SIGTERM (the collector's shutdown decides when they go) and exit
on their own within a second once the collector is gone, even after a SIGKILL of it.

Small pages stay in this process: below :data:`MIN_POOLED_RECORDS` the round trip costs more than
it saves, and the pool is only started by the first page big enough for it.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from collector.api.jsonbody import checked_page_records
from collector.logs import get_logger
from collector.logtypes import LOG_TYPES, EncodedEvent, LogType, SpoolEvent, build_event, serialize

if TYPE_CHECKING:  # a worker process never loads the metrics library
    from collector.service.telemetry import Telemetry

__all__ = ["MIN_POOLED_RECORDS", "PageBuilder", "tune_gc"]

#: Pages with fewer records are built in this process (pickling both ways costs ~3 us per event,
#: a round trip ~0.2 ms: worth it only when the page's own work is larger).
MIN_POOLED_RECORDS = 32
_PARENT_CHECK_SECS = 1.0
# A page of at most 1,000 records takes a worker tens of milliseconds: a worker silent this long is hung.
BUILD_LIMIT_SECS = 60.0
CLOSE_LIMIT_SECS = 5.0

Built = tuple[list[str], list[int], list[bytes], list[bool]]  # keys, times, documents, normalized
# A page goes to a worker as its records, or as the answer they were read from (see PageBuilder.build).
Task = Callable[[str, Sequence[Any] | bytes, str, int], Built]


def tune_gc() -> None:
    """Fewer, cheaper cyclic-GC passes for a process that builds and drops ~15 dicts per event.

    Events die by reference counting; the cyclic collector only finds work in aiohttp's and the
    loop's occasional cycles. Freezing what startup built keeps full passes from re-walking the
    imported modules, and a larger first threshold stops a pass every ~50 events (bench/throughput:
    about 10% less CPU per event; peak RSS unchanged, bench/memory).
    """
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)  # older generations: the default ratios, so cycles still go


def build_page(log_type_name: str, page: Sequence[Any] | bytes, account: str, fallback_time: int) -> Built:
    """In a worker: the page's events as four lists (cheaper to pickle than one tuple per event)."""
    log_type = LOG_TYPES[log_type_name]
    records = checked_page_records(page, log_type.array_key) if isinstance(page, bytes) else page
    keys: list[str] = []
    times: list[int] = []
    docs: list[bytes] = []
    normalized: list[bool] = []
    for record in records:
        event = build_event(log_type, record, account, fallback_time)
        keys.append(event.key)
        times.append(event.time)
        docs.append(serialize(event.doc))
        normalized.append(event.normalized)
    return keys, times, docs, normalized


def _processes_of(pool: ProcessPoolExecutor) -> list[BaseProcess]:
    # The pool's own table of its processes (private, but the only handle on them it keeps).
    return list((pool._processes or {}).values())


def _join(processes: list[BaseProcess], limit_secs: float) -> None:
    deadline = time.monotonic() + limit_secs
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))


def _kill(processes: list[BaseProcess]) -> None:
    for process in processes:
        if process.is_alive():
            process.kill()
        process.join(timeout=1.0)


def _worker_started(parent: int) -> None:
    # Ctrl-C reaches the whole process group and systemd's SIGTERM the whole cgroup: the collector
    # drains on them and still needs its workers for the pages in flight.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True).start()
    tune_gc()


def _exit_with_parent(parent: int) -> None:
    """A SIGKILLed collector never shuts its pool down, and its workers would wait on their task
    queue forever (they hold its write end too): leave as soon as the parent is gone."""
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK_SECS)
    os._exit(0)


class PageBuilder:
    """Builds a windowed page's events, in the worker pool when it has one and the page is big enough."""

    def __init__(
        self,
        workers: int,
        telemetry: Telemetry | None = None,
        *,
        task: Task | None = None,
        build_limit_secs: float = BUILD_LIMIT_SECS,
    ) -> None:
        self.workers = workers
        self._build_limit_secs = build_limit_secs
        self._telemetry = telemetry
        self._task: Task = task or build_page  # what a worker runs: importable by name in a fresh process
        self._pool: ProcessPoolExecutor | None = None
        self._log: Any = get_logger()
        self.restarts = 0  # pools replaced after a worker died

    async def build(
        self, log_type: LogType, records: Sequence[Any], account: str, fallback_time: int, *, body: bytes | None = None
    ) -> list[SpoolEvent]:
        """The events of ``records``. ``body``: the checked API answer they were read from; a worker
        is then sent those bytes and reads the records again, instead of receiving them pickled (on
        this process's feeder thread, holding the event loop's GIL)."""
        # Workers find a log type by name: a variant built at runtime has no name of its own there.
        if self.workers > 0 and len(records) >= MIN_POOLED_RECORDS and LOG_TYPES.get(log_type.name) is log_type:
            page: Sequence[Any] | bytes = records if body is None else body
            for attempt in (1, 2):
                pool = self._running_pool()
                try:
                    work = asyncio.get_running_loop().run_in_executor(
                        pool, self._task, log_type.name, page, account, fallback_time
                    )
                    # Shielded: a cancelled poller must not cancel the pool's future. When a worker dies,
                    # Python 3.11's pool fails every pending future and crashes on a cancelled one
                    # (InvalidStateError in its manager thread), after which it never answers again.
                    built = await asyncio.wait_for(asyncio.shield(work), self._build_limit_secs)
                except (BrokenProcessPool, TimeoutError) as why:
                    self._replace(pool, attempt, why)
                    continue
                except Exception as exc:  # the records are at hand: build them here instead
                    if body is None:
                        raise
                    self._log.warning("worker_page_failed", error=f"{type(exc).__name__}: {exc}"[:300])
                    break
                keys, times, docs, normalized = built
                return [EncodedEvent(k, t, d, n) for k, t, d, n in zip(keys, times, docs, normalized, strict=True)]
        # Here: no workers, a small page, or twice in a row a worker died on this page (killed, out of memory).
        return [build_event(log_type, r, account, fallback_time) for r in records]

    async def close(self) -> None:
        """Let the workers finish what they have, for at most CLOSE_LIMIT_SECS, then kill what is left."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = _processes_of(pool)
        pool.shutdown(wait=False)  # never wait=True: a pool whose manager thread died would never return
        await asyncio.to_thread(_join, processes, CLOSE_LIMIT_SECS)
        _kill(processes)
        if self._telemetry is not None:
            self._telemetry.workers.set(0)

    def _running_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),  # fork would copy the loop's threads' locks
                initializer=_worker_started,
                initargs=(os.getpid(),),
            )
            self._log.info("workers_started", workers=self.workers)
            if self._telemetry is not None:
                self._telemetry.workers.set(self.workers)
        return self._pool

    def _replace(self, broken: ProcessPoolExecutor, attempt: int, why: BaseException) -> None:
        if self._pool is broken:
            self._pool = None
            self.restarts += 1
            _kill(_processes_of(broken))  # a hung worker too: its page is built again, elsewhere
            broken.shutdown(wait=False)
            reason = "no answer in time" if isinstance(why, TimeoutError) else "a worker died"
            self._log.warning(
                "worker_lost", reason=reason, workers=self.workers, attempt=attempt, restarts=self.restarts
            )
            if self._telemetry is not None:
                self._telemetry.worker_restarts.inc()
