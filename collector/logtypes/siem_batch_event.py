"""One line of a SIEM batch file to its event: the event :func:`build_event` makes, built once.

A 500 MB batch file is about 750,000 lines, and the generic way (normalize into a dict of its own,
merge that into the common fields, copy the record, then serialize the copy again) was most of the
collector's CPU per line (bench/siem.py). Here the document is built in place, in the order
:func:`build_event` gives it, the timestamp comes from small tables, and the record is not copied.
``tests/test_siem_batch_event.py`` holds the two to the same output.
"""

from __future__ import annotations

from typing import Any

from collector.logtypes.base import (
    Event,
    JsonDict,
    LogType,
    _epoch_ms_time,
    envelope,
    kept_raw,
    record_key,
)
from collector.logtypes.siem_batch import fill, normalize

DAY = 86_400
_MAX_DAYS = 4096  # days of timestamps remembered; a file spans a day or two
_HOURS_MINUTES = tuple(f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60))
_SECONDS = tuple(f"{s:02d}." for s in range(60))
_MILLIS = tuple(f"{ms:03d}Z" for ms in range(1000))
_DAYS: dict[int, str] = {}


def handles(log_type: LogType) -> bool:
    """Whether :func:`line_event` builds this log type's events (the SIEM batch ones)."""
    return log_type.normalize is normalize


def line_event(log_type: LogType, record: dict[str, Any], account: str, fallback_time: int) -> Event:
    """The event of ``record``, a line's object just parsed: it becomes the event's ``mimecast``."""
    key = record_key(log_type, record)
    event: JsonDict = {"dataset": log_type.dataset, "module": "mimecast", "id": key, "kind": "event"}
    try:
        epoch, timestamp = epoch_ms_time(record[log_type.time_field])
        doc = envelope(log_type, account, timestamp, event)
        fill(record, doc)
    except Exception as exc:
        return kept_raw(log_type, record, account, fallback_time, f"{type(exc).__name__}: {exc}", key=key)
    # The record is ours (parsed just now, never shared), so no copy. (Handing orjson the line itself
    # as a Fragment instead, where it provably is the same object, measured slower: the proof costs
    # more scans of the line than serializing the record again does.)
    doc["mimecast"] = record
    return Event(key, epoch, doc)


def epoch_ms_time(value: Any) -> tuple[int, str]:
    """What :func:`collector.logtypes.base._epoch_ms_time` returns, from tables: a day is checked and
    formatted by it once, then remembered; the time of day is three table look-ups."""
    if value.__class__ is not int:
        return _epoch_ms_time(value)  # its rules for strings of digits and what is no time
    secs, millis = divmod(value, 1000)
    days, rest = divmod(secs, DAY)
    day = _DAYS.get(days)
    if day is None:
        day = _epoch_ms_time(value)[1][:10]  # raises for a year outside 1..9999, like every path
        if len(_DAYS) >= _MAX_DAYS:
            _DAYS.clear()
        _DAYS[days] = day
    minutes, second = divmod(rest, 60)
    return secs, f"{day}T{_HOURS_MINUTES[minutes]}{_SECONDS[second]}{_MILLIS[millis]}"
