"""Reading one ``get-siem-logs`` answer: a zip of log files, one plain log file, or a JSON status.

The answer body is already in memory, read within ``max_response_bytes`` by ``body.read_capped``.
Here it is opened without trusting anything it says about itself: members are inflated in bounded
steps and counted (a declared size proves nothing), the total inflated size, the number of members and
the size of each are capped, and member names are never used as paths (nothing is written to disk).
Whatever breaks one of those rules, or is not a zip at all while claiming to be one, raises
:class:`SiemAnswerError` with a ``kind`` the caller can act on; nothing else escapes.

Inside a file, records come as one JSON document ``{"type": "MTA", "data": [...]}`` (what Mimecast
serves for ``fileFormat: json``, as the Cortex and Sentinel collectors read it), as a bare JSON list, as
one JSON object per line (how Elastic's samples hold them), or as ``key=value|key=value`` lines
(``fileFormat: key_value``). A file or line that does not parse is not dropped: its text comes back as a
string record, which ``build_event`` keeps raw and tags.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from typing import Any

import orjson

from collector.config.errors import CollectorError

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive's end record
READ_STEP_BYTES = 1 << 20
MAX_MEMBERS = 256
MAX_RAW_LINE_CHARS = 65_536  # a line kept raw is cut here: an unparseable 60 MB line is one bounded event
_CUT_MARK = "...<cut>"


class SiemAnswerError(CollectorError):
    """A SIEM answer that cannot be read as files; ``kind`` names why (for logs, metrics and policy)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


@dataclass(frozen=True)
class SiemLimits:
    max_inflated_bytes: int  # all members together, once inflated (the account's max_response_bytes)
    max_members: int = MAX_MEMBERS


@dataclass(frozen=True)
class SiemFile:
    """One log file of an answer: its name (as given, for logs only) and its records."""

    name: str
    records: list[Any]  # parsed objects; a string is a line or file that did not parse (kept raw)
    unparsed: int = 0  # how many of the records are such strings


def disposition_name(header: str | None) -> str | None:
    """The file name in a ``Content-Disposition`` header (``attachment; filename="x.zip"``), or None."""
    if not header:
        return None
    message = Message()
    message["content-disposition"] = header[:1000]
    name = message.get_filename()
    return str(name)[:200] if name else None


def is_zip(body: bytes) -> bool:
    return body[:4] in ZIP_MAGIC


def read_files(body: bytes, *, name: str | None, file_format: str, limits: SiemLimits) -> Iterator[SiemFile]:
    """The log files of one answer body, one at a time (a zip's members in archive order)."""
    if is_zip(body):
        yield from _zip_files(body, file_format, limits)
        return
    if len(body) > limits.max_inflated_bytes:
        raise SiemAnswerError("too_large", f"log file of {len(body)} bytes is over max_response_bytes")
    yield parse_file(name or "unnamed", body, file_format)


def _zip_files(body: bytes, file_format: str, limits: SiemLimits) -> Iterator[SiemFile]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
        members = archive.infolist()
    except _ZIP_ERRORS as exc:
        raise SiemAnswerError("bad_zip", f"answer is not a readable zip: {_short(exc)}") from None
    files = [m for m in members if not m.is_dir()]
    if len(files) > limits.max_members:
        raise SiemAnswerError("too_many_members", f"zip holds {len(files)} files, more than {limits.max_members}")
    declared = sum(m.file_size for m in files)
    if declared > limits.max_inflated_bytes:
        raise SiemAnswerError(
            "too_large",
            f"zip declares {declared} bytes inflated, over max_response_bytes ({limits.max_inflated_bytes})",
        )
    for member in files:
        if _unsafe(member.filename):
            raise SiemAnswerError("unsafe_name", f"zip member name {member.filename[:80]!r} is a path, not a file name")
    budget = limits.max_inflated_bytes
    for member in files:
        data = _inflate(archive, member, budget)
        budget -= len(data)
        yield parse_file(member.filename, data, file_format)


def _inflate(archive: zipfile.ZipFile, member: zipfile.ZipInfo, budget: int) -> bytes:
    """One member's bytes, counted as they come: a member may inflate past what it declares."""
    out = bytearray()
    try:
        with archive.open(member) as stream:
            while True:
                piece = stream.read(READ_STEP_BYTES)
                if not piece:
                    break
                out += piece
                if len(out) > budget:
                    raise SiemAnswerError("too_large", "zip inflates past max_response_bytes")
    except SiemAnswerError:
        raise
    except (NotImplementedError, RuntimeError) as exc:  # a codec zipfile lacks; an encrypted member
        raise SiemAnswerError("bad_zip", f"zip member cannot be read: {_short(exc)}") from None
    except _ZIP_ERRORS as exc:
        raise SiemAnswerError("truncated", f"zip member is damaged or cut short: {_short(exc)}") from None
    return bytes(out)


# What zipfile raises on hostile bytes (found by fuzzing): its own errors, inflate errors, header
# fields that do not unpack or decode, versions and methods it does not implement, encryption.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    ValueError,  # UnicodeDecodeError of a member name among them
    NotImplementedError,
    RuntimeError,
    IndexError,
    KeyError,
)
_DRIVE = re.compile(r"^[A-Za-z]:")


def _unsafe(name: str) -> bool:
    """A member name that is a path (absolute, climbing, with a drive or NUL), never a plain log file."""
    normalized = name.replace("\\", "/")
    return (
        normalized.startswith("/")
        or bool(_DRIVE.match(normalized))
        or "\x00" in normalized
        or any(part == ".." for part in normalized.split("/"))
    )


def parse_file(name: str, data: bytes, file_format: str) -> SiemFile:
    """The records of one log file, whatever shape it has; what does not parse is kept as text."""
    if file_format == "key_value":
        return _key_value_file(name, data)
    stripped = data.strip()
    if not stripped:
        return SiemFile(name, [])
    if stripped[:1] in (b"{", b"["):
        records = _records_of(_loads(stripped))
        if records is not None:
            return SiemFile(name, records)
    return _json_lines_file(name, data)


def _loads(data: bytes) -> Any:
    """A JSON document, or None; invalid UTF-8 costs a replacement character, not the whole file."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):  # not JSON (perhaps one object per line), or nested past ~1000
        return None


def _records_of(document: Any) -> list[Any] | None:
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        data = document.get("data")
        if isinstance(data, list):
            return data
        if "data" not in document:
            return [document]  # one record alone in its file (NDJSON of a single line)
    return None


def _json_lines_file(name: str, data: bytes) -> SiemFile:
    records: list[Any] = []
    unparsed = 0
    for raw_line in data.splitlines():
        line = raw_line.strip()
        if not line:
            continue
        value = _loads(line)
        if isinstance(value, dict):
            records.append(value)
        else:
            records.append(_raw_text(line))
            unparsed += 1
    return SiemFile(name, records, unparsed)


def _key_value_file(name: str, data: bytes) -> SiemFile:
    """``key=value|key=value`` lines; Mimecast ends them with CR, LF or both (public collectors show each)."""
    records: list[Any] = []
    unparsed = 0
    for raw_line in re.split(rb"\r\n|\r|\n", data):
        line = raw_line.strip()
        if not line:
            continue
        found = _key_value_records(line.decode("utf-8", "replace"))
        if found:
            records.extend(found)
        else:
            records.append(_raw_text(line))
            unparsed += 1
    return SiemFile(name, records, unparsed)


def _key_value_records(line: str) -> list[dict[str, str]]:
    """The records of one line; a repeated ``datetime`` key starts the next record (Sentinel's reader
    splits a file on ``datetime=``, so records may share a line)."""
    records: list[dict[str, str]] = []
    record: dict[str, str] = {}
    for pair in line.split("|"):
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        if key in record and key == "datetime":
            records.append(record)
            record = {}
        record[key] = value
    if record:
        records.append(record)
    return records


def _raw_text(line: bytes) -> str:
    text = line[: MAX_RAW_LINE_CHARS * 4].decode("utf-8", "replace")
    return text if len(text) <= MAX_RAW_LINE_CHARS else text[:MAX_RAW_LINE_CHARS] + _CUT_MARK


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
