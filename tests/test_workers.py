"""Worker processes (collector/workers): real spawned processes, real signals.

What a worker builds is byte for byte what the event loop would have built; a worker that dies costs
the page a second try, never the page; a page that kills every worker is built in the collector;
workers leave when the collector is SIGKILLed. Whole runs with workers on (SIGTERM, SIGKILL loops,
outages) are the crash and reliability suites: tests/helpers.write_config turns workers on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.api.answers import parse_answer
from collector.config.model import AUTO_WORKERS_MAX, ServiceConfig
from collector.logtypes import LOG_TYPES, CursorKind, EncodedEvent, LogType, SpoolEvent, build_event, spool_bytes
from collector.service.telemetry import Telemetry
from collector.simulator.data import GENERATORS, generate
from collector.workers import MIN_POOLED_RECORDS, PageBuilder
from collector.workers.pool import Built
from tests.helpers import delivered_ids, expected_ids, seed, start_collector, wait_for_log_event, write_config

NOW = 1_760_000_000
WINDOWED = [lt for lt in LOG_TYPES.values() if lt.cursor_kind is CursorKind.WINDOWED and lt.name in GENERATORS]


def page_of(name: str, count: int = 80) -> list[Any]:
    records: list[Any] = [r.record for r in generate(name, count, start=NOW - 86400, end=NOW - 60, seed=7)]
    # What a hostile answer can hold: a record that is not an object, one without its time field.
    records.append("not an object")
    records.append({k: v for k, v in records[0].items() if k != LOG_TYPES[name].time_field})
    return records


def as_spooled(events: Sequence[SpoolEvent]) -> list[tuple[str, int, bytes, bool]]:
    return [(e.key, e.time, spool_bytes(e), e.normalized) for e in events]


def worker_pids(parent: int | None = None) -> set[int]:
    """The children of ``parent`` (this process by default) that are multiprocessing workers, from /proc."""
    return {pid for pid in _children(parent or os.getpid()) if b"spawn_main" in _cmdline(pid)}


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.update(int(p) for p in (task / "children").read_text().split())
        except OSError:  # a thread that ended meanwhile
            continue
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for whoever adopted it to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def die_in_worker(log_type_name: str, records: Sequence[Any] | bytes, account: str, fallback_time: int) -> Built:
    """A task that kills the worker running it, as an out-of-memory kill would."""
    os._exit(1)


def hang_in_worker(log_type_name: str, records: Sequence[Any] | bytes, account: str, fallback_time: int) -> Built:
    """A task that never returns, as a worker stuck in a pathological record would."""
    time.sleep(3600)
    raise AssertionError("unreachable")


async def test_pooled_pages_are_what_the_loop_would_build() -> None:
    builder = PageBuilder(1)
    try:
        for log_type in WINDOWED:
            records = page_of(log_type.name)
            pooled = await builder.build(log_type, records, "acme", NOW)
            assert {type(e) for e in pooled} == {EncodedEvent}, log_type.name
            here = [build_event(log_type, r, "acme", NOW) for r in records]
            assert as_spooled(pooled) == as_spooled(here), log_type.name
            assert [e.normalized for e in pooled][-2:] == [False, False]  # kept raw, tagged, not dropped
    finally:
        await builder.close()
    assert builder.restarts == 0


def answer_of(log_type: LogType, records: list[Any]) -> bytes:
    """A page answer as the API sends it, holding ``records`` (no array key: ``data`` holds them)."""
    data: list[Any] = records if log_type.array_key is None else [{log_type.array_key: records}]
    return orjson.dumps({"meta": {"status": 200, "pagination": {"next": "t2"}}, "data": data, "fail": []})


async def test_a_page_sent_as_its_answer_is_what_the_loop_would_build() -> None:
    """The worker reads the records again from the answer's bytes: the same events as the loop builds
    from the records the client read, also from a body only the lenient reader takes (invalid UTF-8)."""
    builder = PageBuilder(1)
    try:
        for log_type in WINDOWED:
            body = answer_of(log_type, page_of(log_type.name))
            bodies = [body, body.replace(b'"not an object"', b'"not \xff an object"')]
            for raw in bodies:
                page = parse_answer(200, raw, log_type.array_key, oauth2=False)
                assert page.body == raw
                pooled = await builder.build(log_type, page.records, "acme", NOW, body=page.body)
                assert {type(e) for e in pooled} == {EncodedEvent}, log_type.name
                here = [build_event(log_type, r, "acme", NOW) for r in page.records]
                assert as_spooled(pooled) == as_spooled(here), log_type.name
            assert "not \ufffd an object" in page.records  # the second body took the lenient path
    finally:
        await builder.close()
    assert builder.restarts == 0


def fail_on_answer(log_type_name: str, page: Sequence[Any] | bytes, account: str, fallback_time: int) -> Built:
    """A task that cannot read an answer it is sent (a body and log type that disagree)."""
    if isinstance(page, bytes):
        raise KeyError("data")
    raise AssertionError("only answers are sent here")


async def test_an_answer_a_worker_cannot_read_is_built_here_from_its_records() -> None:
    log_type = LOG_TYPES["ttp_url"]
    page = parse_answer(200, answer_of(log_type, page_of(log_type.name)), log_type.array_key, oauth2=False)
    builder = PageBuilder(1, task=fail_on_answer)
    try:
        built = await builder.build(log_type, page.records, "acme", NOW, body=page.body)
    finally:
        await builder.close()
    assert all(type(e) is not EncodedEvent for e in built)  # built in this process
    assert as_spooled(built) == as_spooled([build_event(log_type, r, "acme", NOW) for r in page.records])
    assert builder.restarts == 0  # the worker is fine; only that page was not


async def test_small_pages_and_no_workers_stay_in_this_process() -> None:
    log_type = LOG_TYPES["ttp_url"]
    small = page_of("ttp_url", MIN_POOLED_RECORDS - 3)[: MIN_POOLED_RECORDS - 1]
    builder, none = PageBuilder(1), PageBuilder(0)
    try:
        assert all(type(e) is not EncodedEvent for e in await builder.build(log_type, small, "acme", NOW))
        assert all(type(e) is not EncodedEvent for e in await none.build(log_type, page_of("ttp_url"), "acme", NOW))
        assert worker_pids() == set()  # no pool was started for either
    finally:
        await builder.close()


async def test_a_killed_worker_costs_a_second_try_not_the_page() -> None:
    log_type = LOG_TYPES["ttp_impersonation"]
    records = page_of(log_type.name)
    telemetry = Telemetry()
    builder = PageBuilder(1, telemetry)
    try:
        await builder.build(log_type, records, "acme", NOW)
        (pid,) = worker_pids()
        os.kill(pid, signal.SIGKILL)
        await _until(lambda: not alive(pid))
        rebuilt = await builder.build(log_type, records, "acme", NOW)
        assert as_spooled(rebuilt) == as_spooled([build_event(log_type, r, "acme", NOW) for r in records])
        assert {type(e) for e in rebuilt} == {EncodedEvent}  # by the new pool, not here
        assert builder.restarts == 1
        assert telemetry.worker_restarts._value.get() == 1
        assert pid not in worker_pids()
    finally:
        await builder.close()
    assert telemetry.workers._value.get() == 0


async def test_a_page_that_kills_every_worker_is_built_in_the_collector() -> None:
    log_type = LOG_TYPES["archive_search"]
    records = page_of(log_type.name)
    builder = PageBuilder(1, task=die_in_worker)
    try:
        built = await builder.build(log_type, records, "acme", NOW)
    finally:
        await builder.close()
    assert as_spooled(built) == as_spooled([build_event(log_type, r, "acme", NOW) for r in records])
    assert builder.restarts == 2  # two pools lost, then built here: the stream goes on


async def test_a_hung_worker_is_killed_and_its_page_built_in_the_collector() -> None:
    log_type = LOG_TYPES["ttp_url"]
    records = page_of(log_type.name)
    builder = PageBuilder(1, task=hang_in_worker, build_limit_secs=1.0)
    try:
        built = await builder.build(log_type, records, "acme", NOW)
    finally:
        await builder.close()
    assert as_spooled(built) == as_spooled([build_event(log_type, r, "acme", NOW) for r in records])
    assert builder.restarts == 2
    assert worker_pids() == set()  # both hung workers were killed, not left behind


async def test_a_worker_dying_after_a_cancelled_build_does_not_wedge_the_pool() -> None:
    """A poller cancelled mid-build (shutdown, a lease given up), then its worker dies: Python 3.11's
    pool would crash on the cancelled future and never answer again; the next page must still be built."""
    log_type = LOG_TYPES["dlp"]
    records = page_of(log_type.name) * 200  # long enough to be cancelled while a worker has it
    builder = PageBuilder(1)
    try:
        first = asyncio.ensure_future(builder.build(log_type, records, "acme", NOW))
        await _until(lambda: bool(worker_pids()))
        await asyncio.sleep(0.2)
        first.cancel()
        (pid,) = worker_pids()
        os.kill(pid, signal.SIGKILL)
        small = page_of(log_type.name)
        rebuilt = await asyncio.wait_for(builder.build(log_type, small, "acme", NOW), 30)
        assert as_spooled(rebuilt) == as_spooled([build_event(log_type, r, "acme", NOW) for r in small])
    finally:
        await builder.close()


async def test_workers_leave_when_the_collector_is_sigkilled(tmp_path: Path) -> None:
    script = tmp_path / "holder.py"
    script.write_text(
        "import asyncio, sys\n"
        "from collector.logtypes import LOG_TYPES\n"
        "from collector.workers import PageBuilder\n"
        "from tests.test_workers import page_of\n"
        "async def main():\n"
        "    builder = PageBuilder(2)\n"
        "    pages = [builder.build(LOG_TYPES['ttp_url'], page_of('ttp_url'), 'a', 0) for _ in range(4)]\n"
        "    await asyncio.gather(*pages)\n"
        "    print('built', flush=True)\n"
        "    await asyncio.sleep(600)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    output = tmp_path / "holder.out"
    with output.open("wb") as handle:  # a file, not a pipe: a worker that stayed would hold a pipe open
        holder = await asyncio.create_subprocess_exec(sys.executable, str(script), stdout=handle, env=env)
    await _until(lambda: b"built\n" in output.read_bytes() or holder.returncode is not None, limit_secs=60)
    assert b"built\n" in output.read_bytes()
    workers = worker_pids(holder.pid)
    assert len(workers) >= 1
    holder.kill()
    await _until(lambda: not any(alive(pid) for pid in workers), limit_secs=10)
    await holder.wait()


async def test_sigterm_to_every_process_still_drains_and_loses_nothing(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    """systemd's default KillMode signals the whole cgroup: the workers ignore it, the collector drains."""
    sim = await make_sim(rate_limit=10, rate_window_ms=1000)
    records = seed(sim, 1500, days=2)
    config = write_config(tmp_path, sim.base_url, account={"page_size": 100}, sink={"batch_max_events": 40})
    out, log = tmp_path / "out", tmp_path / "collector.log"
    process = await start_collector(config, log)
    await wait_for_log_event(log, "workers_started")
    await asyncio.sleep(1.0)
    workers = worker_pids(process.pid)
    assert workers
    for pid in (*workers, process.pid):
        os.kill(pid, signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    await _until(lambda: not any(alive(pid) for pid in workers))
    assert b'"worker_lost"' not in log.read_bytes()  # they ignored the signal and were shut down
    final = await start_collector(config, log, "--once")
    assert await asyncio.wait_for(final.wait(), timeout=120) == 0
    assert sorted(delivered_ids(out)) == sorted(expected_ids(records))


@pytest.mark.parametrize(("workers", "expected"), [(0, 0), (3, 3)])
def test_workers_option_is_taken_as_given(workers: int, expected: int) -> None:
    assert ServiceConfig(workers=workers).worker_count == expected


def test_workers_default_to_the_cores_beyond_the_first() -> None:
    cores = len(os.sched_getaffinity(0))
    assert ServiceConfig().worker_count == max(0, min(AUTO_WORKERS_MAX, cores - 1))


async def _until(done: Callable[[], bool], *, limit_secs: float = 5.0) -> None:
    deadline = time.monotonic() + limit_secs
    while not done():
        assert time.monotonic() < deadline, "not within the limit"
        await asyncio.sleep(0.05)
