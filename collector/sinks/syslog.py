"""``type = "syslog"``: RFC 5424 (or RFC 3164) messages over UDP, TCP or TLS.

One event is one syslog message whose MSG is the event's encoded line. RFC 5424 headers carry the
event time, ``app_name``, the process id and the log type as MSGID; structured data is ``-`` (an
SD-ID of our own would need an IANA enterprise number; the account is in the payload's labels).
No UTF-8 BOM is written: RFC 5424 allows MSG without one, and receivers such as rsyslog keep the
BOM inside the message, where it breaks JSON/CEF parsers downstream. RFC 3164 (``<PRI>Mmm dd
hh:mm:ss HOSTNAME APP[PID]: MSG``) has no year or zone: its timestamp is UTC. TLS is 1.2 or newer,
verified against ``ca_file`` (or the system CAs) and ``server_name`` unless ``verify = false``.

Framing (RFC 6587): TCP and TLS use octet counting (``LEN SP MSG``) unless ``framing = "newline"``
(``MSG LF``; a stray LF in a payload becomes a space so it cannot split an event). UDP sends one
message per datagram (RFC 5426). A message longer than ``max_message_bytes`` (header included) is cut
at a UTF-8 character boundary and counted; a cut JSON payload no longer parses, so raise the limit
(and the receiver's, e.g. rsyslog ``global(maxMessageSize="64k")``) or prefer TCP/TLS. The UDP
default of 2048 is what RFC 5426 says receivers SHOULD accept, and holds a typical event (~1.5 kB).

Severity ``auto`` reads the event:

    warning  a malicious verdict (``event.type`` holds ``indicator``) or ``event.action`` block/hold
    notice   another action taken (bounce, reject, warn), an admin's archive search, or an event
             the collector could not normalize (it carries ``error``)
    info     anything else

Delivery: TCP has no application acknowledgement. A batch counts as sent once it is written, drained
and, on Linux, acknowledged by the receiver's TCP stack (SIOCOUTQ reaches 0; about one round trip).
A connection found closed before a batch is replaced; one that breaks during a batch is dropped and
SinkError(retryable=True) is raised, so the dispatcher sends the whole batch again: duplicates, not
loss. What remains possible: bytes the receiver's kernel acknowledged but its process never read
(a receiver crash) are lost; only RELP or an application ack would close that gap. UDP has no
delivery guarantee at all. The connection is made lazily: ``open`` never fails because the
receiver is down.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import ssl
import struct
import sys
import termios
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from collector.config.errors import ConfigError
from collector.config.options import READ_FILE, option
from collector.logs import get_logger
from collector.sinks.base import OutEvent, SinkContext, SinkError, SinkPlugin, SinkSettings
from collector.tls import client_context

SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_FACILITY_NAMES = (
    *("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news"),
    *("uucp", "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron"),
)
FACILITIES = {name: code for code, name in enumerate(_FACILITY_NAMES)} | {f"local{i}": 16 + i for i in range(8)}
DEFAULT_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}
DEFAULT_MAX_BYTES = {"udp": 2048, "tcp": 65536, "tls": 65536}
MIN_MESSAGE_BYTES = 480  # RFC 5426: every receiver accepts this much; the longest header fits in it
MAX_UDP_PAYLOAD = 65507  # IPv4 datagram limit
_WARNING_ACTIONS = frozenset({"block", "hold"})
_NOTICE_ACTIONS = frozenset({"bounce", "reject", "warn"})
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CLOSE_TIMEOUT_SECS = 5.0
# Linux's SIOCOUTQ (== TIOCOUTQ) on a TCP socket: bytes the peer has not acknowledged yet. Elsewhere
# the meaning differs, so there a batch is done once drain() returns.
_OUTQ = termios.TIOCOUTQ if sys.platform == "linux" else None


@dataclass(frozen=True, kw_only=True)
class SyslogSinkSettings(SinkSettings):
    host: str = option(doc="syslog receiver host name or address")
    port: int = option(0, min=0, max=65535, doc="receiver port; 0 = 514 for udp/tcp, 6514 for tls")
    transport: str = option("tcp", choices=("udp", "tcp", "tls"), doc="udp, tcp, or tls (RFC 5425)")
    framing: str = option(
        "auto",
        choices=("auto", "octet-counting", "newline"),
        doc="tcp/tls framing (RFC 6587); auto = octet-counting. Not used with udp",
    )
    protocol: str = option("rfc5424", choices=("rfc5424", "rfc3164"), doc="message format")
    facility: str = option("local0", doc='facility name (e.g. "local0", "auth") or number as text "0".."23"')
    severity: str = option("auto", choices=(*SEVERITIES, "auto"), doc="fixed severity, or auto (from the event)")
    app_name: str = option("mimecast-collector", doc="APP-NAME (RFC 5424) / TAG (RFC 3164)")
    hostname: str = option("", doc="HOSTNAME field; empty = this machine's host name")
    max_message_bytes: int = option(
        0, min=0, max=16 * 1024 * 1024, doc="longest message, header included; 0 = udp 2048, tcp/tls 65536"
    )
    ca_file: Path | None = option(
        None, doc="tls: CA bundle to verify the receiver; default: system CAs", path_kind=READ_FILE
    )
    cert_file: Path | None = option(None, doc="tls: client certificate (PEM) for mutual TLS", path_kind=READ_FILE)
    key_file: Path | None = option(None, doc="tls: private key of cert_file (PEM)", path_kind=READ_FILE)
    verify: bool = option(True, doc="tls: verify the receiver's certificate and name")
    server_name: str = option("", doc="tls: name to verify and send as SNI; empty = host")
    connect_timeout_secs: float = option(10.0, min=0.1, max=300, doc="connect and TLS handshake limit")
    write_timeout_secs: float = option(30.0, min=0.1, max=3600, doc="limit for sending one batch")

    def __post_init__(self) -> None:
        def fail(key: str, problem: str, fix: str) -> ConfigError:
            return ConfigError(f"sinks.{self.name}.{key}", problem, fix)

        if not self.host.strip():
            raise fail("host", "the host is empty", "give the receiver's host name or address")
        if self.facility not in FACILITIES and not (self.facility.isdigit() and 0 <= int(self.facility) <= 23):
            raise fail("facility", f"{self.facility!r} is not a facility", 'use a name like "local0" or "0".."23"')
        for key, text, longest in (("app_name", self.app_name, 48), ("hostname", self.hostname or "-", 255)):
            if not 0 < len(text) <= longest or not all(33 <= ord(c) <= 126 for c in text):
                raise fail(key, f"{text!r} is not a syslog header value", f"use 1-{longest} ASCII chars, no spaces")
        if self.transport == "udp" and self.framing != "auto":
            raise fail("framing", "udp sends one message per datagram", 'remove framing or use transport = "tcp"')
        limit = self.max_message_bytes
        if limit and limit < MIN_MESSAGE_BYTES:
            raise fail("max_message_bytes", f"{limit} is too small", f"use 0 or at least {MIN_MESSAGE_BYTES}")
        if self.transport == "udp" and limit > MAX_UDP_PAYLOAD:
            raise fail("max_message_bytes", f"{limit} exceeds a UDP datagram", f"use at most {MAX_UDP_PAYLOAD}")
        if self.transport != "tls":
            tls_only = {"ca_file": self.ca_file is not None, "cert_file": self.cert_file is not None}
            tls_only |= {"key_file": self.key_file is not None, "server_name": bool(self.server_name)}
            for key, is_set in (tls_only | {"verify": not self.verify}).items():
                if is_set:
                    raise fail(key, f"is a tls option but transport is {self.transport!r}", f"remove {key}")
        if (self.cert_file is None) != (self.key_file is None):
            key, other = ("key_file", "cert_file") if self.key_file is None else ("cert_file", "key_file")
            raise fail(key, f"{other} is set without {key}", "set both (they may name the same PEM file)")
        if self.ca_file is not None and not self.verify:
            raise fail("ca_file", "is ignored when verify = false", "remove ca_file, or set verify = true")

    @property
    def resolved_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.transport]

    @property
    def resolved_framing(self) -> str:
        """The framing on the wire: ``datagram`` for udp."""
        if self.transport == "udp":
            return "datagram"
        return "octet-counting" if self.framing == "auto" else self.framing

    @property
    def message_limit(self) -> int:
        return self.max_message_bytes or DEFAULT_MAX_BYTES[self.transport]


def facility_code(name: str) -> int:
    return FACILITIES[name] if name in FACILITIES else int(name)


def auto_severity(doc: dict[str, Any]) -> int:
    """The severity ``auto`` gives an ECS event (see the module's table)."""
    event, user = doc.get("event"), doc.get("user")
    event = event if isinstance(event, dict) else {}
    user = user if isinstance(user, dict) else {}
    action = str(event.get("action", "")).lower()
    if "indicator" in (event.get("type") or ()) or action in _WARNING_ACTIONS:
        return SEVERITIES.index("warning")
    if action in _NOTICE_ACTIONS or "admin" in (user.get("roles") or ()) or doc.get("error"):
        return SEVERITIES.index("notice")
    return SEVERITIES.index("info")


def cut_utf8(data: bytes, size: int) -> bytes:
    """At most ``size`` bytes of ``data``, never ending inside a multi-byte UTF-8 character."""
    if len(data) <= size:
        return data
    end = max(size, 0)
    while end > 0 and data[end] & 0xC0 == 0x80:  # a continuation byte: the cut would split a char
        end -= 1
    return data[:end]


def _header_token(text: str, longest: int) -> str:
    cleaned = "".join(c if 33 <= ord(c) <= 126 else "_" for c in text)[:longest]
    return cleaned or "-"


class SyslogSink:
    def __init__(self, settings: SyslogSinkSettings) -> None:
        self.settings = settings
        self.truncated = 0  # messages cut to max_message_bytes since start
        self._log = get_logger(sink=settings.name)
        self._where = f"syslog receiver {settings.host}:{settings.resolved_port} ({settings.transport})"
        self._hostname = settings.hostname or _header_token(socket.gethostname(), 255)
        self._pid = str(os.getpid())
        self._facility = facility_code(settings.facility)
        self._fixed_severity = None if settings.severity == "auto" else SEVERITIES.index(settings.severity)
        self._ssl: ssl.SSLContext | None = None
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._udp: socket.socket | None = None

    async def open(self) -> None:
        # Only local files are checked here: a receiver that is down must not stop the collector.
        if self.settings.transport == "tls":
            self._ssl = await asyncio.to_thread(_ssl_context, self.settings)
            if not self.settings.verify:
                self._log.warning("syslog_tls_unverified", receiver=self._where, hint="anyone on the path can read")

    async def send_batch(self, events: Sequence[OutEvent]) -> None:
        if not events:
            return
        messages = self._messages(events)
        if self.settings.transport == "udp":
            await self._send_datagrams(messages)
        elif self.settings.resolved_framing == "newline":
            await self._send_stream(b"".join(m + b"\n" for m in messages))
        else:
            await self._send_stream(b"".join(b"%d %b" % (len(m), m) for m in messages))

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._stream is not None:
            writer = self._stream[1]
            self._stream = None
            writer.close()
            try:
                async with asyncio.timeout(_CLOSE_TIMEOUT_SECS):
                    await writer.wait_closed()
            except (OSError, TimeoutError):
                writer.transport.abort()  # the receiver is gone; nothing left to flush to it

    async def health_check(self) -> None:
        if self.settings.transport == "udp":
            await self._resolve()
            return
        _, writer = await self._connect()
        writer.transport.abort()  # nothing was sent; no need to wait for a polite close

    # --- messages ---------------------------------------------------------------------------------

    def _messages(self, events: Sequence[OutEvent]) -> list[bytes]:
        limit, cut = self.settings.message_limit, 0
        messages = []
        for event in events:
            header = self._header(event)
            body = event.line
            if self.settings.resolved_framing == "newline" and b"\n" in body:
                body = body.replace(b"\n", b" ")
            if len(header) + len(body) > limit:
                body = cut_utf8(body, limit - len(header))
                cut += 1
            messages.append(header + body)
        if cut:
            self.truncated += cut
            self._log.warning(
                "syslog_messages_truncated",
                messages=cut,
                max_message_bytes=limit,
                total=self.truncated,
                hint="raise max_message_bytes (and the receiver's limit) or use tcp: cut JSON no longer parses",
            )
        return messages

    def _header(self, event: OutEvent) -> bytes:
        s = self.settings
        severity = self._fixed_severity
        if severity is None:
            try:
                doc = orjson.loads(event.doc)
            except orjson.JSONDecodeError:
                doc = None
            severity = auto_severity(doc if isinstance(doc, dict) else {})  # a nicety: never fail a batch
        pri = self._facility * 8 + severity
        t = time.gmtime(event.time)
        if s.protocol == "rfc3164":
            stamp = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            return f"<{pri}>{stamp} {self._hostname} {s.app_name}[{self._pid}]: ".encode()
        msgid = _header_token(event.log_type, 32)
        stamp = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}Z"
        return f"<{pri}>1 {stamp} {self._hostname} {s.app_name} {self._pid} {msgid} - ".encode()

    # --- transports -------------------------------------------------------------------------------

    async def _send_stream(self, payload: bytes) -> None:
        reader, writer = await self._connection()
        try:
            async with asyncio.timeout(self.settings.write_timeout_secs):
                writer.write(payload)
                await writer.drain()
                await _acknowledged(reader, writer)
        except (OSError, TimeoutError) as exc:
            self._drop()
            raise SinkError(f"{self._where}: sending failed ({_reason(exc)}); the batch will be sent again") from None
        except BaseException:
            self._drop()  # cancelled mid-frame: the next batch must not continue a half-written frame
            raise

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._stream is not None and _closed(*self._stream):
            self._log.info("syslog_connection_lost", receiver=self._where)
            self._drop()
        if self._stream is None:
            self._stream = await self._connect()
            self._log.info("syslog_connected", receiver=self._where)
        return self._stream

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        s = self.settings
        if s.transport == "tls" and self._ssl is None:
            self._ssl = await asyncio.to_thread(_ssl_context, s)
        try:
            async with asyncio.timeout(s.connect_timeout_secs):
                return await asyncio.open_connection(
                    s.host,
                    s.resolved_port,
                    ssl=self._ssl,
                    server_hostname=(s.server_name or s.host) if self._ssl else None,
                )
        except ssl.SSLCertVerificationError as exc:
            # A certificate that does not verify will not start verifying by itself.
            raise SinkError(
                f"{self._where}: TLS certificate rejected ({exc.verify_message}); set ca_file to the CA "
                "that signs the receiver's certificate, or server_name to a name in it",
                retryable=False,
            ) from None
        except ssl.SSLError as exc:
            dropped = isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError)
            raise SinkError(
                f"{self._where}: TLS handshake failed ({exc.reason or exc}); check the receiver's TLS "
                "settings and cert_file/key_file",
                retryable=dropped,
            ) from None
        except (OSError, TimeoutError) as exc:
            raise SinkError(f"{self._where}: cannot connect ({_reason(exc)})") from None

    def _drop(self) -> None:
        if self._stream is not None:
            self._stream[1].transport.abort()  # unsent bytes are discarded: the batch is sent again
            self._stream = None

    async def _send_datagrams(self, messages: list[bytes]) -> None:
        loop = asyncio.get_running_loop()
        address = None if self._udp is not None else (await self._resolve())[0]
        try:
            if address is not None:
                family, kind, proto, _, where = address
                self._udp = socket.socket(family, kind, proto)
                self._udp.setblocking(False)
                self._udp.connect(where)  # connected: ICMP "port unreachable" surfaces as an error here
            assert self._udp is not None
            async with asyncio.timeout(self.settings.write_timeout_secs):
                for message in messages:
                    await loop.sock_sendall(self._udp, message)
        except (OSError, TimeoutError) as exc:
            if self._udp is not None:
                self._udp.close()
                self._udp = None
            raise SinkError(f"{self._where}: sending failed ({_reason(exc)}); the batch will be sent again") from None

    async def _resolve(self) -> list[Any]:
        s = self.settings
        try:
            return await asyncio.get_running_loop().getaddrinfo(s.host, s.resolved_port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise SinkError(f"{self._where}: cannot resolve {s.host!r} ({_reason(exc)})") from None


def _ssl_context(settings: SyslogSinkSettings) -> ssl.SSLContext:
    try:
        return client_context(
            verify=settings.verify, ca_file=settings.ca_file, cert_file=settings.cert_file, key_file=settings.key_file
        )
    except (OSError, ssl.SSLError) as exc:
        raise SinkError(f"sinks.{settings.name}: cannot load TLS files ({_reason(exc)})", retryable=False) from None


def _closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether the receiver has closed or reset the connection (it never sends us data)."""
    return writer.transport.is_closing() or reader.at_eof() or reader.exception() is not None


async def _acknowledged(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Wait until the receiver's TCP stack has acknowledged every byte written (Linux)."""
    sock = writer.get_extra_info("socket")
    if _OUTQ is None or sock is None:
        return
    delay = 0.0005
    while True:
        # Checked first: once the transport is closing its file descriptor may be gone or reused.
        if writer.transport.is_closing():
            raise ConnectionResetError("connection closed before the receiver acknowledged the batch")
        (unacked,) = struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))
        if unacked == 0:
            return
        if _closed(reader, writer):
            raise ConnectionResetError(f"receiver closed the connection with {unacked} bytes unacknowledged")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not exc.args:
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _create(settings: SinkSettings, context: SinkContext) -> SyslogSink:
    assert isinstance(settings, SyslogSinkSettings)
    return SyslogSink(settings)


PLUGIN = SinkPlugin("syslog", SyslogSinkSettings, _create)
