"""The error family and the tables that say what to do about each API failure."""

from __future__ import annotations

import asyncio
import random
import ssl

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from collector.api.errors import FAIL_CODE_ACTIONS, Action, ApiError, rule_for_exception, rule_for_status
from collector.config.errors import CollectorError, ConfigError
from collector.timeutil import backoff_secs

# status, oauth2, action, a word the hint must contain (None: no hint expected)
STATUS_TABLE: list[tuple[int, bool, Action, str | None]] = [
    (400, False, Action.FATAL, "filters"),
    (401, False, Action.FATAL, "clock"),
    (401, True, Action.AUTH_REFRESH, None),
    (403, False, Action.FATAL, "permission"),
    (404, False, Action.FATAL, "base_url"),
    (408, False, Action.RETRY, None),
    (409, False, Action.RETRY, None),
    (418, False, Action.FATAL, "binding expired"),
    (422, False, Action.FATAL, "unexpected"),
    (451, False, Action.FATAL, "unexpected"),
    (429, False, Action.RATE_LIMITED, None),
    (500, False, Action.RETRY, None),
    (502, False, Action.RETRY, None),
    (503, False, Action.RETRY, None),
    (504, False, Action.RETRY, None),
    (599, False, Action.RETRY, None),
]


@pytest.mark.parametrize(("status", "oauth2", "action", "hint_word"), STATUS_TABLE)
def test_status_maps_to_its_action(status: int, oauth2: bool, action: Action, hint_word: str | None) -> None:
    """Every documented status (and unknown 4xx/5xx) maps to the documented action and hint."""
    rule = rule_for_status(status, oauth2=oauth2)

    assert rule.action is action
    if hint_word is None:
        assert rule.hint is None
    else:
        assert rule.hint is not None
        assert hint_word in rule.hint


@pytest.mark.parametrize("status", [400, 403, 404, 408, 409, 418, 422, 429, 500, 502, 503, 504])
def test_only_401_depends_on_the_auth_mode(status: int) -> None:
    """Apart from 401, HMAC and OAuth2 accounts get the same rule for a status."""
    assert rule_for_status(status, oauth2=True) == rule_for_status(status, oauth2=False)


def test_401_under_hmac_hints_at_keys_and_clock() -> None:
    """HMAC 401 is fatal and says to check the keys and the host clock."""
    rule = rule_for_status(401)

    assert rule.action is Action.FATAL
    assert rule.hint == "check the account's keys and the host clock (HMAC dates must be within minutes)"


@pytest.mark.parametrize(
    ("code", "action", "hint_word"),
    [
        ("err_xdk_rate_limit_exceeded", Action.RATE_LIMITED, None),
        ("err_xdk_invalid_signature", Action.FATAL, "clock"),
        ("err_xdk_binding_expired", Action.FATAL, "binding expired"),
        ("err_xdk_forbidden", Action.FATAL, "permission"),
    ],
)
def test_fail_codes_map_to_their_action(code: str, action: Action, hint_word: str | None) -> None:
    """Mimecast fail[] codes seen in the wild map to the documented action and hint."""
    rule = FAIL_CODE_ACTIONS[code]

    assert rule.action is action
    assert (rule.hint is None) if hint_word is None else (rule.hint is not None and hint_word in rule.hint)


def test_binding_expired_code_and_418_share_one_rule() -> None:
    """err_xdk_binding_expired and HTTP 418 are the same failure, with the same hint."""
    assert FAIL_CODE_ACTIONS["err_xdk_binding_expired"] == rule_for_status(418)


class LocalDisconnect(aiohttp.ServerDisconnectedError):
    """A subclass the table does not list: classified through the MRO."""


CONNECTION_KEY = ConnectionKey("eu-api.mimecast.com", 443, True, True, None, None, None, None)


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.ServerDisconnectedError(),
        LocalDisconnect("gone"),
        aiohttp.ClientConnectorError(CONNECTION_KEY, OSError(111, "Connection refused")),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        aiohttp.ServerTimeoutError("read timeout"),
        aiohttp.ClientPayloadError("Response payload is not completed"),
        aiohttp.ClientConnectionError("closed"),
        TimeoutError(),  # asyncio.TimeoutError is this builtin on 3.11
        ConnectionResetError(104, "reset"),
        BrokenPipeError(),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_transport_exceptions_are_retried(exc: BaseException) -> None:
    """aiohttp's transport errors and their subclasses are RETRY, found along the MRO."""
    rule = rule_for_exception(exc)

    assert rule is not None
    assert rule.action is Action.RETRY


def test_client_connector_error_is_built_like_aiohttp_builds_it() -> None:
    """A ClientConnectorError built the real way names its host and is retried."""
    exc = aiohttp.ClientConnectorError(CONNECTION_KEY, OSError(111, "Connection refused"))

    assert exc.host == "eu-api.mimecast.com"
    assert exc.port == 443
    rule = rule_for_exception(exc)
    assert rule is not None
    assert rule.action is Action.RETRY


def test_certificate_failures_are_fatal() -> None:
    """A TLS certificate that does not verify will not fix itself: FATAL with a hint about ca_file."""
    exc = aiohttp.ClientConnectorCertificateError(CONNECTION_KEY, ssl.SSLCertVerificationError("unknown CA"))
    rule = rule_for_exception(exc)

    assert rule is not None
    assert rule.action is Action.FATAL
    assert rule.hint is not None
    assert "ca_file" in rule.hint


@pytest.mark.parametrize(
    "exc",
    [KeyError("data"), ValueError("x"), RuntimeError("bug"), asyncio.CancelledError(), KeyboardInterrupt()],
    ids=lambda exc: type(exc).__name__,
)
def test_unrelated_exceptions_are_not_classified(exc: BaseException) -> None:
    """Bugs and cancellation are not weather: no rule, so they propagate."""
    assert rule_for_exception(exc) is None


def test_api_error_summary_has_message_status_code_and_hint() -> None:
    """summary(): "message; http=N; code=C; hint: H" in that order."""
    error = ApiError(Action.FATAL, "Binding expired", status=418, code="err_xdk_binding_expired", hint="new keys")

    assert error.summary() == "Binding expired; http=418; code=err_xdk_binding_expired; hint: new keys"
    assert (error.action, error.status, error.code, error.hint) == (
        Action.FATAL,
        418,
        "err_xdk_binding_expired",
        "new keys",
    )


def test_api_error_summary_leaves_out_what_is_unknown() -> None:
    """A transport failure without status, code or hint summarizes as its message alone."""
    assert ApiError(Action.RETRY, "ServerDisconnectedError").summary() == "ServerDisconnectedError"


def test_config_error_names_key_problem_and_fix() -> None:
    """str(ConfigError) is "key: problem; fix: fix", and it is a CollectorError."""
    error = ConfigError("accounts.acme.page_size", "must be at most 1000", "lower page_size")

    assert str(error) == "accounts.acme.page_size: must be at most 1000; fix: lower page_size"
    assert (error.key, error.problem, error.fix) == (
        "accounts.acme.page_size",
        "must be at most 1000",
        "lower page_size",
    )
    assert isinstance(error, CollectorError)
    assert isinstance(ApiError(Action.RETRY, "x"), CollectorError)


class FixedJitter(random.Random):
    """uniform() returns its upper bound: the backoff before jitter shows as is."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize(
    ("attempt", "delay"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (7, 32.0), (8, 60.0), (1025, 60.0), (10**6, 60.0)],
)
def test_backoff_doubles_up_to_the_cap_and_never_overflows(attempt: int, delay: float) -> None:
    """Retries never stop, so the attempt count grows without bound: 0.5 * 2**1024 must not be computed."""
    assert backoff_secs(attempt, 60.0, FixedJitter()) == delay


def test_backoff_jitter_stays_within_half_to_full() -> None:
    rng = random.Random(7)
    delays = [backoff_secs(20, 60.0, rng) for _ in range(1000)]
    assert min(delays) >= 30.0
    assert max(delays) <= 60.0
