"""The typed, frozen configuration. Every option is declared here once, with its default and bounds.

``config/collector.example.toml`` documents the same options for operators; a test keeps the two
in step.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from collector.config.errors import ConfigError
from collector.config.options import READ_FILE, WRITE_FILE, Secret, option
from collector.config.sinks import SinkSettings
from collector.logs import mask_url_credentials
from collector.logtypes import DEFAULT_STREAMS, LOG_TYPES

DAY = 86_400

#: API 1.0 (HMAC) regional hosts.
HMAC_REGIONS = {r: f"https://{r}-api.mimecast.com" for r in ("eu", "de", "us", "usb", "ca", "za", "au", "jer")}
#: API 2.0 (OAuth2) hosts.
OAUTH2_REGIONS = {
    "global": "https://api.services.mimecast.com",
    "uk": "https://uk-api.services.mimecast.com",
    "us": "https://us-api.services.mimecast.com",
}


@dataclass(frozen=True)
class StateConfig:
    path: Path = option(
        Path("/var/lib/mimecast-collector/collector.db"), doc="SQLite state and spool", path_kind=WRITE_FILE
    )
    dedup_retention_secs: int = option(
        3600, min=0, max=30 * DAY, doc="keep dedup keys this long past the overlap they guard"
    )
    synchronous: str = option("normal", choices=("normal", "full"), doc="SQLite synchronous mode")
    max_spool_bytes: int = option(1 << 30, min=0, max=1 << 50, doc="spool high-water mark in bytes; 0 = none")
    max_spool_events: int = option(0, min=0, max=1 << 40, doc="spool high-water mark in events; 0 = none")
    when_full: str = option("block", choices=("block", "drop_oldest"), doc="what a full spool does")
    # PostgreSQL: state shared by replicas (README: Running more than one). `path` is then unused.
    backend: str = option("sqlite", choices=("sqlite", "postgresql"), doc="where state lives")
    url: str | None = option(None, doc="postgresql://user@host:5432/db (sslmode and the like as ?query)")
    password: Secret | None = option(None, secret=True)
    schema: str = option("mimecast_collector", doc="PostgreSQL schema the collector creates and owns")
    lease_secs: float = option(30.0, min=3, max=3600, doc="a replica's lease on a stream or sink expires after")
    node: str | None = option(
        None, doc="this replica's name in leases and status; default host name + pid + a random part"
    )

    def __post_init__(self) -> None:
        if self.backend == "sqlite":
            return
        check_postgres_url(self.url)
        if not _IDENTIFIER.fullmatch(self.schema):
            raise ConfigError(
                "state.schema",
                f"{self.schema!r} is not a plain identifier",
                'use letters, digits and _, e.g. "mimecast_collector"',
            )
        if self.node is not None and not _NODE.fullmatch(self.node):
            raise ConfigError(
                "state.node", f"{self.node!r} is not a node name", "use 1-100 letters, digits, '.', '_' or '-'"
            )


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_NODE = re.compile(r"[A-Za-z0-9._-]{1,100}")


def check_postgres_url(url: str | None) -> None:
    """A ConfigError for state.url unless it is a postgresql:// URL with a host and a database, and
    no password in it (it would show wherever the URL does: the password has options of its own)."""
    example = 'write e.g. "postgresql://collector@db.example:5432/collector"'
    if url is None:
        raise ConfigError("state.url", 'backend = "postgresql" needs a url', example)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise ConfigError("state.url", f"{mask_url_credentials(url)!r} is not a postgresql:// URL", example)
    if parts.password is not None or {"password", "sslpassword"} & set(parse_qs(parts.query)):
        raise ConfigError(
            "state.url", "a password is not allowed in the URL", "put it in state.password_file or state.password"
        )
    if not parts.path.strip("/") or port == 0:
        raise ConfigError("state.url", "the URL names no database", example)


AUTO_WORKERS_MAX = 4


@dataclass(frozen=True)
class ServiceConfig:
    shutdown_grace_secs: float = option(30.0, min=0, max=3600, doc="time sinks get to drain on SIGTERM")
    listen: str | None = option(None, doc="host:port for /healthz, /readyz and /metrics; off when unset")
    workers: int | None = option(
        None, min=0, max=64, doc="processes that normalize pages; unset: one per core beyond the first (at most 4)"
    )

    def __post_init__(self) -> None:
        if self.listen is None:
            return
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(
                "service.listen",
                f"{self.listen!r} is not host:port",
                'write e.g. "127.0.0.1:9464" (port 0 picks a free one)',
            )

    @property
    def worker_count(self) -> int:
        """``workers``, or one per core this process may run on beyond the one its event loop uses. At
        most AUTO_WORKERS_MAX then: past that the event loop (fetch, commit, deliver) is the limit, and
        each worker holds ~35 MiB (bench/throughput.py)."""
        if self.workers is not None:
            return self.workers
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        return max(0, min(AUTO_WORKERS_MAX, cores - 1))


@dataclass(frozen=True)
class StreamOptions:
    """Per-stream overrides: ``[accounts.<name>.<log type>]``."""

    page_size: int | None = option(None, min=1, max=1000, doc="records asked for per page")
    path: str | None = option(None, doc="endpoint path override")
    # SIEM batch log types only (the loader refuses it elsewhere): the `type` values to collect, each
    # its own stream. None: all of the log type's types.
    types: tuple[str, ...] | None = option(None, doc="SIEM batch types to collect, each its own stream")
    filters: dict[str, Any] = field(default_factory=dict)  # request field -> value, checked per log type


@dataclass(frozen=True)
class AccountConfig:
    name: str
    auth: str = option(choices=("hmac", "oauth2"), doc="hmac (API 1.0) or oauth2 (API 2.0)")
    region: str | None = option(None, doc="region name; base_url wins when both are set")
    base_url: str | None = option(None, doc="full API base URL")
    access_key: Secret | None = option(None, secret=True)
    secret_key: Secret | None = option(None, secret=True)
    app_id: str | None = option(None)
    app_key: Secret | None = option(None, secret=True)
    client_id: str | None = option(None)
    client_secret: Secret | None = option(None, secret=True)
    streams: tuple[str, ...] = option(DEFAULT_STREAMS, choices=tuple(LOG_TYPES))
    start: str | None = option(None, doc="where a stream with no saved position begins (default: 24 h ago)")
    poll_interval_secs: float = option(60.0, min=1, max=DAY)
    lag_secs: int = option(60, min=0, max=DAY, doc="how far behind now a window ends")
    overlap_secs: int = option(5, min=0, max=3600, doc="how far each query reaches back before its window")
    max_window_secs: int = option(
        7 * DAY, min=60, max=7 * DAY, doc="longest window during a backfill (windows hold about 100 pages within it)"
    )
    page_size: int = option(500, min=1, max=1000)
    verify_tls: bool = option(True)
    ca_file: Path | None = option(None, doc="extra CA bundle for TLS verification", path_kind=READ_FILE)
    proxy: str | None = option(None, doc="HTTP(S) proxy URL")
    request_timeout_secs: float = option(120.0, min=1, max=3600)
    connect_timeout_secs: float = option(15.0, min=1, max=600)
    max_response_bytes: int = option(
        64 << 20, min=1 << 16, max=1 << 32, doc="largest API answer read, on the wire and inflated"
    )
    retry_max_secs: float = option(60.0, min=1, max=3600, doc="longest backoff between retries")
    fatal_retry_secs: float = option(900.0, min=5, max=DAY, doc="wait before retrying a stream after a fatal error")
    max_requests_per_minute: float | None = option(
        None, min=0.1, max=100_000, doc="ceiling per endpoint, whatever the headers say"
    )
    max_wait_secs: float = option(
        300.0, min=1, max=DAY, doc="longest wait a rate-limit answer may impose; longer asks are capped and logged"
    )
    siem_max_line_bytes: int = option(
        1 << 20, min=1 << 10, max=1 << 30, doc="longest SIEM batch file line kept whole; longer ones are cut"
    )
    siem_max_file_bytes: int = option(8 << 30, min=1 << 20, max=1 << 40, doc="largest SIEM batch file read, inflated")
    start_secs: int | None = None  # parsed `start`, filled in by the loader
    proxy_password: Secret | None = None  # the password in `proxy`, filled in by the loader so logs mask it
    stream_options: dict[str, StreamOptions] = field(default_factory=dict)

    def default_start(self, *, now: float) -> int:
        """Where a stream with no saved position begins: ``start``, else 24 hours before ``now``."""
        return self.start_secs if self.start_secs is not None else int(now) - DAY

    @property
    def url(self) -> str:
        """The base URL to call, without a trailing slash."""
        if self.base_url:
            return self.base_url.rstrip("/")
        regions = HMAC_REGIONS if self.auth == "hmac" else OAUTH2_REGIONS
        return regions[self.region or ""]

    @property
    def credential_id(self) -> str:
        """Identifies a rate-limit bucket owner without revealing a secret."""
        who = self.client_id if self.auth == "oauth2" else (self.access_key.reveal() if self.access_key else "")
        digest = hashlib.sha256(f"{self.url}|{who}".encode()).hexdigest()[:16]
        return f"{self.auth}:{digest}"


@dataclass(frozen=True)
class Config:
    source: Path
    state: StateConfig
    service: ServiceConfig
    accounts: tuple[AccountConfig, ...]
    sinks: tuple[SinkSettings, ...]

    def account(self, name: str) -> AccountConfig:
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)
