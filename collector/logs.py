"""Structured logging: one event name per line, key/value context, secrets scrubbed at every level.

Secrets are scrubbed three times over: values of sensitive-looking keys are masked, every known
secret value (config secrets, bearer tokens as they are issued) is cut out of every string,
tracebacks included, and so is the password of any ``scheme://user:password@`` in a string.
"""

from __future__ import annotations

import collections
import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any, TextIO

import orjson
import structlog

LEVELS = ("debug", "info", "warning", "error")
MASK = "***"
_SENSITIVE_KEY = re.compile(r"authorization|secret|password|signature|bearer|access_token|api_key|app_key", re.I)
# scheme://user:password@ (the password masked) or scheme://token@ (all of it masked)
_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)(?:([^\s/@:]*):)?[^\s/@]*@")
_MIN_SECRET_LEN = 6  # shorter values would mask ordinary words
_ROTATIONS_KEPT = 2  # the current value and the one before it, which a request in flight may still carry
_fixed: set[str] = set()
_rotating: dict[str, collections.deque[str]] = {}
_masked: list[str] = []  # both of the above, as redact() walks them on every log string


def register_secret(value: str | None, *, rotating: str | None = None) -> None:
    """Make sure ``value`` never appears in a log line from now on.

    ``rotating`` names a secret that replaces itself (one client's OAuth2 token): only its newest
    values stay on the list, else months of half-hourly tokens would pile up and every log line
    would be checked against all of them.
    """
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    if rotating is None:
        _fixed.add(value)
    else:
        _rotating.setdefault(rotating, collections.deque(maxlen=_ROTATIONS_KEPT)).append(value)
    _masked[:] = _fixed.union(*_rotating.values())


def secrets_masked() -> int:
    """How many values are masked (it must not grow with uptime)."""
    return len(_masked)


def redact(text: str) -> str:
    """``text`` with every registered secret, and the credentials of every URL in it, masked."""
    for secret in _masked:
        if secret in text:
            text = text.replace(secret, MASK)
    return mask_url_credentials(text) if "@" in text else text


def mask_url_credentials(text: str) -> str:
    """``text`` with ``scheme://user:password@`` shown as ``scheme://user:***@`` (a bare userinfo as ``***@``)."""

    def mask(match: re.Match[str]) -> str:
        user = match.group(2)
        return f"{match.group(1)}{MASK}@" if user is None else f"{match.group(1)}{user}:{MASK}@"

    return _URL_USERINFO.sub(mask, text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: MASK if _SENSITIVE_KEY.search(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if _SENSITIVE_KEY.search(key) and value is not None:
            event_dict[key] = MASK
        else:
            event_dict[key] = _scrub(value)
    return event_dict


def _error_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Put an exception under ``error`` (type and message) and its traceback under ``traceback``."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        elif isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        if exc_info[1] is not None:
            event_dict.setdefault("error", f"{exc_info[0].__name__}: {exc_info[1]}")
            event_dict["traceback"] = "".join(traceback.format_exception(*exc_info))
    error = event_dict.get("error")
    if isinstance(error, BaseException):
        event_dict["error"] = f"{type(error).__name__}: {error}"
    return event_dict


def _json(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog for the process. ``fmt``: json, console, or auto (console on a terminal)."""
    out = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer(colors=False) if console else structlog.processors.JSONRenderer(_json)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _error_processor,
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> Any:
    """A bound structlog logger (typed loosely: structlog's bound loggers are duck-typed)."""
    return structlog.get_logger().bind(**context)
