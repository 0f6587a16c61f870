"""What a log type declares, and the generic, pure code that turns one raw record into an event.

A log type module declares a :class:`LogType` and a pure ``normalize(record) -> dict`` that returns
only its own ECS fields. :func:`build_event` adds what every event has (``@timestamp``, ``ecs.version``,
``event.id``, ``event.dataset``, ``observer``, ``labels``, the original record under ``mimecast``), and
never drops a record: one that cannot be normalized is kept raw with an error tag.
"""

from __future__ import annotations

import enum
import hashlib
import operator
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import orjson

from collector.logtypes.fields import (
    JsonDict,
    address,
    compact,
    email_direction,
    email_fields,
    file_extension,
    ip_or_none,
    nested_text,
    related,
    sha256_or_none,
    text,
    truthy,
    url_fields,
    user_of,
)
from collector.timeutil import api_date, ecs_timestamp, parse_api_date

# The field helpers live in collector.logtypes.fields; log type modules import them from here.
__all__ = [
    "ECS_VERSION",
    "MAX_ID_CHARS",
    "NORMALIZE_ERROR_TAG",
    "CursorKind",
    "EncodedEvent",
    "Event",
    "FilterKind",
    "FilterSpec",
    "JsonDict",
    "LogType",
    "SpoolEvent",
    "TimeFormat",
    "address",
    "build_event",
    "compact",
    "dedup_key",
    "email_direction",
    "email_fields",
    "envelope",
    "file_extension",
    "ip_or_none",
    "kept_raw",
    "nested_text",
    "record_key",
    "related",
    "serialize",
    "sha256_or_none",
    "spool_bytes",
    "text",
    "truthy",
    "url_fields",
    "user_of",
]

FilterKind = Literal["str", "bool", "str_list"]
NORMALIZE_ERROR_TAG = "mimecast_normalize_error"
ECS_VERSION = "8.11.0"  # the ECS release the field mapping of every log type targets
MAX_ID_CHARS = 256  # a longer "unique id" is not trusted as one: the event is keyed by hash instead


@dataclass(frozen=True)
class FilterSpec:
    """A request filter a stream may set in config (``[accounts.X.<log type>]``)."""

    request_field: str
    kind: FilterKind
    choices: tuple[str, ...] = ()
    doc: str = ""


class CursorKind(enum.Enum):
    """How a stream's position moves; :mod:`collector.collect` runs one strategy per kind."""

    WINDOWED = "windowed"  # [window_start, window_end] + page token (TTP, archive, audit, ...)
    SIEM_TOKEN = "siem_token"  # noqa: S105 - a kind name, not a secret. API 1.0 SIEM: the mc-siem-token of the last file committed
    SIEM_BATCH = "siem_batch"  # API 2.0 SIEM: listing token + files done + lines of the current file


class TimeFormat(enum.Enum):
    """How a record's time field is written."""

    API_DATE = "api_date"  # "2024-11-13T13:03:11+0000" and its relatives (parse_api_date)
    EPOCH_MS = "epoch_ms"  # integer milliseconds since the epoch (SIEM API 2.0 records)


@dataclass(frozen=True)
class LogType:
    """Everything the generic poller needs to know about one Mimecast log endpoint."""

    name: str  # config name and stream label, e.g. "ttp_url" (a batch type's stream: "siem_cg.receipt")
    path: str  # default endpoint path
    array_key: str | None  # where the records are: data[i][array_key]; None: data[] holds the records
    from_field: str  # request field for the window start
    to_field: str  # request field for the window end
    time_field: str  # record field holding the event time (any ISO 8601 form with an offset parses)
    # Fields that identify a record; None means the whole record. Missing and null stay distinct.
    dedup_fields: tuple[str, ...] | None
    normalize: Callable[[Mapping[str, Any]], JsonDict]
    send_oldest_first: bool = True
    filters: Mapping[str, FilterSpec] = field(default_factory=dict)
    extra_request: Mapping[str, Any] = field(default_factory=dict)
    # A second path for the same endpoint, tried once when the default answers 404 (sources disagree).
    alt_path: str | None = None
    # How far back the API answers at all; an older stream position is moved forward to it.
    max_lookback_secs: int | None = None
    # A record field Mimecast promises unique: it is then the event's id and dedup key, as sent.
    event_id_field: str | None = None
    event_id_doc: str = ""  # what event.id holds, when the generic description is not enough
    cursor_kind: CursorKind = CursorKind.WINDOWED
    time_format: TimeFormat = TimeFormat.API_DATE
    auth: tuple[str, ...] = ("hmac", "oauth2")  # the account auth kinds whose API serves it
    default_enabled: bool = True  # part of an account's default `streams`
    # SIEM batch files: the `type` values the listing accepts; each one is a stream of its own.
    batch_types: tuple[str, ...] = ()
    batch_type: str | None = None  # set on the per-type copy made by for_batch_type()
    family: str | None = None  # the configured log type a per-type copy came from

    @property
    def dataset(self) -> str:
        return f"mimecast.{self.family or self.name}"

    @property
    def config_name(self) -> str:
        """The name config and ``reset --stream`` use: the family of a per-type copy."""
        return self.family or self.name

    def for_batch_type(self, batch_type: str) -> LogType:
        """The stream of one batch ``type``: own label (``siem_cg.internal_email_protect``), same dataset."""
        if batch_type not in self.batch_types:
            raise ValueError(f"{batch_type!r} is not a {self.name} type")
        label = f"{self.name}.{batch_type.replace(' ', '_')}"
        return replace(self, name=label, batch_type=batch_type, family=self.name)

    @property
    def event_id_description(self) -> str:
        """One line for the docs: what this log type's ``event.id`` holds."""
        if self.event_id_doc:
            return self.event_id_doc
        if self.event_id_field is not None:
            return f"Mimecast's own `{self.event_id_field}` (unique per event)"
        if self.dedup_fields is None:
            return "hash of the whole record (the record has no id)"
        return "hash of " + ", ".join(f"`{name}`" for name in self.dedup_fields)

    def request_data(self, from_secs: int, to_secs: int, filters: Mapping[str, Any]) -> JsonDict:
        """The one ``data[]`` element of a request; identical for every page of a window."""
        data: JsonDict = {self.from_field: api_date(from_secs), self.to_field: api_date(to_secs)}
        if self.send_oldest_first:
            data["oldestFirst"] = True
        data.update(self.extra_request)
        data.update(filters)
        return data


class Event(NamedTuple):  # one per record: a tuple is built several times faster than a frozen dataclass
    """A normalized event ready for the spool."""

    key: str  # dedup key, unique per stream; also event.id
    time: int  # event time, epoch seconds (the fallback time when the record had none)
    doc: JsonDict
    normalized: bool = True  # False: kept raw, and `time` is only the window's end

    @property
    def dedup_time(self) -> int:
        """The time part of the dedup identity. Every log type's key covers its time field, so
        (time, key) is as unique as the key; a raw-kept record's time depends on the window that
        fetched it, so it uses 0 to stay the same identity in every window."""
        return self.time if self.normalized else 0


class EncodedEvent(NamedTuple):
    """An :class:`Event` whose document is already serialized (built in a worker process)."""

    key: str
    time: int
    doc: bytes
    normalized: bool = True

    @property
    def dedup_time(self) -> int:
        return self.time if self.normalized else 0  # as Event.dedup_time


#: What the spool takes: an event with its document, or with the document's bytes.
SpoolEvent = Event | EncodedEvent


def spool_bytes(event: SpoolEvent) -> bytes:
    """The event's document as the spool stores it."""
    if isinstance(event, EncodedEvent):
        return event.doc
    return serialize(event.doc)


_MISSING = {"$missing": True}
_MAX_DEPTH = 200
_MAX_DEPTH_MARK = "<nested more than 200 levels deep: cut here>"


def dedup_key(record: Any, fields: tuple[str, ...] | None) -> str:
    """A stable 128-bit key. A missing field and a null one hash differently (pitfall: collisions)."""
    # A plain dict is tested first: the Mapping ABC check costs more than the rest of this test.
    if fields is None or not (record.__class__ is dict or isinstance(record, Mapping)):
        material = record
    else:
        material = _key_values(record, fields)
    return hashlib.blake2b(_dumps(material, sort_keys=True), digest_size=16).hexdigest()


# One itemgetter per dedup_fields tuple (a log type constant: a handful in all).
_GETTERS: dict[tuple[str, ...], Callable[[Any], Any]] = {}


def _key_values(record: Mapping[str, Any], fields: tuple[str, ...]) -> Any:
    """The identifying fields' values in order, ``_MISSING`` for an absent one. A record with all of
    them (the usual case) takes one C call; its tuple serializes exactly as the list would."""
    if record.__class__ is dict and len(fields) > 1:
        getter = _GETTERS.get(fields)
        if getter is None:
            getter = _GETTERS[fields] = operator.itemgetter(*fields)
        try:
            return getter(record)
        except KeyError:
            pass
    return [record.get(name, _MISSING) for name in fields]


def record_key(log_type: LogType, record: Any) -> str:
    """The event's id and dedup key: Mimecast's own id where the log type has a unique one and the
    record carries it as bounded text, else :func:`dedup_key` of the identifying fields."""
    id_field = log_type.event_id_field
    if id_field is not None and record.__class__ is dict:
        value = record.get(id_field)
        if value.__class__ is str and 0 < len(value) <= MAX_ID_CHARS:
            return value
    return dedup_key(record, log_type.dedup_fields)


def build_event(log_type: LogType, record: Any, account: str, fallback_time: int) -> Event:
    """Normalize one raw record; a record that cannot be normalized is kept raw, tagged, never dropped."""
    key = record_key(log_type, record)
    try:
        moment = _as_mapping(record)[log_type.time_field]
        epoch, timestamp = (
            _epoch_ms_time(moment) if log_type.time_format is TimeFormat.EPOCH_MS else _event_time(moment)
        )
        specific = log_type.normalize(record)
    except Exception as exc:
        return kept_raw(log_type, record, account, fallback_time, f"{type(exc).__name__}: {exc}", key=key)
    # Fresh dicts per event: sharing them would let one consumer's edit leak into every event.
    event: JsonDict = {"dataset": log_type.dataset, "module": "mimecast", "id": key, "kind": "event"}
    own_event = specific.pop("event", None)
    if own_event:
        event.update(own_event)
    doc = envelope(log_type, account, timestamp, event)
    doc.update(specific)
    doc["mimecast"] = dict(record)  # a copy: the event must not share the page's record
    return Event(key, epoch, doc)


def kept_raw(
    log_type: LogType,
    record: Any,
    account: str,
    fallback_time: int,
    message: str,
    *,
    key: str | None = None,
    tags: tuple[str, ...] = (),
) -> Event:
    """A record (or a line that is no record) delivered as it came, tagged, with why it was not normalized."""
    key = key if key is not None else dedup_key(record, None)
    timestamp = ecs_timestamp(datetime.fromtimestamp(fallback_time, UTC))
    event: JsonDict = {"dataset": log_type.dataset, "module": "mimecast", "id": key, "kind": "event"}
    doc = envelope(log_type, account, timestamp, event)
    doc["tags"] = [NORMALIZE_ERROR_TAG, *tags]
    doc["error"] = {"message": message[:500]}
    doc["mimecast"] = dict(record) if isinstance(record, Mapping) else {"raw": record}
    return Event(key, fallback_time, doc, normalized=False)


def envelope(log_type: LogType, account: str, timestamp: str, event: JsonDict) -> JsonDict:
    """The fields every event document starts with, in this order, built fresh for each event (a
    shared dict would let one consumer's edit show in every event)."""
    return {
        "@timestamp": timestamp,
        "ecs": {"version": ECS_VERSION},
        "event": event,
        "observer": {"vendor": "Mimecast", "product": "Mimecast Email Security"},
        "labels": {"mimecast_account": account, "mimecast_log_type": log_type.name},
    }


# 2024-11-13T13:03:11+0000 (the API's form) or ...+00:00: calendar dates only. The shape is checked,
# not just the length: fromisoformat also takes ISO week dates (2024-W46-3T...), whose text is no
# valid @timestamp, and those go through the slow path, which normalizes them.
_UTC_API_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:?00", re.ASCII)


def _event_time(value: Any) -> tuple[int, str]:
    """(epoch seconds, ECS @timestamp) of a record's time field, with fast paths for the API's formats."""
    text_value = value if value.__class__ is str else str(value)
    # Only a string of exactly that shape: nothing for strip() to change, UTC, no fraction, so the
    # slow path's result (or its ValueError) would be the same.
    if _UTC_API_DATE.fullmatch(text_value):
        return int(datetime.fromisoformat(text_value).timestamp()), text_value[:19] + ".000Z"
    moment = parse_api_date(text_value)
    return int(moment.timestamp()), ecs_timestamp(moment)


def _epoch_ms_time(value: Any) -> tuple[int, str]:
    """(epoch seconds, ECS @timestamp) of epoch milliseconds; digits in a string are accepted too."""
    if value.__class__ is not int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"timestamp is a {type(value).__name__}, not epoch milliseconds")
        value = int(value)  # a string that is no integer raises ValueError: the record is kept raw
    secs, millis = divmod(value, 1000)
    # gmtime, not datetime: a third of the cost, and this runs once per SIEM line. Out of range
    # (before year 1 or past 9999) raises OverflowError/OSError/ValueError: the record is kept raw.
    t = time.gmtime(secs)
    if not 1 <= t.tm_year <= 9999:
        raise ValueError(f"timestamp {value} is out of range")
    day = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
    return secs, f"{day}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{millis:03d}Z"


def _as_mapping(record: Any) -> Mapping[str, Any]:
    if record.__class__ is dict:
        return record
    if not isinstance(record, Mapping):
        raise TypeError(f"record is a {type(record).__name__}, not an object")
    return record


def serialize(doc: JsonDict) -> bytes:
    """Spool bytes of an event; survives lone surrogates and integers orjson cannot represent."""
    return _dumps(doc, sort_keys=False)


def _dumps(value: Any, *, sort_keys: bool) -> bytes:
    option = orjson.OPT_SORT_KEYS if sort_keys else 0
    try:
        return orjson.dumps(value, option=option)
    except (orjson.JSONEncodeError, TypeError):
        return orjson.dumps(_scrub(value), option=option)


def _scrub(value: Any, depth: int = 0) -> Any:
    """Make a value orjson-safe: repair bad strings, stringify what JSON cannot carry exactly.

    orjson refuses nesting deeper than about 250 levels although it parses up to 1024, so deeper
    parts become one string rather than an exception that would stop the stream.
    """
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:
            return value
        try:
            return str(value)
        except ValueError:  # beyond Python's int-to-str digit limit; hex has none
            return hex(value)
    if depth >= _MAX_DEPTH:
        return _MAX_DEPTH_MARK
    if isinstance(value, Mapping):
        return {str(_scrub(k, depth + 1)): _scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return str(value)
