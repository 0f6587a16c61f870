"""Turn one TOML table into a frozen dataclass, checking every key, type, range and choice.

Options are declared once, on the dataclass, with :func:`option`; this module does the rest:
unknown keys (with a "did you mean"), ``${VAR}`` / ``${VAR:-default}`` interpolation, secrets
given inline or as ``<name>_file``, and one-line errors that name the key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from collector.config.errors import ConfigError
from collector.logs import mask_url_credentials

T = TypeVar("T")
_REQUIRED: Any = dataclasses.MISSING
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Secret:
    """A secret value: printing, logging or repr-ing it never shows the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Spec:
    """Validation attached to a dataclass field."""

    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False
    doc: str = ""
    path_kind: str = ""  # for Path options: READ_FILE or WRITE_FILE, checked on disk at load


#: A file the collector reads (a CA bundle, a certificate): it must exist and be a readable file.
READ_FILE = "read_file"
#: A file the collector writes (state, sink output): not a directory, and creatable where it is missing.
WRITE_FILE = "write_file"


def option(
    default: Any = _REQUIRED,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[str, ...] = (),
    secret: bool = False,
    doc: str = "",
    path_kind: str = "",
    factory: Any = None,
) -> Any:
    """Declare a config option on a dataclass field (``factory`` builds a mutable default, e.g. dict)."""
    if path_kind not in ("", READ_FILE, WRITE_FILE):
        raise TypeError(f"unknown path_kind {path_kind!r}")
    spec = Spec(min, max, choices, secret, doc, path_kind)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"spec": spec})
    if isinstance(default, list | dict):
        raise TypeError("use a tuple or None as a default, not a mutable container")
    return dataclasses.field(default=default, metadata={"spec": spec})


@dataclass(frozen=True)
class Context:
    """What building needs besides the table: the environment and where relative paths start."""

    env: Mapping[str, str]
    base_dir: Path
    resolve_secrets: bool = True


def known_keys(cls: type[Any], skip: tuple[str, ...] = ()) -> list[str]:
    """Every key a table for ``cls`` may hold (secrets also as ``<name>_file``).

    Only fields declared with :func:`option` are keys: the others are filled in by the code
    (a sink's name, a parsed ``start``) and an operator must neither write them nor be told of them.
    """
    keys: list[str] = []
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init or "spec" not in f.metadata:
            continue
        keys.append(f.name)
        if _spec(f).secret:
            keys.append(f"{f.name}_file")
    return keys


def paths_of_kind(settings: Any, kind: str) -> list[tuple[str, Path]]:
    """(option name, path) of every ``kind`` path option that is set on a built dataclass."""
    out = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if _spec(f).path_kind == kind and isinstance(value, Path):
            out.append((f.name, value))
    return out


def reject_unknown(table: Mapping[str, Any], allowed: list[str], where: str) -> None:
    """A ConfigError for the first key not in ``allowed``, with the closest known key as a hint."""
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"remove it; known keys: {', '.join(allowed)}"
            raise ConfigError(f"{where}.{key}", "unknown option", fix)


def build(cls: type[T], table: Mapping[str, Any], where: str, ctx: Context, **given: Any) -> T:
    """Build ``cls`` from ``table``; ``given`` supplies fields the caller computed itself."""
    reject_unknown(table, known_keys(cls, skip=tuple(given)), where)
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(typing.cast(Any, cls))
    values: dict[str, Any] = dict(given)
    for f in fields:
        if f.name in given or not f.init:
            continue
        spec = _spec(f)
        key = f"{where}.{f.name}"
        if spec.secret:
            values[f.name] = _secret(table, f.name, key, ctx)
        elif f.name in table:
            values[f.name] = coerce(table[f.name], hints[f.name], key, spec, ctx)
        elif f.default is _REQUIRED and f.default_factory is dataclasses.MISSING:
            raise ConfigError(key, "required option is missing", f"add {f.name} = ... to [{where}]")
    return cls(**values)


def coerce(value: Any, hint: Any, key: str, spec: Spec, ctx: Context) -> Any:
    """Check and convert one value to the declared type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return coerce(value, inner[0], key, spec, ctx)
    if origin is dict:  # a table of strings, e.g. HTTP headers
        if not isinstance(value, dict):
            raise ConfigError(key, f"must be a table, got {_kind(value)}", 'write it as { Name = "value" }')
        return {str(k): coerce(v, str, f"{key}.{k}", Spec(), ctx) for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(key, f"must be a list, got {_kind(value)}", f"write it as [{_example(spec)}]")
        item_hint = typing.get_args(hint)[0]
        return tuple(coerce(item, item_hint, f"{key}[{i}]", spec, ctx) for i, item in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {_kind(value)}", "write true or false")
        return value
    if hint is int or hint is float:
        return _number(value, hint, key, spec)
    if hint is str or hint is Path:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {_kind(value)}", "put the value in quotes")
        text = interpolate(value, key, ctx.env)
        if spec.choices and text not in spec.choices:
            raise ConfigError(key, f"{text!r} is not allowed", f"use one of: {', '.join(spec.choices)}")
        return _path(text, key, spec, ctx) if hint is Path else text
    raise TypeError(f"unsupported option type {hint!r} for {key}")  # a bug in a declaration


def interpolate(text: str, key: str, env: Mapping[str, str]) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``; ``$$`` is a literal ``$``."""

    def expand(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(key, f"environment variable {name} is not set", f"export {name} or set the value")

    return _VAR.sub(expand, text)


def require_http_url(url: str, key: str, example: str, *, credentials: bool = False) -> None:
    """A ConfigError naming ``key`` unless ``url`` is an http(s) URL with a host (and no
    ``user:password@`` unless ``credentials``). The message never shows a password."""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed [IPv6 address
        valid = False
    if not valid:
        raise ConfigError(key, f"{mask_url_credentials(url)!r} is not an http(s) URL", f'write e.g. "{example}"')
    if "@" in parts.netloc and not credentials:
        raise ConfigError(key, "user:password@ is not allowed in this URL", "remove it from the URL")


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without its ``user:password@``, and the user and password percent-decoded (None if absent)."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None, None
    user, colon, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), unquote(user), unquote(password) if colon else None


def check_path(path: Path, kind: str, key: str) -> None:
    """A ConfigError naming ``key`` unless ``path`` can be used as ``kind`` (READ_FILE, WRITE_FILE)."""
    if kind == READ_FILE:
        if not path.exists():
            raise ConfigError(key, f"{path} does not exist", "correct the path or create the file")
        if not path.is_file():
            raise ConfigError(key, f"{path} is not a file", "give the path of a file")
        if not os.access(path, os.R_OK):
            raise ConfigError(key, f"{path} is not readable", "check the file's permissions")
        return
    if path.is_dir():
        raise ConfigError(key, f"{path} is a directory", "give the path of a file in it")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ConfigError(key, f"{path} is not writable", "check the file's permissions")
        return
    parent = path.parent
    while not parent.exists():  # missing directories are created at run time, from the nearest one that exists
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(key, f"{parent} is not a directory", "give a path whose parent is a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(key, f"cannot create {path}: {parent} is not writable", "check the directory's permissions")


def _secret(table: Mapping[str, Any], name: str, key: str, ctx: Context) -> Secret | None:
    inline, file_key = table.get(name), f"{name}_file"
    from_file = table.get(file_key)
    if inline is not None and from_file is not None:
        raise ConfigError(key, f"both {name} and {file_key} are set", "keep only one of them")
    if inline is None and from_file is None:
        return None
    if not ctx.resolve_secrets:
        return Secret("")  # status/reset never need the value; a placeholder keeps shapes equal
    if inline is not None:
        if not isinstance(inline, str):
            raise ConfigError(key, f"must be a string, got {_kind(inline)}", "put the value in quotes")
        value = interpolate(inline, key, ctx.env)
    else:
        path = coerce(from_file, Path, f"{key}_file", Spec(), ctx)
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigError(
                f"{key}_file", f"cannot read {path}: {reason}", "check the path and its permissions"
            ) from None
    if not value.strip():
        raise ConfigError(key, "the secret is empty", f"set {name} or {file_key} to the real value")
    return Secret(value)


def _number(value: Any, hint: type, key: str, spec: Spec) -> int | float:
    if isinstance(value, float) and not math.isfinite(value):  # TOML's nan and inf pass every comparison test
        raise ConfigError(key, f"{value} is not a finite number", f"write a plain number{_range(spec)}")
    if isinstance(value, bool) or not isinstance(value, int | float) or (hint is int and isinstance(value, float)):
        raise ConfigError(
            key,
            f"must be {'an integer' if hint is int else 'a number'}, got {_kind(value)}",
            f"write a plain number{_range(spec)}",
        )
    if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
        raise ConfigError(key, f"{value} is out of range", f"use a value{_range(spec)}")
    return hint(value)  # type: ignore[no-any-return]


def _path(text: str, key: str, spec: Spec, ctx: Context) -> Path:
    if not text:
        raise ConfigError(key, "the path is empty", "give a file path")
    path = Path(os.path.expanduser(text))
    path = path if path.is_absolute() else ctx.base_dir / path
    if spec.path_kind and ctx.resolve_secrets:  # status and reset must work on a host without the files
        check_path(path, spec.path_kind, key)
    return path


def _range(spec: Spec) -> str:
    if spec.min is not None and spec.max is not None:
        return f" between {spec.min:g} and {spec.max:g}"
    if spec.min is not None:
        return f" of at least {spec.min:g}"
    return f" of at most {spec.max:g}" if spec.max is not None else ""


def _spec(f: dataclasses.Field[Any]) -> Spec:
    spec = f.metadata.get("spec")
    return spec if isinstance(spec, Spec) else Spec()


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _example(spec: Spec) -> str:
    return ", ".join(f'"{c}"' for c in spec.choices[:3]) or '"..."'
