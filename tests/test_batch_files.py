"""Fetching SIEM batch files: line splitting, bounded inflation, links refused, redirects, the proxy path.

Servers are real loopback aiohttp apps; the collector's own FileHost talks to them.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collector.api.files import (
    INFLATE_STEP_BYTES,
    FileError,
    FileFailure,
    FileHost,
    _Gunzip,
    _Lines,
    link_name,
    link_problem,
)
from collector.config.model import AccountConfig
from tests.helpers import delivered_ids
from tests.test_end_to_end import run_once
from tests.test_siem_batch import add_files, expected, siem_config

# --- pure parts ------------------------------------------------------------------------------------


def split(chunks: list[bytes], max_bytes: int = 10) -> list[tuple[bytes, bool]]:
    lines = _Lines(max_bytes)
    out = [line for chunk in chunks for line in lines.feed(chunk)]
    return out + list(lines.finish())


def test_lines_split_across_chunks_blank_lines_and_a_last_line_without_newline() -> None:
    assert split([b"ab", b"c\n\n  \nde", b"f\ngh"]) == [(b"abc", False), (b"def", False), (b"gh", False)]


def test_a_line_past_the_cap_comes_out_cut_once_and_its_rest_is_skipped() -> None:
    """The first max_bytes are kept (flagged cut); the rest of that line, over any number of chunks, is dropped."""
    assert split([b"ok\n0123456789AB", b"CDEFG" * 10, b"HIJ\nnext\n"]) == [
        (b"ok", False),
        (b"0123456789", True),
        (b"next", False),
    ]
    assert split([b"0123456789ABC\nz"]) == [(b"0123456789", True), (b"z", False)]


def test_gzip_members_concatenated_inflate_in_bounded_pieces() -> None:
    """Two gzip members back to back (cat a.gz b.gz) give both contents; no piece exceeds the step."""
    big = b"x" * (3 * INFLATE_STEP_BYTES + 5)
    data = gzip.compress(big) + gzip.compress(b"tail\n")
    inflater = _Gunzip()
    pieces = [piece for at in range(0, len(data), 1000) for piece in inflater.feed(data[at : at + 1000])]
    assert b"".join(pieces) == big + b"tail\n"
    assert max(len(p) for p in pieces) <= INFLATE_STEP_BYTES
    assert inflater.ended


@pytest.mark.parametrize(
    ("url", "fetched"),
    [
        ("https://s3.example/bucket/a.gz?X-Amz-Signature=abc", True),
        ("http://127.0.0.1:8080/files/a", True),
        ("http://[::1]:8080/files/a", True),
        ("http://localhost/files/a", True),
        ("http://files.example/a.gz", False),  # plain http off loopback: a proxy password would travel in clear
        ("file:///etc/passwd", False),
        ("ftp://files.example/a.gz", False),
        ("https://[not-an-address/a", False),
        ("", False),
    ],
)
def test_only_https_links_are_fetched_or_http_to_loopback(url: str, fetched: bool) -> None:
    assert (link_problem(url) is None) == fetched


def test_link_name_drops_the_signature_and_any_userinfo() -> None:
    assert link_name("https://u:p@s3.example/b/a.gz?X-Amz-Signature=secret") == "https://s3.example/b/a.gz"


# --- FileHost against a loopback server -------------------------------------------------------------


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def account(**options: Any) -> AccountConfig:
    return AccountConfig(name="acme", auth="oauth2", base_url="http://127.0.0.1:9", **options)


async def read_all(url: str, **options: Any) -> list[tuple[bytes, bool]]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        host = FileHost(account(**options), session)
        return [line async for line in host.lines(url)]


async def test_redirects_are_not_followed_and_count_as_an_expired_link(
    serve: Callable[[web.Application], Awaitable[str]],
) -> None:
    """A 302 from the file host: not followed (the target never hears of us), answered as EXPIRED (list again)."""
    target_hits: list[str] = []

    async def target(request: web.Request) -> web.Response:
        target_hits.append(request.path)
        return web.Response(body=gzip.compress(b'{"a":1}\n'))

    target_app = web.Application()
    target_app.router.add_get("/elsewhere", target)
    elsewhere = await serve(target_app)

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound(f"{elsewhere}/elsewhere")

    app = web.Application()
    app.router.add_get("/file", redirect)
    base = await serve(app)

    with pytest.raises(FileError) as caught:
        await read_all(f"{base}/file")
    assert caught.value.failure is FileFailure.EXPIRED
    assert target_hits == []


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (403, FileFailure.EXPIRED),
        (404, FileFailure.EXPIRED),
        (500, FileFailure.TRANSIENT),
        (429, FileFailure.TRANSIENT),
    ],
)
async def test_statuses_are_classified(
    serve: Callable[[web.Application], Awaitable[str]], status: int, failure: FileFailure
) -> None:
    app = web.Application()
    app.router.add_get("/file", _answer(status=status, text="<Error/>"))
    base = await serve(app)
    with pytest.raises(FileError) as caught:
        await read_all(f"{base}/file")
    assert (caught.value.failure, caught.value.status) == (failure, status)


def _answer(**response: Any) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(**response)

    return handler


async def test_a_gzip_bomb_stops_at_the_file_cap(serve: Callable[[web.Application], Awaitable[str]]) -> None:
    """64 MiB of zeros in a 64 KiB gzip: the download stops once 1 MiB is inflated (TOO_LARGE)."""
    bomb = gzip.compress(b"0" * (64 << 20), compresslevel=9)
    app = web.Application()
    app.router.add_get("/file", _answer(body=bomb, content_type="application/gzip"))
    base = await serve(app)
    with pytest.raises(FileError) as caught:
        await read_all(f"{base}/file", siem_max_file_bytes=1 << 20)
    assert caught.value.failure is FileFailure.TOO_LARGE


async def test_a_host_that_already_inflated_the_file_is_read_as_ndjson(
    serve: Callable[[web.Application], Awaitable[str]],
) -> None:
    app = web.Application()
    app.router.add_get("/file", _answer(body=b'{"a":1}\n{"a":2}\n', content_type="application/x-ndjson"))
    base = await serve(app)
    assert await read_all(f"{base}/file") == [(b'{"a":1}', False), (b'{"a":2}', False)]


# --- the proxy path: same proxy as the API, no credentials of ours at the file host -----------------


class ForwardingProxy:
    """An HTTP proxy on loopback: forwards absolute-form requests, drops Proxy-Authorization, records both."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []  # (method, url, Proxy-Authorization)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        return app

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        url = str(request.url)
        self.seen.append((request.method, url, request.headers.get("Proxy-Authorization")))
        hop = {"proxy-authorization", "proxy-connection", "connection", "host", "content-length", "transfer-encoding"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in hop}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method, url, headers=headers, data=await request.read(), allow_redirects=False
            ) as up,
        ):
            body = await up.read()
            drop = {"content-length", "transfer-encoding", "connection"}
            return web.Response(
                status=up.status, body=body, headers={k: v for k, v in up.headers.items() if k.lower() not in drop}
            )


async def test_files_go_through_the_accounts_proxy_and_reach_the_host_without_credentials(
    make_sim: Callable[..., Any], serve: Callable[[web.Application], Awaitable[str]], tmp_path: Path
) -> None:
    """With proxy = http://user:pw@proxy, the file requests pass the proxy (it gets Proxy-Authorization),
    and the file host sees no Authorization, no Proxy-Authorization and no cookie."""
    sim = await make_sim()
    files = add_files(sim, "cg", "receipt", 2, 300)
    proxy = ForwardingProxy()
    proxy_url = (await serve(proxy.app())).replace("http://", "http://relay:relay-pw@")
    config = siem_config(tmp_path, sim, {"siem_cg": ["receipt"]}, proxy=proxy_url)

    result = await run_once(config)

    assert result.exit_code == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected(files))
    file_requests = [seen for seen in proxy.seen if seen[1].startswith(sim.batch.base_url)]
    assert len(file_requests) == sim.batch.stats.file_requests >= 2
    assert {seen[2] for seen in proxy.seen} == {"Basic cmVsYXk6cmVsYXktcHc="}  # relay:relay-pw, to the proxy only
    stats = sim.batch.stats
    assert (stats.with_authorization, stats.with_proxy_authorization, stats.with_cookie) == (0, 0, 0)
