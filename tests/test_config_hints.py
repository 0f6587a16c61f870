"""Every key a config error suggests is a key the operator can write: a table of broken configs, one walker."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from collector.config import AccountConfig, StateConfig, StreamOptions, load_config
from collector.config.errors import ConfigError
from collector.config.model import ServiceConfig
from collector.config.options import known_keys
from collector.logtypes import LOG_TYPES
from collector.sinks import SINK_TYPES
from collector.sinks.base import SinkSettings
from tests.test_config_values import ACCOUNT, SINK_TABLES, config_text

EXAMPLE = Path(__file__).parent.parent / "config" / "collector.example.toml"
OAUTH2 = 'auth = "oauth2"\nregion = "global"\nclient_id = "cid"\nclient_secret = "client-secret-value"\n'
TOP_LEVEL = ["state", "service", "accounts", "sinks"]
#: Tables of a config as the walker names them, with the dataclass behind each.
CLASSES: dict[str, type[Any]] = {
    "state": StateConfig,
    "service": ServiceConfig,
    "account": AccountConfig,
    "stream": StreamOptions,
    **{f"sink:{kind}": plugin.settings for kind, plugin in SINK_TYPES.items()},
}


def table_keys(error_key: str) -> set[str]:
    """The keys of the table an error's key points into (configs here name each sink after its type)."""
    parts = re.sub(r"\[\d+\]$", "", error_key).split(".")
    if parts[0] in ("state", "service"):
        return set(known_keys(CLASSES[parts[0]]))
    if parts[0] == "accounts" and len(parts) >= 4 and parts[2] in LOG_TYPES:
        return set(known_keys(StreamOptions)) | set(LOG_TYPES[parts[2]].filters)
    if parts[0] == "accounts" and len(parts) >= 3:
        return set(known_keys(AccountConfig)) | set(LOG_TYPES)
    if parts[0] == "sinks" and len(parts) >= 3:
        plugin = SINK_TYPES.get(parts[1])
        return set(known_keys(plugin.settings if plugin else SinkSettings)) | {"type"}
    return set(TOP_LEVEL)


_WORD = r"['\"`]?([a-z][a-z0-9_]*)['\"`]?"
_OR = r"\s+or\s+(?!(?:set|add|remove|use|give|keep|write)\b)"  # "set a or b", but not "remove a or set b"
# "set x", not "x is set": only the imperative offers a key
_AFTER_VERB = re.compile(rf"(?<!is )(?<!are )\b(?:set|add|remove)\s+{_WORD}((?:{_OR}{_WORD})*)")
_OR_MORE = re.compile(rf"{_OR}{_WORD}")
_SUFFIXED = re.compile(r"\b([a-z][a-z0-9_]*_(?:file|secs|bytes))\b")
_ASSIGNED = re.compile(r"(?<![\w.{])['\"`]?([a-z][a-z0-9_]*)['\"`]? = ")
_QUOTED = re.compile(r"(?:did you mean |`)['\"]?([a-z][a-z0-9_]*)")
_KNOWN_LIST = re.compile(r"known keys: ([a-z0-9_, ]+)")
_PATH = re.compile(r"\S*/\S*")
#: English words that may follow "set", "add" or "remove" without being a key ("set both", "remove it").
NOT_KEYS = {"it", "both", "the", "them", "one", "a", "an", "each", "at"}


def suggested_keys(message: str) -> set[str]:
    """Every identifier ``message`` offers as a key: after set/add/remove (and "or"), before " = ",
    in backquotes or "did you mean", in a "known keys:" list, and any word ending _file, _secs or _bytes."""
    text = _PATH.sub(" ", message)  # file paths are not suggestions, and their names may look like keys
    found: set[str] = set()
    for match in _AFTER_VERB.finditer(text):
        found.add(match.group(1))
        found.update(more.group(1) for more in _OR_MORE.finditer(match.group(2)))
    for pattern in (_SUFFIXED, _ASSIGNED, _QUOTED):
        found.update(m.group(1) for m in pattern.finditer(text))
    for listed in _KNOWN_LIST.finditer(text):
        found.update(word.strip() for word in listed.group(1).split(","))
    return found - NOT_KEYS


def _options(cls: type[Any]) -> list[tuple[str, Any, dataclasses.Field[Any]]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name], f) for f in dataclasses.fields(cls) if "spec" in f.metadata]


def _placed(where: str, line: str) -> str:
    """A config whose table ``where`` (see CLASSES) carries ``line``."""
    if where.startswith("sink:"):
        return config_text(sinks={where.removeprefix("sink:"): line})
    extra: dict[str, Any] = {where: line}
    return config_text(**extra)


def _wrong_value(hint: Any) -> str:
    """A TOML value of the wrong type for ``hint``."""
    return "7" if typing.get_origin(hint) is dict else "{ x = 1 }"


def broken_configs() -> list[tuple[str, str]]:
    """(case, config text) for every mistake the loader can be made to report."""
    cases: list[tuple[str, str]] = []
    hmac_names = ("access_key", "secret_key", "app_id", "app_key")
    for name in hmac_names:
        account = "\n".join(line for line in ACCOUNT.splitlines() if not line.startswith(f"{name} ")) + "\n"
        cases.append((f"hmac without {name}", config_text().replace(ACCOUNT, account)))
    for name in ("client_id", "client_secret"):
        account = "\n".join(line for line in OAUTH2.splitlines() if not line.startswith(f"{name} ")) + "\n"
        cases.append((f"oauth2 without {name}", config_text().replace(ACCOUNT, account)))
    cases.append(("hmac with client_id", config_text(account='client_id = "x"\n')))
    cases.append(("oauth2 with app_id", config_text().replace(ACCOUNT, OAUTH2 + 'app_id = "x"\n')))
    cases.append(("empty secret", config_text().replace('app_key = "app-key-value"', 'app_key = " "')))
    cases.append(("secret twice", config_text(account='app_key_file = "k"\n')))
    cases.append(("unreadable secret file", config_text().replace('app_key = "app-key-value"', 'app_key_file = "k"')))
    cases.append(("unset variable", config_text().replace('"ak-value"', '"${NOT_SET_ANYWHERE}"')))
    cases.append(("secret not base64", config_text().replace("YS12", "!!!!")))
    cases.append(("region of the other auth", config_text().replace('region = "eu"', 'region = "global"')))
    cases.append(("no region", config_text().replace('region = "eu"\n', "")))
    cases.append(("bad base_url", config_text(account='base_url = "ftp://x"\n')))
    cases.append(("bad proxy", config_text(account='proxy = "proxy:3128"\n')))
    cases.append(("bad start", config_text(account='start = "yesterday"\n')))
    cases.append(("no auth", config_text().replace('auth = "hmac"\n', "")))
    cases.append(("streams twice", config_text(account='streams = ["ttp_url", "ttp_url"]\n')))
    cases.append(("options for a disabled stream", config_text(account='streams = ["archive_search"]\n')))
    cases.append(("unknown filter", config_text(stream='sender = "x"\n')))
    cases.append(("bad filter value", config_text(stream='route = "sideways"\n')))
    cases.append(("bad listen", config_text(service='listen = "nowhere"\n')))
    cases.append(("unknown top-level table", config_text() + "[extra]\n"))
    cases.append(("state not a table", "state = 1\n" + config_text().replace("[state]", "[statex]")))
    cases.append(("no accounts", config_text().split("[accounts.acme]")[0] + '[sinks.f]\ntype = "file"\npath = "o"\n'))
    cases.append(("no sinks", config_text().split("[sinks.")[0]))
    cases.append(("bad account name", config_text().replace("[accounts.acme]", '[accounts."a b"]')))
    cases.append(("unknown sink type", config_text().replace('type = "file"', 'type = "kafka"')))
    cases.append(("sink without type", config_text().replace('type = "file"\n', "")))
    cases.append(("file sink without path", config_text().replace('path = "out/events.jsonl"\n', "")))
    cases.append(("bad file mode", config_text(sinks={"file": 'file_mode = "0999"\n'})))
    cases.append(("http cert without key", config_text(sinks={"http": 'cert_file = "collector.toml"\n'})))
    cases.append(("http bad url", config_text(sinks={"http": ""}).replace("http://127.0.0.1:9/ingest", "ingest")))
    cases.append(("hec without token", config_text(sinks={"splunk_hec": ""}).replace('token = "hec-token-value"', "")))
    es = {
        "es api_key and username": 'username = "u"\npassword = "es-password"\n',
        "es username alone": 'username = "u"\n',
        "es cef": 'format = "cef"\n',
    }
    cases += [(case, config_text(sinks={"elasticsearch": line})) for case, line in es.items()]
    cases.append(("es password alone", config_text(sinks={"elasticsearch": ""}).replace("api_key", "password")))
    syslog = {
        "syslog empty host": 'host = " "\n',
        "syslog bad facility": 'facility = "nowhere"\n',
        "syslog bad app_name": 'app_name = "a b"\n',
        "syslog udp framing": 'transport = "udp"\nframing = "newline"\n',
        "syslog tiny messages": "max_message_bytes = 10\n",
        "syslog udp too long": 'transport = "udp"\nmax_message_bytes = 70000\n',
        "syslog tls option on tcp": 'server_name = "x"\n',
        "syslog cert without key": 'transport = "tls"\ncert_file = "collector.toml"\n',
        "syslog ca without verify": 'transport = "tls"\nca_file = "collector.toml"\nverify = false\n',
    }
    cases += [(case, config_text(sinks={"syslog": line})) for case, line in syslog.items()]
    url = "http://u:url-password@127.0.0.1:9"
    with_creds = {
        "http credentials and Authorization": ("http", f'url = "{url}/in"\nheaders = {{ Authorization = "x" }}\n'),
        "hec credentials and token": ("splunk_hec", f'url = "{url}"\n'),
        "es credentials and api_key": ("elasticsearch", f'url = "{url}"\n'),
    }
    for case, (kind, lines) in with_creds.items():
        cases.append((case, config_text(sinks={kind: ""}).replace(SINK_TABLES[kind].split("\n")[0] + "\n", lines)))
    cases.append(("api base_url with credentials", config_text(account=f'base_url = "{url}"\n')))
    cases.append(("not a TLS file", config_text(account='ca_file = "collector.toml"\n')))
    cases.append(
        ("two file sinks on one file", config_text() + '[sinks.copy]\ntype = "file"\npath = "out/events.jsonl"\n')
    )
    for where, cls in CLASSES.items():
        for name, hint, f in _options(cls):
            cases.append((f"{where}.{name} wrong type", _placed(where, f"{name} = {_wrong_value(hint)}\n")))
            spec = f.metadata["spec"]
            if spec.choices:
                cases.append(
                    (
                        f"{where}.{name} not a choice",
                        _placed(
                            where,
                            f'{name} = ["bogus"]\n' if typing.get_origin(hint) is tuple else f'{name} = "bogus"\n',
                        ),
                    )
                )
            if spec.min is not None:
                cases.append((f"{where}.{name} below range", _placed(where, f"{name} = {spec.min - 1:g}\n")))
            if spec.max is not None:
                cases.append((f"{where}.{name} above range", _placed(where, f"{name} = {spec.max * 2 + 1:g}\n")))
            cases.append((f"{where}.{name} typo", _placed(where, f"{name}x = 1\n")))
        cases.append((f"{where} unknown key", _placed(where, "zzzz = 1\n")))
    return cases


BROKEN = broken_configs()


@pytest.mark.parametrize(("case", "text"), BROKEN, ids=[case for case, _ in BROKEN])
def test_every_suggested_key_exists(tmp_path: Path, case: str, text: str) -> None:
    """The error names a key, and every key its problem or fix suggests is a key of that table."""
    (tmp_path / "collector.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "collector.toml", env={})
    message = f"{caught.value.problem}; fix: {caught.value.fix}"
    unknown = sorted(suggested_keys(message) - table_keys(caught.value.key))
    assert unknown == [], f"{caught.value.key}: {message}"


def test_the_walker_finds_the_keys_a_hint_names() -> None:
    """The walker picks keys from every shape a hint takes, and a made-up <name>_file among them."""
    assert suggested_keys(
        "set client_id (or client_id_file for secrets) in [accounts.a]; did you mean 'region'? "
        "remove it or set auth = 'oauth2'; add token or token_file; known keys: url, gzip; set both"
    ) == {"client_id", "client_id_file", "region", "auth", "token", "token_file", "url", "gzip"}


def _documented_as(key: str, cls: type[Any]) -> str:
    """A secret's ``<name>_file`` is documented once for all, by its secret's ``<name>``."""
    base = key.removesuffix("_file")
    return base if base != key and base in known_keys(cls) else key


def test_every_known_key_is_documented() -> None:
    """known_keys offers operators only real options: each is in the example config (secrets by their base name)."""
    text = EXAMPLE.read_text()
    undocumented = sorted(
        f"{where}.{key}"
        for where, cls in CLASSES.items()
        for key in known_keys(cls)
        if f"{_documented_as(key, cls)} =" not in text
    )
    assert undocumented == []
