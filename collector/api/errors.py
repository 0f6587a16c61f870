"""The table that says what to do about each API failure, and the error an API call raises.

Every failure the collector can meet is one of: a config mistake (``ConfigError``, the operator
fixes it), an API failure (classified here by :data:`STATUS_ACTIONS` / :data:`FAIL_CODE_ACTIONS` /
:data:`EXCEPTION_ACTIONS`), a state-store problem (``StoreError``) or a sink problem (``SinkError``),
each defined by the stage that raises it under the one root ``CollectorError``. Nothing is
classified by if-chains at the call site.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from collector.config.errors import CollectorError


class AnswerTooLarge(CollectorError):
    """An API answer is bigger than ``max_response_bytes`` (declared, on the wire, or once inflated)."""


class AnswerUndecodable(CollectorError):
    """An API answer's Content-Encoding is unsupported or does not match its bytes."""


class Action(enum.Enum):
    """What the client does with an answer."""

    RETRY = "retry"  # transient: back off exponentially, try again, never skip data
    RATE_LIMITED = "rate_limited"  # wait out x-ratelimit-reset / Retry-After, then try again
    AUTH_REFRESH = "auth_refresh"  # OAuth2 token rejected: fetch a new token once, then try again
    FATAL = "fatal"  # needs a human: stop this stream, report it, retry slowly
    TOO_LARGE = "too_large"  # the answer passed max_response_bytes: ask again for a smaller page


class ApiError(CollectorError):
    """A classified failure of one API call."""

    def __init__(
        self,
        action: Action,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.action = action
        self.status = status
        self.code = code
        self.hint = hint
        super().__init__(message)

    def summary(self) -> str:
        """One line for logs and ``status``: what failed and what to do (never a secret)."""
        parts = [str(self)]
        if self.status is not None:
            parts.append(f"http={self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Rule:
    action: Action
    hint: str | None = None


#: ApiError.code of an answer too large even for a page of one record (not a page-token problem).
ANSWER_TOO_LARGE = "answer_too_large"

_CHECK_KEYS = "check the account's keys and the host clock (HMAC dates must be within minutes)"

#: HTTP status -> action. Statuses not listed: 5xx retry, other 4xx fatal (see :func:`rule_for_status`).
STATUS_ACTIONS: Mapping[int, Rule] = {
    400: Rule(Action.FATAL, "the API rejected the request; check the stream's filters"),
    401: Rule(Action.FATAL, _CHECK_KEYS),
    403: Rule(Action.FATAL, "the API user lacks a permission this log type needs"),
    404: Rule(Action.FATAL, "wrong base_url/region or endpoint path"),
    408: Rule(Action.RETRY),
    409: Rule(Action.RETRY),
    418: Rule(Action.FATAL, "the API key binding expired: create new keys or lengthen the authentication TTL"),
    425: Rule(Action.RETRY),
    429: Rule(Action.RATE_LIMITED),
    # Mimecast never redirects; a redirect is a wrong host or a proxy, and following it would hand the
    # credentials and the signed headers to whatever host the Location names.
    **dict.fromkeys((301, 302, 303, 307, 308), Rule(Action.FATAL, "fix base_url/region to the API's real host")),
}

#: Mimecast ``fail[].errors[].code`` -> action; consulted before the HTTP status.
FAIL_CODE_ACTIONS: Mapping[str, Rule] = {
    "err_xdk_rate_limit_exceeded": Rule(Action.RATE_LIMITED),
    "err_xdk_invalid_signature": Rule(Action.FATAL, _CHECK_KEYS),
    "err_xdk_binding_expired": STATUS_ACTIONS[418],
    "err_xdk_forbidden": STATUS_ACTIONS[403],
}

#: Transport exceptions -> action. Looked up along the exception's MRO, so subclasses inherit.
EXCEPTION_ACTIONS: Mapping[type[BaseException], Rule] = {
    # A certificate that does not verify will not start verifying by itself.
    aiohttp.ClientConnectorCertificateError: Rule(
        Action.FATAL, "TLS verification failed: set ca_file to the CA that signs the server (or your proxy)"
    ),
    AnswerTooLarge: Rule(Action.TOO_LARGE, "raise max_response_bytes if real pages are this large"),
    AnswerUndecodable: Rule(Action.RETRY),
    aiohttp.ClientPayloadError: Rule(Action.RETRY),
    aiohttp.ClientConnectionError: Rule(Action.RETRY),
    aiohttp.ClientResponseError: Rule(Action.RETRY),
    asyncio.TimeoutError: Rule(Action.RETRY),
    ConnectionError: Rule(Action.RETRY),
}


def rule_for_status(status: int, *, oauth2: bool = False) -> Rule:
    """The rule for an HTTP status; a 401 under OAuth2 means "refresh the token once"."""
    if status == 401 and oauth2:
        return Rule(Action.AUTH_REFRESH)
    if status in STATUS_ACTIONS:
        return STATUS_ACTIONS[status]
    if status >= 500:
        return Rule(Action.RETRY)
    return Rule(Action.FATAL, "unexpected answer from the API")


def rule_for_exception(exc: BaseException) -> Rule | None:
    """The rule for a transport exception, or None when it is not ours to classify."""
    for klass in type(exc).__mro__:
        rule = EXCEPTION_ACTIONS.get(klass)
        if rule is not None:
            return rule
    return None


REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))


def redirect_error(status: int, location: str | None, what: str) -> ApiError:
    """A redirect answer as the fatal error it is, naming where it pointed (the host only)."""
    return ApiError(
        STATUS_ACTIONS[status].action,
        f"{what} answered with a redirect to {_location_host(location)}, not followed",
        status=status,
        hint=STATUS_ACTIONS[status].hint,
    )


def _location_host(location: str | None) -> str:
    if not location:
        return "nowhere (no Location header)"
    try:
        parts = urlsplit(location.strip())
        host, port = parts.hostname, parts.port  # never the userinfo: it may hold a password
    except ValueError:
        return "an unreadable Location"
    if not host:
        return "a path on the same host"
    shown = "".join(c for c in host if c.isprintable() and not c.isspace())[:100] or "an unreadable host"
    return f"{shown}:{port}" if port is not None else shown
