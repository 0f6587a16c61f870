"""The process-wide limit on fetched, uncommitted pages (collector/api/inflight.py): against the
loopback API, a stream past the limit waits before its request is sent, a commit lets it go, and a
stream's own next call never waits for its own permit."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import anyio
import pytest

from collector.api.auth import HmacAuth
from collector.api.client import MimecastClient
from collector.api.inflight import PageGate
from collector.api.pacer import PacerRegistry
from collector.config.options import Secret
from collector.service.telemetry import Telemetry
from collector.simulator import FakeMimecast, generate
from collector.timeutil import api_date
from tests.test_client import hmac_account

PATH = "/api/ttp/url/get-logs"


@pytest.fixture
async def sim(make_sim: Callable[..., Any]) -> FakeMimecast:
    server: FakeMimecast = await make_sim()
    now = int(time.time())
    server.add("ttp_url", generate("ttp_url", 40, start=now - 3600, end=now - 120, seed=3))
    return server


def client_for(
    sim: FakeMimecast, session: aiohttp.ClientSession, gate: PageGate, pacers: PacerRegistry
) -> MimecastClient:
    s = sim.settings
    account = hmac_account(
        base_url=sim.base_url,
        access_key=Secret(s.access_key),
        secret_key=Secret(s.secret_key),
        app_id=s.app_id,
        app_key=Secret(s.app_key),
    )
    auth = HmacAuth(s.access_key, s.secret_key, s.app_id, s.app_key)
    return MimecastClient(account, session, auth, pacers, Telemetry(), pages=gate, rng=random.Random(1))


async def fetch(client: MimecastClient, stream: str) -> int:
    now = int(time.time())
    data = {"from": api_date(now - 7200), "to": api_date(now), "oldestFirst": True}
    page = await client.fetch_page(stream, PATH, "clickLogs", data, page_size=10, page_token=None)
    return len(page.records)


async def test_a_stream_past_the_limit_sends_nothing_until_a_page_is_committed(
    sim: FakeMimecast, session: aiohttp.ClientSession
) -> None:
    gate = PageGate(limit=1)
    pacers = PacerRegistry()
    first, second = client_for(sim, session, gate, pacers), client_for(sim, session, gate, pacers)
    assert await fetch(first, "acme/ttp_url") == 10
    assert gate.held == 1

    with anyio.move_on_after(1.0) as waited:
        await fetch(second, "other/ttp_url")
    assert waited.cancelled_caught  # held back by the gate ...
    assert sim.stats.calls_to(PATH) == 1  # ... before its request went out
    assert gate.held == 1

    first.page_done("acme/ttp_url")  # the first stream committed its page
    assert gate.held == 0
    assert await fetch(second, "other/ttp_url") == 10
    assert sim.stats.calls_to(PATH) == 2
    assert gate.held == 1


async def test_a_streams_next_call_does_not_wait_for_its_own_permit(
    sim: FakeMimecast, session: aiohttp.ClientSession
) -> None:
    gate = PageGate(limit=1)
    client = client_for(sim, session, gate, PacerRegistry())
    with anyio.fail_after(10):
        for _ in range(3):  # e.g. a listing, then more calls before a commit
            assert await fetch(client, "acme/siem_cg.receipt") == 10
    assert gate.held == 1
    client.page_done("acme/siem_cg.receipt")
    client.page_done("acme/siem_cg.receipt")  # twice is harmless: it holds none any more
    assert gate.held == 0


async def test_a_failed_call_holds_no_permit(make_sim: Callable[..., Any], session: aiohttp.ClientSession) -> None:
    """A call that fails fatally (here: a bad signature, 401) gives its permit back at once."""
    sim: FakeMimecast = await make_sim()
    gate = PageGate(limit=1)
    client = client_for(sim, session, gate, PacerRegistry())
    client._auth = HmacAuth("wrong", "d3Jvbmc=", "app", "key")
    with pytest.raises(Exception, match=r"(?i)auth|401|sign"):
        await fetch(client, "acme/ttp_url")
    assert gate.held == 0


async def test_cancelled_while_waiting_takes_no_permit() -> None:
    gate = PageGate(limit=1)
    await gate.enter("a")
    with anyio.move_on_after(0.05):
        await gate.enter("b")
    gate.leave("a")
    assert gate.held == 0
    with anyio.fail_after(1):  # both permits paths free again: b's cancelled wait left nothing behind
        await gate.enter("b")
        gate.leave("b")
        await gate.enter("c")
    assert gate.held == 1
