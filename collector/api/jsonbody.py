"""Reading an API answer's JSON body: shared by the client, which checks each answer
(:mod:`collector.api.answers`), and worker processes, which read a checked page's records again from
its bytes instead of receiving them pickled. It imports no HTTP client, so a worker loads none.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads_lenient(raw: bytes) -> Any:
    """The document, or None when it is not JSON (the caller reports that as a malformed answer)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:  # invalid UTF-8 or numbers orjson refuses: the stdlib parser with replacement characters
        return json.loads(raw.decode("utf-8", "replace"))
    except (ValueError, RecursionError):  # deeper than ~1000 levels: the stdlib parser recurses
        return None


def page_records(data: list[Any], array_key: str | None) -> list[Any] | None:
    """The records in a page answer's ``data``: ``data[i][array_key]`` of every element, or ``data``
    itself when there is no array key; None when an element holds no such array."""
    if array_key is None:
        return data
    records: list[Any] = []
    for element in data:
        found = element.get(array_key) if isinstance(element, dict) else None
        if not isinstance(found, list):
            return None
        records.extend(found)
    return records


def checked_page_records(raw: bytes, array_key: str | None) -> list[Any]:
    """The records of a page answer that :func:`collector.api.answers.parse_answer` accepted, read
    again from the same bytes: the same list it returned. Any other body raises."""
    records = page_records(loads_lenient(raw)["data"], array_key)
    if records is None:
        raise ValueError(f"no {array_key!r} array in data: not an answer the client accepted")
    return records
