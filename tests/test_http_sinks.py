"""The HTTP, Splunk HEC and Elasticsearch sinks against loopback receivers: wire format, answers, TLS, settings.

Every receiver is a real aiohttp server on 127.0.0.1 (``tests/receivers.py`` plus three small local ones
below: one that keeps each request byte for byte, one that redirects, one that speaks TLS). Nothing of the
sinks is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import trustme
from aiohttp import web

from collector.config.errors import ConfigError
from collector.config.options import Context, Secret, build
from collector.encodings.cef import encode_cef
from collector.logtypes import LOG_TYPES, build_event, serialize
from collector.service.telemetry import Telemetry
from collector.simulator.data import generate
from collector.sinks.base import OutEvent, Sink, SinkContext, SinkError, SinkSettings
from collector.sinks.elasticsearch import ElasticsearchSettings, ElasticsearchSink
from collector.sinks.http import HttpSink, HttpSinkSettings
from collector.sinks.splunk_hec import SplunkHecSettings, SplunkHecSink
from tests.receivers import FakeElasticsearch, FakeHec, FakeHttpCollector, Misbehave, Receiver

START = 1_700_000_000
END = START + 86_400
HEC_TOKEN = "hec-token-0000-1111"  # FakeHec's default
ES_KEY = "ZXMta2V5LWlkOmVzLWtleS1zZWNyZXQ="  # FakeElasticsearch's default
ES_INDEX = "logs-mimecast.ttp_url-default"

R = TypeVar("R", bound=Receiver)
S = TypeVar("S", bound=SinkSettings)


def out_events(count: int, *, log_type: str = "ttp_url", fmt: str = "json", seed: int = 0) -> list[OutEvent]:
    """``count`` spooled events of account ``acme``, normalized from simulator records, in event-time order."""
    events = []
    for record in generate(log_type, count, start=START, end=END, seed=seed):
        event = build_event(LOG_TYPES[log_type], record.record, "acme", 0)
        doc = serialize(event.doc)
        line = encode_cef(doc) if fmt == "cef" else doc
        events.append(OutEvent(event.key, event.time, doc, line, "acme", log_type))
    return events


def lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    raw: bytes  # the body exactly as sent (still gzip-compressed if it was)


class RawReceiver(Receiver):
    """Any method, any path: answers ``status`` with ``answer`` and keeps every request exactly as it came."""

    def __init__(self, status: int = 200, answer: bytes = b"{}") -> None:
        super().__init__()
        self.status = status
        self.answer = answer
        self.seen: list[Seen] = []
        self.hold: asyncio.Event | None = None  # when set: answer only once it fires (or after 3 s)

    async def start(self) -> RawReceiver:
        app = web.Application()
        self.routes(app)
        # aiohttp would undo Content-Encoding: gzip before the handler sees the body; keep the wire bytes
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._any)

    async def _any(self, request: web.Request) -> web.Response:
        self.seen.append(Seen(request.method, request.path_qs, lowered(request.headers), await request.read()))
        if self.hold is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3):
                    await self.hold.wait()
        return web.Response(status=self.status, body=self.answer, content_type="application/json")


class Redirector(Receiver):
    """Every path but /landing answers ``status`` with Location: /landing; /landing answers 200 to any method."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status
        self.log: list[tuple[str, str, int]] = []  # method, path, body length

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/landing", self._landing)
        app.router.add_route("*", "/{tail:.*}", self._ingest)

    async def _ingest(self, request: web.Request) -> web.Response:
        self.log.append((request.method, request.path, len(await request.read())))
        return web.Response(status=self.status, headers={"Location": "/landing"})

    async def _landing(self, request: web.Request) -> web.Response:
        self.log.append((request.method, request.path, len(await request.read())))
        return web.Response(status=200, text="<html>login</html>")


class TlsCollector(FakeHttpCollector):
    """FakeHttpCollector served over HTTPS with the given server context."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self.context = context
        self.url = f"https://127.0.0.1:{self.port}"

    async def start(self) -> TlsCollector:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.context).start()
        return self


class Harness:
    """Builds sinks named ``x`` from config tables exactly as a config file would; closes all it made."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self._receivers: list[Receiver] = []
        self._sinks: list[Sink] = []

    async def serve(self, receiver: R) -> R:
        await receiver.start()
        self._receivers.append(receiver)
        return receiver

    def settings(self, cls: type[S], kind: str, table: Mapping[str, Any]) -> S:
        return build(cls, table, "sinks.x", Context(env={}, base_dir=self.tmp_path), name="x", type=kind)

    def http(self, **table: Any) -> HttpSink:
        sink = HttpSink(self.settings(HttpSinkSettings, "http", table))
        self._sinks.append(sink)
        return sink

    def hec(self, **table: Any) -> SplunkHecSink:
        sink = SplunkHecSink(self.settings(SplunkHecSettings, "splunk_hec", table))
        self._sinks.append(sink)
        return sink

    def es(self, telemetry: Telemetry | None = None, **table: Any) -> ElasticsearchSink:
        settings = self.settings(ElasticsearchSettings, "elasticsearch", table)
        sink = ElasticsearchSink(settings, SinkContext(self.tmp_path, telemetry))
        self._sinks.append(sink)
        return sink

    async def close(self) -> None:
        for sink in self._sinks:
            await sink.close()
        for receiver in self._receivers:
            await receiver.stop()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """Sinks and receivers for one test, all closed and stopped afterwards."""
    made = Harness(tmp_path)
    yield made
    await made.close()


@dataclass(frozen=True)
class Pki:
    server: ssl.SSLContext  # certificate for 127.0.0.1, no client certificate asked
    mutual: ssl.SSLContext  # the same certificate, and a client certificate from the CA required
    ca_file: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One trustme CA: server contexts for 127.0.0.1 (plain and mutual TLS), the CA file, a client certificate."""
    where = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server_cert, client_cert = ca.issue_cert("127.0.0.1"), ca.issue_cert("collector.test")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server)
    mutual = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(mutual)
    ca.configure_trust(mutual)
    mutual.verify_mode = ssl.CERT_REQUIRED
    pki = Pki(server, mutual, where / "ca.pem", where / "client.pem", where / "client.key")
    ca.cert_pem.write_to_path(str(pki.ca_file))
    client_cert.cert_chain_pems[0].write_to_path(str(pki.client_cert))
    client_cert.private_key_pem.write_to_path(str(pki.client_key))
    return pki


# ---------------------------------------------------------------------------------------------- http


async def test_http_ndjson_is_gzipped_with_content_type_and_custom_headers(harness: Harness) -> None:
    """NDJSON by default: one line per event, newline-terminated, gzip, x-ndjson, configured headers sent."""
    receiver = await harness.serve(RawReceiver(status=202))
    sink = harness.http(url=f"{receiver.url}/ingest", headers={"Authorization": "Bearer siem-t0ken", "X-Tenant": "7"})
    events = out_events(3)
    await sink.send_batch(events)
    assert len(receiver.seen) == 1
    seen = receiver.seen[0]
    assert (seen.method, seen.path) == ("POST", "/ingest")
    assert seen.headers["content-type"] == "application/x-ndjson"
    assert seen.headers["content-encoding"] == "gzip"
    assert seen.headers["authorization"] == "Bearer siem-t0ken"
    assert seen.headers["x-tenant"] == "7"
    assert seen.raw[:2] == b"\x1f\x8b"
    assert gzip.decompress(seen.raw) == events[0].doc + b"\n" + events[1].doc + b"\n" + events[2].doc + b"\n"


async def test_http_gzip_false_sends_plain_body(harness: Harness) -> None:
    """gzip = false: the NDJSON body goes uncompressed and without Content-Encoding."""
    collector = await harness.serve(FakeHttpCollector())
    sink = harness.http(url=f"{collector.url}/ingest", gzip=False)
    events = out_events(2)
    await sink.send_batch(events)
    assert len(collector.received) == 1
    headers, body = collector.received[0]
    assert "content-encoding" not in lowered(headers)
    assert lowered(headers)["content-type"] == "application/x-ndjson"
    assert body == events[0].doc + b"\n" + events[1].doc + b"\n"


async def test_http_put_method(harness: Harness) -> None:
    """method = "PUT" sends the batch with PUT."""
    receiver = await harness.serve(RawReceiver(status=201))
    events = out_events(1)
    await harness.http(url=f"{receiver.url}/ingest", method="PUT", gzip=False).send_batch(events)
    assert [(s.method, s.path, s.raw) for s in receiver.seen] == [("PUT", "/ingest", events[0].doc + b"\n")]


async def test_http_through_proxy(harness: Harness) -> None:
    """proxy = the receiver: the request goes to the proxy, naming the real target in Host."""
    proxy = await harness.serve(RawReceiver(status=202))
    events = out_events(1)
    await harness.http(url="http://siem.invalid:8080/ingest", proxy=proxy.url, gzip=False).send_batch(events)
    [seen] = proxy.seen
    assert (seen.method, seen.headers["host"], seen.raw) == ("POST", "siem.invalid:8080", events[0].doc + b"\n")


async def test_http_header_override_is_case_insensitive(harness: Harness) -> None:
    """A configured "content-type" replaces the default Content-Type instead of adding a second one."""
    receiver = await harness.serve(RawReceiver(status=202))
    sink = harness.http(url=f"{receiver.url}/ingest", headers={"content-type": "application/json"})
    await sink.send_batch(out_events(1))  # BUG: two Content-Type headers; aiohttp's server answers 400
    assert [s.headers["content-type"] for s in receiver.seen] == ["application/json"]


def redirected_sink(harness: Harness, kind: str, url: str) -> Sink:
    if kind == "splunk_hec":
        return harness.hec(url=url, token=HEC_TOKEN)
    if kind == "elasticsearch":
        return harness.es(url=url, api_key=ES_KEY)
    return harness.http(url=f"{url}/ingest")


@pytest.mark.parametrize("kind", ["http", "splunk_hec", "elasticsearch"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_http_redirect_is_not_delivery(harness: Harness, status: int, kind: str) -> None:
    """A redirect of any HTTP sink's POST is a non-retryable refusal, never followed, never a delivered batch."""
    receiver = await harness.serve(Redirector(status))
    with pytest.raises(SinkError) as caught:  # BUG: aiohttp follows it as a GET without body; 200 = "delivered"
        await redirected_sink(harness, kind, receiver.url).send_batch(out_events(3))
    assert (caught.value.retryable, caught.value.status) == (False, status)
    assert [(method, path != "/landing") for method, path, _ in receiver.log] == [("POST", True)]


async def test_http_empty_batch_sends_nothing(harness: Harness) -> None:
    """An empty batch makes no request."""
    collector = await harness.serve(FakeHttpCollector())
    await harness.http(url=f"{collector.url}/ingest").send_batch([])
    assert (collector.requests, collector.received) == (0, [])


async def test_http_json_array_body(harness: Harness) -> None:
    """body_format = json_array: one JSON array of the ECS events, Content-Type application/json."""
    collector = await harness.serve(FakeHttpCollector())
    sink = harness.http(url=f"{collector.url}/ingest", body_format="json_array")
    events = out_events(4)
    await sink.send_batch(events)
    headers, body = collector.received[0]
    assert lowered(headers)["content-type"] == "application/json"
    decoded = orjson.loads(body)
    assert decoded == [orjson.loads(e.doc) for e in events]
    assert [d["event"]["id"] for d in decoded] == [e.key for e in events]


async def test_http_json_array_of_cef_is_array_of_strings(harness: Harness) -> None:
    """json_array with format = "cef": an array of the CEF lines as JSON strings."""
    collector = await harness.serve(FakeHttpCollector())
    sink = harness.http(url=f"{collector.url}/ingest", body_format="json_array", format="cef")
    events = out_events(3, fmt="cef")
    await sink.send_batch(events)
    decoded = orjson.loads(collector.received[0][1])
    assert decoded == [e.line.decode() for e in events]
    assert all(line.startswith("CEF:0|Mimecast|Mimecast Email Security|") for line in decoded)


@pytest.mark.parametrize(("body_format", "fmt"), [("ndjson", "json"), ("json_array", "json"), ("json_array", "cef")])
async def test_http_send_lines_sends_the_body_send_batch_sends(harness: Harness, body_format: str, fmt: str) -> None:
    """The dispatcher hands a JSON lines sink whole spooled pages (send_lines): the request body is
    byte for byte the one send_batch sends for the same events."""
    receiver = await harness.serve(RawReceiver())
    sink = harness.http(url=f"{receiver.url}/ingest", body_format=body_format, format=fmt, gzip=False)
    events = out_events(5, fmt=fmt)
    await sink.send_batch(events)
    await sink.send_lines(b"".join(e.line + b"\n" for e in events), len(events))
    await sink.send_lines(b"", 0)  # nothing to send: no request
    assert len(receiver.seen) == 2
    assert receiver.seen[1].raw == receiver.seen[0].raw
    assert receiver.seen[1].headers["content-type"] == receiver.seen[0].headers["content-type"]


async def test_http_503_is_retryable(harness: Harness) -> None:
    """A 503 raises a retryable SinkError carrying the status and no Retry-After."""
    collector = await harness.serve(FakeHttpCollector())
    collector.misbehave = Misbehave(status=503, times=1)
    with pytest.raises(SinkError) as caught:
        await harness.http(url=f"{collector.url}/ingest").send_batch(out_events(1))
    assert (caught.value.retryable, caught.value.status, caught.value.retry_after_secs) == (True, 503, None)
    assert collector.received == []


async def test_http_429_honours_retry_after(harness: Harness) -> None:
    """A 429 with Retry-After: 7 raises a retryable SinkError with retry_after_secs 7.0."""
    collector = await harness.serve(FakeHttpCollector())
    collector.misbehave = Misbehave(status=429, times=1, retry_after="7")
    with pytest.raises(SinkError) as caught:
        await harness.http(url=f"{collector.url}/ingest").send_batch(out_events(1))
    assert (caught.value.retryable, caught.value.status, caught.value.retry_after_secs) == (True, 429, 7.0)


async def test_http_retry_after_as_http_date(harness: Harness) -> None:
    """Retry-After given as an HTTP date 30 s ahead comes back as about 30 seconds."""
    collector = await harness.serve(FakeHttpCollector())
    collector.misbehave = Misbehave(status=503, times=1, retry_after=formatdate(time.time() + 30, usegmt=True))
    with pytest.raises(SinkError) as caught:
        await harness.http(url=f"{collector.url}/ingest").send_batch(out_events(1))
    assert caught.value.retry_after_secs is not None
    assert 28.0 < caught.value.retry_after_secs <= 30.0


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_http_client_errors_are_not_retryable(harness: Harness, status: int) -> None:
    """400, 401 and 404 raise a non-retryable SinkError with that status."""
    collector = await harness.serve(FakeHttpCollector())
    collector.misbehave = Misbehave(status=status, times=1, retry_after="7")
    with pytest.raises(SinkError) as caught:
        await harness.http(url=f"{collector.url}/ingest").send_batch(out_events(1))
    assert (caught.value.retryable, caught.value.status, caught.value.retry_after_secs) == (False, status, None)
    assert f"answered {status}: try later" in str(caught.value)


async def test_http_connection_refused_is_retryable_and_batch_goes_through_after_recovery(harness: Harness) -> None:
    """Receiver down: retryable SinkError without a status; back up: the same batch is delivered."""
    collector = await harness.serve(FakeHttpCollector())
    sink = harness.http(url=f"{collector.url}/ingest", gzip=False)
    events = out_events(5)
    await sink.send_batch(events[:1])  # a pooled connection exists when the receiver goes away
    await collector.stop()
    with pytest.raises(SinkError) as caught:
        await sink.send_batch(events)
    assert (caught.value.retryable, caught.value.status) == (True, None)
    await collector.start()
    await sink.send_batch(events)
    assert [body for _, body in collector.received] == [
        events[0].doc + b"\n",
        b"".join(e.doc + b"\n" for e in events),
    ]


async def test_http_health_check_sends_options_and_no_event(harness: Harness) -> None:
    """health_check passes with one OPTIONS request to the URL, with an empty body."""
    receiver = await harness.serve(RawReceiver(status=204, answer=b""))
    await harness.http(url=f"{receiver.url}/ingest").health_check()
    assert [(s.method, s.path, s.raw) for s in receiver.seen] == [("OPTIONS", "/ingest", b"")]


async def test_http_health_check_against_fake_collector_counts_no_request(harness: Harness) -> None:
    """Against FakeHttpCollector the check passes and nothing is received or counted."""
    collector = await harness.serve(FakeHttpCollector())
    await harness.http(url=f"{collector.url}/ingest").health_check()
    assert (collector.requests, collector.received) == (0, [])


@pytest.mark.parametrize(("status", "passes"), [(405, True), (500, False), (503, False)])
async def test_http_health_check_status_threshold(harness: Harness, status: int, passes: bool) -> None:
    """Any answer below 500 counts as reachable; a 5xx fails the check."""
    receiver = await harness.serve(RawReceiver(status=status))
    sink = harness.http(url=f"{receiver.url}/ingest")
    if passes:
        await sink.health_check()
    else:
        with pytest.raises(SinkError) as caught:
            await sink.health_check()
        assert caught.value.status == status


async def test_http_health_check_fails_when_receiver_is_down(harness: Harness) -> None:
    """A stopped receiver fails the check with a retryable SinkError."""
    collector = await harness.serve(FakeHttpCollector())
    await collector.stop()
    with pytest.raises(SinkError) as caught:
        await harness.http(url=f"{collector.url}/ingest").health_check()
    assert (caught.value.retryable, caught.value.status) == (True, None)


async def test_http_tls_verified_with_ca_file(harness: Harness, pki: Pki) -> None:
    """HTTPS with ca_file set to the signing CA verifies and delivers."""
    collector = await harness.serve(TlsCollector(pki.server))
    events = out_events(2)
    await harness.http(url=f"{collector.url}/ingest", ca_file=str(pki.ca_file)).send_batch(events)
    assert [body for _, body in collector.received] == [events[0].doc + b"\n" + events[1].doc + b"\n"]


async def test_http_tls_without_ca_file_is_not_retryable(harness: Harness, pki: Pki) -> None:
    """An untrusted certificate raises a non-retryable SinkError that points at ca_file; nothing delivered."""
    collector = await harness.serve(TlsCollector(pki.server))
    with pytest.raises(SinkError) as caught:
        await harness.http(url=f"{collector.url}/ingest").send_batch(out_events(1))
    assert caught.value.retryable is False
    assert "ca_file" in str(caught.value)
    assert str(caught.value).startswith(f"TLS verification failed for {collector.url}/ingest")
    assert collector.received == []


async def test_http_tls_verify_off_delivers(harness: Harness, pki: Pki) -> None:
    """verify_tls = false delivers to a server whose CA is not trusted."""
    collector = await harness.serve(TlsCollector(pki.server))
    await harness.http(url=f"{collector.url}/ingest", verify_tls=False).send_batch(out_events(1))
    assert len(collector.received) == 1


async def test_http_mutual_tls_with_client_certificate(harness: Harness, pki: Pki) -> None:
    """cert_file/key_file present a client certificate that a server requiring one accepts."""
    collector = await harness.serve(TlsCollector(pki.mutual))
    sink = harness.http(
        url=f"{collector.url}/ingest",
        ca_file=str(pki.ca_file),
        cert_file=str(pki.client_cert),
        key_file=str(pki.client_key),
        gzip=False,
    )
    events = out_events(1)
    await sink.send_batch(events)
    assert [body for _, body in collector.received] == [events[0].doc + b"\n"]


async def test_http_client_certificate_sent_with_verify_off(harness: Harness, pki: Pki) -> None:
    """verify_tls = false still presents cert_file/key_file to a server that requires a client certificate."""
    collector = await harness.serve(TlsCollector(pki.mutual))
    sink = harness.http(
        url=f"{collector.url}/ingest",
        verify_tls=False,
        cert_file=str(pki.client_cert),
        key_file=str(pki.client_key),
        gzip=False,
    )
    events = out_events(1)
    await sink.send_batch(events)  # BUG: tls_context() returns False before loading the client certificate
    assert [body for _, body in collector.received] == [events[0].doc + b"\n"]


async def test_http_timeout_is_retryable(harness: Harness) -> None:
    """A receiver slower than timeout_secs: retryable SinkError without a status."""
    receiver = await harness.serve(RawReceiver(status=202))
    receiver.hold = asyncio.Event()
    url = f"{receiver.url}/ingest"
    started = time.monotonic()
    with pytest.raises(SinkError) as caught:
        await harness.http(url=url, timeout_secs=1).send_batch(out_events(1))
    elapsed = time.monotonic() - started
    receiver.hold.set()
    assert (caught.value.retryable, caught.value.status) == (True, None)
    assert str(caught.value) == f"POST {url} failed: TimeoutError"
    assert 0.9 < elapsed < 2.5


async def test_http_unloadable_ca_file_fails_on_open(harness: Harness) -> None:
    """A ca_file that is not a CA bundle fails open() with a non-retryable SinkError naming the sink."""
    (harness.tmp_path / "not-a-ca.pem").write_text("not a certificate\n")
    sink = harness.http(url="https://127.0.0.1:9/ingest", ca_file="not-a-ca.pem")
    with pytest.raises(SinkError) as caught:
        await sink.open()
    assert caught.value.retryable is False
    assert str(caught.value).startswith("TLS files of sink 'x' cannot be loaded")


@pytest.mark.parametrize("url", ["ftp://siem.example/ingest", "siem.example:8088", "https://"])
def test_http_url_must_be_http_or_https(harness: Harness, url: str) -> None:
    """A URL that is not http(s) with a host is a ConfigError on sinks.x.url."""
    with pytest.raises(ConfigError) as caught:
        harness.settings(HttpSinkSettings, "http", {"url": url})
    assert caught.value.key == "sinks.x.url"


def test_http_cert_file_needs_key_file(harness: Harness) -> None:
    """cert_file without key_file is a ConfigError on sinks.x.cert_file."""
    (harness.tmp_path / "client.pem").write_text("")
    with pytest.raises(ConfigError) as caught:
        harness.settings(HttpSinkSettings, "http", {"url": "https://siem.example/", "cert_file": "client.pem"})
    assert (caught.value.key, caught.value.problem) == ("sinks.x.cert_file", "cert_file and key_file go together")


def test_http_settings_defaults(harness: Harness) -> None:
    """Defaults from a minimal table: ndjson, POST, gzip, TLS verified, no extra headers."""
    settings = harness.settings(HttpSinkSettings, "http", {"url": "https://siem.example/ingest"})
    assert (settings.body_format, settings.method, settings.gzip, settings.verify_tls, settings.headers) == (
        "ndjson",
        "POST",
        True,
        True,
        {},
    )


# ---------------------------------------------------------------------------------------- splunk_hec


async def test_hec_envelope_of_one_event(harness: Harness) -> None:
    """One event: time, configured host, source, default sourcetype, index, and the ECS object as event."""
    hec = await harness.serve(FakeHec())
    sink = harness.hec(url=hec.url, token=HEC_TOKEN, host="collector-01", index="mimecast")
    [event] = out_events(1)
    await sink.send_batch([event])
    assert event.time == 1_700_000_377  # the seeded record's event time, 2023-11-14T22:19:37Z
    assert [e.envelope for e in hec.events] == [
        {
            "time": 1_700_000_377,
            "host": "collector-01",
            "source": "mimecast-collector",
            "sourcetype": "mimecast:ttp_url",
            "index": "mimecast",
            "event": orjson.loads(event.doc),
        }
    ]
    assert hec.events[0].envelope["event"]["event"]["dataset"] == "mimecast.ttp_url"
    assert hec.problems == []


async def test_hec_request_line(harness: Harness) -> None:
    """POST /services/collector/event with Authorization "Splunk <token>", JSON, gzip; the envelope in order."""
    receiver = await harness.serve(RawReceiver(answer=b'{"text":"Success","code":0}'))
    sink = harness.hec(url=receiver.url, token=HEC_TOKEN, host="collector-01", sourcetype="mc:url", source="mc")
    [event] = out_events(1)
    await sink.send_batch([event])
    [seen] = receiver.seen
    assert (seen.method, seen.path) == ("POST", "/services/collector/event")
    assert seen.headers["authorization"] == "Splunk hec-token-0000-1111"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["content-encoding"] == "gzip"
    expected = b'{"time":%d,"host":"collector-01","source":"mc","sourcetype":"mc:url","event":%s}' % (
        event.time,
        event.doc,
    )
    assert gzip.decompress(seen.raw) == expected


async def test_hec_batch_of_fifty_in_order(harness: Harness) -> None:
    """50 events arrive as 50 envelopes in the batch's order, without index when none is set."""
    hec = await harness.serve(FakeHec())
    sink = harness.hec(url=hec.url, token=HEC_TOKEN, host="collector-01")
    events = out_events(50, seed=3)
    await sink.send_batch(events)
    assert hec.requests == 1
    assert [e.event_id for e in hec.events] == [e.key for e in events]
    assert [e.envelope["time"] for e in hec.events] == [e.time for e in events]
    assert all("index" not in e.envelope for e in hec.events)
    assert {e.envelope["sourcetype"] for e in hec.events} == {"mimecast:ttp_url"}
    assert hec.problems == []


async def test_hec_sourcetype_follows_log_type(harness: Harness) -> None:
    """The default sourcetype is mimecast:<log type> per event."""
    hec = await harness.serve(FakeHec())
    sink = harness.hec(url=hec.url, token=HEC_TOKEN, host="h")
    events = out_events(1, log_type="archive_search") + out_events(1, log_type="ttp_impersonation")
    await sink.send_batch(events)
    assert [e.envelope["sourcetype"] for e in hec.events] == ["mimecast:archive_search", "mimecast:ttp_impersonation"]


async def test_hec_cef_event_is_a_string(harness: Harness) -> None:
    """format = "cef": the event field is the CEF line as a JSON string."""
    hec = await harness.serve(FakeHec())
    sink = harness.hec(url=hec.url, token=HEC_TOKEN, host="h", format="cef")
    events = out_events(2, fmt="cef")
    await sink.send_batch(events)
    assert [e.envelope["event"] for e in hec.events] == [e.line.decode() for e in events]
    assert hec.events[0].envelope["event"].startswith("CEF:0|Mimecast|")


async def test_hec_wrong_token_is_not_retryable(harness: Harness) -> None:
    """A token HEC does not know: 403, non-retryable SinkError, nothing indexed."""
    hec = await harness.serve(FakeHec(token="the-real-token"))
    with pytest.raises(SinkError) as caught:
        await harness.hec(url=hec.url, token=HEC_TOKEN).send_batch(out_events(1))
    assert (caught.value.retryable, caught.value.status) == (False, 403)
    assert "Invalid token" in str(caught.value)
    assert hec.events == []


async def test_hec_503_is_retryable(harness: Harness) -> None:
    """A 503 from HEC raises a retryable SinkError; the next attempt is indexed."""
    hec = await harness.serve(FakeHec())
    hec.misbehave = Misbehave(status=503, times=1)
    sink = harness.hec(url=hec.url, token=HEC_TOKEN)
    events = out_events(2)
    with pytest.raises(SinkError) as caught:
        await sink.send_batch(events)
    assert (caught.value.retryable, caught.value.status) == (True, 503)
    await sink.send_batch(events)
    assert [e.event_id for e in hec.events] == [e.key for e in events]


async def test_hec_429_with_retry_after(harness: Harness) -> None:
    """A 429 with Retry-After: 12 raises a retryable SinkError with retry_after_secs 12.0."""
    hec = await harness.serve(FakeHec())
    hec.misbehave = Misbehave(status=429, times=1, retry_after="12")
    with pytest.raises(SinkError) as caught:
        await harness.hec(url=hec.url, token=HEC_TOKEN).send_batch(out_events(1))
    assert (caught.value.retryable, caught.value.status, caught.value.retry_after_secs) == (True, 429, 12.0)


async def test_hec_health_check_passes_when_healthy(harness: Harness) -> None:
    """A healthy HEC passes the check and receives no event."""
    hec = await harness.serve(FakeHec())
    await harness.hec(url=hec.url, token=HEC_TOKEN).health_check()
    assert (hec.events, hec.requests) == ([], 0)


async def test_hec_health_check_fails_when_unhealthy(harness: Harness) -> None:
    """HEC answering 503 on its health endpoint fails the check with status 503, retryable."""
    hec = await harness.serve(FakeHec())
    hec.healthy = False
    with pytest.raises(SinkError) as caught:
        await harness.hec(url=hec.url, token=HEC_TOKEN).health_check()
    assert (caught.value.retryable, caught.value.status) == (True, 503)


async def test_hec_health_check_fails_when_down(harness: Harness) -> None:
    """A stopped HEC fails the check with a retryable SinkError without a status."""
    hec = await harness.serve(FakeHec())
    await hec.stop()
    with pytest.raises(SinkError) as caught:
        await harness.hec(url=hec.url, token=HEC_TOKEN).health_check()
    assert (caught.value.retryable, caught.value.status) == (True, None)


def test_hec_token_is_required(harness: Harness) -> None:
    """No token and no token_file: ConfigError on sinks.x.token."""
    with pytest.raises(ConfigError) as caught:
        harness.settings(SplunkHecSettings, "splunk_hec", {"url": "https://splunk.example:8088"})
    assert caught.value.key == "sinks.x.token"


async def test_hec_token_file(harness: Harness, tmp_path: Path) -> None:
    """token_file (relative to the config's directory) is read, its newline dropped, and used."""
    (tmp_path / "hec.token").write_text(HEC_TOKEN + "\n")
    hec = await harness.serve(FakeHec())
    sink = harness.hec(url=hec.url, token_file="hec.token")
    assert sink.settings.token == Secret(HEC_TOKEN)
    events = out_events(1)
    await sink.send_batch(events)
    assert [e.event_id for e in hec.events] == [events[0].key]


# ------------------------------------------------------------------------------------- elasticsearch


async def test_es_bulk_wire_format(harness: Harness) -> None:
    """_bulk body: create action (index, _id = account:log_type:key) then the ECS doc bytes, per event."""
    receiver = await harness.serve(RawReceiver(answer=b'{"took":1,"errors":false,"items":[]}'))
    sink = harness.es(url=receiver.url, api_key=ES_KEY)
    events = out_events(2)
    await sink.send_batch(events)
    [seen] = receiver.seen
    assert (seen.method, seen.path) == ("POST", "/_bulk")
    assert seen.headers["content-type"] == "application/x-ndjson"
    assert seen.headers["authorization"] == "ApiKey ZXMta2V5LWlkOmVzLWtleS1zZWNyZXQ="
    assert seen.headers["content-encoding"] == "gzip"
    expected = b"".join(
        b'{"create":{"_index":"logs-mimecast.ttp_url-default","_id":"acme:ttp_url:%s"}}\n%s\n' % (e.key.encode(), e.doc)
        for e in events
    )
    assert gzip.decompress(seen.raw) == expected


async def test_es_pipeline_and_index_template(harness: Harness) -> None:
    """pipeline adds ?pipeline=; {dataset} in index becomes mimecast.<log type>."""
    receiver = await harness.serve(RawReceiver(answer=b'{"took":1,"errors":false,"items":[]}'))
    sink = harness.es(url=receiver.url, api_key=ES_KEY, pipeline="mimecast-ingest", index="mc-{dataset}", gzip=False)
    [event] = out_events(1, log_type="archive_search")
    await sink.send_batch([event])
    [seen] = receiver.seen
    assert seen.path == "/_bulk?pipeline=mimecast-ingest"
    action = b'{"create":{"_index":"mc-mimecast.archive_search","_id":"acme:archive_search:%s"}}' % event.key.encode()
    assert seen.raw == action + b"\n" + event.doc + b"\n"


async def test_es_indexes_into_fake_cluster(harness: Harness) -> None:
    """Against FakeElasticsearch every event is created once under its _id in the data stream."""
    es = await harness.serve(FakeElasticsearch())
    events = out_events(10)
    await harness.es(url=es.url, api_key=ES_KEY).send_batch(events)
    assert set(es.docs) == {(ES_INDEX, f"acme:ttp_url:{e.key}") for e in events}
    assert es.docs[(ES_INDEX, f"acme:ttp_url:{events[0].key}")] == orjson.loads(events[0].doc)
    assert es.problems == []


async def test_es_basic_auth_header(harness: Harness) -> None:
    """username/password send Authorization: Basic base64(user:password)."""
    receiver = await harness.serve(RawReceiver(answer=b'{"took":1,"errors":false,"items":[]}'))
    sink = harness.es(url=receiver.url, username="elastic", password="changeme")
    await sink.send_batch(out_events(1))
    assert receiver.seen[0].headers["authorization"] == "Basic ZWxhc3RpYzpjaGFuZ2VtZQ=="


async def test_es_same_batch_twice_is_idempotent(harness: Harness) -> None:
    """Resending a delivered batch: every item answers 409, the call succeeds, each _id created once."""
    es = await harness.serve(FakeElasticsearch())
    sink = harness.es(url=es.url, api_key=ES_KEY)
    events = out_events(10)
    await sink.send_batch(events)
    await sink.send_batch(events)
    assert es.conflicts == 10
    assert dict(es.created) == {f"acme:ttp_url:{e.key}": 1 for e in events}
    assert sink.dead_lettered == 0
    assert not sink.dead_letter_path.exists()


async def test_es_item_429_retries_whole_batch(harness: Harness) -> None:
    """Three items answering 429: retryable SinkError; the resend succeeds and no _id is created twice."""
    es = await harness.serve(FakeElasticsearch())
    es.throttle_items = 3
    sink = harness.es(url=es.url, api_key=ES_KEY)
    events = out_events(10)
    with pytest.raises(SinkError) as caught:
        await sink.send_batch(events)
    assert caught.value.retryable is True
    assert f"item acme:ttp_url:{events[0].key} answered 429" in str(caught.value)
    assert len(es.created) == 7
    await sink.send_batch(events)
    assert dict(es.created) == {f"acme:ttp_url:{e.key}": 1 for e in events}
    assert es.conflicts == 7
    assert not sink.dead_letter_path.exists()


async def test_es_mapping_errors_go_to_dead_letter_file(harness: Harness, tmp_path: Path) -> None:
    """Items refused with 400 are dead-lettered with _id, status, error and event; the rest are indexed."""
    es = await harness.serve(FakeElasticsearch())
    telemetry = Telemetry()
    sink = harness.es(telemetry, url=es.url, api_key=ES_KEY)
    events = out_events(10)
    rejected = [events[2], events[7]]
    es.reject_ids = {e.key for e in rejected}
    await sink.send_batch(events)
    assert sink.dead_letter_path == tmp_path / "dead-letter-x.jsonl"
    lines = sink.dead_letter_path.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == [
        {
            "_id": f"acme:ttp_url:{e.key}",
            "status": 400,
            "error": {"type": "document_parsing_exception", "reason": "failed to parse field"},
            "event": orjson.loads(e.doc),
        }
        for e in rejected
    ]
    assert set(es.created) == {f"acme:ttp_url:{e.key}" for e in events if e not in rejected}
    assert sink.dead_lettered == 2
    assert telemetry.sample("mimecast_events_dead_lettered_total", sink="x") == 2.0


async def test_es_dead_letter_path_setting_appends(harness: Harness, tmp_path: Path) -> None:
    """dead_letter_path is honoured and appended to across batches."""
    es = await harness.serve(FakeElasticsearch())
    sink = harness.es(url=es.url, api_key=ES_KEY, dead_letter_path="parked/es.jsonl")
    first, second = out_events(3, seed=1), out_events(3, seed=2)
    es.reject_ids = {first[0].key, second[1].key}
    await sink.send_batch(first)
    await sink.send_batch(second)
    lines = (tmp_path / "parked" / "es.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["_id"] for line in lines] == [
        f"acme:ttp_url:{first[0].key}",
        f"acme:ttp_url:{second[1].key}",
    ]


async def test_es_503_is_retryable(harness: Harness) -> None:
    """A whole-request 503 raises a retryable SinkError with status 503; nothing is created."""
    es = await harness.serve(FakeElasticsearch())
    es.misbehave = Misbehave(status=503, times=1)
    with pytest.raises(SinkError) as caught:
        await harness.es(url=es.url, api_key=ES_KEY).send_batch(out_events(2))
    assert (caught.value.retryable, caught.value.status) == (True, 503)
    assert len(es.created) == 0


async def test_es_wrong_api_key_is_not_retryable(harness: Harness) -> None:
    """A wrong API key: 401, non-retryable SinkError."""
    es = await harness.serve(FakeElasticsearch())
    with pytest.raises(SinkError) as caught:
        await harness.es(url=es.url, api_key="d3Jvbmc6a2V5").send_batch(out_events(2))
    assert (caught.value.retryable, caught.value.status) == (False, 401)
    assert len(es.created) == 0


async def test_es_unexpected_bulk_answer_is_retryable(harness: Harness) -> None:
    """A 200 whose body is not a _bulk answer raises a retryable SinkError."""
    receiver = await harness.serve(RawReceiver(answer=b"<html>proxy</html>"))
    with pytest.raises(SinkError) as caught:
        await harness.es(url=receiver.url, api_key=ES_KEY).send_batch(out_events(1))
    assert caught.value.retryable is True
    assert str(caught.value).startswith("_bulk answer is not the expected JSON")


async def test_es_health_check_passes_with_cluster_name(harness: Harness) -> None:
    """GET / answering with cluster_name passes; no document is created."""
    es = await harness.serve(FakeElasticsearch())
    await harness.es(url=es.url, api_key=ES_KEY).health_check()
    assert es.docs == {}


async def test_es_health_check_fails_for_non_elasticsearch(harness: Harness) -> None:
    """A server answering GET / with 200 but no cluster_name fails the check, not retryable."""
    receiver = await harness.serve(RawReceiver(answer=b'{"status":"ok"}'))
    with pytest.raises(SinkError) as caught:
        await harness.es(url=receiver.url, api_key=ES_KEY).health_check()
    assert caught.value.retryable is False
    assert "no cluster_name" in str(caught.value)
    assert [(s.method, s.path) for s in receiver.seen] == [("GET", "/")]


async def test_es_health_check_wrong_api_key(harness: Harness) -> None:
    """A wrong API key fails the check with a non-retryable SinkError, status 401."""
    es = await harness.serve(FakeElasticsearch())
    with pytest.raises(SinkError) as caught:
        await harness.es(url=es.url, api_key="d3Jvbmc6a2V5").health_check()
    assert (caught.value.retryable, caught.value.status) == (False, 401)


async def test_es_health_check_fails_when_down(harness: Harness) -> None:
    """A stopped cluster fails the check with a retryable SinkError."""
    es = await harness.serve(FakeElasticsearch())
    await es.stop()
    with pytest.raises(SinkError) as caught:
        await harness.es(url=es.url, api_key=ES_KEY).health_check()
    assert (caught.value.retryable, caught.value.status) == (True, None)


def test_es_api_key_and_username_conflict(harness: Harness) -> None:
    """api_key together with username/password is a ConfigError on sinks.x.api_key."""
    table = {"url": "https://es.example:9200", "api_key": ES_KEY, "username": "elastic", "password": "changeme"}
    with pytest.raises(ConfigError) as caught:
        harness.settings(ElasticsearchSettings, "elasticsearch", table)
    assert caught.value.key == "sinks.x.api_key"


@pytest.mark.parametrize("format_", ["raw", "cef", "leef"])
def test_es_refuses_any_format_but_json(harness: Harness, format_: str) -> None:
    """Elasticsearch indexes the ECS document: another format is a ConfigError, not silently ignored."""
    with pytest.raises(ConfigError) as caught:
        harness.settings(ElasticsearchSettings, "elasticsearch", {"url": "https://es.example", "format": format_})
    assert caught.value.key == "sinks.x.format"
    assert "remove format" in caught.value.fix


def test_es_username_needs_password(harness: Harness) -> None:
    """username without password is a ConfigError on sinks.x.username."""
    with pytest.raises(ConfigError) as caught:
        harness.settings(ElasticsearchSettings, "elasticsearch", {"url": "https://es.example", "username": "elastic"})
    assert caught.value.key == "sinks.x.username"
