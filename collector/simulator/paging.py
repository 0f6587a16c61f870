"""Simulator internals: endpoint declarations, strict request parsing, record index, page tokens."""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import orjson

from collector.simulator.data import CHOICES, Endpoint, SimRecord
from collector.timeutil import parse_request_date


class TokenError(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


def parse_query(body: Any, endpoint: Endpoint, max_page_size: int) -> dict[str, Any]:
    """Validate a request body as strictly as the real API might; ValueError says what is wrong."""
    if not isinstance(body, dict) or set(body) - {"meta", "data"}:
        raise ValueError("body must be an object with meta and data")
    pagination = body.get("meta", {}).get("pagination", {}) if isinstance(body.get("meta"), dict) else None
    if not isinstance(pagination, dict):
        raise ValueError("meta.pagination must be an object")
    page_size = pagination.get("pageSize", 25)
    if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= max_page_size:
        raise ValueError(f"pageSize must be an integer between 1 and {max_page_size}")
    token = pagination.get("pageToken")
    if token is not None and (not isinstance(token, str) or not token):
        raise ValueError("pageToken must be a non-empty string")
    data = body.get("data")
    if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], dict):
        raise ValueError("data must hold exactly one object")
    filters = data[0]
    unknown = set(filters) - {endpoint.from_field, endpoint.to_field} - endpoint.optional
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    try:
        start = parse_request_date(filters[endpoint.from_field])
        end = parse_request_date(filters[endpoint.to_field])
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"{endpoint.from_field}/{endpoint.to_field} must be dates like 2015-11-16T14:49:18+0000"
        ) from None
    _check_window(endpoint, start, end)
    for name, allowed in CHOICES.items():
        if name in filters and filters[name] not in allowed:
            raise ValueError(f"{name} must be one of {allowed}")
    for name in ("oldestFirst", "taggedMalicious"):
        if name in filters and not isinstance(filters[name], bool):
            raise ValueError(f"{name} must be a boolean")
    return {
        "from": start,
        "to": end,
        "oldest_first": filters.get("oldestFirst", False) is True,
        "filters": filters,
        "page_size": page_size,
        "page_token": token,
        "binding": hashlib.sha256(orjson.dumps(filters, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24],
    }


def _check_window(endpoint: Endpoint, start: int, end: int) -> None:
    if start > end:
        raise ValueError(f"{endpoint.from_field} is after {endpoint.to_field}")
    if endpoint.max_lookback_secs is not None and start < time.time() - endpoint.max_lookback_secs:
        raise ValueError(f"{endpoint.from_field} is more than {endpoint.max_lookback_secs // 86_400} days ago")


Key = tuple[int, int]


class RecordIndex:
    """Records of one log type, ordered by (event time, arrival), paged by keyset."""

    def __init__(self) -> None:
        self._keys: list[Key] = []
        self._records: list[SimRecord] = []
        self._arrivals = 0

    def add(self, records: list[SimRecord]) -> None:
        for record in records:
            key = (record.time, self._arrivals)
            self._arrivals += 1
            at = bisect.bisect_right(self._keys, key)
            self._keys.insert(at, key)
            self._records.insert(at, record)

    def __len__(self) -> int:
        return len(self._records)

    def query(
        self, query: dict[str, Any], position: Key | None, *, exclusive_start: bool, exclusive_end: bool
    ) -> tuple[list[dict[str, Any]], Key | None, bool, int]:
        """One page after ``position``: (records, key of the last one, more after it?, total in range)."""
        if exclusive_start:
            lo = bisect.bisect_right(self._keys, (query["from"], 2**62))
        else:
            lo = bisect.bisect_left(self._keys, (query["from"], -1))
        if exclusive_end:
            hi = bisect.bisect_left(self._keys, (query["to"], -1))
        else:
            hi = bisect.bisect_right(self._keys, (query["to"], 2**62))
        now = time.time()
        page: list[dict[str, Any]] = []
        last: Key | None = None
        for i in self._scan(lo, hi, position, ascending=query["oldest_first"]):
            record = self._records[i]
            if record.available_at > now or not _matches(record.record, query["filters"]):
                continue
            if len(page) == query["page_size"]:
                return page, last, True, hi - lo
            page.append(record.record)
            last = self._keys[i]
        return page, last, False, hi - lo

    def _scan(self, lo: int, hi: int, position: Key | None, *, ascending: bool) -> Iterator[int]:
        if ascending:
            start = lo if position is None else max(lo, bisect.bisect_right(self._keys, position))
            return iter(range(start, hi))
        start = hi - 1 if position is None else min(hi - 1, bisect.bisect_left(self._keys, position) - 1)
        return iter(range(start, lo - 1, -1))


def _matches(record: dict[str, Any], filters: dict[str, Any]) -> bool:
    for name in ("route", "scanResult", "result"):
        wanted = filters.get(name)
        if wanted not in (None, "all") and record.get(name) != wanted:
            return False
    for name, field in (("actions", "action"), ("routes", "route"), ("categories", "category")):
        allowed = filters.get(name)
        if isinstance(allowed, list) and record.get(field) not in allowed:
            return False
    return not (filters.get("taggedMalicious") is True and record.get("taggedMalicious") is not True)


class PageTokens:
    """Opaque, signed page tokens that remember the query they belong to and when they were issued."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self.revoked_before = 0.0  # tokens issued earlier than this answer "expired"

    def issue(self, last_key: Key, binding: str, *, trap: bool = False) -> str:
        payload = orjson.dumps({"k": list(last_key), "b": binding, "t": time.time(), "x": trap})
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")

    def open(self, token: str, binding: str, ttl_secs: float | None) -> tuple[Key, bool]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, payload = raw[:12], raw[12:]
            if not hmac.compare_digest(mac, hmac.new(self._secret, payload, hashlib.sha256).digest()[:12]):
                raise ValueError
            content = orjson.loads(payload)
        except ValueError:
            raise TokenError("err_invalid_page_token", "pageToken is not valid") from None
        if content["b"] != binding:
            raise TokenError("err_page_token_query_mismatch", "pageToken belongs to a different query")
        if content["t"] < self.revoked_before or (ttl_secs is not None and time.time() - content["t"] > ttl_secs):
            raise TokenError("err_page_token_expired", "pageToken has expired")
        return (int(content["k"][0]), int(content["k"][1])), bool(content["x"])
