"""The OAuth2 token endpoint's 429 waits at most the default cap, however long it asks for."""

from __future__ import annotations

import aiohttp
import anyio
import orjson
import pytest
from aioresponses import aioresponses

from collector.api.auth import OAuth2Auth
from collector.api.errors import ApiError
from tests.helpers import MockResponse

BASE = "https://api.services.mimecast.example"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_token_endpoint_retry_after_of_31_years_waits_five_minutes(
    session: aiohttp.ClientSession, mock_http: aioresponses
) -> None:
    """After a token 429 with Retry-After 999999999, a token is asked for again once 300 s have passed."""
    token = f"{BASE}/oauth/token"
    mock_http.post(token, status=429, body=b"{}", headers={"Retry-After": "999999999"}, response_class=MockResponse)
    fresh = orjson.dumps({"access_token": "fresh-token", "expires_in": 1800})
    mock_http.post(token, status=200, body=fresh, response_class=MockResponse)
    clock = Clock()
    auth = OAuth2Auth(BASE, "client", "secret", session, timeout=aiohttp.ClientTimeout(total=5), clock=clock)
    with pytest.raises(ApiError) as throttled:  # the client retries it; here only the wait after it matters
        await auth.headers("/api/x")
    assert throttled.value.status == 429
    clock.now += 300.5  # five minutes on: the gate must be open, so no real sleep follows

    with anyio.fail_after(5):
        assert await auth.headers("/api/x") == {"Authorization": "Bearer fresh-token"}
