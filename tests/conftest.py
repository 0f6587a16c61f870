from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

import collector.sinks  # noqa: F401 - registers the sink types load_config builds
from collector.logs import configure_logging
from collector.simulator import FakeMimecast, SimSettings
from collector.sinks.file import FileSink, FileSinkSettings

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
