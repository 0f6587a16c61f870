"""Fuzz: whatever bytes a loopback "API" answers with, fetch_page ends as a Page or a classified ApiError.

Each example starts a raw loopback server whose first answer is generated (status lines 1xx-5xx and
odd ones, garbage or huge header values incl. x-ratelimit-* and Retry-After, Content-Encoding and
Content-Length lies, deep nesting, invalid UTF-8, truncated and oversize bodies) and whose later
answers are a good page, so retries end. Backoff sleeps are injected and the pacer's clock leaps a
billion years per reading, so no wait takes real time.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import zlib
from collections.abc import AsyncIterator

import aiohttp
import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.api.auth import HmacAuth
from collector.api.client import MimecastClient, Page
from collector.api.errors import ApiError
from collector.api.limiter import PacingModel
from collector.api.pacer import Pacer, PacerRegistry
from collector.service.telemetry import Telemetry
from tests.rawhttp import RawHttpServer, RawRequest, response_head
from tests.test_client import (
    ACCESS_KEY,
    APP_ID,
    APP_KEY,
    FILTERS,
    KEY,
    PATH,
    RECORDS,
    SECRET_B64,
    Sleeper,
    fail_body,
    hmac_account,
    page_body,
)

CAP = 1 << 16
LEAP_SECS = 1e18  # beyond any wait the generated rate-limit headers ask for (at most 1e20 ms)

NUMBERS = st.sampled_from(["0", "-1", "1", "59999", "1e20", "1.5", "nan", "inf", "-inf", "1e400", "9" * 400, ""])
GARBAGE = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)
HEADER_VALUES = st.one_of(NUMBERS, GARBAGE, st.integers(-(10**20), 10**20).map(str))
HEADER_NAMES = st.sampled_from(
    [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "Retry-After",
        "Content-Type",
        "Location",
        "Set-Cookie",
        "X-Anything",
    ]
)
STATUSES = st.one_of(
    st.sampled_from([100, 101, 103, 199, 200, 204, 206, 300, 301, 304, 307, 401, 404, 418, 429, 500, 503, 599]),
    st.integers(100, 599),
    st.sampled_from(["999 Odd", "000 Zero", "20 Short", "abc", "200", "-1 Neg"]),
)


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    return b"[" * depth + leaf + b"]" * depth


# Around the parsers' limits (orjson: 1024 levels; stdlib: about 1000 frames), and anywhere up to 6000.
DEPTHS = st.one_of(st.sampled_from([255, 256, 999, 1000, 1023, 1024, 1025, 1100, 6000]), st.integers(1, 6000))
BODIES = st.one_of(
    st.just(page_body(RECORDS, "tok-next")),
    st.just(fail_body("err_xdk_rate_limit_exceeded", "slow down", retryable=True)),
    st.just(fail_body("err_other", "nope", retryable=None)),
    DEPTHS.map(nested),
    DEPTHS.map(lambda d: b'{"data": [{"clickLogs": [' + nested(d) + b"]}]}"),
    DEPTHS.map(lambda d: b'{"fail": [{"errors": [{"code": ' + nested(d) + b"}]}]}"),
    DEPTHS.map(lambda d: b'{"data": [{"clickLogs": [' + nested(d, b'"\xff"') + b"]}]}"),
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda b: b'{"data": [{"clickLogs": ["' + b + b'"]}]}'),
    st.integers(CAP - 10, 3 * CAP).map(lambda n: b'{"data": [{"clickLogs": ["' + b"x" * n + b'"]}]}'),
    st.just(b'{"data": [{"clickLogs": [' + b",".join([b"0"] * 20_000) + b"]}]}"),
    st.just(b'{"meta": {"pagination": {"next": ' + b"9" * 5000 + b'}}, "data": []}'),
    st.just(b'{"data": [{"clickLogs": [{"date": "\\ud800", "x": NaN}]}]}'),
)


@st.composite
def hostile_answers(draw: st.DrawFn) -> bytes:
    """The raw bytes of one HTTP answer that may lie about anything."""
    body: bytes = draw(BODIES)
    encoding = draw(st.sampled_from([None, "gzip", "deflate", "br", "gzip, gzip", "identity", "x-gzip"]))
    if encoding is not None and draw(st.booleans()):  # honest encoding, else the header lies
        wbits = {"gzip": 31, "x-gzip": 31, "deflate": draw(st.sampled_from([15, -15]))}.get(encoding)
        body = zlib.compress(body, wbits=wbits) if wbits is not None else body
    headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6))
    if encoding is not None:
        headers.append(("Content-Encoding", encoding))
    framing = draw(st.sampled_from(["length", "length-lie-long", "length-lie-short", "close", "chunked-lie"]))
    if framing == "length":
        headers.append(("Content-Length", str(len(body))))
    elif framing == "length-lie-long":
        headers.append(("Content-Length", str(len(body) + draw(st.integers(1, 10**6)))))
    elif framing == "length-lie-short":
        headers.append(("Content-Length", str(max(0, len(body) - draw(st.integers(1, 100))))))
    elif framing == "chunked-lie":
        headers.append(("Transfer-Encoding", "chunked"))
    if draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]  # the connection ends early
    return response_head(draw(STATUSES), headers) + body


class FirstAnswerHostile:
    """The first request gets the hostile bytes; every later one a good page."""

    def __init__(self, hostile: bytes) -> None:
        self.hostile = hostile
        self.good = page_body(RECORDS)

    async def __call__(self, request: RawRequest) -> AsyncIterator[bytes]:
        if self.hostile:
            hostile, self.hostile = self.hostile, b""
            yield hostile
        else:
            yield response_head(200, {"Content-Length": str(len(self.good))}) + self.good


async def outcome(hostile: bytes) -> Page | ApiError:
    server = await RawHttpServer(FirstAnswerHostile(hostile)).start()
    account = hmac_account(base_url=server.url, max_response_bytes=CAP, request_timeout_secs=5)
    leaps = itertools.count()
    pacers = PacerRegistry()
    pacers.get(
        account.credential_id,
        PATH,
        lambda: Pacer(PacingModel(fallback_interval_secs=0.0), clock=lambda: next(leaps) * LEAP_SECS),
    )
    auth = HmacAuth(ACCESS_KEY, SECRET_B64, APP_ID, APP_KEY)
    try:
        async with aiohttp.ClientSession() as session:
            client = MimecastClient(account, session, auth, pacers, Telemetry(), rng=random.Random(1), sleep=Sleeper())
            with anyio.fail_after(30):
                try:
                    return await client.fetch_page("ttp_url", PATH, KEY, FILTERS, page_size=8, page_token=None)
                except ApiError as error:
                    return error
    finally:
        await server.stop()


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(hostile=hostile_answers())
def test_any_answer_ends_as_a_page_or_a_classified_error(hostile: bytes) -> None:
    """Whatever the first answer is, fetch_page returns a Page or raises an ApiError, never anything else."""
    result = asyncio.run(outcome(hostile))
    assert isinstance(result, Page | ApiError)


def test_a_real_answer_through_the_fuzz_harness_is_the_page() -> None:
    """The harness itself: a good first answer is the page, so the fuzz's outcomes are the client's."""
    body = page_body(RECORDS)
    result = asyncio.run(outcome(response_head(200, {"Content-Length": str(len(body))}) + body))
    assert result == Page(RECORDS, None)


def test_deep_nesting_through_the_fuzz_harness_is_retried_to_the_next_page() -> None:
    """1100-deep JSON first: classified and retried, and the next (good) answer is the page."""
    deep = nested(1100)
    result = asyncio.run(outcome(response_head(200, {"Content-Length": str(len(deep))}) + deep))
    assert result == Page(RECORDS, None)
