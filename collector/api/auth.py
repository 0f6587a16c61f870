"""Request authentication: HMAC signing (API 1.0) and OAuth2 client credentials (API 2.0)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
import anyio
import orjson

from collector.api.body import ACCEPT_ENCODING, read_capped
from collector.api.errors import REDIRECT_STATUSES, Action, AnswerTooLarge, ApiError, redirect_error, rule_for_status
from collector.api.limiter import RateHeaders, throttle_wait_secs
from collector.config.model import AccountConfig
from collector.logs import register_secret
from collector.timeutil import hmac_date

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a password
TOKEN_ANSWER_MAX_BYTES = 1 << 20  # a token answer is a few hundred bytes
DEFAULT_TOKEN_LIFETIME_SECS = 1800.0
MAX_TOKEN_LIFETIME_SECS = 86_400.0


class Authenticator(Protocol):
    oauth2: bool

    async def headers(self, path: str) -> dict[str, str]:
        """Headers for one attempt of a request to ``path`` (fresh on every call)."""

    def invalidate(self) -> None:
        """Forget any cached credential (called after the API rejected it)."""


def hmac_signature(secret_key_b64: str, date: str, request_id: str, path: str, app_key: str) -> str:
    """``base64(HMAC-SHA1(base64decode(secret), "{date}:{req_id}:{path}:{app_key}"))``."""
    key = base64.b64decode(secret_key_b64)
    message = f"{date}:{request_id}:{path}:{app_key}".encode()
    return base64.b64encode(hmac.new(key, message, hashlib.sha1).digest()).decode().strip()


class HmacAuth:
    oauth2 = False

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        app_id: str,
        app_key: str,
        *,
        clock: Callable[[], float] = time.time,
        new_request_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self._app_id = app_id
        self._app_key = app_key
        self._clock = clock
        self._new_request_id = new_request_id

    async def headers(self, path: str) -> dict[str, str]:
        date = hmac_date(self._clock())
        request_id = self._new_request_id()
        signature = hmac_signature(self._secret_key, date, request_id, path, self._app_key)
        return {
            "x-mc-date": date,
            "x-mc-req-id": request_id,
            "x-mc-app-id": self._app_id,
            "Authorization": f"MC {self._access_key}:{signature}",
        }

    def invalidate(self) -> None:
        """HMAC has nothing cached; a rejected signature is reported as fatal by the caller."""


class OAuth2Auth:
    """Client-credentials tokens, cached and refreshed early; one refresh at a time per account."""

    oauth2 = True

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        session: aiohttp.ClientSession,
        *,
        timeout: aiohttp.ClientTimeout,
        ssl: Any = True,
        proxy: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = f"{base_url}{TOKEN_PATH}"
        self._form = {
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": "client_credentials",
        }
        self._session = session
        self._timeout = timeout
        self._ssl = ssl
        self._proxy = proxy
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = anyio.Lock()
        self._not_before = 0.0
        self._throttled_in_a_row = 0
        self.tokens_issued = 0

    async def headers(self, path: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self._current_token()}"}

    def invalidate(self) -> None:
        self._token = None

    async def _current_token(self) -> str:
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        async with self._lock:  # the first caller refreshes; the others reuse its token
            if self._token is None or self._clock() >= self._refresh_at:
                wait = self._not_before - self._clock()
                if wait > 0:  # the token endpoint throttled us: ask again only after its reset
                    await anyio.sleep(wait)
                await self._fetch_token()
            assert self._token is not None
            return self._token

    async def _fetch_token(self) -> None:
        requested_at = self._clock()
        # The form carries client_id and client_secret: it never follows a redirect to another host.
        async with self._session.post(
            self._url,
            data=self._form,
            headers={"Accept-Encoding": ACCEPT_ENCODING},
            timeout=self._timeout,
            ssl=self._ssl,
            proxy=self._proxy,
            allow_redirects=False,
            auto_decompress=False,
        ) as response:
            status = response.status
            if status in REDIRECT_STATUSES:
                raise redirect_error(status, response.headers.get("Location"), "the OAuth2 token endpoint")
            try:
                body = await read_capped(response, TOKEN_ANSWER_MAX_BYTES)
            except AnswerTooLarge:  # not a page: a smaller page_size would not help
                raise ApiError(Action.RETRY, "OAuth2 token answer is over 1 MiB", status=status) from None
            if status == 429:
                self._throttled(RateHeaders.parse(response.headers))
        if status != 200:
            raise ApiError(
                rule_for_status(status).action,  # the table: 400/401/403 are fatal here, 429/5xx retried
                "OAuth2 token request failed",
                status=status,
                hint="check client_id / client_secret and the API 2.0 application's permissions",
            )
        try:
            answer = orjson.loads(body)
            token = answer["access_token"]
            lifetime = float(answer.get("expires_in", DEFAULT_TOKEN_LIFETIME_SECS))
        except (ValueError, KeyError, TypeError):
            raise ApiError(Action.RETRY, "OAuth2 token answer is malformed", status=status) from None
        if not isinstance(token, str) or not token:
            raise ApiError(Action.RETRY, "OAuth2 token answer has no access_token", status=status)
        if math.isnan(lifetime):  # NaN never compares as "due", so the token would be fetched on every call
            lifetime = DEFAULT_TOKEN_LIFETIME_SECS
        lifetime = min(lifetime, MAX_TOKEN_LIFETIME_SECS)
        register_secret(token, rotating=f"oauth2-token:{id(self)}")
        # Refresh ahead of expiry: 60 s for normal tokens, a fifth of the lifetime for short ones.
        margin = min(60.0, lifetime / 5)
        self._token = token
        self._refresh_at = requested_at + max(0.0, lifetime - margin)
        self._throttled_in_a_row = 0
        self.tokens_issued += 1

    def _throttled(self, headers: RateHeaders) -> None:
        self._throttled_in_a_row += 1
        self._not_before = self._clock() + throttle_wait_secs(headers, self._throttled_in_a_row, 60.0)


def make_authenticator(
    account: AccountConfig,
    session: aiohttp.ClientSession,
    *,
    timeout: aiohttp.ClientTimeout,
    ssl: Any,
    proxy: str | None,
) -> Authenticator:
    """The authenticator an account's ``auth`` option names (secrets are checked by the loader)."""
    if account.auth == "oauth2":
        assert account.client_id is not None
        assert account.client_secret is not None
        return OAuth2Auth(
            account.url,
            account.client_id,
            account.client_secret.reveal(),
            session,
            timeout=timeout,
            ssl=ssl,
            proxy=proxy,
        )
    assert account.access_key is not None
    assert account.secret_key is not None
    assert account.app_id is not None
    assert account.app_key is not None
    return HmacAuth(account.access_key.reveal(), account.secret_key.reveal(), account.app_id, account.app_key.reveal())
