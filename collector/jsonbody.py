"""Reading an API answer's JSON body: shared by the client, which checks each answer
(:mod:`collector.api.answers`), and worker processes, which read a checked page's records again from
its bytes instead of receiving them pickled. A module of its own so a worker imports no HTTP client.
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


def checked_page_records(raw: bytes, array_key: str | None) -> list[Any]:
    """The records of a page answer that :func:`collector.api.answers.parse_answer` accepted: the
    same list it returned, read again from the same bytes (``data[i][array_key]`` of every element, or
    ``data[]`` itself when there is no array key). Any other body raises."""
    data = loads_lenient(raw)["data"]
    if array_key is None:
        return list(data)
    records: list[Any] = []
    for element in data:
        records.extend(element[array_key])
    return records
