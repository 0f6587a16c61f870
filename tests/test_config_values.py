"""Values that validate must run: no nan or inf in any number, every path usable as declared, one writer per file."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest
import trustme

from collector.config import AccountConfig, StateConfig, StreamOptions, load_config
from collector.config.errors import ConfigError
from collector.config.model import ServiceConfig
from collector.sinks import SINK_TYPES
from tests.helpers import run_cli

SECRET = "YS12ZXJ5LXNlY3JldC1obWFjLWtleS0wMTIzNDU2Nzg5"  # base64 of an HMAC key
ACCOUNT = f'auth = "hmac"\nregion = "eu"\naccess_key = "ak-value"\nsecret_key = "{SECRET}"\napp_id = "app"\n'
ACCOUNT += 'app_key = "app-key-value"\n'
#: The least each sink type needs to load.
SINK_TABLES = {
    "file": 'path = "out/events.jsonl"\n',
    "syslog": 'host = "127.0.0.1"\n',
    "http": 'url = "http://127.0.0.1:9/ingest"\n',
    "splunk_hec": 'url = "http://127.0.0.1:9"\ntoken = "hec-token-value"\n',
    "elasticsearch": 'url = "http://127.0.0.1:9"\napi_key = "es-api-key-value"\n',
}


def config_text(
    *, state: str = "", service: str = "", account: str = "", stream: str = "", sinks: dict[str, str] | None = None
) -> str:
    """A loadable config with extra lines in each table; ``sinks`` maps sink type to its extra lines."""
    text = f'[state]\npath = "state/collector.db"\n{state}\n[service]\n{service}\n'
    text += f"[accounts.acme]\n{ACCOUNT}{account}\n[accounts.acme.ttp_url]\n{stream}\n"
    for kind, extra in (sinks or {"file": ""}).items():
        text += f'[sinks.{kind}]\ntype = "{kind}"\n{SINK_TABLES[kind]}{extra}\n'
    return text


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(text)
    return path


def _numeric_options() -> list[tuple[str, str]]:
    """(table, option) for every int or float option of every config dataclass."""
    tables: list[tuple[str, type[Any]]] = [
        ("state", StateConfig),
        ("service", ServiceConfig),
        ("account", AccountConfig),
        ("stream", StreamOptions),
        *((f"sink:{kind}", plugin.settings) for kind, plugin in SINK_TYPES.items()),
    ]
    found = []
    for where, cls in tables:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if "spec" not in f.metadata:
                continue
            kinds = set(typing.get_args(hints[f.name])) or {hints[f.name]}
            if kinds & {int, float}:
                found.append((where, f.name))
    return found


NUMERIC = _numeric_options()


def test_the_walk_covers_every_table() -> None:
    """The walk below finds numbers in every table, sink types included (it cannot go quietly empty)."""
    assert {where for where, _ in NUMERIC} == {
        "state",
        "service",
        "account",
        "stream",
        *(f"sink:{kind}" for kind in SINK_TYPES),
    }


@pytest.mark.parametrize("literal", ["nan", "inf", "-inf"])
@pytest.mark.parametrize(("where", "name"), NUMERIC, ids=[f"{w}.{n}" for w, n in NUMERIC])
def test_non_finite_numbers_are_refused(tmp_path: Path, where: str, name: str, literal: str) -> None:
    """TOML's nan, inf and -inf are refused for every numeric option, naming the key."""
    line = f"{name} = {literal}\n"
    if where.startswith("sink:"):
        kind = where.removeprefix("sink:")
        text, key = config_text(sinks={kind: line}), f"sinks.{kind}.{name}"
    else:
        extra: dict[str, Any] = {where: line}
        text = config_text(**extra)
        tables = {"state": "state", "service": "service", "account": "accounts.acme", "stream": "accounts.acme.ttp_url"}
        key = f"{tables[where]}.{name}"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    assert (caught.value.key, caught.value.problem) == (key, f"{literal} is not a finite number")


# ------------------------------------------------------------------------------------------ paths


async def validate_offline(tmp_path: Path, text: str) -> tuple[int, list[str]]:
    """`mimecast-collector validate --offline` in a child process: exit code and stderr lines."""
    done = await run_cli("validate", "--offline", "--config", str(write(tmp_path, text)))
    return done.returncode, done.stderr.splitlines()


@pytest.mark.parametrize(
    ("case", "key"),
    [
        ("account ca_file", "accounts.acme.ca_file"),
        ("http ca_file", "sinks.http.ca_file"),
        ("http cert_file", "sinks.http.cert_file"),
        ("http key_file", "sinks.http.key_file"),
        ("syslog ca_file", "sinks.syslog.ca_file"),
    ],
)
async def test_validate_refuses_a_missing_tls_file(tmp_path: Path, case: str, key: str) -> None:
    """A CA bundle, certificate or key that does not exist: exit 78, one line naming the key."""
    (tmp_path / "present.pem").write_text("")
    missing = tmp_path / "missing.pem"
    texts = {
        "account ca_file": config_text(account='ca_file = "missing.pem"\n'),
        "http ca_file": config_text(sinks={"http": 'ca_file = "missing.pem"\n'}),
        "http cert_file": config_text(sinks={"http": 'cert_file = "missing.pem"\nkey_file = "present.pem"\n'}),
        "http key_file": config_text(sinks={"http": 'cert_file = "present.pem"\nkey_file = "missing.pem"\n'}),
        "syslog ca_file": config_text(sinks={"syslog": 'transport = "tls"\nca_file = "missing.pem"\n'}),
    }
    code, err = await validate_offline(tmp_path, texts[case])
    assert (code, err) == (
        78,
        [
            f"mimecast-collector: config error: {key}: {missing} does not exist; "
            + "fix: correct the path or create the file"
        ],
    )


async def test_validate_refuses_a_ca_file_that_is_a_directory(tmp_path: Path) -> None:
    """A ca_file naming a directory: exit 78, one line naming the key."""
    (tmp_path / "certs").mkdir()
    code, err = await validate_offline(tmp_path, config_text(account='ca_file = "certs"\n'))
    assert (code, err) == (
        78,
        [
            f"mimecast-collector: config error: accounts.acme.ca_file: {tmp_path / 'certs'} is not a file; "
            "fix: give the path of a file"
        ],
    )


@pytest.mark.parametrize(
    ("case", "key"),
    [
        ("state", "state.path"),
        ("file sink", "sinks.file.path"),
        ("dead letters", "sinks.elasticsearch.dead_letter_path"),
    ],
)
async def test_validate_refuses_an_output_path_that_is_a_directory(tmp_path: Path, case: str, key: str) -> None:
    """A state file, file sink path or dead-letter file that is a directory: exit 78, one line naming the key."""
    (tmp_path / "somedir").mkdir()
    texts = {
        "state": config_text().replace('path = "state/collector.db"', 'path = "somedir"'),
        "file sink": config_text().replace('path = "out/events.jsonl"', 'path = "somedir"'),
        "dead letters": config_text(sinks={"elasticsearch": 'dead_letter_path = "somedir"\n'}),
    }
    code, err = await validate_offline(tmp_path, texts[case])
    assert (code, err) == (
        78,
        [
            f"mimecast-collector: config error: {key}: {tmp_path / 'somedir'} is a directory; "
            + "fix: give the path of a file in it"
        ],
    )


def test_a_file_sink_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    """A file sink path whose parent is a regular file cannot be created: the key and the blocking file are named."""
    (tmp_path / "out").write_text("")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, config_text()), env={})
    assert (caught.value.key, caught.value.problem) == ("sinks.file.path", f"{tmp_path / 'out'} is not a directory")


@pytest.mark.parametrize(
    ("case", "key", "problem"),
    [
        ("account ca_file", "accounts.acme.ca_file", "cannot be loaded as a CA bundle: NO_CERTIFICATE_OR_CRL_FOUND"),
        (
            "http cert_file",
            "sinks.http.cert_file",
            "cannot be loaded as a certificate with its key_file: [SSL] PEM lib",
        ),
    ],
)
async def test_validate_refuses_a_tls_file_that_is_not_pem(tmp_path: Path, case: str, key: str, problem: str) -> None:
    """A CA bundle or certificate that exists but does not load: exit 78 at validate, not a failure at run."""
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    texts = {
        "account ca_file": config_text(account='ca_file = "junk.pem"\n'),
        "http cert_file": config_text(sinks={"http": 'cert_file = "junk.pem"\nkey_file = "junk.pem"\n'}),
    }
    code, err = await validate_offline(tmp_path, texts[case])
    assert (code, err) == (
        78,
        [f"mimecast-collector: config error: {key}: {problem}; fix: give PEM files (openssl x509 -in FILE)"],
    )


def test_a_real_ca_bundle_loads(tmp_path: Path) -> None:
    """A PEM CA bundle passes the load check."""
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    config = load_config(write(tmp_path, config_text(account='ca_file = "ca.pem"\n')), env={})
    assert config.accounts[0].ca_file == tmp_path / "ca.pem"


def test_status_and_reset_do_not_need_the_tls_files(tmp_path: Path) -> None:
    """Loading without secrets (status, reset) checks no file, so they work on a host that lacks the CA bundle."""
    config = load_config(write(tmp_path, config_text(account='ca_file = "missing.pem"\n')), resolve_secrets=False)
    assert config.accounts[0].ca_file == tmp_path / "missing.pem"


# ---------------------------------------------------------------------------- one writer per file


def test_two_file_sinks_on_one_file_are_refused(tmp_path: Path) -> None:
    """A second file sink on the same file (spelled differently) names the second sink's path key."""
    text = config_text() + '[sinks.copy]\ntype = "file"\npath = "out/../out/events.jsonl"\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    assert (caught.value.key, caught.value.problem) == (
        "sinks.copy.path",
        f"{tmp_path / 'out/../out/events.jsonl'} is already written by sinks.file.path",
    )


def test_a_file_sink_through_a_symlink_to_another_is_refused(tmp_path: Path) -> None:
    """Paths are compared resolved: a symlinked directory does not hide the clash."""
    (tmp_path / "out").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "out")
    text = config_text() + '[sinks.copy]\ntype = "file"\npath = "alias/events.jsonl"\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    assert caught.value.key == "sinks.copy.path"


def test_a_file_sink_on_the_dead_letter_file_is_refused(tmp_path: Path) -> None:
    """A file sink writing the file an Elasticsearch sink parks rejected events in is refused."""
    text = config_text(sinks={"elasticsearch": 'dead_letter_path = "out/events.jsonl"\n', "file": ""})
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    assert (caught.value.key, caught.value.problem) == (
        "sinks.file.path",
        f"{tmp_path / 'out/events.jsonl'} is already written by sinks.elasticsearch.dead_letter_path",
    )


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", ".lock"])
def test_a_file_sink_on_the_state_files_is_refused(tmp_path: Path, suffix: str) -> None:
    """A file sink on the state file, its SQLite companions or its lock file is refused."""
    text = config_text().replace('path = "out/events.jsonl"', f'path = "state/collector.db{suffix}"')
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    assert (caught.value.key, caught.value.problem) == (
        "sinks.file.path",
        f"{tmp_path / 'state' / f'collector.db{suffix}'} is already written by state.path",
    )
