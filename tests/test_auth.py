"""Request authentication: the HMAC signature and headers (API 1.0), OAuth2 client credentials (API 2.0)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import locale
import re
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from collector.api.auth import HmacAuth, OAuth2Auth, hmac_signature
from collector.api.errors import Action, ApiError
from collector.logs import redact, secrets_masked
from collector.simulator import FakeMimecast, SimSettings
from tests.helpers import MockResponse

SECRET_B64 = base64.b64encode(b"0123456789abcdef-test-secret").decode()
ACCESS_KEY = "mc-access-key-test"
APP_ID = "00000000-0000-4000-8000-00000000a001"
APP_KEY = "mc-app-key-test"
PATH = "/api/ttp/url/get-logs"
REQ_ID = "0b3bd0d5-2f3c-4a5e-9a4e-3f1b8c1a2d6e"
DOC_DATE = "Tue, 24 Nov 2015 12:50:11 UTC"
DOC_EPOCH = 1448369411.0  # the instant of DOC_DATE, the example date in Mimecast's documentation

OAUTH_BASE = "https://api.services.mimecast.com"
TOKEN_URL = f"{OAUTH_BASE}/oauth/token"
CLIENT_ID = "client-id-test"
CLIENT_SECRET = "client-secret-test-value"
HMAC_DATE_FORMAT = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d UTC"
)


def reference_signature(secret_b64: str, date: str, request_id: str, path: str, app_key: str) -> str:
    """The documented formula, written out independently of the code under test."""
    digest = hmac.new(
        base64.b64decode(secret_b64), f"{date}:{request_id}:{path}:{app_key}".encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


# --- HMAC -------------------------------------------------------------------------------------------------


def test_hmac_signature_matches_the_documented_formula() -> None:
    """base64(HMAC-SHA1(base64decode(secret), "date:req_id:uri:appKey")) for a fixed vector."""
    signature = hmac_signature(SECRET_B64, DOC_DATE, REQ_ID, PATH, APP_KEY)

    assert signature == reference_signature(SECRET_B64, DOC_DATE, REQ_ID, PATH, APP_KEY)
    assert signature == "0LhhfdW36/VHAJpV4SHtX/fOb+8="
    assert not signature.endswith("\n")


def test_hmac_signature_covers_the_path_only() -> None:
    """A different path gives a different signature: the uri part of the message is the path."""
    assert hmac_signature(SECRET_B64, DOC_DATE, REQ_ID, "/api/ttp/impersonation/get-logs", APP_KEY) != (
        hmac_signature(SECRET_B64, DOC_DATE, REQ_ID, PATH, APP_KEY)
    )


def make_hmac(clock_value: float = DOC_EPOCH) -> HmacAuth:
    return HmacAuth(ACCESS_KEY, SECRET_B64, APP_ID, APP_KEY, clock=lambda: clock_value)


async def test_hmac_headers_are_the_four_documented_ones() -> None:
    """x-mc-date, x-mc-req-id, x-mc-app-id and Authorization "MC access:signature", nothing else."""
    headers = await make_hmac().headers(PATH)

    assert set(headers) == {"x-mc-date", "x-mc-req-id", "x-mc-app-id", "Authorization"}
    assert headers["x-mc-date"] == DOC_DATE
    assert headers["x-mc-app-id"] == APP_ID
    assert uuid.UUID(headers["x-mc-req-id"]).version == 4
    expected = reference_signature(SECRET_B64, DOC_DATE, headers["x-mc-req-id"], PATH, APP_KEY)
    assert headers["Authorization"] == f"MC {ACCESS_KEY}:{expected}"


async def test_hmac_date_truncates_fractional_seconds() -> None:
    """A clock at 12:50:11.9 is sent as 12:50:11 (second precision, no rounding up)."""
    headers = await make_hmac(DOC_EPOCH + 0.9).headers(PATH)

    assert headers["x-mc-date"] == DOC_DATE


@pytest.fixture
def foreign_time_locale() -> Iterator[str]:
    """LC_TIME set to a non-English locale when one is installed, else to C; restored afterwards."""
    saved = locale.setlocale(locale.LC_TIME)
    chosen = "C"
    for name in ("de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8", "es_ES.UTF-8", "ja_JP.UTF-8"):
        try:
            locale.setlocale(locale.LC_TIME, name)
        except locale.Error:
            continue
        chosen = name
        break
    else:
        locale.setlocale(locale.LC_TIME, "C")
    try:
        yield chosen
    finally:
        locale.setlocale(locale.LC_TIME, saved)


async def test_hmac_date_is_english_whatever_the_locale(foreign_time_locale: str) -> None:
    """Day and month names stay English under the process's LC_TIME (a German one when installed)."""
    headers = await make_hmac(DOC_EPOCH + 86400 * 5).headers(PATH)

    assert headers["x-mc-date"] == "Sun, 29 Nov 2015 12:50:11 UTC"
    assert HMAC_DATE_FORMAT.fullmatch(headers["x-mc-date"])


async def test_hmac_request_id_is_fresh_on_every_call() -> None:
    """Five calls at the same instant: five distinct UUIDs and five distinct signatures."""
    auth = make_hmac()

    calls = [await auth.headers(PATH) for _ in range(5)]

    assert len({h["x-mc-req-id"] for h in calls}) == 5
    assert len({h["Authorization"] for h in calls}) == 5
    assert all(uuid.UUID(h["x-mc-req-id"]) for h in calls)


def test_hmac_is_not_oauth2_and_invalidate_is_harmless() -> None:
    """HMAC says it is not OAuth2 (401 is fatal, not a refresh) and has nothing to invalidate."""
    auth = make_hmac()

    auth.invalidate()

    assert auth.oauth2 is False


# --- OAuth2 ------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TokenServer:
    """Scripted answers of the token endpoint, in order; records every request's keyword arguments."""

    def __init__(self, mock: aioresponses, answers: list[tuple[int, bytes]], *, delay: float = 0.0) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []
        self.delay = delay
        mock.post(TOKEN_URL, callback=self._answer, repeat=True)

    async def _answer(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.requests.append({"url": str(url), **kwargs})
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self.answers:
            raise AssertionError("unexpected token request")
        status, body = self.answers.pop(0)
        return CallbackResult(status=status, body=body, response_class=MockResponse)


def token_answer(token: str, expires_in: float = 1799) -> tuple[int, bytes]:
    body = {"access_token": token, "token_type": "Bearer", "expires_in": expires_in, "scope": ""}
    return 200, orjson.dumps(body)


def make_oauth(session: aiohttp.ClientSession, clock: Clock | None = None, base: str = OAUTH_BASE) -> OAuth2Auth:
    return OAuth2Auth(
        base,
        CLIENT_ID,
        CLIENT_SECRET,
        session,
        timeout=aiohttp.ClientTimeout(total=5),
        clock=clock or Clock(),
    )


async def test_oauth_posts_the_client_credentials_form(session: aiohttp.ClientSession, mock_http: aioresponses) -> None:
    """POST {base}/oauth/token with client_id, client_secret and grant_type=client_credentials."""
    server = TokenServer(mock_http, [token_answer("token-first-0001")])

    headers = await make_oauth(session).headers(PATH)

    assert headers == {"Authorization": "Bearer token-first-0001"}
    assert len(server.requests) == 1
    assert server.requests[0]["url"] == TOKEN_URL
    assert server.requests[0]["data"] == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_type": "client_credentials",
    }


@pytest.mark.parametrize(
    ("expires_in", "refresh_after"),
    [(1799, 1739.0), (100, 80.0), (30, 24.0)],
    ids=["normal-60s-margin", "short-fifth", "very-short-fifth"],
)
async def test_oauth_token_is_cached_until_its_refresh_time(
    session: aiohttp.ClientSession, mock_http: aioresponses, expires_in: float, refresh_after: float
) -> None:
    """Reused until lifetime minus min(60 s, lifetime / 5), then fetched again."""
    server = TokenServer(mock_http, [token_answer("token-first-0001", expires_in), token_answer("token-second-002")])
    clock = Clock(1000.0)
    auth = make_oauth(session, clock)

    first = await auth.headers(PATH)
    clock.now = 1000.0 + refresh_after - 0.001
    still = await auth.headers(PATH)
    requests_before_refresh = len(server.requests)
    clock.now = 1000.0 + refresh_after
    refreshed = await auth.headers(PATH)

    assert first == still == {"Authorization": "Bearer token-first-0001"}
    assert requests_before_refresh == 1
    assert refreshed == {"Authorization": "Bearer token-second-002"}
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("expires_in", "refresh_after"),
    [("nan", 1740.0), ("inf", 86_340.0), ("1e400", 86_340.0)],
    ids=["nan-means-the-default-1800s", "infinite-is-one-day", "overflowing-is-one-day"],
)
async def test_oauth_token_lifetime_that_is_not_a_number_is_bounded(
    session: aiohttp.ClientSession, mock_http: aioresponses, expires_in: str, refresh_after: float
) -> None:
    """expires_in "nan" is taken as 1800 s and an infinite one as a day, so the token is reused, then refreshed."""
    odd = orjson.dumps({"access_token": "token-first-0001", "expires_in": expires_in})
    server = TokenServer(mock_http, [(200, odd), token_answer("token-second-002")])
    clock = Clock(1000.0)
    auth = make_oauth(session, clock)

    await auth.headers(PATH)
    clock.now = 1000.0 + refresh_after - 0.001
    still = await auth.headers(PATH)
    clock.now = 1000.0 + refresh_after
    refreshed = await auth.headers(PATH)

    assert (still, refreshed) == (
        {"Authorization": "Bearer token-first-0001"},
        {"Authorization": "Bearer token-second-002"},
    )
    assert len(server.requests) == 2


async def test_oauth_concurrent_callers_share_one_token_request(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """Twenty callers at once while the token request is in flight: one request, one token for all."""
    server = TokenServer(mock_http, [token_answer("token-shared-0001")], delay=0.05)
    auth = make_oauth(session)

    results = await asyncio.gather(*(auth.headers(PATH) for _ in range(20)))

    assert len(server.requests) == 1
    assert {r["Authorization"] for r in results} == {"Bearer token-shared-0001"}
    assert auth.tokens_issued == 1


async def test_oauth_concurrent_callers_against_the_simulator_get_one_token(session: aiohttp.ClientSession) -> None:
    """Against the loopback API: ten concurrent callers, the server issues exactly one token."""
    sim = FakeMimecast(SimSettings())
    await sim.start()
    try:
        auth = OAuth2Auth(
            sim.base_url,
            sim.settings.client_id,
            sim.settings.client_secret,
            session,
            timeout=aiohttp.ClientTimeout(total=5),
        )
        results = await asyncio.gather(*(auth.headers(PATH) for _ in range(10)))
    finally:
        await sim.stop()

    assert sim.stats.tokens_issued == 1
    assert {r["Authorization"] for r in results} == {f"Bearer {sim.issued_tokens[0]}"}


async def test_oauth_invalidate_forces_a_refresh(session: aiohttp.ClientSession, mock_http: aioresponses) -> None:
    """After invalidate() the next call fetches a new token although the old one has not expired."""
    server = TokenServer(mock_http, [token_answer("token-first-0001"), token_answer("token-second-002")])
    auth = make_oauth(session)

    first = await auth.headers(PATH)
    auth.invalidate()
    second = await auth.headers(PATH)

    assert first == {"Authorization": "Bearer token-first-0001"}
    assert second == {"Authorization": "Bearer token-second-002"}
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_oauth_rejected_credentials_are_fatal_with_a_hint(
    session: aiohttp.ClientSession, mock_http: aioresponses, status: int
) -> None:
    """400/401/403 from the token endpoint: FATAL ApiError naming client_id / client_secret."""
    TokenServer(mock_http, [(status, b'{"error": "invalid_client"}')])

    with pytest.raises(ApiError) as caught:
        await make_oauth(session).headers(PATH)

    assert caught.value.action is Action.FATAL
    assert caught.value.status == status
    assert caught.value.hint is not None
    assert "client_id" in caught.value.hint
    assert "client_secret" in caught.value.hint


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_oauth_server_errors_are_retryable(
    session: aiohttp.ClientSession, mock_http: aioresponses, status: int
) -> None:
    """5xx from the token endpoint: RETRY, and no token is cached."""
    TokenServer(mock_http, [(status, b"<html>gateway trouble</html>"), token_answer("token-after-5xx1")])
    auth = make_oauth(session)

    with pytest.raises(ApiError) as caught:
        await auth.headers(PATH)
    recovered = await auth.headers(PATH)

    assert caught.value.action is Action.RETRY
    assert caught.value.status == status
    assert recovered == {"Authorization": "Bearer token-after-5xx1"}


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b'{"access_token": "tok',
        b"[]",
        b"{}",
        b'{"access_token": 12345}',
        b'{"access_token": ""}',
        b'{"access_token": "token-valid-0001", "expires_in": "soon"}',
    ],
    ids=["not-json", "truncated", "array", "no-token", "token-not-string", "token-empty", "bad-expiry"],
)
async def test_oauth_malformed_token_answers_are_retryable(
    session: aiohttp.ClientSession, mock_http: aioresponses, body: bytes
) -> None:
    """A 200 whose body is not a usable token answer: RETRY ApiError, nothing cached."""
    TokenServer(mock_http, [(200, body)])
    auth = make_oauth(session)

    with pytest.raises(ApiError) as caught:
        await auth.headers(PATH)

    assert caught.value.action is Action.RETRY
    assert auth.tokens_issued == 0


async def test_oauth_token_is_registered_as_a_secret(session: aiohttp.ClientSession, mock_http: aioresponses) -> None:
    """The issued bearer token is masked in every log string from then on."""
    token = "token-must-never-be-logged-7f3a"
    TokenServer(mock_http, [token_answer(token)])

    await make_oauth(session).headers(PATH)

    assert redact(token) == "***"
    assert redact(f"Authorization: Bearer {token}") == "Authorization: Bearer ***"


async def test_refreshed_tokens_replace_old_ones_in_the_mask_list(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """A daemon refreshes its token every half hour for months: the current and the previous token
    stay masked, older ones leave the list instead of piling up (every log line checks them all)."""
    clock = Clock()
    tokens = [f"rotating-token-{n:04d}-abcdef" for n in range(5)]
    TokenServer(mock_http, [token_answer(t, expires_in=100) for t in tokens])
    auth = make_oauth(session, clock)
    before = secrets_masked()

    for _ in tokens:
        await auth.headers(PATH)
        clock.now += 100

    assert auth.tokens_issued == 5
    assert [redact(t) for t in tokens] == [tokens[0], tokens[1], tokens[2], "***", "***"]
    assert secrets_masked() == before + 2
