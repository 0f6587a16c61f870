"""What every HTTP-based sink shares: TLS and proxy options, gzip, and one table for answers.

Credentials in the target URL (``https://user:password@host/``) are moved at load into a Basic
``Authorization`` header: the URL the sink uses, logs and reports has none, and the password is a
:class:`Secret`. A proxy URL keeps its credentials (aiohttp sends them to the proxy only); its
password is a Secret too, so it is masked wherever it could be logged.

A batch is accepted only on a 2xx. 408, 429 (honouring Retry-After), 5xx and network errors are
retryable: the dispatcher sends the same batch again with backoff, forever, while the spool keeps
it. Any other 4xx means the target refuses the request as built (bad token, bad URL, bad data):
retrying cannot help, so it is reported as such and retried only slowly.
"""

from __future__ import annotations

import base64
import gzip
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path

import aiohttp
import anyio

from collector.config.errors import ConfigError
from collector.config.options import READ_FILE, Secret, option, require_http_url, split_credentials
from collector.sinks.base import SinkError, SinkSettings
from collector.tls import client_context

#: HTTP statuses a sink may retry; every other non-2xx is a refusal.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, kw_only=True)
class HttpSettings(SinkSettings):
    url: str = option(doc="target URL (http or https)")
    timeout_secs: float = option(30.0, min=1, max=600, doc="whole request, including the answer")
    connect_timeout_secs: float = option(10.0, min=1, max=120)
    verify_tls: bool = option(True)
    ca_file: Path | None = option(None, doc="CA bundle that signs the target's certificate", path_kind=READ_FILE)
    cert_file: Path | None = option(None, doc="client certificate (mutual TLS)", path_kind=READ_FILE)
    key_file: Path | None = option(None, doc="client certificate's private key", path_kind=READ_FILE)
    proxy: str | None = option(None, doc="HTTP(S) proxy URL")
    gzip: bool = option(True, doc="compress request bodies")
    # Not options: taken out of url and proxy at load (see the module's docstring).
    url_username: str | None = field(default=None, repr=False)
    url_password: Secret | None = None
    proxy_password: Secret | None = None

    def __post_init__(self) -> None:
        require_http_url(self.url, f"sinks.{self.name}.url", "https://siem.example:8088", credentials=True)
        url, user, password = split_credentials(self.url)
        if user is not None:
            explicit = self.explicit_auth()
            if explicit is not None:  # two Authorization headers: which one wins is anybody's guess
                raise ConfigError(
                    f"sinks.{self.name}.{explicit}",
                    "set, but url carries user:password@ as well",
                    f"keep one way of authenticating: remove {explicit}, or the user:password@ of url",
                )
            object.__setattr__(self, "url", url)  # frozen: the only way, and only here, at construction
            object.__setattr__(self, "url_username", user)
            object.__setattr__(self, "url_password", Secret(password or ""))
        if self.proxy is not None:
            require_http_url(self.proxy, f"sinks.{self.name}.proxy", "http://proxy:3128", credentials=True)
            _, _, proxy_password = split_credentials(self.proxy)
            if proxy_password:
                object.__setattr__(self, "proxy_password", Secret(proxy_password))
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError(
                f"sinks.{self.name}.cert_file", "cert_file and key_file go together", "set both, or neither"
            )

    def explicit_auth(self) -> str | None:
        """The key of an authentication option that is set (each sink type names its own), if any."""
        return None


def basic_authorization(user: str, password: str) -> str:
    """An ``Authorization: Basic`` value (UTF-8, as RFC 7617 recommends)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def tls_context(settings: HttpSettings) -> ssl.SSLContext | bool:
    """aiohttp's ``ssl=``: verification on by default; a CA bundle and a client certificate if set."""
    if settings.ca_file is None and settings.cert_file is None:
        return settings.verify_tls
    return client_context(
        verify=settings.verify_tls, ca_file=settings.ca_file, cert_file=settings.cert_file, key_file=settings.key_file
    )


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class HttpClient:
    """One aiohttp session per sink; every failure comes out as a classified :class:`SinkError`."""

    def __init__(self, settings: HttpSettings, headers: Mapping[str, str]) -> None:
        self.settings = settings
        self._headers = dict(headers)
        if settings.url_username is not None:  # the loader refused a second Authorization already
            password = settings.url_password.reveal() if settings.url_password is not None else ""
            self._headers["Authorization"] = basic_authorization(settings.url_username, password)
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | bool = True

    async def open(self) -> None:
        try:
            self._ssl = tls_context(self.settings)
        except (OSError, ssl.SSLError) as exc:
            raise SinkError(
                f"TLS files of sink {self.settings.name!r} cannot be loaded: {exc}", retryable=False
            ) from None
        timeout = aiohttp.ClientTimeout(
            total=self.settings.timeout_secs, sock_connect=self.settings.connect_timeout_secs
        )
        self._session = aiohttp.ClientSession(timeout=timeout, headers=self._headers)

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            with anyio.CancelScope(shield=True):
                await session.close()

    async def request(
        self, method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Answer:
        """Send one request; 2xx comes back, anything else raises a classified SinkError."""
        if self._session is None:
            await self.open()
        assert self._session is not None
        extra = dict(headers or {})
        if body is not None and self.settings.gzip:
            body = gzip.compress(body, compresslevel=5)
            extra["Content-Encoding"] = "gzip"
        try:
            # No redirects: following one turns the POST into a body-less GET whose 200 would
            # count the batch as delivered. A 3xx is reported as a refusal instead.
            async with self._session.request(
                method, url, data=body, headers=extra, ssl=self._ssl, proxy=self.settings.proxy, allow_redirects=False
            ) as response:
                answer = Answer(response.status, dict(response.headers), await response.read())
        except aiohttp.ClientConnectorCertificateError as exc:
            raise SinkError(
                f"TLS verification failed for {url}: {exc.certificate_error}; set ca_file", retryable=False
            ) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SinkError(f"{method} {url} failed: {type(exc).__name__}: {exc}".rstrip(": ")) from None
        if 200 <= answer.status < 300:
            return answer
        raise refusal(method, url, answer)

    async def probe(self, method: str, url: str) -> int:
        """Reachability for health checks: the status, or SinkError on network, TLS or 5xx failure."""
        try:
            return (await self.request(method, url)).status
        except SinkError as error:
            if error.status is not None and error.status < 500:
                return error.status
            raise


class HttpSinkBase:
    """Open and close shared by the HTTP-based sinks; each sets ``_http`` and sends its own way."""

    _http: HttpClient

    async def open(self) -> None:
        await self._http.open()

    async def close(self) -> None:
        await self._http.close()


def refusal(method: str, url: str, answer: Answer) -> SinkError:
    """The SinkError for a non-2xx answer, per :data:`RETRYABLE_STATUSES`."""
    snippet = answer.body[:300].decode("utf-8", "replace").strip()
    retryable = answer.status in RETRYABLE_STATUSES
    return SinkError(
        f"{method} {url} answered {answer.status}: {snippet}",
        retryable=retryable,
        retry_after_secs=retry_after(answer.headers) if retryable else None,
        status=answer.status,
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds, given as a number or an HTTP date; None when absent or garbled."""
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def join_url(base: str, path: str) -> str:
    return base.rstrip("/") + path
