"""The API client against hostile answers from real loopback servers: redirects, huge and endless
bodies, gzip bombs, encodings that lie. Each ends as a classified ApiError, within bounded bytes."""

from __future__ import annotations

import asyncio
import random
import signal
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
from aiohttp import web

from collector.api.auth import HmacAuth, OAuth2Auth
from collector.api.client import MimecastClient, Page
from collector.api.errors import Action, ApiError
from collector.config.model import AccountConfig
from collector.config.options import Secret
from collector.service.telemetry import Telemetry
from collector.state.store import Store
from tests.helpers import start_collector, write_config
from tests.rawhttp import Answer, RawHttpServer, RawRequest, fixed, response_head
from tests.test_client import (
    ACCESS_KEY,
    APP_ID,
    APP_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    FILTERS,
    KEY,
    PATH,
    RECORDS,
    SECRET_B64,
    Sleeper,
    fast_pacers,
    hmac_account,
    page_body,
)

CAP = 1 << 20
ZLIB_BAD_HEADER = "while decompressing data: incorrect header check"
MIB = 1 << 20
Serve = Callable[[Answer], Awaitable[RawHttpServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Factory: a RawHttpServer on loopback answering with ``answer``; stopped after the test."""
    started: list[RawHttpServer] = []

    async def start(answer: Answer) -> RawHttpServer:
        server = await RawHttpServer(answer).start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


def client(session: aiohttp.ClientSession, account: AccountConfig) -> MimecastClient:
    if account.auth == "oauth2":
        auth: HmacAuth | OAuth2Auth = OAuth2Auth(
            account.url, CLIENT_ID, CLIENT_SECRET, session, timeout=aiohttp.ClientTimeout(total=10)
        )
    else:
        auth = HmacAuth(ACCESS_KEY, SECRET_B64, APP_ID, APP_KEY)
    pacers = fast_pacers(account, PATH)
    return MimecastClient(account, session, auth, pacers, Telemetry(), rng=random.Random(1), sleep=Sleeper())


async def fetch(client: MimecastClient, *, page_size: int = 100, token: str | None = None) -> Page:
    with anyio.fail_after(60):  # a client that reads a huge body to the end fails here, not hangs
        return await client.fetch_page("ttp_url", PATH, KEY, FILTERS, page_size=page_size, page_token=token)


def page_sizes(server: RawHttpServer) -> list[int]:
    return [orjson.loads(r.body)["meta"]["pagination"]["pageSize"] for r in server.requests]


def ok_page(records: list[Any] = RECORDS) -> bytes:
    body = page_body(records)
    return response_head(200, {"Content-Type": "application/json", "Content-Length": str(len(body))}) + body


def zeros(total: int) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        chunk = bytes(64 * 1024)
        for _ in range(total // len(chunk)):
            yield chunk

    return chunks()


# --- redirects -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_api_redirect_is_not_followed_and_names_the_host(
    session: aiohttp.ClientSession, serve: Serve, status: int
) -> None:
    """A redirect of a signed data call is fatal, names the Location's host, and the other host hears nothing."""
    elsewhere = await serve(fixed(ok_page()))
    target = f"{elsewhere.url}{PATH}"
    api = await serve(fixed(response_head(status, {"Location": target, "Content-Length": "0"})))

    with pytest.raises(ApiError) as caught:
        await fetch(client(session, hmac_account(base_url=api.url)))

    assert elsewhere.requests == []
    assert (caught.value.action, caught.value.status) == (Action.FATAL, status)
    assert f"redirect to {elsewhere.url.removeprefix('http://')}" in str(caught.value)
    assert caught.value.hint == "fix base_url/region to the API's real host"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_oauth2_token_redirect_is_not_followed(session: aiohttp.ClientSession, serve: Serve, status: int) -> None:
    """A redirect of the token request is fatal and the client secret never reaches the other host."""
    token = orjson.dumps({"access_token": "stolen", "expires_in": 1800})
    elsewhere = await serve(fixed(response_head(200, {"Content-Length": str(len(token))}) + token))
    api = await serve(fixed(response_head(status, {"Location": f"{elsewhere.url}/oauth/token", "Content-Length": "0"})))
    account = AccountConfig(
        name="globex", auth="oauth2", base_url=api.url, client_id=CLIENT_ID, client_secret=Secret(CLIENT_SECRET)
    )

    with pytest.raises(ApiError) as caught:
        await fetch(client(session, account))

    assert elsewhere.requests == []
    assert [r.path for r in api.requests] == ["/oauth/token"]
    assert caught.value.action is Action.FATAL
    assert f"OAuth2 token endpoint answered with a redirect to {elsewhere.url.removeprefix('http://')}" in str(
        caught.value
    )


# --- sizes -----------------------------------------------------------------------------------------


def declared_200_mb() -> Answer:
    async def answer(request: RawRequest) -> AsyncIterator[bytes]:
        yield response_head(200, {"Content-Type": "application/json", "Content-Length": str(200 * MIB)})
        async for chunk in zeros(200 * MIB):
            yield chunk

    return answer


async def test_declared_oversize_answer_is_refused_before_its_body(
    session: aiohttp.ClientSession, serve: Serve
) -> None:
    """A Content-Length over max_response_bytes is refused up front; the body is not read."""
    api = await serve(declared_200_mb())
    with pytest.raises(ApiError) as caught:
        await fetch(client(session, hmac_account(base_url=api.url, max_response_bytes=CAP)), page_size=1)
    assert str(caught.value) == (
        f"answer declares {200 * MIB} bytes, over max_response_bytes ({CAP}), even for a page of one record"
    )
    assert max(api.bytes_sent) < 16 * MIB  # what the sockets' buffers took before the client hung up


async def test_undeclared_200_mb_answer_stops_at_the_cap(session: aiohttp.ClientSession, serve: Serve) -> None:
    """A 200 MB body without Content-Length is read only up to max_response_bytes."""

    async def answer(request: RawRequest) -> AsyncIterator[bytes]:
        yield response_head(200, {"Content-Type": "application/json"})
        async for chunk in zeros(200 * MIB):
            yield chunk

    api = await serve(answer)
    with pytest.raises(ApiError) as caught:
        await fetch(client(session, hmac_account(base_url=api.url, max_response_bytes=CAP)), page_size=1)
    assert str(caught.value) == f"answer is longer than max_response_bytes ({CAP}), even for a page of one record"
    assert max(api.bytes_sent) < 16 * MIB


async def test_endless_chunked_answer_stops_at_the_cap(session: aiohttp.ClientSession, serve: Serve) -> None:
    """A chunked body that never ends is read only up to max_response_bytes."""

    async def answer(request: RawRequest) -> AsyncIterator[bytes]:
        yield response_head(200, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
        while True:
            yield chunk

    api = await serve(answer)
    with pytest.raises(ApiError) as caught:
        await fetch(client(session, hmac_account(base_url=api.url, max_response_bytes=CAP)), page_size=1)
    assert str(caught.value) == f"answer is longer than max_response_bytes ({CAP}), even for a page of one record"
    assert max(api.bytes_sent) < 16 * MIB


def gzip_of_zeros(mebibytes: int) -> bytes:
    """A valid gzip member of ``mebibytes`` MiB of zeros, ~1 KB per MiB, built without compressing it all."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    mib = bytes(MIB)
    block = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)  # the same bytes for every MiB
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(mib, crc)
    deflated = block * mebibytes + compressor.flush()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + deflated + struct.pack("<II", crc, (mebibytes * MIB) & 0xFFFFFFFF)


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """2 MB of gzip that inflates to 2 GiB."""
    return gzip_of_zeros(2048)


async def test_gzip_bomb_stops_inflating_at_the_cap(
    session: aiohttp.ClientSession, serve: Serve, gzip_bomb: bytes
) -> None:
    """A gzip answer is inflated only up to max_response_bytes."""
    head = response_head(
        200, {"Content-Type": "application/json", "Content-Encoding": "gzip", "Content-Length": str(len(gzip_bomb))}
    )
    api = await serve(fixed(head + gzip_bomb))
    cap = 4 * MIB  # above the compressed size: the inflated size is what must stop it
    with pytest.raises(ApiError) as caught:
        await fetch(client(session, hmac_account(base_url=api.url, max_response_bytes=cap)), page_size=1)
    assert str(caught.value) == f"answer inflates past max_response_bytes ({cap}), even for a page of one record"


async def test_oversize_answers_halve_the_page_size_down_to_one_then_fail_naming_the_option(
    session: aiohttp.ClientSession, serve: Serve
) -> None:
    """Each oversize answer is asked again with half the page size; at one record it is fatal, naming the option."""
    api = await serve(declared_200_mb())
    with pytest.raises(ApiError) as caught:
        await fetch(client(session, hmac_account(base_url=api.url, max_response_bytes=CAP)), page_size=100)
    assert page_sizes(api) == [100, 50, 25, 12, 6, 3, 1]
    assert (caught.value.action, caught.value.code) == (Action.FATAL, "answer_too_large")
    assert caught.value.hint == f"raise max_response_bytes (now {CAP}) for this account"


async def test_page_after_an_oversize_answer_keeps_the_token_and_reports_the_smaller_size(
    session: aiohttp.ClientSession, serve: Serve
) -> None:
    """After one oversize answer the same page token is asked for with half the size, and the page says so."""
    answers = [declared_200_mb(), fixed(ok_page())]

    async def answer(request: RawRequest) -> AsyncIterator[bytes]:
        async for chunk in answers.pop(0)(request):
            yield chunk

    api = await serve(answer)
    page = await fetch(client(session, hmac_account(base_url=api.url, max_response_bytes=CAP)), token="tok-7")
    assert (page, page.page_size) == (Page(RECORDS, None), 50)
    tokens = [orjson.loads(r.body)["meta"]["pagination"]["pageToken"] for r in api.requests]
    assert (page_sizes(api), tokens) == ([100, 50], ["tok-7", "tok-7"])


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", lambda b: zlib.compress(b, wbits=31)),
        ("deflate", lambda b: zlib.compress(b, wbits=15)),
        ("deflate", lambda b: zlib.compress(b, wbits=-15)),  # raw deflate, as some servers send it
        ("identity", lambda b: b),
    ],
)
async def test_compressed_answers_are_inflated(
    session: aiohttp.ClientSession, serve: Serve, encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    """gzip, both framings of deflate, and identity answers give the page."""
    body = encode(page_body(RECORDS))
    head = response_head(200, {"Content-Encoding": encoding, "Content-Length": str(len(body))})
    api = await serve(fixed(head + body))
    page = await fetch(client(session, hmac_account(base_url=api.url)))
    assert page == Page(RECORDS, None)
    assert api.requests[0].headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize(
    ("encoding", "body", "message"),
    [
        ("gzip", b'{"data": []}', f"answer is not valid gzip: Error -3 {ZLIB_BAD_HEADER}"),
        ("gzip", zlib.compress(b'{"data": []}' * 100, wbits=31)[:40], "answer's gzip stream is truncated"),
        ("br", b'{"data": []}', "answer has Content-Encoding 'br', which was not asked for"),
    ],
)
async def test_content_encoding_that_lies_is_a_retryable_error(
    session: aiohttp.ClientSession, serve: Serve, encoding: str, body: bytes, message: str
) -> None:
    """A body that does not match its Content-Encoding is retried, with a message saying why."""
    answers = [fixed(response_head(200, {"Content-Encoding": encoding, "Content-Length": str(len(body))}) + body)]
    answers.append(fixed(ok_page()))

    async def answer(request: RawRequest) -> AsyncIterator[bytes]:
        async for chunk in answers.pop(0)(request):
            yield chunk

    api = await serve(answer)
    errors: list[ApiError] = []

    async def on_retry(error: ApiError) -> None:
        errors.append(error)

    mimecast = client(session, hmac_account(base_url=api.url))
    with anyio.fail_after(30):
        page = await mimecast.fetch_page(
            "ttp_url", PATH, KEY, FILTERS, page_size=10, page_token=None, on_retry=on_retry
        )
    assert page == Page(RECORDS, None)
    assert [(e.action, str(e)) for e in errors] == [(Action.RETRY, message)]


# --- the real process --------------------------------------------------------------------------------


async def test_running_collector_facing_deep_nesting_stays_up_and_records_the_stream_error(tmp_path: Path) -> None:
    """`run` against an API answering 5000-deep JSON: retried, recorded for the stream, SIGTERM exits 0."""
    deep = b"[" * 5000 + b"]" * 5000

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=deep, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    config = write_config(tmp_path, base_url, account={"streams": ["ttp_url"], "retry_max_secs": 1})
    log = tmp_path / "collector.log"
    try:
        process = await start_collector(config, log)
        with anyio.fail_after(60):
            while b'"api_retry"' not in (log.read_bytes() if log.exists() else b""):  # noqa: ASYNC110
                await anyio.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    finally:
        await runner.cleanup()

    events = [orjson.loads(line)["event"] for line in log.read_bytes().splitlines() if line.startswith(b"{")]
    assert "collector_crashed" not in events
    store = await Store.open(tmp_path / "state" / "collector.db")
    [row] = await store.streams()
    await store.close()
    assert (row["log_type"], row["last_error"], row["fatal"]) == (
        "ttp_url",
        "malformed answer: not a JSON object; http=200",
        0,
    )
