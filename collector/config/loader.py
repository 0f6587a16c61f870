"""Read a TOML file into a :class:`Config`, checking all of it before anything starts."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from collector.config.errors import ConfigError
from collector.config.model import (
    HMAC_REGIONS,
    OAUTH2_REGIONS,
    AccountConfig,
    Config,
    ServiceConfig,
    StateConfig,
    StreamOptions,
)
from collector.config.options import (
    WRITE_FILE,
    Context,
    Secret,
    Spec,
    build,
    coerce,
    known_keys,
    paths_of_kind,
    reject_unknown,
    require_http_url,
    split_credentials,
)
from collector.config.sinks import SinkSettings, sink_settings_types
from collector.logtypes import LOG_TYPES, LogType
from collector.timeutil import parse_config_time
from collector.tls import client_context

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CREDENTIALS = {
    "hmac": ("access_key", "secret_key", "app_id", "app_key"),
    "oauth2": ("client_id", "client_secret"),
}


def config_time(text: str, key: str) -> int:
    """A timestamp an operator wrote (config ``start``, ``reset --start``), as epoch seconds."""
    try:
        return parse_config_time(text)
    except ValueError:
        raise ConfigError(key, f"{text!r} is not a timestamp", 'use ISO 8601, e.g. "2026-11-01T00:00:00Z"') from None


def load_config(
    path: Path, *, env: Mapping[str, str] | None = None, resolve_secrets: bool = True, state_secrets: bool | None = None
) -> Config:
    """Load and validate ``path``. ``resolve_secrets=False`` skips reading secrets (status, reset);
    ``state_secrets`` (default: the same) reads the state password all the same: with PostgreSQL,
    status and reset need it, and only it."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(
            "--config", f"cannot read {path}: {reason}", "pass the path of a readable TOML file"
        ) from None
    try:
        doc = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"invalid TOML: {exc}", "correct the syntax at that line") from None
    ctx = Context(
        env=os.environ if env is None else env,
        base_dir=path.parent.resolve(),
        resolve_secrets=resolve_secrets,
    )
    reject_unknown(doc, ["state", "service", "accounts", "sinks"], "config")
    state_ctx = dataclasses.replace(ctx, resolve_secrets=resolve_secrets if state_secrets is None else state_secrets)
    config = Config(
        source=path,
        state=build(StateConfig, _table(doc, "state", "state"), "state", state_ctx),
        service=build(ServiceConfig, _table(doc, "service", "service"), "service", ctx),
        accounts=tuple(_account(name, table, ctx) for name, table in _named_tables(doc, "accounts", "[accounts.acme]")),
        sinks=tuple(_sink(name, table, ctx) for name, table in _named_tables(doc, "sinks", "[sinks.local]")),
    )
    _check_one_writer_per_file(config)
    if resolve_secrets:  # like every file check: status and reset must work without the files
        holders: list[tuple[object, str]] = [(a, f"accounts.{a.name}") for a in config.accounts]
        for holder, where in holders + [(s, f"sinks.{s.name}") for s in config.sinks]:
            _check_tls_files(holder, where)
    return config


def _check_one_writer_per_file(config: Config) -> None:
    """Two writers on one file double its events or corrupt it: every file written has one owner.

    Paths are compared resolved, so a symlink or a ``..`` does not hide a clash; the state file
    owns its SQLite companions and its lock file too.
    """
    state = config.state.path
    owners = {Path(f"{state}{suffix}").resolve(): "state.path" for suffix in ("", "-wal", "-shm", ".lock")}
    for settings in config.sinks:
        for name, path in paths_of_kind(settings, WRITE_FILE):
            key = f"sinks.{settings.name}.{name}"
            first = owners.setdefault(path.resolve(), key)
            if first != key:
                raise ConfigError(key, f"{path} is already written by {first}", "give each writer a file of its own")


def _check_tls_files(holder: object, where: str) -> None:
    """Load TLS files as the run will: one that exists but is no PEM, or a key that does not match
    its certificate, is a config error now rather than a failure once running."""
    ca_file, cert_file = getattr(holder, "ca_file", None), getattr(holder, "cert_file", None)
    if ca_file is not None:
        _load_tls(f"{where}.ca_file", "a CA bundle", ca_file=ca_file)
    if cert_file is not None:
        key_file = getattr(holder, "key_file", None)
        _load_tls(f"{where}.cert_file", "a certificate with its key_file", cert_file=cert_file, key_file=key_file)


def _load_tls(key: str, what: str, **files: Path | None) -> None:
    try:
        client_context(verify=True, **files)
    except (OSError, ssl.SSLError) as exc:  # SSLError: not PEM, no certificate in it, key mismatch
        reason = getattr(exc, "reason", None) or re.sub(r" \(_ssl\.c:\d+\)$", "", exc.strerror or type(exc).__name__)
        raise ConfigError(
            key, f"cannot be loaded as {what}: {reason}", "give PEM files (openssl x509 -in FILE)"
        ) from None


def _account(name: str, table: dict[str, Any], ctx: Context) -> AccountConfig:
    where = f"accounts.{name}"
    options = {k: v for k, v in table.items() if not (k in LOG_TYPES and isinstance(v, dict))}
    stream_tables = {k: v for k, v in table.items() if k in LOG_TYPES and isinstance(v, dict)}
    account = build(AccountConfig, options, where, ctx, name=name)
    if len(set(account.streams)) != len(account.streams) or not account.streams:
        raise ConfigError(
            f"{where}.streams",
            "must list each log type at most once, and at least one",
            f"use some of: {', '.join(LOG_TYPES)}",
        )
    for log_name in account.streams:
        needs = LOG_TYPES[log_name].auth
        if account.auth not in needs:
            raise ConfigError(
                f"{where}.streams",
                f"{log_name} is served by API 2.0 only (auth = {' or '.join(map(repr, needs))}), "
                f"but auth = {account.auth!r}",
                f"remove {log_name!r} from streams, or use an API 2.0 (oauth2) account for it",
            )
    stream_options = {}
    for log_name, sub in stream_tables.items():
        if log_name not in account.streams:
            raise ConfigError(
                f"{where}.{log_name}",
                "options given for a stream that is not enabled",
                f"add {log_name!r} to {where}.streams or remove the table",
            )
        stream_options[log_name] = _stream_options(LOG_TYPES[log_name], sub, f"{where}.{log_name}", ctx)
    start_secs = None if account.start is None else config_time(account.start, f"{where}.start")
    _check_endpoint(account, where)
    account = dataclasses.replace(
        account, start_secs=start_secs, stream_options=stream_options, proxy_password=_proxy_password(account.proxy)
    )
    if ctx.resolve_secrets:
        _check_credentials(account, where)
    return account


def _stream_options(log_type: LogType, table: dict[str, Any], where: str, ctx: Context) -> StreamOptions:
    plain = {k: v for k, v in table.items() if k not in log_type.filters}
    only_batch = () if log_type.batch_types else ("types",)  # `types` is for SIEM batch log types only
    reject_unknown(plain, known_keys(StreamOptions, skip=("filters", *only_batch)) + list(log_type.filters), where)
    filters: dict[str, Any] = {}
    for key, spec in log_type.filters.items():
        if key not in table:
            continue
        hint: Any = {"str": str, "bool": bool, "str_list": tuple[str, ...]}[spec.kind]
        value = coerce(table[key], hint, f"{where}.{key}", Spec(choices=spec.choices), ctx)
        filters[spec.request_field] = list(value) if isinstance(value, tuple) else value
    options = build(StreamOptions, plain, where, ctx, filters=filters)
    if options.types is not None:
        _check_batch_types(log_type, options.types, f"{where}.types")
    return options


def _check_batch_types(log_type: LogType, types: tuple[str, ...], key: str) -> None:
    valid = ", ".join(repr(t) for t in log_type.batch_types)
    for i, name in enumerate(types):
        if name not in log_type.batch_types:
            raise ConfigError(f"{key}[{i}]", f"{name!r} is not a {log_type.name} type", f"use some of: {valid}")
    if not types or len(set(types)) != len(types):
        raise ConfigError(key, "must list each type at most once, and at least one", f"use some of: {valid}")


def _check_endpoint(account: AccountConfig, where: str) -> None:
    if account.proxy is not None:  # user:password@ of a proxy is for the proxy: aiohttp sends it there only
        require_http_url(account.proxy, f"{where}.proxy", "http://proxy:3128", credentials=True)
    if account.base_url:
        require_http_url(account.base_url, f"{where}.base_url", "https://eu-api.mimecast.com")
        return
    regions = HMAC_REGIONS if account.auth == "hmac" else OAUTH2_REGIONS
    if account.region is None:
        raise ConfigError(
            f"{where}.region",
            "neither region nor base_url is set",
            f"set region to one of: {', '.join(regions)}, or set base_url",
        )
    if account.region not in regions:
        raise ConfigError(
            f"{where}.region",
            f"{account.region!r} is not a region for auth = {account.auth!r}",
            f"use one of: {', '.join(regions)}, or set base_url",
        )


def _proxy_password(proxy: str | None) -> Secret | None:
    password = None if proxy is None else split_credentials(proxy)[2]
    return Secret(password) if password else None


def _check_credentials(account: AccountConfig, where: str) -> None:
    keys = known_keys(AccountConfig)
    for name in _CREDENTIALS[account.auth]:
        if getattr(account, name) is None:
            # only secrets may come from a file: client_id and app_id have no <name>_file
            also = f" or {name}_file" if f"{name}_file" in keys else ""
            raise ConfigError(
                f"{where}.{name}", f"missing for auth = {account.auth!r}", f"set {name}{also} in [{where}]"
            )
    other = "oauth2" if account.auth == "hmac" else "hmac"
    for name in _CREDENTIALS[other]:
        if getattr(account, name) is not None:
            raise ConfigError(
                f"{where}.{name}",
                f"belongs to auth = {other!r}, but auth = {account.auth!r}",
                f"remove {name} or set auth = {other!r}",
            )
    if account.auth == "hmac" and account.secret_key is not None:
        try:
            base64.b64decode(account.secret_key.reveal(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(
                f"{where}.secret_key",
                "is not valid base64",
                "copy the secret key exactly as Mimecast issued it",
            ) from None


def _sink(name: str, table: dict[str, Any], ctx: Context) -> SinkSettings:
    where = f"sinks.{name}"
    sink_type = table.get("type")
    types = sink_settings_types()
    if not isinstance(sink_type, str) or sink_type not in types:
        raise ConfigError(f"{where}.type", f"unknown sink type {sink_type!r}", f"use one of: {', '.join(types)}")
    rest = {k: v for k, v in table.items() if k != "type"}
    return build(types[sink_type], rest, where, ctx, name=name, type=sink_type)


def _table(doc: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(where, "must be a table", f"write it as [{where}]")
    return value


def _named_tables(doc: Mapping[str, Any], key: str, example: str) -> list[tuple[str, dict[str, Any]]]:
    section = _table(doc, key, key)
    if not section:
        raise ConfigError(key, "none configured", f"add at least one table such as {example}")
    out = []
    for name, table in section.items():
        if not _NAME.match(name):
            raise ConfigError(f"{key}.{name}", "invalid name", "use letters, digits, '_', '-' or '.' (max 64)")
        if not isinstance(table, dict):
            raise ConfigError(f"{key}.{name}", "must be a table", f"write it as [{key}.{name}]")
        out.append((name, table))
    return out
