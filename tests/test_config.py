"""Configuration: every mistake is one clear line naming the key and the fix, exit 78; no traceback."""

from __future__ import annotations

import base64
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from collector.cli import main
from collector.config import AccountConfig, StateConfig, load_config
from collector.config.errors import ConfigError
from collector.config.loader import config_time
from collector.config.model import ServiceConfig
from collector.logtypes import LOG_TYPES
from collector.sinks import SINK_TYPES

EXAMPLE = Path(__file__).parent.parent / "config" / "collector.example.toml"
SECRET = base64.b64encode(b"a-very-secret-hmac-key-0123456789").decode()
ENV = {
    "MIMECAST_ACCESS_KEY": "access-key-value",
    "MIMECAST_SECRET_KEY": SECRET,
    "MIMECAST_APP_ID": "app-id-value",
    "MIMECAST_APP_KEY": "app-key-value",
}

GOOD = f"""
[state]
path = "state/collector.db"

[accounts.acme]
region = "eu"
auth = "hmac"
access_key = "${{MIMECAST_ACCESS_KEY}}"
secret_key = "{SECRET}"
app_id = "app"
app_key = "app-key-value"

[sinks.local]
type = "file"
path = "out/events.jsonl"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(text)
    return path


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped example loads once its ${VAR}s are set."""
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    config = load_config(EXAMPLE)
    assert [a.name for a in config.accounts] == ["acme"]
    assert config.accounts[0].url == "https://eu-api.mimecast.com"
    assert config.accounts[0].stream_options["ttp_url"].filters == {"route": "all", "scanResult": "all"}
    assert [s.name for s in config.sinks] == ["local"]


def test_example_config_documents_every_option() -> None:
    """Every option a dataclass declares appears in the example, so operators can find it."""
    text = EXAMPLE.read_text()
    classes: list[type] = [StateConfig, ServiceConfig, AccountConfig, *(p.settings for p in SINK_TYPES.values())]
    # declared with option(); the other fields (name, type, start_secs, ...) are set by the loader
    names = {f.name for c in classes for f in dataclasses.fields(c) if f.init and "spec" in f.metadata}
    names |= {name for lt in LOG_TYPES.values() for name in lt.filters}
    missing = sorted(n for n in names if f"{n} =" not in text)
    assert missing == []


def test_good_config_loads_with_defaults(tmp_path: Path) -> None:
    """Defaults apply and relative paths are resolved next to the config file."""
    config = load_config(write(tmp_path, GOOD), env=ENV)
    account = config.accounts[0]
    assert account.streams == (
        "ttp_url",
        "ttp_impersonation",
        "archive_search",
        "ttp_attachment",
        "dlp",
        "audit",
        "held_release",
    )
    assert (account.poll_interval_secs, account.lag_secs, account.overlap_secs, account.page_size) == (60, 60, 5, 500)
    assert account.access_key is not None
    assert account.access_key.reveal() == "access-key-value"
    assert repr(account.secret_key) == "Secret('***')"
    assert config.state.path == tmp_path / "state" / "collector.db"


def test_secret_from_file_strips_the_trailing_newline(tmp_path: Path) -> None:
    """secret_key_file reads the secret and drops the newline editors and systemd leave."""
    (tmp_path / "secret").write_text(SECRET + "\n")
    text = GOOD.replace(f'secret_key = "{SECRET}"', 'secret_key_file = "secret"')
    account = load_config(write(tmp_path, text), env=ENV).accounts[0]
    assert account.secret_key is not None
    assert account.secret_key.reveal() == SECRET


def test_env_default_and_dollar_escape(tmp_path: Path) -> None:
    """${VAR:-default} falls back; $$ is a literal dollar sign."""
    text = GOOD.replace('app_id = "app"', 'app_id = "${APP_ID:-fallback}$$x"')
    assert load_config(write(tmp_path, text), env=ENV).accounts[0].app_id == "fallback$x"


def test_status_mode_needs_no_secrets(tmp_path: Path) -> None:
    """With resolve_secrets=False an unset secret variable is not an error (status, reset)."""
    config = load_config(write(tmp_path, GOOD), env={}, resolve_secrets=False)
    assert config.accounts[0].name == "acme"


@pytest.mark.parametrize(
    ("start", "expected"),
    [(None, 1_000_000 - 86_400), ("2026-11-01T00:00:00Z", 1_793_491_200), ("1970-01-01T00:00:00Z", 0)],
)
def test_default_start_is_the_configured_one_else_a_day_ago(tmp_path: Path, start: str | None, expected: int) -> None:
    """`start` where a stream has no saved position; without it, 24 h back. The epoch is a start too."""
    text = GOOD.replace('app_id = "app"', f'app_id = "app"\nstart = "{start}"') if start else GOOD
    account = load_config(write(tmp_path, text), env={}, resolve_secrets=False).accounts[0]
    assert account.default_start(now=1_000_000.5) == expected


@pytest.mark.parametrize("where", ["config", "reset"])
def test_a_start_that_is_not_a_timestamp_names_its_key(tmp_path: Path, where: str) -> None:
    """The config's `start` and reset's --start are checked by one rule, with one message."""
    if where == "config":
        path = write(tmp_path, GOOD.replace('app_id = "app"', 'app_id = "app"\nstart = "yesterday"'))
        with pytest.raises(ConfigError) as caught:
            load_config(path, env={}, resolve_secrets=False)
        key = "accounts.acme.start"
    else:
        with pytest.raises(ConfigError) as caught:
            config_time("yesterday", "--start")
        key = "--start"
    assert (caught.value.key, caught.value.fix) == (key, 'use ISO 8601, e.g. "2026-11-01T00:00:00Z"')
    assert "'yesterday' is not a timestamp" in caught.value.problem


def test_oauth2_region_maps_to_api_services(tmp_path: Path) -> None:
    """auth = "oauth2" with region = "uk" talks to the API 2.0 host."""
    text = GOOD.replace('auth = "hmac"', 'auth = "oauth2"').replace('region = "eu"', 'region = "uk"')
    text = "\n".join(
        line for line in text.splitlines() if not line.startswith(("access_key", "secret_key", "app_id", "app_key"))
    )
    text = text.replace("[sinks.local]", 'client_id = "cid"\nclient_secret = "csecret-value"\n\n[sinks.local]')
    account = load_config(write(tmp_path, text), env=ENV).accounts[0]
    assert account.url == "https://uk-api.services.mimecast.com"


MISTAKES = [
    ("bad TOML", GOOD + "\nthis is not toml", "collector.toml", "invalid TOML"),
    ("unknown top-level table", GOOD + "\n[extra]\n", "config.extra", "unknown option"),
    ("typo in an option", GOOD.replace("region =", "regoin ="), "accounts.acme.regoin", "did you mean 'region'"),
    ("unknown sink type", GOOD.replace('type = "file"', 'type = "kafka"'), "sinks.local.type", "unknown sink type"),
    (
        "unknown stream",
        GOOD.replace('app_id = "app"', 'app_id = "app"\nstreams = ["ttp_urls"]'),
        "accounts.acme.streams[0]",
        "'ttp_urls' is not allowed",
    ),
    ("missing secret", GOOD.replace(f'secret_key = "{SECRET}"', ""), "accounts.acme.secret_key", "missing"),
    (
        "unset variable",
        GOOD.replace("${MIMECAST_ACCESS_KEY}", "${NOT_SET_ANYWHERE}"),
        "accounts.acme.access_key",
        "NOT_SET_ANYWHERE is not set",
    ),
    (
        "out of range",
        GOOD.replace('app_id = "app"', 'app_id = "app"\npage_size = 5000'),
        "accounts.acme.page_size",
        "out of range",
    ),
    (
        "wrong type",
        GOOD.replace('app_id = "app"', 'app_id = "app"\nlag_secs = "60"'),
        "accounts.acme.lag_secs",
        "must be an integer",
    ),
    (
        "boolean for a number",
        GOOD.replace('app_id = "app"', 'app_id = "app"\nlag_secs = true'),
        "accounts.acme.lag_secs",
        "must be an integer",
    ),
    (
        "secret twice",
        GOOD.replace('app_id = "app"', 'app_id = "app"\nsecret_key_file = "/x"'),
        "accounts.acme.secret_key",
        "both secret_key and secret_key_file",
    ),
    (
        "unreadable secret file",
        GOOD.replace(f'secret_key = "{SECRET}"', 'secret_key_file = "/nonexistent/k"'),
        "accounts.acme.secret_key_file",
        "cannot read",
    ),
    ("secret not base64", GOOD.replace(SECRET, "not base64!!"), "accounts.acme.secret_key", "not valid base64"),
    ("bad region", GOOD.replace('region = "eu"', 'region = "mars"'), "accounts.acme.region", "not a region"),
    ("no region", GOOD.replace('region = "eu"', ""), "accounts.acme.region", "neither region nor base_url"),
    (
        "bad base_url",
        GOOD.replace('region = "eu"', 'base_url = "ftp://x"'),
        "accounts.acme.base_url",
        "not an http(s) URL",
    ),
    (
        "bad start",
        GOOD.replace('app_id = "app"', 'app_id = "app"\nstart = "yesterday"'),
        "accounts.acme.start",
        "not a timestamp",
    ),
    (
        "no accounts",
        GOOD.split("[accounts.acme]", maxsplit=1)[0] + '[sinks.x]\ntype = "file"\npath = "o"\n',
        "accounts",
        "none configured",
    ),
    ("no sinks", GOOD.split("[sinks.local]", maxsplit=1)[0], "sinks", "none configured"),
    (
        "oauth2 key under hmac",
        GOOD.replace('app_id = "app"', 'app_id = "app"\nclient_id = "x"'),
        "accounts.acme.client_id",
        "belongs to auth = 'oauth2'",
    ),
    ("bad auth", GOOD.replace('auth = "hmac"', 'auth = "basic"'), "accounts.acme.auth", "'basic' is not allowed"),
    (
        "options for a disabled stream",
        GOOD.replace(
            'app_key = "app-key-value"',
            'app_key = "k"\nstreams = ["ttp_url"]\n[accounts.acme.archive_search]\nquery = "x"',
        ),
        "accounts.acme.archive_search",
        "not enabled",
    ),
    (
        "unknown filter",
        GOOD.replace('app_key = "app-key-value"', 'app_key = "k"\n[accounts.acme.ttp_url]\nsender = "x"'),
        "accounts.acme.ttp_url.sender",
        "unknown option",
    ),
    (
        "bad filter value",
        GOOD.replace('app_key = "app-key-value"', 'app_key = "k"\n[accounts.acme.ttp_url]\nroute = "sideways"'),
        "accounts.acme.ttp_url.route",
        "'sideways' is not allowed",
    ),
    (
        "bad account name",
        GOOD.replace("[accounts.acme]", '[accounts."acme corp"]'),
        "accounts.acme corp",
        "invalid name",
    ),
    ("bad file mode", GOOD + 'file_mode = "0999"\n', "sinks.local.file_mode", "not an octal mode"),
]


@pytest.mark.parametrize(("case", "text", "key", "problem"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistake_names_the_key_and_the_fix(tmp_path: Path, case: str, text: str, key: str, problem: str) -> None:
    """Each config mistake raises one ConfigError naming the key, the problem and a fix."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env=ENV)
    message = str(caught.value)
    assert caught.value.key.endswith(key), message
    assert problem in message
    assert "; fix: " in message
    assert "\n" not in message


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize(("case", "text", "key", "problem"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_cli_exits_78_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    case: str,
    text: str,
    key: str,
    problem: str,
) -> None:
    """`validate` and `run` print one line to stderr and exit 78 for every mistake."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert main([command, "--config", str(write(tmp_path, text))]) == 78
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("mimecast-collector: config error: ")
    assert problem in lines[0]


def test_secret_values_never_appear_in_config_errors(tmp_path: Path) -> None:
    """A secret that is wrong is named by its key, never echoed."""
    text = GOOD.replace(SECRET, "Sup3r-Secret-not-base64!")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env=ENV)
    assert "Sup3r-Secret" not in str(caught.value)


def test_validate_in_a_real_process_prints_no_traceback(tmp_path: Path) -> None:
    """The installed entry point: exit 78, one line, no Python traceback."""
    path = write(tmp_path, GOOD.replace("${MIMECAST_ACCESS_KEY}", "${DEFINITELY_UNSET_VAR}"))
    done = subprocess.run(
        [sys.executable, "-m", "collector", "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 78
    assert done.stderr.splitlines() == [
        "mimecast-collector: config error: accounts.acme.access_key: environment variable DEFINITELY_UNSET_VAR "
        "is not set; fix: export DEFINITELY_UNSET_VAR or set the value"
    ]


def test_validate_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A sound config: exit 0 and a one-line summary."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["validate", "--config", str(write(tmp_path, GOOD))]) == 0
    assert capsys.readouterr().out == "config OK: 1 account(s), 7 stream(s), 1 sink(s)\nsink 'local': reachable\n"
    assert main(["validate", "--offline", "--config", str(write(tmp_path, GOOD))]) == 0
    assert capsys.readouterr().out == "config OK: 1 account(s), 7 stream(s), 1 sink(s)\n"


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config path that does not exist: exit 78, says which file."""
    assert main(["validate", "--config", str(tmp_path / "nope.toml")]) == 78
    assert "cannot read" in capsys.readouterr().err
