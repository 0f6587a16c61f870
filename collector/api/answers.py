"""What an API answer means: the page or object in it, or the classified failure it reports.

Pure functions of (HTTP status, body bytes), so the client, tests and fuzzers share one reading.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from collector.api.errors import FAIL_CODE_ACTIONS, Action, ApiError, Rule, rule_for_status
from collector.api.jsonbody import loads_lenient, page_records


@dataclass(frozen=True)
class Page:
    records: list[Any]
    next_token: str | None
    # The size asked for: smaller than requested after an oversize answer. Not part of a page's value.
    page_size: int | None = dataclasses.field(default=None, compare=False)
    # The answer it was read from, for a worker process to read the records again (bytes pickle at
    # the cost of a copy; records cost ~2 us each on the event loop). Not part of a page's value.
    body: bytes | None = dataclasses.field(default=None, compare=False, repr=False)


def request_body(data: Mapping[str, Any], page_size: int, page_token: str | None) -> bytes:
    pagination: dict[str, Any] = {"pageSize": page_size}
    if page_token:
        pagination["pageToken"] = page_token
    return orjson.dumps({"meta": {"pagination": pagination}, "data": [data]})


def parse_answer(status: int, raw: bytes, array_key: str | None, *, oauth2: bool) -> Page:
    """Check one answer: HTTP status, ``fail[]`` (even on 200), and the shape of ``data``.

    The records are ``data[i][array_key]`` for every element, or ``data[]`` itself when the log type
    declares no array key (audit events)."""
    doc = parse_object(status, raw, oauth2=oauth2)
    data = doc.get("data")
    if not isinstance(data, list):
        raise ApiError(Action.RETRY, "malformed answer: no data array", status=status)
    records = page_records(data, array_key)
    if records is None:
        raise ApiError(Action.RETRY, f"malformed answer: no {array_key!r} array in data", status=status)
    return Page(records, _next_token(doc), body=raw)


def _next_token(doc: dict[str, Any]) -> str | None:
    pagination = doc.get("meta", {}).get("pagination") if isinstance(doc.get("meta"), dict) else None
    next_token = pagination.get("next") if isinstance(pagination, dict) else None
    return next_token if isinstance(next_token, str) and next_token else None


def parse_object(status: int, raw: bytes, *, oauth2: bool) -> dict[str, Any]:
    """Check one API 2.0 answer that is a plain JSON object: HTTP status, ``fail[]``, and the shape."""
    doc = loads_lenient(raw)
    failure = _first_failure(doc)
    if status != 200 or failure is not None:
        code, message, retryable = failure or (None, f"HTTP {status}", None)
        rule = _rule(status, code, retryable, oauth2=oauth2)
        raise ApiError(rule.action, message, status=status, code=code, hint=rule.hint)
    if not isinstance(doc, dict):
        raise ApiError(Action.RETRY, "malformed answer: not a JSON object", status=status)
    return doc


def _first_failure(doc: Any) -> tuple[str | None, str, bool | None] | None:
    fails = doc.get("fail") if isinstance(doc, dict) else None
    if not isinstance(fails, list) or not fails:
        return None
    for fail in fails:
        errors = fail.get("errors") if isinstance(fail, dict) else None
        for error in errors if isinstance(errors, list) else []:
            if isinstance(error, dict):
                # Only text and numbers are shown: str() of a deeply nested value can itself fail.
                code = _scalar_text(error.get("code"))
                retryable = error.get("retryable")
                return (
                    code[:100] if code else None,
                    (_scalar_text(error.get("message")) or code or "API error")[:300],
                    retryable if isinstance(retryable, bool) else None,
                )
    return None, "API reported a failure without details", None


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e18:
        return str(value)
    return None


def _rule(status: int, code: str | None, retryable: bool | None, *, oauth2: bool) -> Rule:
    if status == 401 and oauth2:
        return rule_for_status(status, oauth2=True)
    if code is not None and code in FAIL_CODE_ACTIONS:
        return FAIL_CODE_ACTIONS[code]
    if retryable:
        return Rule(Action.RETRY)
    if status == 200:  # a failure inside a 200 that the API says will not go away by retrying
        return Rule(Action.FATAL, "the API refused the request; check the stream's options")
    return rule_for_status(status)
