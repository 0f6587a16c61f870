"""The syslog sink against a real rsyslogd: TCP/TLS/UDP, both formats, truncation, outages, settings.

rsyslogd (Debian packages rsyslog and rsyslog-gnutls) must be installed; without it these tests fail.
Each test starts its own rsyslogd on free loopback ports, with a config written into tmp_path that
writes every received message as one JSON line (header fields as rsyslog parsed them, plus MSG).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trustme

from collector.config.errors import ConfigError
from collector.config.options import Context, build
from collector.encodings.formats import encode_json
from collector.logtypes import LOG_TYPES, build_event, serialize
from collector.simulator.data import generate
from collector.sinks.base import OutEvent, SinkContext, SinkError
from collector.sinks.syslog import PLUGIN, SyslogSink, SyslogSinkSettings, auto_severity, cut_utf8

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
START = 1_700_000_000
LOCAL3 = 19


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing the receiver holds


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and an unrelated CA."""
    where = tmp_path_factory.mktemp("certs")
    ca, other = trustme.CA(), trustme.CA()
    server, client = ca.issue_cert("127.0.0.1", "localhost"), ca.issue_cert("collector.test")
    out = Certs(*(where / name for name in ("ca.pem", "srv.pem", "srv.key", "cli.pem", "cli.key", "other.pem")))
    ca.cert_pem.write_to_path(str(out.ca))
    server.cert_chain_pems[0].write_to_path(str(out.server_cert))
    server.private_key_pem.write_to_path(str(out.server_key))
    client.cert_chain_pems[0].write_to_path(str(out.client_cert))
    client.private_key_pem.write_to_path(str(out.client_key))
    other.cert_pem.write_to_path(str(out.other_ca))
    return out


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Rsyslog:
    """One rsyslogd with plain TCP, TLS (client certificates required) and UDP inputs on loopback."""

    def __init__(self, directory: Path, certs: Certs) -> None:
        self.dir = directory
        self.tcp, self.tls = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
        self.udp = free_port(socket.SOCK_DGRAM)
        self.received = directory / "received.jsonl"
        self.process: subprocess.Popen[bytes] | None = None
        (directory / "work").mkdir(parents=True)
        fields = [("pri", "pri"), ("hostname", "hostname"), ("app", "app-name"), ("procid", "procid")]
        fields += [("msgid", "msgid"), ("tag", "syslogtag"), ("input", "inputname"), ("msg", "msg"), ("raw", "rawmsg")]
        props = "\n".join(f'  property(outname="{out}" name="{name}" format="jsonf")' for out, name in fields)
        tls = (
            'streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid" '
            f'streamDriver.caFile="{certs.ca}" streamDriver.certFile="{certs.server_cert}" '
            f'streamDriver.keyFile="{certs.server_key}"'
        )
        (directory / "rsyslog.conf").write_text(
            f"""
global(workDirectory="{directory / "work"}" maxMessageSize="64k")
module(load="imtcp")
module(load="imudp")
template(name="jsonl" type="list" option.jsonf="on") {{
{props}
  property(outname="time" name="timereported" dateFormat="rfc3339" format="jsonf")
}}
ruleset(name="received") {{ action(type="omfile" file="{self.received}" template="jsonl") }}
input(type="imtcp" address="127.0.0.1" port="{self.tcp}" name="tcp" ruleset="received")
input(type="imtcp" address="127.0.0.1" port="{self.tls}" name="tls" ruleset="received" {tls})
input(type="imudp" address="127.0.0.1" port="{self.udp}" name="udp" ruleset="received" rcvbufSize="4m")
"""
        )

    def start(self) -> None:
        if not Path(RSYSLOGD).exists():
            pytest.fail("rsyslogd is not installed: apt-get install rsyslog rsyslog-gnutls")
        log = (self.dir / "rsyslogd.log").open("ab")
        self.process = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.dir / "rsyslog.conf"), "-i", str(self.dir / "rsyslogd.pid")],
            stdout=log,
            stderr=log,
            env={**os.environ, "TZ": "UTC"},
        )
        deadline = time.monotonic() + 10
        for port in (self.tcp, self.tls):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"rsyslogd did not start: {(self.dir / 'rsyslogd.log').read_text()}")
                    time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)
        self.process = None

    def messages(self) -> list[dict[str, Any]]:
        if not self.received.exists():
            return []
        complete = self.received.read_bytes().rpartition(b"\n")[0]  # rsyslogd may be mid-line
        # Bytes in: json.loads decodes them as strict UTF-8, so an invalid sequence would fail here.
        return [json.loads(raw) for raw in complete.splitlines()]

    async def wait_for(self, count: int, within_secs: float = 10.0, settle_secs: float = 0.1) -> list[dict[str, Any]]:
        """Messages received, once there are at least ``count`` (or ``within_secs`` passed)."""
        deadline = time.monotonic() + within_secs
        while len(self.messages()) < count and time.monotonic() < deadline:  # noqa: ASYNC110 - a file, no event
            await asyncio.sleep(0.01)
        await asyncio.sleep(settle_secs)  # anything beyond ``count`` (a duplicate) has time to show up
        return self.messages()


@pytest.fixture
def make_rsyslog(tmp_path: Path, certs: Certs) -> Iterator[Callable[..., Rsyslog]]:
    """Factory: an rsyslogd in tmp_path (started unless start=False); stopped after the test."""
    made: list[Rsyslog] = []

    def make(*, start: bool = True) -> Rsyslog:
        server = Rsyslog(tmp_path / f"rsyslog{len(made)}", certs)
        made.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in made:
        server.stop()


MakeSink = Callable[..., SyslogSink]


@pytest.fixture
async def make_sink() -> AsyncIterator[MakeSink]:
    """Factory: a SyslogSink for 127.0.0.1 with the given options; all closed after the test."""
    made: list[SyslogSink] = []

    def make(**options: Any) -> SyslogSink:
        settings: dict[str, Any] = {"name": "siem", "type": "syslog", "host": "127.0.0.1"}
        sink = SyslogSink(SyslogSinkSettings(**(settings | options)))
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.close()


def events(count: int, log_type: str = "ttp_url", seed: int = 0) -> list[OutEvent]:
    """Real normalized events of ``log_type``, encoded as the dispatcher does for format = "json"."""
    out = []
    for sim in generate(log_type, count, start=START, end=START + 86_400, seed=seed):
        event = build_event(LOG_TYPES[log_type], sim.record, "acme", sim.time)
        doc = serialize(event.doc)
        out.append(OutEvent(event.key, event.time, doc, encode_json(doc), "acme", log_type))
    return out


def event_ids(messages: list[dict[str, Any]]) -> list[str]:
    return [json.loads(m["msg"])["event"]["id"] for m in messages]


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- delivery through a real rsyslogd ---------------------------------------------------------------


async def test_tcp_octet_counting_rfc5424_delivers_500_events_intact(
    make_rsyslog: Callable[..., Rsyslog], make_sink: MakeSink
) -> None:
    """500 events of three log types arrive once each, payload and RFC 5424 header fields intact."""
    server = make_rsyslog()
    sink = make_sink(port=server.tcp, facility="local3", hostname="collector-1.example")
    sent = events(200, "ttp_url") + events(200, "ttp_impersonation") + events(100, "archive_search")
    await sink.open()

    for start in range(0, 500, 250):
        await sink.send_batch(sent[start : start + 250])
    got = await server.wait_for(500)

    assert sink.settings.resolved_framing == "octet-counting"
    assert sorted(event_ids(got)) == sorted(e.key for e in sent)
    by_id = {e.key: e for e in sent}
    for message in got:
        event = by_id[json.loads(message["msg"])["event"]["id"]]
        doc = json.loads(event.doc)
        assert message["msg"].encode() == event.line
        assert (message["app"], message["hostname"]) == ("mimecast-collector", "collector-1.example")
        assert (message["procid"], message["input"]) == (str(os.getpid()), "tcp")
        assert message["msgid"] == event.log_type == doc["labels"]["mimecast_log_type"]
        assert message["time"] == rfc3339(event.time)
        assert int(message["pri"]) == LOCAL3 * 8 + auto_severity(doc)
    assert {m["pri"] for m in got} == {"156", "157", "158"}  # warning, notice and info all occur


async def test_tcp_newline_framing_rfc3164(make_rsyslog: Callable[..., Rsyslog], make_sink: MakeSink) -> None:
    """RFC 3164 over newline framing: every event arrives with its TAG, host, fixed PRI and timestamp."""
    server = make_rsyslog()
    sink = make_sink(port=server.tcp, framing="newline", protocol="rfc3164", severity="info", facility="4")
    sent = events(100, "ttp_impersonation")

    await sink.send_batch(sent)
    got = await server.wait_for(100)

    assert [json.loads(m["msg"].lstrip(" "))["event"]["id"] for m in got] == [e.key for e in sent]
    assert {m["tag"] for m in got} == {f"mimecast-collector[{os.getpid()}]:"}
    assert {m["hostname"] for m in got} == {socket.gethostname()}
    assert {m["pri"] for m in got} == {str(4 * 8 + 6)}
    first = datetime.fromtimestamp(sent[0].time, UTC)
    assert got[0]["raw"].startswith(f"<38>{first:%b} {first.day:2d} {first:%H:%M:%S} {socket.gethostname()} ")


async def test_newline_framing_turns_a_stray_lf_into_a_space(
    make_rsyslog: Callable[..., Rsyslog], make_sink: MakeSink
) -> None:
    """An LF inside a payload cannot split the event: it arrives as one message with a space there."""
    server = make_rsyslog()
    sink = make_sink(port=server.tcp, framing="newline")
    line = b"CEF:0|Mimecast|Email Security|1.0|ttp_url|click|5|msg=first line\nsecond line"

    await sink.send_batch([OutEvent("cef", START, b"{}", line, "acme", "ttp_url"), *events(1)])
    got = await server.wait_for(2)

    assert got[0]["msg"] == "CEF:0|Mimecast|Email Security|1.0|ttp_url|click|5|msg=first line second line"
    assert len(got) == 2


async def test_udp_delivers_300_events(make_rsyslog: Callable[..., Rsyslog], make_sink: MakeSink) -> None:
    """300 events as 300 datagrams all arrive intact (paced: UDP has no flow control, a burst can overflow)."""
    server = make_rsyslog()
    sink = make_sink(transport="udp", port=server.udp)
    sent = events(300, "ttp_url", seed=3)

    for start in range(0, 300, 50):
        await sink.send_batch(sent[start : start + 50])
        await server.wait_for(start + 50, within_secs=2, settle_secs=0)  # let the receiver catch up
    got = await server.wait_for(300)

    assert sink.settings.message_limit == 2048
    assert sorted(m["msg"].encode() for m in got) == sorted(e.line for e in sent)  # datagrams may reorder
    assert {m["input"] for m in got} == {"udp"}


async def test_udp_oversized_message_is_cut_to_the_limit_on_a_character_boundary(
    make_rsyslog: Callable[..., Rsyslog], make_sink: MakeSink, log_buffer: io.StringIO
) -> None:
    """A 6 kB payload of 3-byte characters arrives as one datagram of at most 2048 bytes, valid UTF-8."""
    server = make_rsyslog()
    sink = make_sink(transport="udp", port=server.udp)
    line = ('{"event":{"id":"big"},"subject":"' + "€" * 2000 + '"}').encode()
    big = OutEvent("big", START, line, line)

    await sink.send_batch([big, *events(2)])
    got = await server.wait_for(3)

    cut = next(m for m in got if m["msg"].startswith('{"event":{"id":"big"}'))
    datagram = cut["raw"].encode()  # json.loads of the output line already proved it valid UTF-8
    assert 2048 - 2 <= len(datagram) <= 2048
    assert line.startswith(cut["msg"].encode())
    assert cut["msg"].endswith("€")
    assert len(got) == 3
    assert sink.truncated == 1
    logged = [json.loads(raw) for raw in log_buffer.getvalue().splitlines()]
    assert [(e["event"], e["messages"]) for e in logged if "truncated" in e["event"]] == [
        ("syslog_messages_truncated", 1)
    ]


async def test_tls_with_client_certificate_delivers_events(
    make_rsyslog: Callable[..., Rsyslog], make_sink: MakeSink, certs: Certs
) -> None:
    """Over TLS (verified against the test CA, client certificate presented) events arrive intact."""
    server = make_rsyslog()
    sink = make_sink(
        transport="tls",
        port=server.tls,
        ca_file=certs.ca,
        cert_file=certs.client_cert,
        key_file=certs.client_key,
    )
    sent = events(200, "archive_search")
    await sink.open()

    await sink.health_check()
    await sink.send_batch(sent)
    got = await server.wait_for(200)

    assert sink.settings.verify is True
    assert event_ids(got) == [e.key for e in sent]
    assert {m["input"] for m in got} == {"tls"}


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        pytest.param({"ca_file": "other_ca"}, "unable to get local issuer certificate", id="unknown-ca"),
        pytest.param({"ca_file": "ca", "server_name": "wrong.example"}, "Hostname mismatch", id="wrong-name"),
    ],
)
async def test_tls_certificate_that_does_not_verify_is_rejected_not_retried(
    make_rsyslog: Callable[..., Rsyslog], make_sink: MakeSink, certs: Certs, options: dict[str, str], reason: str
) -> None:
    """An untrusted or misnamed server certificate fails health_check and send_batch with retryable=False."""
    server = make_rsyslog()
    paths = {key: getattr(certs, value) if key == "ca_file" else value for key, value in options.items()}
    sink = make_sink(transport="tls", port=server.tls, cert_file=certs.client_cert, key_file=certs.client_key, **paths)
    await sink.open()

    with pytest.raises(SinkError) as checked:
        await sink.health_check()
    with pytest.raises(SinkError) as sent:
        await sink.send_batch(events(1))

    for error in (checked.value, sent.value):
        assert error.retryable is False
        assert "TLS certificate rejected" in str(error)
        assert reason in str(error)
    assert await server.wait_for(0, within_secs=0) == []


# --- outages -------------------------------------------------------------------------------------


async def test_receiver_stopped_mid_run_raises_retryable_and_resent_batch_arrives(
    make_rsyslog: Callable[..., Rsyslog], make_sink: MakeSink
) -> None:
    """rsyslogd dies between batches: the next batch fails retryably, and after a restart nothing is lost."""
    server = make_rsyslog()
    sink = make_sink(port=server.tcp)
    first, second = events(100, seed=1), events(100, seed=2)
    await sink.send_batch(first)
    await server.wait_for(100)

    server.stop()  # blocks the loop: the sink has no chance to notice the close before writing
    with pytest.raises(SinkError) as failed:
        await sink.send_batch(second)
    with pytest.raises(SinkError) as still_down:  # what the dispatcher's next attempt meets
        await sink.send_batch(second)
    server.start()
    await sink.send_batch(second)
    got = await server.wait_for(200)

    assert failed.value.retryable is True
    assert still_down.value.retryable is True
    assert "cannot connect" in str(still_down.value)
    ids = event_ids(got)
    assert set(ids) == {e.key for e in first + second}
    assert len(ids) - len(set(ids)) == 0  # the dead connection's unacknowledged bytes were never counted


async def test_connection_closed_between_batches_is_replaced_without_an_error(
    make_rsyslog: Callable[..., Rsyslog], make_sink: MakeSink
) -> None:
    """After a receiver restart noticed while idle, the next batch reconnects and succeeds first time."""
    server = make_rsyslog()
    sink = make_sink(port=server.tcp)
    await sink.send_batch(events(10, seed=1))
    await server.wait_for(10)

    server.stop()
    server.start()
    await asyncio.sleep(0.1)  # the loop sees the old connection's close while the sink is idle
    await sink.send_batch(events(10, seed=2))
    got = await server.wait_for(20)

    assert len(got) == 20


async def test_open_succeeds_while_receiver_is_down_and_delivery_starts_once_it_is_up(
    make_rsyslog: Callable[..., Rsyslog], make_sink: MakeSink, certs: Certs
) -> None:
    """open() does not connect; health_check and send_batch fail retryably until the receiver starts."""
    server = make_rsyslog(start=False)
    sink = make_sink(
        transport="tls", port=server.tls, ca_file=certs.ca, cert_file=certs.client_cert, key_file=certs.client_key
    )

    await sink.open()
    with pytest.raises(SinkError) as checked:
        await sink.health_check()
    with pytest.raises(SinkError) as sent:
        await sink.send_batch(events(5))
    server.start()
    await sink.health_check()
    await sink.send_batch(events(5))
    got = await server.wait_for(5)

    assert checked.value.retryable is True
    assert f"127.0.0.1:{server.tls} (tls): cannot connect" in str(checked.value)
    assert sent.value.retryable is True
    assert len(got) == 5


async def test_udp_to_a_closed_port_fails_retryably(make_sink: MakeSink) -> None:
    """Datagrams to a loopback port nobody listens on draw ICMP refusals: a retryable SinkError."""
    sink = make_sink(transport="udp", port=free_port(socket.SOCK_DGRAM))

    with pytest.raises(SinkError) as failed:
        await sink.send_batch(events(20))

    assert failed.value.retryable is True
    assert "Connection refused" in str(failed.value)


async def test_health_check_sends_no_events(make_rsyslog: Callable[..., Rsyslog], make_sink: MakeSink) -> None:
    """health_check connects (tcp) or resolves (udp) and leaves nothing at the receiver."""
    server = make_rsyslog()

    await make_sink(port=server.tcp).health_check()
    await make_sink(transport="udp", port=server.udp).health_check()

    assert await server.wait_for(0, within_secs=0) == []


async def test_open_fails_at_start_when_a_tls_file_is_missing(make_sink: MakeSink, tmp_path: Path) -> None:
    """A missing ca_file is a local mistake: open() raises SinkError(retryable=False) naming the sink."""
    sink = make_sink(transport="tls", ca_file=tmp_path / "missing.pem")

    with pytest.raises(SinkError) as failed:
        await sink.open()

    assert failed.value.retryable is False
    assert str(failed.value).startswith("sinks.siem: cannot load TLS files")


# --- pure parts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "severity"),
    [
        ({"event": {"type": ["indicator"], "action": "allow"}}, 4),
        ({"event": {"type": ["info"], "action": "hold"}}, 4),
        ({"event": {"type": ["info"], "action": "Block"}}, 4),
        ({"event": {"type": ["info"], "action": "bounce"}}, 5),
        ({"event": {"type": ["info"], "action": "warn"}}, 5),
        ({"event": {"action": "archive-search"}, "user": {"roles": ["admin"]}}, 5),
        ({"event": {"id": "x"}, "error": {"message": "KeyError"}}, 5),
        ({"event": {"type": ["info"], "action": "allow"}}, 6),
        ({"event": "not an object", "user": None}, 6),
        ({}, 6),
    ],
)
def test_auto_severity_table(doc: dict[str, Any], severity: int) -> None:
    """severity = "auto": warning for malicious/block/hold, notice for other actions, info otherwise."""
    assert auto_severity(doc) == severity


@pytest.mark.parametrize(
    ("data", "size", "expected"),
    [
        (b"abcdef", 10, b"abcdef"),
        (b"abcdef", 4, b"abcd"),
        ("a€b".encode(), 2, b"a"),
        ("a€b".encode(), 3, b"a"),
        ("a€b".encode(), 4, "a€".encode()),
        ("éé".encode(), 3, "é".encode()),
        ("€".encode(), 0, b""),
    ],
)
def test_cut_utf8_never_splits_a_character(data: bytes, size: int, expected: bytes) -> None:
    """cut_utf8 keeps at most ``size`` bytes and backs up to the start of a cut multi-byte character."""
    assert cut_utf8(data, size) == expected


def test_defaults_depend_on_the_transport() -> None:
    """port 0 and max_message_bytes 0 mean the transport's defaults; auto framing is octet counting."""
    tcp = SyslogSinkSettings(name="s", type="syslog", host="siem")
    tls = SyslogSinkSettings(name="s", type="syslog", host="siem", transport="tls")
    udp = SyslogSinkSettings(name="s", type="syslog", host="siem", transport="udp")

    assert (tcp.resolved_port, tcp.resolved_framing, tcp.message_limit) == (514, "octet-counting", 65536)
    assert (tls.resolved_port, tls.resolved_framing, tls.message_limit) == (6514, "octet-counting", 65536)
    assert (udp.resolved_port, udp.resolved_framing, udp.message_limit) == (514, "datagram", 2048)
    assert (tcp.protocol, tcp.facility, tcp.severity, tcp.app_name) == (
        "rfc5424",
        "local0",
        "auto",
        "mimecast-collector",
    )
    assert PLUGIN.kind == "syslog"
    assert isinstance(PLUGIN.factory(tcp, SinkContext(state_dir=Path("/nonexistent"))), SyslogSink)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"host": " "}, "host"),
        ({"transport": "udp", "framing": "newline"}, "framing"),
        ({"transport": "udp", "framing": "octet-counting"}, "framing"),
        ({"transport": "tls", "cert_file": Path("c.pem")}, "key_file"),
        ({"transport": "tls", "key_file": Path("k.pem")}, "cert_file"),
        ({"transport": "tls", "verify": False, "ca_file": Path("ca.pem")}, "ca_file"),
        ({"transport": "tcp", "ca_file": Path("ca.pem")}, "ca_file"),
        ({"transport": "udp", "verify": False}, "verify"),
        ({"transport": "tcp", "server_name": "siem.example"}, "server_name"),
        ({"facility": "local8"}, "facility"),
        ({"facility": "24"}, "facility"),
        ({"app_name": "mimecast collector"}, "app_name"),
        ({"app_name": "a" * 49}, "app_name"),
        ({"hostname": "h" * 256}, "hostname"),
        ({"max_message_bytes": 479}, "max_message_bytes"),
        ({"transport": "udp", "max_message_bytes": 65508}, "max_message_bytes"),
    ],
)
def test_bad_combinations_are_config_errors_naming_the_key(options: dict[str, Any], key: str) -> None:
    """Each meaningless or contradictory setting raises ConfigError for sinks.siem.<key>."""
    with pytest.raises(ConfigError) as raised:
        SyslogSinkSettings(**({"name": "siem", "type": "syslog", "host": "siem.example"} | options))

    assert raised.value.key == f"sinks.siem.{key}"


def test_settings_build_from_a_config_table(tmp_path: Path) -> None:
    """A TOML-shaped table builds (relative ca_file resolved); an out-of-range port names its key."""
    (tmp_path / "ca.pem").write_text("")  # ca_file must exist to load
    ctx = Context(env={}, base_dir=tmp_path)
    table = {"host": "siem.example", "transport": "tls", "ca_file": "ca.pem", "facility": "13", "severity": "notice"}

    settings = build(SyslogSinkSettings, table, "sinks.siem", ctx, name="siem", type="syslog")
    with pytest.raises(ConfigError) as raised:
        build(
            SyslogSinkSettings, {"host": "siem.example", "port": 70000}, "sinks.siem", ctx, name="siem", type="syslog"
        )

    assert (settings.ca_file, settings.facility, settings.severity) == (tmp_path / "ca.pem", "13", "notice")
    assert raised.value.key == "sinks.siem.port"
