"""Running unattended: /metrics counters move, /readyz follows the API, sd_notify speaks to systemd."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson

from collector.config import load_config
from collector.logtypes import DEFAULT_STREAMS
from collector.service.app import Collector
from collector.service.status import status_report
from collector.simulator import FakeMimecast
from collector.state.store import Store
from tests.helpers import delivered_ids, expected_ids, seed, start_collector, table, write_config

FAST_FAILURE = {"poll_interval_secs": 1, "request_timeout_secs": 1, "retry_max_secs": 1, "connect_timeout_secs": 1}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if match and ",".join(sorted((match.group(1) or "").split(","))) == wanted:
            return float(match.group(2))
    return 0.0


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


async def readyz(http: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]]:
    status, body = await get(http, f"{base}/readyz")
    return status, orjson.loads(body)


async def test_metrics_move_and_readiness_follows_the_api(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """Counters grow as events flow; /readyz goes 503 while the API is down and 200 once it is back."""
    sim: FakeMimecast = await make_sim(rate_limit=6, rate_window_ms=1000)
    records = seed(sim, 600, days=1)
    config_path = write_config(tmp_path, sim.base_url, account={"page_size": 50, **FAST_FAILURE})
    config_path.write_text(config_path.read_text().replace("[service]", '[service]\nlisten = "127.0.0.1:0"'))
    collector = Collector(load_config(config_path), handle_signals=False)
    port = int(sim.base_url.rsplit(":", 1)[1])

    async with anyio.create_task_group() as tg, aiohttp.ClientSession() as http:
        tg.start_soon(collector.run)
        with anyio.fail_after(10):
            await collector.ready.wait()
        assert collector.health is not None
        base = f"http://{collector.health.address}"
        assert await get(http, f"{base}/healthz") == (200, '{"status":"ok"}')

        with anyio.fail_after(20):
            while (await get(http, f"{base}/readyz"))[0] != 200:  # noqa: ASYNC110 - polling an endpoint
                await anyio.sleep(0.2)
        first = (await get(http, f"{base}/metrics"))[1]
        await anyio.sleep(1.5)
        second = (await get(http, f"{base}/metrics"))[1]
        url = {"account": "acme", "log_type": "ttp_url"}
        assert metric(second, "mimecast_events_fetched_total", **url) > metric(
            first, "mimecast_events_fetched_total", **url
        )
        assert metric(second, "mimecast_events_delivered_total", sink="local") > 0
        assert (
            metric(second, "mimecast_api_calls_total", account="acme", endpoint="/api/ttp/url/get-logs", status="200")
            > 0
        )
        assert "mimecast_window_lag_seconds" in second
        assert "mimecast_spool_backlog_events" in second

        with anyio.fail_after(60):  # let the backlog finish, so "ready" below is about the API only
            while len(delivered_ids(tmp_path / "out")) < 600 * len(DEFAULT_STREAMS):  # noqa: ASYNC110
                await anyio.sleep(0.2)
        await sim.stop()
        with anyio.fail_after(30):  # every stream goes stale, each on its own clock
            status, report = await readyz(http, base)
            while any(stream["ready"] for stream in report["streams"].values()):
                await anyio.sleep(0.25)
                status, report = await readyz(http, base)
        assert status == 503
        assert report["ready"] is False
        assert all(s["why"] for s in report["streams"].values())

        await sim.start(port=port)
        with anyio.fail_after(30):
            while (answer := await get(http, f"{base}/readyz"))[0] != 200:  # noqa: ASYNC110
                await anyio.sleep(0.25)
        assert orjson.loads(answer[1])["ready"] is True
        collector.request_stop()

    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids(records))


TEN_YEARS_MS = 10 * 365 * 86_400 * 1000


async def test_a_ten_year_reset_is_capped_logged_once_and_shown_as_waiting(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """A bucket that "refills in ten years": the stream keeps asking once per max_wait_secs, says so once,
    /readyz, /metrics and status show it waiting and why, and once the limit is lifted all arrives."""
    sim: FakeMimecast = await make_sim(rate_limit=2, rate_window_ms=TEN_YEARS_MS)
    records = seed(sim, 300, days=1)
    config_path = write_config(
        tmp_path, sim.base_url, account={"page_size": 50, "max_wait_secs": 1, "streams": ["ttp_url"], **FAST_FAILURE}
    )
    config_path.write_text(config_path.read_text().replace("[service]", '[service]\nlisten = "127.0.0.1:0"'))
    config = load_config(config_path)
    collector = Collector(config, handle_signals=False)

    async with anyio.create_task_group() as tg, aiohttp.ClientSession() as http:
        tg.start_soon(collector.run)
        with anyio.fail_after(10):
            await collector.ready.wait()
        assert collector.health is not None
        base = f"http://{collector.health.address}"
        with anyio.fail_after(30):  # the bucket is spent after two calls; then every answer asks for ten years
            stream = (await readyz(http, base))[1]["streams"]["acme/ttp_url"]
            while "waiting" not in stream:
                await anyio.sleep(0.05)
                stream = (await readyz(http, base))[1]["streams"]["acme/ttp_url"]
        metrics = (await get(http, f"{base}/metrics"))[1]
        with anyio.fail_after(30):
            while True:
                store = await Store.open(config.state.path, read_only=True)
                try:
                    report = await status_report(config, store, now=time.time())
                finally:
                    await store.close()
                if report["streams"][0]["state"] == "waiting":
                    break
                await anyio.sleep(0.05)
        sim.set_rate_limit(None)  # the server comes to its senses: no limit, no headers
        with anyio.fail_after(60):
            while len(delivered_ids(tmp_path / "out")) < 300:  # noqa: ASYNC110
                await anyio.sleep(0.2)
        with anyio.fail_after(10):
            while "waiting" in (await readyz(http, base))[1]["streams"]["acme/ttp_url"]:  # noqa: ASYNC110
                await anyio.sleep(0.1)
        collector.request_stop()

    assert "capped at max_wait_secs = 1" in stream["waiting"]["why"]
    assert stream["waiting"]["why"].startswith(("rate limited (HTTP 429)", "rate-limit budget used up"))
    assert metric(metrics, "mimecast_api_waits_capped_total", account="acme", endpoint="/api/ttp/url/get-logs") >= 1
    assert 'mimecast_stream_wait_seconds{account="acme",log_type="ttp_url",reason="' in metrics
    assert "capped at max_wait_secs = 1" in report["streams"][0]["waiting_reason"]
    lines = [orjson.loads(line) for line in log_buffer.getvalue().splitlines()]
    capped = [line for line in lines if line["event"] == "api_wait_capped"]
    assert [(line["path"], line["asked_secs"], line["used_secs"]) for line in capped] == [
        ("/api/ttp/url/get-logs", capped[0]["asked_secs"], 1.0)
    ]
    assert capped[0]["asked_secs"] > 9 * 365 * 86_400
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids({"ttp_url": records["ttp_url"]}))


async def test_systemd_notify_ready_watchdog_stopping(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """Under NOTIFY_SOCKET the daemon says READY=1, pings WATCHDOG=1, and says STOPPING=1 on SIGTERM."""
    sim: FakeMimecast = await make_sim()
    seed(sim, 100, days=1)
    config = write_config(tmp_path, sim.base_url)
    address = str(tmp_path / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.setblocking(False)
    messages: list[str] = []
    loop = asyncio.get_running_loop()

    async def until(state: str) -> None:
        while state not in messages:
            messages.extend((await loop.sock_recv(receiver, 4096)).decode().splitlines())

    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
    process = await start_collector(config, tmp_path / "collector.log", env=env)
    try:
        await asyncio.wait_for(until("READY=1"), timeout=20)
        before = messages.count("WATCHDOG=1")
        await asyncio.wait_for(until_count(messages, loop, receiver, "WATCHDOG=1", before + 2), timeout=5)
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(until("STOPPING=1"), timeout=20)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    finally:
        if process.returncode is None:
            process.kill()
        receiver.close()
    assert messages.index("READY=1") < messages.index("STOPPING=1")
    assert any(m.startswith("STATUS=") for m in messages)


async def until_count(
    messages: list[str], loop: asyncio.AbstractEventLoop, receiver: socket.socket, state: str, count: int
) -> None:
    while messages.count(state) < count:
        messages.extend((await loop.sock_recv(receiver, 4096)).decode().splitlines())


# --- SIGHUP: logrotate's postrotate --------------------------------------------------------------


def log_events(log: Path) -> list[dict[str, Any]]:
    """The JSON log lines the child has written so far."""
    return [orjson.loads(line) for line in log.read_bytes().splitlines() if line.startswith(b"{")]


async def until_logged(log: Path, event: str, process: asyncio.subprocess.Process) -> dict[str, Any]:
    """Wait (bounded) for the first log line of ``event``; fail early if the child has exited."""
    for _ in range(600):
        found = [entry for entry in log_events(log) if entry["event"] == event]
        if found:
            return found[0]
        assert process.returncode is None, f"exited {process.returncode} before {event}: {log.read_text()[-2000:]}"
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {event} within 60 s: {log.read_text()[-2000:]}")


def ids_in(path: Path) -> list[tuple[str, str]]:
    """(dataset, event.id) of every line of one file."""
    docs = [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
    return [(doc["event"]["dataset"], doc["event"]["id"]) for doc in docs]


async def test_sighup_reopens_the_file_sink_and_collection_goes_on(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    """Output moved away as logrotate does, SIGHUP: new events land in a new file, each event in one file once."""
    sim: FakeMimecast = await make_sim(rate_limit=6, rate_window_ms=1000)
    records = seed(sim, 600, days=1)
    config = write_config(tmp_path, sim.base_url, account={"page_size": 50})
    log = tmp_path / "collector.log"
    output, moved = tmp_path / "out" / "events.jsonl", tmp_path / "out" / "events.jsonl-20261201"
    process = await start_collector(config, log)
    try:
        for _ in range(600):  # some events written, far from all
            if output.exists() and output.stat().st_size:
                break
            await asyncio.sleep(0.05)
        output.rename(moved)
        process.send_signal(signal.SIGHUP)
        reopened = await until_logged(log, "files_reopened", process)
        for _ in range(1200):
            if len(ids_in(moved)) + len(ids_in(output) if output.exists() else []) >= 600 * len(DEFAULT_STREAMS):
                break
            assert process.returncode is None
            await asyncio.sleep(0.1)
        assert process.returncode is None  # still running after the SIGHUP and all the work
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    finally:
        if process.returncode is None:
            process.kill()
    assert (reopened["signal"], reopened["sinks"]) == ("SIGHUP", ["local"])
    before, after = ids_in(moved), ids_in(output)
    assert before  # some events before the rotation
    assert after  # and some after it
    assert len(before) + len(after) == 600 * len(DEFAULT_STREAMS)
    assert set(before) | set(after) == expected_ids(records)
    assert [entry["event"] for entry in log_events(log)].count("collector_stopped") == 1


async def test_sighup_during_run_once_is_harmless(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """`run --once` gets a SIGHUP mid-way: it reopens, finishes, delivers everything and exits 0."""
    sim: FakeMimecast = await make_sim(rate_limit=6, rate_window_ms=1000)
    records = seed(sim, 300, days=1)
    config = write_config(tmp_path, sim.base_url, account={"page_size": 50})
    log = tmp_path / "collector.log"
    process = await start_collector(config, log, "--once")
    try:
        await until_logged(log, "collector_started", process)
        process.send_signal(signal.SIGHUP)
        await until_logged(log, "files_reopened", process)
        assert await asyncio.wait_for(process.wait(), timeout=120) == 0
    finally:
        if process.returncode is None:
            process.kill()
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids(records))
    assert [entry["event"] for entry in log_events(log)].count("collector_stopped") == 1


async def test_sighup_while_shutting_down_does_not_kill(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """A SIGHUP during the shutdown grace (a sink still retrying) is handled; the collector stops cleanly."""
    sim: FakeMimecast = await make_sim()
    seed(sim, 100, days=1)
    down = table("sinks.down", {"type": "http", "url": "http://127.0.0.1:9/", "retry_max_secs": 1})
    config = write_config(tmp_path, sim.base_url, extra_tables=down)
    config.write_text(config.read_text().replace("shutdown_grace_secs = 10", "shutdown_grace_secs = 5"))
    log = tmp_path / "collector.log"
    process = await start_collector(config, log)
    try:
        await until_logged(log, "sink_delivery_failed", process)  # the "down" sink has a backlog to drain
        process.send_signal(signal.SIGTERM)
        await until_logged(log, "shutdown_started", process)
        process.send_signal(signal.SIGHUP)
        await until_logged(log, "files_reopened", process)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    finally:
        if process.returncode is None:
            process.kill()
    stopped = [entry for entry in log_events(log) if entry["event"] == "collector_stopped"]
    assert [entry["drained"] for entry in stopped] == [False]


async def test_failed_reopen_is_logged_and_the_events_wait_in_the_spool(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: Any
) -> None:
    """The sink's directory is gone at SIGHUP: one files_reopen_failed line; once it is back, nothing is missing."""
    sim: FakeMimecast = await make_sim(rate_limit=6, rate_window_ms=1000)
    records = seed(sim, 300, days=1)
    config = write_config(tmp_path, sim.base_url, account={"page_size": 50}, sink={"retry_max_secs": 1})
    collector = Collector(load_config(config), handle_signals=False)
    out, moved = tmp_path / "out", tmp_path / "out-old"
    async with anyio.create_task_group() as tg:
        tg.start_soon(collector.run)
        with anyio.fail_after(30):
            while not (out / "events.jsonl").exists():  # noqa: ASYNC110 - polling a file
                await anyio.sleep(0.05)
        out.rename(moved)
        out.write_text("a file where the directory was")
        assert await collector.reopen_files() == []
        out.unlink()
        with anyio.fail_after(60):
            everything = 300 * len(DEFAULT_STREAMS)
            while len(ids_in(moved / "events.jsonl")) + len(delivered_ids(out) if out.exists() else []) < everything:  # noqa: ASYNC110
                await anyio.sleep(0.1)
        collector.request_stop()
    failures = [orjson.loads(line) for line in log_buffer.getvalue().splitlines() if "files_reopen_failed" in line]
    assert [(f["sinks"], list(f["failed"])) for f in failures] == [([], ["local"])]
    assert failures[0]["failed"]["local"].startswith(f"cannot open {out / 'events.jsonl'}: ")
    delivered = ids_in(moved / "events.jsonl") + delivered_ids(out)
    assert sorted(delivered) == sorted(expected_ids(records))
