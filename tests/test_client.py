"""The API client: one paced, authenticated, classified, retried POST per page."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import random
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import trustme
from aiohttp import web
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from collector.api.auth import HmacAuth, OAuth2Auth
from collector.api.client import MimecastClient, Page, parse_answer
from collector.api.errors import Action, ApiError
from collector.api.limiter import PacingModel
from collector.api.pacer import Pacer, PacerRegistry
from collector.config.model import AccountConfig, Config, ServiceConfig, StateConfig
from collector.config.options import Secret
from collector.service.app import register_config_secrets
from collector.service.telemetry import Telemetry
from collector.simulator import FakeMimecast, SimSettings, generate
from collector.timeutil import api_date
from tests.helpers import MockResponse

BASE = "https://eu-api.mimecast.com"
OAUTH_BASE = "https://api.services.mimecast.com"
PATH = "/api/ttp/url/get-logs"
OTHER_PATH = "/api/ttp/impersonation/get-logs"
KEY = "clickLogs"
ACCESS_KEY = "mc-access-key-client-test"
SECRET_B64 = base64.b64encode(b"client-test-secret-key-material!").decode()
APP_ID = "00000000-0000-4000-8000-00000000c0de"
APP_KEY = "mc-app-key-client-test"
CLIENT_ID = "client-id-test"
CLIENT_SECRET = "client-secret-client-test"
FILTERS = {"from": "2024-11-13T13:00:00+0000", "to": "2024-11-13T14:00:00+0000", "oldestFirst": True}
RECORDS = [{"url": "https://a.example/1", "date": "2024-11-13T13:03:11+0000"}, {"url": "https://b.example/2"}]
RETRY_MAX = 2.0


# --- builders -----------------------------------------------------------------------------------------


def hmac_account(**overrides: Any) -> AccountConfig:
    options: dict[str, Any] = {
        "name": "acme",
        "auth": "hmac",
        "base_url": BASE,
        "access_key": Secret(ACCESS_KEY),
        "secret_key": Secret(SECRET_B64),
        "app_id": APP_ID,
        "app_key": Secret(APP_KEY),
        "retry_max_secs": RETRY_MAX,
    }
    options.update(overrides)
    return AccountConfig(**options)


def oauth_account() -> AccountConfig:
    return AccountConfig(
        name="globex",
        auth="oauth2",
        base_url=OAUTH_BASE,
        client_id=CLIENT_ID,
        client_secret=Secret(CLIENT_SECRET),
        retry_max_secs=RETRY_MAX,
    )


def page_body(records: list[Any], next_token: Any = None, *, key: str = KEY) -> bytes:
    pagination: dict[str, Any] = {"pageSize": len(records), "totalCount": len(records)}
    if next_token is not None:
        pagination["next"] = next_token
    return orjson.dumps({"meta": {"status": 200, "pagination": pagination}, "data": [{key: records}], "fail": []})


def fail_body(code: str, message: str, *, retryable: bool | None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if retryable is not None:
        error["retryable"] = retryable
    return orjson.dumps({"meta": {"status": 0}, "data": [], "fail": [{"errors": [error]}]})


HTML_503 = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class Seen:
    at: float
    url: str
    kwargs: dict[str, Any]


class Endpoint:
    """Scripted answers (or exceptions) for one URL, in order; records when and how each call came.

    Running out of answers raises AssertionError, which the client does not classify, so a client
    that retries more than expected fails the test instead of spinning.
    """

    def __init__(self, mock: aioresponses, url: str, script: list[Answer | BaseException]) -> None:
        self.script = list(script)
        self.seen: list[Seen] = []
        mock.post(url, callback=self._answer, repeat=True)

    async def _answer(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.seen.append(Seen(time.monotonic(), str(url), kwargs))
        if not self.script:
            raise AssertionError(f"unexpected call #{len(self.seen)} to {url}")
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return CallbackResult(
            status=item.status,
            body=item.body,
            headers=item.headers,
            content_type=item.content_type,
            response_class=MockResponse,
        )

    @property
    def calls(self) -> int:
        return len(self.seen)


class Sleeper:
    """The client's backoff sleep: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) > 50:
            raise AssertionError("retried forever")


def expected_delays(count: int, retry_max: float = RETRY_MAX) -> list[float]:
    """Backoff the client should pick with rng=Random(1): min(max, 0.5 * 2^n) * uniform(0.5, 1)."""
    rng = random.Random(1)
    return [min(retry_max, 0.5 * 2**n) * rng.uniform(0.5, 1.0) for n in range(count)]


def fast_pacers(account: AccountConfig, *paths: str) -> PacerRegistry:
    """A registry whose pacers add no spacing of their own when no rate headers came (no real waits)."""
    pacers = PacerRegistry()
    for path in paths:
        pacers.get(account.credential_id, path, lambda: Pacer(PacingModel(fallback_interval_secs=0.0)))
    return pacers


@dataclass
class Harness:
    client: MimecastClient
    sleeper: Sleeper
    telemetry: Telemetry
    pacers: PacerRegistry

    async def fetch(self, path: str = PATH, token: str | None = None, **kwargs: Any) -> Page:
        async with asyncio.timeout(5):
            return await self.client.fetch_page(
                "ttp_url", path, KEY, FILTERS, page_size=100, page_token=token, **kwargs
            )


def harness(
    session: aiohttp.ClientSession,
    account: AccountConfig | None = None,
    *,
    pacers: PacerRegistry | None = None,
) -> Harness:
    account = account or hmac_account()
    if account.auth == "oauth2":
        auth: HmacAuth | OAuth2Auth = OAuth2Auth(
            account.url, CLIENT_ID, CLIENT_SECRET, session, timeout=aiohttp.ClientTimeout(total=5)
        )
    else:
        auth = HmacAuth(ACCESS_KEY, SECRET_B64, APP_ID, APP_KEY)
    if pacers is None:
        pacers = fast_pacers(account, PATH, OTHER_PATH)
    sleeper, telemetry = Sleeper(), Telemetry()
    client = MimecastClient(account, session, auth, pacers, telemetry, rng=random.Random(1), sleep=sleeper)
    return Harness(client, sleeper, telemetry, pacers)


def sample(h: Harness, name: str, **labels: str) -> float:
    value = h.telemetry.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def log_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


# --- fail[] inside a 200 -------------------------------------------------------------------------------


async def test_retryable_fail_in_a_200_is_retried_then_succeeds(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """HTTP 200 with fail[] retryable=true is an error: backed off once, then the page is returned."""
    api = Endpoint(
        mock_http,
        BASE + PATH,
        [
            Answer(200, fail_body("err_backend_unavailable", "Try again later", retryable=True)),
            Answer(200, page_body(RECORDS)),
        ],
    )
    h = harness(session)

    page = await h.fetch()

    assert page == Page(RECORDS, None)
    assert api.calls == 2
    assert h.sleeper.delays == pytest.approx(expected_delays(1))


async def test_rate_limit_header_too_long_for_a_number_is_ignored(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """An x-ratelimit-remaining of 400 digits is no number: the page comes back, the gauge is left alone."""
    Endpoint(mock_http, BASE + PATH, [Answer(200, page_body(RECORDS), {"x-ratelimit-remaining": "9" * 400})])
    h = harness(session)

    page = await h.fetch()

    assert page == Page(RECORDS, None)
    assert (
        h.telemetry.registry.get_sample_value("mimecast_ratelimit_remaining", {"account": "acme", "endpoint": PATH})
        is None
    )


async def test_unknown_non_retryable_fail_in_a_200_is_fatal(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """HTTP 200 with an unknown fail code and retryable=false: FATAL ApiError, sent once."""
    api = Endpoint(
        mock_http, BASE + PATH, [Answer(200, fail_body("err_weird_thing", "No such filter", retryable=False))]
    )
    h = harness(session)

    with pytest.raises(ApiError) as caught:
        await h.fetch()

    assert caught.value.action is Action.FATAL
    assert caught.value.code == "err_weird_thing"
    assert caught.value.status == 200
    assert str(caught.value) == "No such filter"
    assert api.calls == 1
    assert h.sleeper.delays == []


async def test_rate_limit_code_in_a_200_is_retried_without_backoff_sleep(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """fail code err_xdk_rate_limit_exceeded in a 200 is RATE_LIMITED: retried via the pacer, no backoff."""
    api = Endpoint(
        mock_http,
        BASE + PATH,
        [
            Answer(
                200,
                fail_body("err_xdk_rate_limit_exceeded", "Quota exceeded", retryable=False),
                {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "300"},
            ),
            Answer(200, page_body(RECORDS)),
        ],
    )
    h = harness(session)

    page = await h.fetch()

    assert page == Page(RECORDS, None)
    assert api.calls == 2
    assert h.sleeper.delays == []
    assert api.seen[1].at - api.seen[0].at >= 0.3


async def test_rate_limit_code_in_a_200_closes_the_pacer_gate_until_the_reset(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """A 200 carrying err_xdk_rate_limit_exceeded and x-ratelimit-reset=300 waits 300 ms, like a 429."""
    api = Endpoint(
        mock_http,
        BASE + PATH,
        [
            Answer(
                200,
                fail_body("err_xdk_rate_limit_exceeded", "Quota exceeded", retryable=True),
                {"x-ratelimit-reset": "300"},
            ),
            Answer(200, page_body(RECORDS)),
        ],
    )
    h = harness(session, pacers=PacerRegistry())  # the production pacers

    page = await h.fetch()

    assert page == Page(RECORDS, None)
    assert api.calls == 2
    assert api.seen[1].at - api.seen[0].at >= 0.3


# --- transient failures --------------------------------------------------------------------------------

TRANSIENT: dict[str, Answer | BaseException] = {
    "500-json": Answer(500, fail_body("err_server", "Internal Server Error", retryable=False)),
    "502-html": Answer(502, b"<html><body>Bad Gateway</body></html>", content_type="text/html"),
    "503-html": Answer(503, HTML_503, content_type="text/html"),
    "504-empty": Answer(504, b""),
    "truncated-json": Answer(200, page_body(RECORDS)[:25]),
    "not-an-object": Answer(200, b'[{"clickLogs": []}]'),
    "no-data": Answer(200, b'{"meta": {"status": 200}}'),
    "no-array-key": Answer(200, b'{"meta": {"status": 200}, "data": [{"otherLogs": []}]}'),
    "data-element-not-object": Answer(200, b'{"meta": {"status": 200}, "data": ["clickLogs"]}'),
    "connection-error": aiohttp.ClientConnectionError("Connection reset by peer"),
    "server-disconnected": aiohttp.ServerDisconnectedError(),
    "timeout": TimeoutError(),  # asyncio.TimeoutError is this builtin on 3.11
}


@pytest.mark.parametrize("failure", list(TRANSIENT.values()), ids=list(TRANSIENT))
async def test_transient_failure_is_retried_until_the_page_arrives(
    session: aiohttp.ClientSession, mock_http: aioresponses, failure: Answer | BaseException
) -> None:
    """Each transient failure once, then a good page: one backoff sleep, the right page returned."""
    api = Endpoint(mock_http, BASE + PATH, [failure, Answer(200, page_body(RECORDS, "tok-2"))])
    h = harness(session)

    page = await h.fetch()

    assert page == Page(RECORDS, "tok-2")
    assert api.calls == 2
    assert h.sleeper.delays == pytest.approx(expected_delays(1))
    assert sample(h, "mimecast_api_retries_total", account="acme", endpoint=PATH) == 1.0


async def test_backoff_grows_exponentially_with_jitter_and_is_capped(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """Every transient kind in a row: delays min(2 s, 0.5 * 2^n) * U(0.5, 1), never above retry_max_secs."""
    failures = list(TRANSIENT.values())
    api = Endpoint(mock_http, BASE + PATH, [*failures, Answer(200, page_body(RECORDS))])
    h = harness(session)

    page = await h.fetch()

    n = len(failures)
    caps = [min(RETRY_MAX, 0.5 * 2**i) for i in range(n)]
    assert page == Page(RECORDS, None)
    assert api.calls == n + 1
    assert h.sleeper.delays == pytest.approx(expected_delays(n))
    assert all(cap / 2 <= d <= cap for d, cap in zip(h.sleeper.delays, caps, strict=True))
    assert h.sleeper.delays[0] <= 0.5
    assert min(h.sleeper.delays[2:]) >= 1.0
    assert max(h.sleeper.delays) <= RETRY_MAX


# --- fatal statuses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "hint_word"),
    [
        (400, "err_validation_failed", "filters"),
        (401, "err_xdk_invalid_signature", "clock"),
        (403, "err_xdk_forbidden", "permission"),
        (404, "err_not_found", "base_url"),
        (418, "err_xdk_binding_expired", "binding"),
        (422, "err_unprocessable", "unexpected"),
    ],
)
async def test_fatal_status_raises_once_with_status_code_and_hint(
    session: aiohttp.ClientSession, mock_http: aioresponses, status: int, code: str, hint_word: str
) -> None:
    """4xx that needs a human: FATAL ApiError with status, code and a hint; never retried."""
    api = Endpoint(mock_http, BASE + PATH, [Answer(status, fail_body(code, f"{status} refused", retryable=False))])
    h = harness(session)

    with pytest.raises(ApiError) as caught:
        await h.fetch()

    error = caught.value
    assert (error.action, error.status, error.code) == (Action.FATAL, status, code)
    assert error.hint is not None
    assert hint_word in error.hint
    assert api.calls == 1
    assert h.sleeper.delays == []


async def test_fatal_html_404_without_a_code_still_has_status_and_hint(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """A gateway's HTML 404 (no fail[]): FATAL, status 404, no code, hint about base_url/region."""
    api = Endpoint(mock_http, BASE + PATH, [Answer(404, b"<html>Not Found</html>", content_type="text/html")])
    h = harness(session)

    with pytest.raises(ApiError) as caught:
        await h.fetch()

    assert (caught.value.action, caught.value.status, caught.value.code) == (Action.FATAL, 404, None)
    assert caught.value.summary() == "HTTP 404; http=404; hint: wrong base_url/region or endpoint path"
    assert api.calls == 1


# --- OAuth2 --------------------------------------------------------------------------------------------


def token_answer(token: str) -> Answer:
    return Answer(200, orjson.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 1799}))


UNAUTHORIZED = Answer(401, fail_body("err_xdk_unauthorized", "Unauthorized", retryable=False))


async def test_oauth_401_refreshes_the_token_once_and_retries(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """A 401 on the log endpoint: one new token, the call repeated with it, the page returned."""
    tokens = Endpoint(
        mock_http, OAUTH_BASE + "/oauth/token", [token_answer("token-old-00001"), token_answer("token-new-00002")]
    )
    api = Endpoint(mock_http, OAUTH_BASE + PATH, [UNAUTHORIZED, Answer(200, page_body(RECORDS))])
    h = harness(session, oauth_account())

    page = await h.fetch()

    assert page == Page(RECORDS, None)
    assert tokens.calls == 2
    assert api.calls == 2
    assert [s.kwargs["headers"]["Authorization"] for s in api.seen] == [
        "Bearer token-old-00001",
        "Bearer token-new-00002",
    ]
    assert h.sleeper.delays == []


async def test_oauth_second_consecutive_401_is_fatal(session: aiohttp.ClientSession, mock_http: aioresponses) -> None:
    """A fresh token rejected too: FATAL ApiError with a permissions hint, after exactly one refresh."""
    tokens = Endpoint(
        mock_http, OAUTH_BASE + "/oauth/token", [token_answer("token-old-00001"), token_answer("token-new-00002")]
    )
    api = Endpoint(mock_http, OAUTH_BASE + PATH, [UNAUTHORIZED, UNAUTHORIZED])
    h = harness(session, oauth_account())

    with pytest.raises(ApiError) as caught:
        await h.fetch()

    assert caught.value.action is Action.FATAL
    assert caught.value.status == 401
    assert caught.value.hint is not None
    assert "permissions" in caught.value.hint
    assert tokens.calls == 2
    assert api.calls == 2


async def test_oauth_token_endpoint_429_waits_for_its_reset(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """A 429 from /oauth/token saying reset in 300 ms: the token is not asked for again before that."""
    tokens = Endpoint(
        mock_http,
        OAUTH_BASE + "/oauth/token",
        [
            Answer(429, b'{"error": "too_many_requests"}', {"x-ratelimit-reset": "300", "Retry-After": "1"}),
            token_answer("token-after-429"),
        ],
    )
    api = Endpoint(mock_http, OAUTH_BASE + PATH, [Answer(200, page_body(RECORDS))])
    h = harness(session, oauth_account(), pacers=PacerRegistry())  # the production pacers

    page = await h.fetch()

    assert page == Page(RECORDS, None)
    assert api.calls == 1
    assert tokens.calls == 2
    assert tokens.seen[1].at - tokens.seen[0].at >= 0.3


# --- rate limits ---------------------------------------------------------------------------------------


async def test_429_closes_the_gate_until_the_reset(session: aiohttp.ClientSession, mock_http: aioresponses) -> None:
    """429 with x-ratelimit-reset=200 ms: the retry goes no sooner, and not through the backoff sleep."""
    throttled = Answer(
        429,
        fail_body("err_xdk_rate_limit_exceeded", "Quota exceeded", retryable=True),
        {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "200"},
    )
    api = Endpoint(mock_http, BASE + PATH, [throttled, Answer(200, page_body(RECORDS))])
    h = harness(session)
    model = h.client.pacer(PATH).model

    page = await h.fetch()

    assert page == Page(RECORDS, None)
    assert api.calls == 2
    assert api.seen[1].at - api.seen[0].at >= 0.2
    assert model.gate_until >= api.seen[0].at + 0.2
    assert h.sleeper.delays == []
    assert sample(h, "mimecast_api_throttled_total", account="acme", endpoint=PATH) == 1.0


async def test_paging_against_a_tight_rate_limit_is_paced_not_throttled(session: aiohttp.ClientSession) -> None:
    """Loopback API allowing 2 calls per 500 ms: five pages all arrive, at most one 429 on the way."""
    sim = FakeMimecast(SimSettings(rate_limit=2, rate_window_ms=500))
    now = int(time.time())
    sim.add("ttp_url", generate("ttp_url", 25, start=now - 3600, end=now - 120, seed=7))
    await sim.start()
    try:
        s = sim.settings
        account = hmac_account(
            base_url=sim.base_url,
            access_key=Secret(s.access_key),
            secret_key=Secret(s.secret_key),
            app_id=s.app_id,
            app_key=Secret(s.app_key),
        )
        auth = HmacAuth(s.access_key, s.secret_key, s.app_id, s.app_key)
        client = MimecastClient(account, session, auth, PacerRegistry(), Telemetry(), rng=random.Random(1))
        data = {"from": api_date(now - 7200), "to": api_date(now), "oldestFirst": True}
        records: list[Any] = []
        token: str | None = None
        pages = 0
        async with asyncio.timeout(8):
            while True:
                page = await client.fetch_page("ttp_url", PATH, KEY, data, page_size=5, page_token=token)
                records.extend(page.records)
                pages += 1
                token = page.next_token
                if token is None:
                    break
    finally:
        await sim.stop()

    assert pages == 5
    assert len(records) == 25
    assert len({orjson.dumps(r) for r in records}) == 25
    assert sim.stats.throttled <= 1
    assert sum(sim.stats.bad_auth.values()) == 0
    assert sum(sim.stats.bad_request.values()) == 0


# --- the request ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "pagination"),
    [("tok-abc", {"pageSize": 100, "pageToken": "tok-abc"}), (None, {"pageSize": 100})],
    ids=["with-token", "first-page"],
)
async def test_request_body_headers_and_url(
    session: aiohttp.ClientSession, mock_http: aioresponses, token: str | None, pagination: dict[str, Any]
) -> None:
    """POST base_url + path, JSON {"meta": {"pagination": ...}, "data": [filters]}, signed over the path."""
    api = Endpoint(mock_http, BASE + PATH, [Answer(200, page_body(RECORDS))])
    h = harness(session, hmac_account(base_url=BASE + "/"))

    await h.fetch(token=token)

    seen = api.seen[0]
    headers = seen.kwargs["headers"]
    assert seen.url == "https://eu-api.mimecast.com/api/ttp/url/get-logs"
    assert orjson.loads(seen.kwargs["data"]) == {"meta": {"pagination": pagination}, "data": [FILTERS]}
    assert headers["Content-Type"] == "application/json"
    assert headers["x-mc-app-id"] == APP_ID
    message = f"{headers['x-mc-date']}:{headers['x-mc-req-id']}:{PATH}:{APP_KEY}".encode()
    signature = base64.b64encode(hmac.new(base64.b64decode(SECRET_B64), message, hashlib.sha1).digest()).decode()
    assert headers["Authorization"] == f"MC {ACCESS_KEY}:{signature}"


async def test_each_retry_is_signed_with_a_new_request_id(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """A retried call carries a fresh x-mc-req-id (the API rejects a reused one)."""
    api = Endpoint(mock_http, BASE + PATH, [Answer(500, b""), Answer(500, b""), Answer(200, page_body(RECORDS))])
    h = harness(session)

    await h.fetch()

    assert len({s.kwargs["headers"]["x-mc-req-id"] for s in api.seen}) == 3


# --- the answer ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pagination", "expected"),
    [
        ({"pageSize": 2}, None),
        ({"pageSize": 2, "next": ""}, None),
        ({"pageSize": 2, "next": None}, None),
        ({"pageSize": 2, "next": 17}, None),
        ({"pageSize": 2, "next": ["tok"]}, None),
        ({"pageSize": 2, "next": {"token": "tok"}}, None),
        ({"pageSize": 2, "next": "tok-next"}, "tok-next"),
    ],
    ids=["absent", "empty", "null", "number", "list", "object", "string"],
)
async def test_next_token_is_a_non_empty_string_or_none(
    session: aiohttp.ClientSession, mock_http: aioresponses, pagination: dict[str, Any], expected: str | None
) -> None:
    """meta.pagination.next: only a non-empty string is a token; anything else ends paging."""
    body = orjson.dumps({"meta": {"status": 200, "pagination": pagination}, "data": [{KEY: RECORDS}], "fail": []})
    Endpoint(mock_http, BASE + PATH, [Answer(200, body)])
    h = harness(session)

    page = await h.fetch()

    assert page == Page(RECORDS, expected)


async def test_missing_meta_means_no_next_token(session: aiohttp.ClientSession, mock_http: aioresponses) -> None:
    """An answer without meta (or with a non-object meta) is a last page, not an error."""
    Endpoint(
        mock_http,
        BASE + PATH,
        [Answer(200, orjson.dumps({"data": [{KEY: RECORDS}]})), Answer(200, orjson.dumps({"meta": [], "data": []}))],
    )
    h = harness(session)

    first, second = await h.fetch(), await h.fetch()

    assert first == Page(RECORDS, None)
    assert second == Page([], None)


async def test_empty_page_keeps_its_token(session: aiohttp.ClientSession, mock_http: aioresponses) -> None:
    """No records but a next token: Page([], token) is returned as is (the poller decides)."""
    Endpoint(mock_http, BASE + PATH, [Answer(200, page_body([], "tok-empty"))])
    h = harness(session)

    page = await h.fetch()

    assert page == Page([], "tok-empty")


async def test_records_of_several_data_elements_are_concatenated(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """data[] with two elements: the records of both, in order."""
    body = orjson.dumps({"meta": {"pagination": {}}, "data": [{KEY: RECORDS[:1]}, {KEY: RECORDS[1:]}]})
    Endpoint(mock_http, BASE + PATH, [Answer(200, body)])
    h = harness(session)

    page = await h.fetch()

    assert page == Page(RECORDS, None)


async def test_invalid_utf8_inside_a_string_is_parsed_with_replacement_characters(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """Bytes \\xff\\xfe inside a JSON string: parsed once with U+FFFD, not retried."""
    body = b'{"meta": {"pagination": {"next": "tok-9"}}, "data": [{"clickLogs": [{"subject": "caf\xff\xfe!"}]}]}'
    api = Endpoint(mock_http, BASE + PATH, [Answer(200, body)])
    h = harness(session)

    page = await h.fetch()

    assert page == Page([{"subject": "caf\ufffd\ufffd!"}], "tok-9")
    assert api.calls == 1
    assert h.sleeper.delays == []


def test_fail_code_is_consulted_before_the_status() -> None:
    """A 500 whose fail[] says err_xdk_forbidden is FATAL (permission), not a retry."""
    with pytest.raises(ApiError) as caught:
        parse_answer(500, fail_body("err_xdk_forbidden", "Forbidden", retryable=False), KEY, oauth2=False)

    assert caught.value.action is Action.FATAL
    assert caught.value.code == "err_xdk_forbidden"


def test_oauth2_401_is_a_token_refresh_whatever_the_fail_code() -> None:
    """Under OAuth2 a 401 is AUTH_REFRESH even when fail[] carries err_xdk_invalid_signature."""
    with pytest.raises(ApiError) as caught:
        parse_answer(401, fail_body("err_xdk_invalid_signature", "Invalid", retryable=False), KEY, oauth2=True)

    assert caught.value.action is Action.AUTH_REFRESH


# --- callbacks and logs --------------------------------------------------------------------------------


async def test_on_retry_is_awaited_once_per_retry_with_the_error(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """Two transient failures: on_retry awaited twice, with RETRY ApiErrors describing each."""
    Endpoint(
        mock_http,
        BASE + PATH,
        [
            Answer(503, HTML_503, content_type="text/html"),
            aiohttp.ClientConnectionError("reset"),
            Answer(200, page_body(RECORDS)),
        ],
    )
    h = harness(session)
    seen: list[ApiError] = []

    async def on_retry(error: ApiError) -> None:
        await asyncio.sleep(0)
        seen.append(error)

    await h.fetch(on_retry=on_retry)

    assert [(e.action, e.status) for e in seen] == [(Action.RETRY, 503), (Action.RETRY, None)]
    assert str(seen[1]) == "ClientConnectionError: reset"


async def test_retry_warning_is_logged_without_hmac_secrets(
    session: aiohttp.ClientSession, mock_http: aioresponses, log_buffer: io.StringIO
) -> None:
    """An api_retry warning with path, attempt and delay; echoed keys appear masked, never in clear."""
    account = hmac_account()
    register_config_secrets(Config(Path("collector.toml"), StateConfig(), ServiceConfig(), (account,), ()))
    echo = f"bad key {ACCESS_KEY} / {SECRET_B64} / {APP_KEY}"
    Endpoint(
        mock_http, BASE + PATH, [Answer(500, fail_body("err_server", echo, retryable=True)), Answer(200, page_body([]))]
    )
    h = harness(session, account)

    await h.fetch()

    text = log_buffer.getvalue()
    retries = [line for line in log_lines(log_buffer) if line["event"] == "api_retry"]
    assert len(retries) == 1
    assert retries[0]["level"] == "warning"
    assert (retries[0]["path"], retries[0]["attempt"], retries[0]["account"]) == (PATH, 1, "acme")
    assert retries[0]["delay_secs"] == round(expected_delays(1)[0], 2)
    assert "http=500" in retries[0]["error"]
    assert "***" in retries[0]["error"]
    for secret in (ACCESS_KEY, SECRET_B64, APP_KEY):
        assert secret not in text


async def test_retry_warning_never_shows_the_bearer_token(
    session: aiohttp.ClientSession, mock_http: aioresponses, log_buffer: io.StringIO
) -> None:
    """A server echoing the bearer token in its error: the api_retry line shows *** instead."""
    token = "bearer-token-client-test-5d1e"
    Endpoint(mock_http, OAUTH_BASE + "/oauth/token", [token_answer(token)])
    echo = f"backend hiccup for Bearer {token}"
    Endpoint(
        mock_http,
        OAUTH_BASE + PATH,
        [Answer(502, fail_body("err_gw", echo, retryable=True)), Answer(200, page_body([]))],
    )
    h = harness(session, oauth_account())

    await h.fetch()

    retries = [line for line in log_lines(log_buffer) if line["event"] == "api_retry"]
    assert len(retries) == 1
    assert "Bearer ***" in retries[0]["error"]
    assert token not in log_buffer.getvalue()
    assert CLIENT_SECRET not in log_buffer.getvalue()


def throttled_answer() -> Answer:
    return Answer(
        429, fail_body("err_xdk_rate_limit_exceeded", "Quota exceeded", retryable=True), {"x-ratelimit-reset": "1"}
    )


async def test_many_429s_log_one_rate_limited_line_per_endpoint(
    session: aiohttp.ClientSession, mock_http: aioresponses, log_buffer: io.StringIO
) -> None:
    """Five 429s on one endpoint and three on another within a minute: one api_rate_limited line each."""
    Endpoint(mock_http, BASE + PATH, [*(throttled_answer() for _ in range(5)), Answer(200, page_body(RECORDS))])
    Endpoint(
        mock_http, BASE + OTHER_PATH, [*(throttled_answer() for _ in range(3)), Answer(200, page_body([], key=KEY))]
    )
    h = harness(session)

    first = await h.fetch(PATH)
    second = await h.fetch(OTHER_PATH)

    lines = [line for line in log_lines(log_buffer) if line["event"] == "api_rate_limited"]
    assert first == Page(RECORDS, None)
    assert second == Page([], None)
    assert [(line["path"], line["throttled_since_last_report"]) for line in lines] == [(PATH, 1), (OTHER_PATH, 1)]
    assert all(line["level"] == "warning" for line in lines)
    assert h.sleeper.delays == []
    assert sample(h, "mimecast_api_throttled_total", account="acme", endpoint=PATH) == 5.0


# --- hostile shapes, TLS and timeouts ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"[" * 1100 + b"]" * 1100, b'{"a":' * 5000 + b"1" + b"}" * 5000, b"[" * 1000 + b'"\xff"' + b"]" * 1000],
    ids=["1100-deep", "5000-deep", "1000-deep-invalid-utf8"],
)
def test_json_nested_deeper_than_the_parsers_is_a_retryable_malformed_answer(body: bytes) -> None:
    """Nesting the stdlib fallback parser cannot recurse through is a RETRY, not a RecursionError."""
    with pytest.raises(ApiError) as caught:
        parse_answer(200, body, KEY, oauth2=False)
    assert (caught.value.action, str(caught.value)) == (Action.RETRY, "malformed answer: not a JSON object")


def test_fail_entry_with_a_nested_code_and_message_is_classified_without_showing_them() -> None:
    """fail[] whose code and message are 990-deep structures: the generic message, no code, FATAL in a 200."""
    deep = b"[" * 990 + b"]" * 990
    body = b'{"fail": [{"errors": [{"code": ' + deep + b', "message": {"m": ' + deep + b"}}]}]}"
    with pytest.raises(ApiError) as caught:
        parse_answer(200, body, KEY, oauth2=False)
    assert (caught.value.action, str(caught.value), caught.value.code) == (Action.FATAL, "API error", None)


async def answer_empty_object(request: web.Request) -> web.Response:
    return web.json_response({})


async def test_untrusted_certificate_is_fatal_with_the_ca_file_hint(tmp_path: Path) -> None:
    """A server certificate from an unknown CA: FATAL, and the summary tells the operator to set ca_file."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    app = web.Application()
    app.router.add_post(PATH, answer_empty_object)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            h = harness(session, hmac_account(base_url=f"https://127.0.0.1:{port}"))
            with pytest.raises(ApiError) as caught:
                await h.fetch()
    finally:
        await runner.cleanup()
    assert caught.value.action is Action.FATAL
    assert caught.value.summary().endswith(
        "; hint: TLS verification failed: set ca_file to the CA that signs the server (or your proxy)"
    )


async def test_connect_timeout_names_the_timeout_and_its_option(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """aiohttp's ConnectionTimeoutError is retried as "connect timeout after 15 s (connect_timeout_secs)"."""
    Endpoint(
        mock_http,
        BASE + PATH,
        [aiohttp.ConnectionTimeoutError("Connection timeout to host"), Answer(200, page_body([]))],
    )
    errors: list[ApiError] = []

    async def on_retry(error: ApiError) -> None:
        errors.append(error)

    await harness(session).fetch(on_retry=on_retry)
    assert [str(e) for e in errors] == ["connect timeout after 15 s (connect_timeout_secs)"]


async def test_total_timeout_names_the_timeout_and_its_option(session: aiohttp.ClientSession) -> None:
    """A server that never answers: retried as "request timeout after 1 s (request_timeout_secs)"."""
    answered = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        if not answered.is_set():
            answered.set()
            await asyncio.sleep(30)
        return web.Response(body=page_body([]), content_type="application/json")

    app = web.Application()
    app.router.add_post(PATH, stall)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    errors: list[ApiError] = []

    async def on_retry(error: ApiError) -> None:
        errors.append(error)

    try:
        h = harness(session, hmac_account(base_url=f"http://127.0.0.1:{port}", request_timeout_secs=1))
        await h.fetch(on_retry=on_retry)
    finally:
        await runner.cleanup()
    assert [str(e) for e in errors] == ["request timeout after 1 s (request_timeout_secs)"]


def test_records_in_data_itself_when_the_log_type_has_no_array_key() -> None:
    """Audit events are data[] itself: each element is a record (a non-object too, for build_event to
    keep raw), and the next token is read as for every other answer."""
    body = orjson.dumps(
        {
            "meta": {"status": 200, "pagination": {"pageSize": 3, "next": "tok-2"}},
            "data": [{"id": "a", "eventTime": "2024-01-01T00:00:00+0000"}, {"id": "b"}, "junk"],
            "fail": [],
        }
    )
    assert parse_answer(200, body, None, oauth2=False) == Page(
        [{"id": "a", "eventTime": "2024-01-01T00:00:00+0000"}, {"id": "b"}, "junk"], "tok-2"
    )
    empty = orjson.dumps({"meta": {"status": 200, "pagination": {"pageSize": 0}}, "data": [], "fail": []})
    assert parse_answer(200, empty, None, oauth2=False) == Page([], None)


@pytest.mark.parametrize("data", [{"id": "a"}, None, "text"], ids=["object", "null", "string"])
def test_data_that_is_not_an_array_is_malformed_without_an_array_key_too(data: Any) -> None:
    """Without an array key, data must still be an array: anything else is retried as a malformed answer."""
    body = orjson.dumps({"meta": {"status": 200}, "data": data, "fail": []})
    with pytest.raises(ApiError) as caught:
        parse_answer(200, body, None, oauth2=False)
    assert caught.value.action is Action.RETRY
    assert "no data array" in str(caught.value)
