"""Credentials inside URLs: moved into a Basic header at load, never shown; proxy credentials kept but masked."""

from __future__ import annotations

import base64
import io
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from collector.config import load_config
from collector.config.errors import ConfigError
from collector.logs import configure_logging, get_logger, redact
from collector.service.app import Collector, register_config_secrets
from collector.simulator import FakeMimecast
from collector.sinks.http import HttpSinkSettings
from tests.helpers import run_cli, seed, table, write_config
from tests.receivers import FakeHttpCollector, Misbehave
from tests.test_http_sinks import Harness, RawReceiver, out_events
from tests.test_sink_outages import wait_for

PASSWORD = "s3cr3t/url-password"  # decoded; the URL spells it percent-encoded
IN_URL = "s3cr3t%2Furl-password"
PROXY_PASSWORD = "proxy-pass-word"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def with_credentials(url: str, userinfo: str = f"collector:{IN_URL}") -> str:
    return url.replace("://", f"://{userinfo}@", 1)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    made = Harness(tmp_path)
    yield made
    await made.close()


async def test_http_url_credentials_become_basic_auth(harness: Harness) -> None:
    """user:password@ in an http sink's url: the receiver gets Basic auth (decoded), the sink a URL without it."""
    receiver = await harness.serve(FakeHttpCollector())
    sink = harness.http(url=with_credentials(f"{receiver.url}/ingest"))
    await sink.send_batch(out_events(1))
    [(headers, _)] = receiver.received
    assert (headers["Authorization"], sink.settings.url) == (basic("collector", PASSWORD), f"{receiver.url}/ingest")


def test_the_url_password_is_a_secret(harness: Harness) -> None:
    """The password taken from the URL is kept as a Secret, so every secret-masking step knows it."""
    settings = harness.settings(HttpSinkSettings, "http", {"url": with_credentials("http://127.0.0.1:9/ingest")})
    assert settings.url_password is not None
    assert (settings.url_username, settings.url_password.reveal()) == ("collector", PASSWORD)
    assert PASSWORD not in repr(settings)


async def test_hec_takes_its_token_from_the_url(harness: Harness) -> None:
    """splunk_hec with x:TOKEN@ in url and no token option: Basic auth, HEC's other way of taking the token."""
    receiver = await harness.serve(RawReceiver())
    await harness.hec(url=with_credentials(receiver.url, "x:hec-token-in-url")).send_batch(out_events(1))
    assert [s.headers["authorization"] for s in receiver.seen] == [basic("x", "hec-token-in-url")]


async def test_elasticsearch_url_credentials_become_basic_auth(harness: Harness) -> None:
    """https://elastic:password@host, the way Elasticsearch URLs are often written, authenticates with Basic."""
    receiver = await harness.serve(RawReceiver(answer=b'{"errors": false, "items": []}'))
    sink = harness.es(url=with_credentials(receiver.url, f"elastic:{IN_URL}"))
    await sink.send_batch(out_events(1))
    assert [s.headers["authorization"] for s in receiver.seen] == [basic("elastic", PASSWORD)]
    assert sink.settings.url == receiver.url


CONFLICTS = [
    ("http", {"headers": {"Authorization": "Bearer x"}}, "sinks.x.headers.Authorization"),
    ("http", {"headers": {"authorization": "Bearer x"}}, "sinks.x.headers.authorization"),
    ("splunk_hec", {"token": "hec-token-value"}, "sinks.x.token"),
    ("elasticsearch", {"api_key": "es-api-key-value"}, "sinks.x.api_key"),
    ("elasticsearch", {"username": "u", "password": "es-password"}, "sinks.x.username"),
]


@pytest.mark.parametrize(("kind", "extra", "key"), CONFLICTS, ids=[c[2] for c in CONFLICTS])
def test_url_credentials_and_an_auth_option_conflict(
    tmp_path: Path, kind: str, extra: dict[str, Any], key: str
) -> None:
    """user:password@ in url and an explicit auth option: a ConfigError naming the option, not a crash at run."""
    sink = {"type": kind, "url": with_credentials("http://127.0.0.1:9/ingest"), **extra}
    text = write_config(tmp_path, "http://127.0.0.1:9").read_text() + _sink_table("x", sink)
    (tmp_path / "collector.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "collector.toml")
    assert (caught.value.key, caught.value.problem) == (key, "set, but url carries user:password@ as well")
    assert [s for s in (PASSWORD, IN_URL) if s in str(caught.value)] == []


async def test_validate_exits_78_for_the_conflict(tmp_path: Path) -> None:
    """The same through the real CLI: `validate --offline` exits 78 with one line naming the key."""
    sink = {"type": "splunk_hec", "url": with_credentials("http://127.0.0.1:9"), "token": "hec-token-value"}
    config = write_config(tmp_path, "http://127.0.0.1:9", extra_tables=_sink_table("x", sink))
    done = await run_cli("validate", "--offline", "--config", str(config))
    assert (done.returncode, len(done.stderr.splitlines())) == (78, 1)
    assert done.stderr.startswith("mimecast-collector: config error: sinks.x.token: ")


def test_an_api_base_url_with_credentials_is_refused(tmp_path: Path) -> None:
    """Mimecast never takes user:password@: in base_url it would only end up in logs, so it is refused."""
    config = write_config(tmp_path, with_credentials("https://127.0.0.1:9"))
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert (caught.value.key, caught.value.fix) == ("accounts.acme.base_url", "remove it from the URL")


def test_a_bad_url_is_reported_without_its_password(harness: Harness) -> None:
    """A URL that is not http(s) is quoted in the error with its password masked."""
    with pytest.raises(ConfigError) as caught:
        harness.settings(HttpSinkSettings, "http", {"url": with_credentials("ftp://siem.example/in")})
    assert caught.value.problem == "'ftp://collector:***@siem.example/in' is not an http(s) URL"


async def test_proxy_credentials_still_go_to_the_proxy(harness: Harness) -> None:
    """A proxy URL keeps its user:password@: the proxy gets Proxy-Authorization, the target no Authorization."""
    proxy = await harness.serve(RawReceiver(status=202))
    sink = harness.http(url="http://siem.invalid:8080/ingest", proxy=with_credentials(proxy.url, f"p:{PROXY_PASSWORD}"))
    await sink.send_batch(out_events(1))
    [seen] = proxy.seen
    assert (seen.headers["proxy-authorization"], "authorization" in seen.headers) == (basic("p", PROXY_PASSWORD), False)


def test_proxy_passwords_are_masked_in_logs(tmp_path: Path) -> None:
    """The password of an account's and of a sink's proxy URL is registered as a secret when the config is."""
    proxy = with_credentials("http://127.0.0.1:3128", f"p:{PROXY_PASSWORD}")
    sink = {"type": "http", "url": "http://127.0.0.1:9/ingest", "proxy": proxy.replace(PROXY_PASSWORD, "sink-proxy-pw")}
    config = load_config(
        write_config(tmp_path, "http://127.0.0.1:9", account={"proxy": proxy}, extra_tables=_sink_table("x", sink))
    )
    buffer = io.StringIO()
    configure_logging("info", "json", buffer)
    register_config_secrets(config)
    get_logger().warning("proxy_said", detail=f"bad password {PROXY_PASSWORD} or sink-proxy-pw")
    assert orjson.loads(buffer.getvalue())["detail"] == "bad password *** or ***"


def test_redact_masks_the_password_of_any_url() -> None:
    """A second line: scheme://user:password@ in any logged string loses its password, a bare token@ all of it."""
    text = "GET https://u:p4ss@h:1/x failed, then http://tok3n@h/ and http://h/a@b"
    assert redact(text) == "GET https://u:***@h:1/x failed, then http://***@h/ and http://h/a@b"


async def test_a_failing_delivery_shows_no_url_password(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """A user:password@ sink answered 500: its log line, `status --json` and the state file hold no password."""
    sim: FakeMimecast = await make_sim()
    seed(sim, 20, days=1)
    receiver = FakeHttpCollector()
    receiver.misbehave = Misbehave(status=500, times=1_000_000)
    await receiver.start()
    sink = {"type": "http", "url": with_credentials(f"{receiver.url}/ingest"), "retry_max_secs": 1}
    config = write_config(tmp_path, sim.base_url, extra_tables=_sink_table("siem", sink))
    collector = Collector(load_config(config), handle_signals=False)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(collector.run)
            await wait_for(lambda: receiver.refused >= 2, 60)
            collector.request_stop()
    finally:
        await receiver.stop()
    status = await run_cli("status", "--config", str(config), "--json")
    state = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("collector.db*"))

    failures = [line for line in log_buffer.getvalue().splitlines() if "sink_delivery_failed" in line]
    assert [line for line in failures if "answered 500" not in line] == []
    assert orjson.loads(status.stdout)["sinks"][1]["last_error"].startswith(f"POST {receiver.url}/ingest answered 500")
    assert _stored_error(tmp_path / "state" / "collector.db").startswith(f"POST {receiver.url}/ingest answered 500")
    shown = "\n".join(failures) + status.stdout + state.decode("latin-1")
    assert [s for s in (PASSWORD, IN_URL) if s in shown] == []


def _stored_error(path: Path) -> str:
    with sqlite3.connect(path) as db:
        [(error,)] = db.execute("SELECT last_error FROM sinks WHERE name = 'siem'").fetchall()
    return str(error)


def _sink_table(name: str, values: dict[str, Any]) -> str:
    headers = values.pop("headers", None)
    text = table(f"sinks.{name}", values)
    if headers:
        text += f"[sinks.{name}.headers]\n" + "".join(f'{k} = "{v}"\n' for k, v in headers.items())
    return text
