"""Shared test helpers: configs pointing at the simulator, seeded data, reading the file sink."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson
from yarl import URL

from collector.logtypes import DEFAULT_STREAMS, LOG_TYPES, build_event, record_key
from collector.simulator import FakeMimecast, SimRecord, SimSettings, generate
from collector.timeutil import iso

LOG_TYPE_NAMES = DEFAULT_STREAMS  # the windowed log types the simulator seeds by default
FIXTURES = Path(__file__).parent / "fixtures" / "mimecast"


def fixture_records(name: str) -> list[dict[str, Any]]:
    """The records of tests/fixtures/mimecast/<name>_page.json, or of the literal case table
    (tests/logtype_cases.py) for a log type without a fixture page."""
    page = FIXTURES / f"{name}_page.json"
    if not page.exists():
        from tests import logtype_cases  # noqa: PLC0415 - the case table imports nothing from here

        return logtype_cases.records(name)
    body = orjson.loads(page.read_bytes())
    records: list[dict[str, Any]] = body["data"][0][LOG_TYPES[name].array_key]
    return records


def fixture_event_doc(name: str, index: int = 0, **record_changes: Any) -> dict[str, Any]:
    """The ECS event of a fixture record, optionally with some raw record fields changed first."""
    record = {**copy.deepcopy(fixture_records(name)[index]), **record_changes}
    return build_event(LOG_TYPES[name], record, "acme", 0).doc


class MockResponse(aiohttp.ClientResponse):
    """For aioresponses: 0.7.9 builds responses without the ``stream_writer`` that aiohttp 3.14 requires."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


SIM = SimSettings()


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return orjson.dumps(str(value)).decode()


def table(name: str, values: dict[str, Any]) -> str:
    lines = [f"[{name}]"] + [f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


def account_options(base_url: str, auth: str = "hmac", sim: SimSettings = SIM, **extra: Any) -> dict[str, Any]:
    """Account options that authenticate against a simulator with ``sim`` credentials."""
    options: dict[str, Any] = {"base_url": base_url, "auth": auth}
    if auth == "hmac":
        options.update(access_key=sim.access_key, secret_key=sim.secret_key, app_id=sim.app_id, app_key=sim.app_key)
    else:
        options.update(client_id=sim.client_id, client_secret=sim.client_secret)
    options.update(start=iso(time.time() - 3 * 86400), poll_interval_secs=1, lag_secs=60)
    options.update(extra)
    return options


def write_config(
    directory: Path,
    base_url: str,
    *,
    auth: str = "hmac",
    account: dict[str, Any] | None = None,
    sink: dict[str, Any] | None = None,
    extra_tables: str = "",
    sim: SimSettings = SIM,
    state: Mapping[str, Any] | None = None,
) -> Path:
    """A complete config: one account ``acme`` on the simulator, one file sink ``local``.

    ``state``: the [state] table's options (the `state_options` fixture: either backend) instead of a
    SQLite file; `path` stays in the test's directory either way, for what sinks keep next to it."""
    body = table("state", {"path": str(directory / "state" / "collector.db"), **(state or {})})
    # One worker process whatever the machine's cores: every whole-run test (crash, kill loops, outages)
    # runs with pages built in a worker (pages of MIN_POOLED_RECORDS or more; smaller ones stay here).
    body += table("service", {"shutdown_grace_secs": 10, "workers": 1})
    body += table("accounts.acme", account_options(base_url, auth, sim, **(account or {})))
    body += table("sinks.local", {"type": "file", "path": str(directory / "out" / "events.jsonl"), **(sink or {})})
    body += extra_tables
    path = directory / "collector.toml"
    path.write_text(body)
    return path


def seed(sim: FakeMimecast, per_type: int, *, days: float = 2.0, seed: int = 0) -> dict[str, list[SimRecord]]:
    """``per_type`` records of each log type spread over the last ``days`` (ending 2 minutes ago)."""
    now = int(time.time())
    out = {}
    for name in LOG_TYPE_NAMES:
        records = generate(name, per_type, start=now - int(days * 86400), end=now - 120, seed=seed)
        sim.add(name, records)
        out[name] = records
    return out


def expected_ids(records: dict[str, list[SimRecord]]) -> set[tuple[str, str]]:
    """(dataset, event.id) of every seeded record: what the sink must hold, once each."""
    return {(f"mimecast.{name}", record_key(LOG_TYPES[name], r.record)) for name, recs in records.items() for r in recs}


def read_events(out_dir: Path) -> list[dict[str, Any]]:
    """Every JSON line in the file sink's directory (rotated files included), oldest file first."""
    files = sorted(out_dir.glob("events.jsonl*"), key=lambda p: (-_rotation_index(p), p.name))
    return [orjson.loads(line) for path in files for line in path.read_bytes().splitlines() if line]


def _rotation_index(path: Path) -> int:
    suffix = path.name.rsplit(".", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0


def delivered_ids(out_dir: Path) -> list[tuple[str, str]]:
    return [(e["event"]["dataset"], e["event"]["id"]) for e in read_events(out_dir)]


# --- the real entry point in child processes (the simulator keeps running on this loop) -----------


async def start_collector(
    config: Path, log: Path, *extra: str, env: Mapping[str, str] | None = None
) -> asyncio.subprocess.Process:
    """`mimecast-collector run` in a child process, JSON logs appended to ``log``."""
    with log.open("ab") as handle:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "collector",
            "run",
            "--config",
            str(config),
            "--log-format",
            "json",
            *extra,
            stdout=handle,
            stderr=handle,
            env=None if env is None else dict(env),
        )


async def wait_for_log_event(log: Path, event: str, *, limit_secs: float = 60) -> dict[str, Any]:
    """The first JSON log line of ``log`` whose event is ``event``, waiting for it to be written."""
    deadline = time.monotonic() + limit_secs
    while True:
        if log.exists():
            for line in log.read_bytes().splitlines():
                if line.startswith(b"{"):
                    entry: dict[str, Any] = orjson.loads(line)
                    if entry.get("event") == event:
                        return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"no {event!r} line in {log} within {limit_secs} s")
        await asyncio.sleep(0.05)


async def run_cli(
    *args: str, preexec_fn: Callable[[], None] | None = None, limit_secs: float = 120
) -> subprocess.CompletedProcess[str]:
    """`mimecast-collector ARGS` in a child process, to completion; output captured as text."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "collector",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=preexec_fn,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=limit_secs)
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())
