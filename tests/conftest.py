from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

import collector.sinks  # noqa: F401 - registers the sink types load_config builds
from collector.config.model import StateConfig
from collector.config.options import Secret
from collector.logs import configure_logging
from collector.simulator import FakeMimecast, SimSettings
from collector.sinks.file import FileSink, FileSinkSettings
from collector.state.base import StateStore
from collector.state.pg_store import PostgresStore
from collector.state.store import Store
from tests.pg_server import PgServer

FIXTURES = Path(__file__).parent / "fixtures" / "mimecast"


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    """Logs of the code under test go to a throwaway buffer unless a test asks for them."""
    configure_logging("info", "json", io.StringIO())


@pytest.fixture
def log_buffer() -> io.StringIO:
    """Structured log lines of the code under test, at debug level, for assertions."""
    buffer = io.StringIO()
    configure_logging("debug", "json", buffer)
    return buffer


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for tests that drive the client or auth code directly."""
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def mock_http() -> Iterator[aioresponses]:
    """aioresponses: canned answers for the client's edge cases."""
    with aioresponses() as m:
        yield m


@pytest.fixture
async def make_sim() -> AsyncIterator[Callable[..., Any]]:
    """Factory: start a simulator on loopback with the given settings; stopped after the test."""
    started: list[FakeMimecast] = []

    async def make(**settings: Any) -> FakeMimecast:
        sim = FakeMimecast(SimSettings(**settings))
        await sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.stop()


@pytest.fixture
async def make_file_sink(tmp_path: Path) -> AsyncIterator[Callable[..., FileSink]]:
    """Factory: a FileSink writing to tmp_path/out/events.jsonl by default; all closed after the test."""
    made: list[FileSink] = []

    def make(**options: Any) -> FileSink:
        settings: dict[str, Any] = {"name": "local", "type": "file", "path": tmp_path / "out" / "events.jsonl"}
        settings.update(options)
        sink = FileSink(FileSinkSettings(**settings))
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.close()


# --- state backends -----------------------------------------------------------------------------------
# Tests of what the store guarantees run on both backends: they take `state_store` (or `open_state`)
# and are parametrized by `backend`. PostgreSQL is one throwaway cluster per test session, started on
# first use; each test gets a schema of its own.

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def own_pg_server() -> Iterator[PgServer]:
    """A cluster of this test's own, for tests that stop or restart it."""
    server = PgServer()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def pg_state_options(pg_server: PgServer) -> dict[str, Any]:
    """[state] options for a PostgreSQL schema of this test's own."""
    return {
        "backend": "postgresql",
        "url": pg_server.url,
        "password": pg_server.password,
        "schema": f"t_{uuid.uuid4().hex[:12]}",
    }


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def state_options(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """[state] options for `backend`: a file in tmp_path, or a schema of this test's own."""
    if backend == "sqlite":
        return {"path": str(tmp_path / "state" / "collector.db")}
    options: dict[str, Any] = request.getfixturevalue("pg_state_options")
    return options


@pytest.fixture
async def open_state(backend: str, state_options: dict[str, Any]) -> AsyncIterator[Callable[[], Awaitable[StateStore]]]:
    """Factory: open (again) this test's state on `backend`, the one `state_options` names (so also
    what a collector run on those options wrote); every store opened is closed after the test."""
    opened: list[StateStore] = []

    async def open_() -> StateStore:
        store: StateStore
        if backend == "sqlite":
            store = await Store.open(Path(state_options["path"]))
        else:
            store = await PostgresStore.connect(pg_state_config(state_options))
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


@pytest.fixture
async def state_store(open_state: Callable[[], Awaitable[StateStore]]) -> StateStore:
    """A fresh store on each backend."""
    return await open_state()


def pg_state_config(options: dict[str, Any], **overrides: Any) -> StateConfig:
    """The StateConfig of `pg_state_options` (a replica's node and lease_secs as ``overrides``)."""
    return StateConfig(
        backend="postgresql",
        url=options["url"],
        password=Secret(options["password"]),
        schema=options["schema"],
        **overrides,
    )


@pytest.fixture
async def open_replica(pg_state_options: dict[str, Any]) -> AsyncIterator[Callable[..., Awaitable[PostgresStore]]]:
    """Factory: ``await open_replica(node, lease_secs=3.0, fencing=True)``, a replica's store on this
    test's schema as the collector runs it (leases then kept by the test); closed afterwards."""
    opened: list[PostgresStore] = []

    async def open_(node: str, *, lease_secs: float = 3.0, fencing: bool = True) -> PostgresStore:
        store = await PostgresStore.connect(pg_state_config(pg_state_options, node=node, lease_secs=lease_secs))
        store.fencing = fencing
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()
