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


@dataclass
class SiemFile:
    """One log file of an answer: its name (as given, for logs only) and its bytes, inflated."""

    name: str
    data: bytes
    file_format: str  # "json" or "key_value"
    unparsed: int = 0  # records so far that did not parse and come as text (kept raw by build_event)

    def records(self) -> Iterator[Any]:
        """The file's records, parsed as they are taken (never the whole file at once); a string is a
        line or a part that did not parse."""
        if self.file_format == "key_value":
            return _key_value_lines(self)
        return _json_records(self)


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
    """One log file; its records are parsed as :meth:`SiemFile.records` is iterated."""
    return SiemFile(name, data, file_format)


_WS = re.compile(r"[ \t\n\r]*")
_S = r"[ \t\n\r]*"
# The envelope Mimecast writes, {"type": "MTA", "data": [ (type first or absent): its array is streamed.
_ENVELOPE = re.compile(rf'{_S}\{{{_S}(?:"type"{_S}:{_S}"(?:[^"\\]|\\.)*"{_S},{_S})?"data"{_S}:{_S}\[')
_LIST = re.compile(rf"{_S}\[")
_DECODER = json.JSONDecoder()


def _json_records(siem_file: SiemFile) -> Iterator[Any]:
    data = siem_file.data
    stripped = data.strip()
    if not stripped:
        return
    if stripped[:1] in (b"{", b"["):
        text = stripped.decode("utf-8", "replace")  # invalid UTF-8 costs a replacement character only
        opening = _ENVELOPE.match(text) or _LIST.match(text)
        if opening:
            yield from _array(siem_file, text, opening.end())
            return
        records = _records_of(_loads(stripped))
        if records is not None:
            yield from records
            return
    yield from _json_lines(siem_file)


def _array(siem_file: SiemFile, text: str, at: int) -> Iterator[Any]:
    """The elements of the JSON array opened just before ``at``, one at a time: a large file is never
    parsed whole. A broken element ends the array, and the text from it on is kept as one record."""
    end = len(text)
    at = _WS.match(text, at).end()  # type: ignore[union-attr]  # matches the empty string at least
    if at < end and text[at] == "]":
        return
    while at < end:
        try:
            value, after = _DECODER.raw_decode(text, at)
        except (ValueError, RecursionError):
            siem_file.unparsed += 1
            yield _cut(text[at : at + MAX_RAW_LINE_CHARS + 1])
            return
        yield value
        at = _WS.match(text, after).end()  # type: ignore[union-attr]
        if at < end and text[at] == ",":
            at = _WS.match(text, at + 1).end()  # type: ignore[union-attr]
        elif at < end and text[at] != "]":
            siem_file.unparsed += 1  # junk between elements
            yield _cut(text[at : at + MAX_RAW_LINE_CHARS + 1])
            return
        else:
            return  # the array's end (what follows it is the envelope's end), or a file cut after an element


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


def _json_lines(siem_file: SiemFile) -> Iterator[Any]:
    for raw_line in io.BytesIO(siem_file.data):
        line = raw_line.strip()
        if not line:
            continue
        value = _loads(line)
        if isinstance(value, dict):
            yield value
        else:
            siem_file.unparsed += 1
            yield _raw_text(line)


_LINE = re.compile(rb"[^\r\n]+")


def _key_value_lines(siem_file: SiemFile) -> Iterator[Any]:
    """``key=value|key=value`` lines; Mimecast ends them with CR, LF or both (public collectors show each)."""
    for match in _LINE.finditer(siem_file.data):
        line = match.group().strip()
        if not line:
            continue
        found = _key_value_records(line.decode("utf-8", "replace"))
        if found:
            yield from found
        else:
            siem_file.unparsed += 1
            yield _raw_text(line)


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
    return _cut(line[: MAX_RAW_LINE_CHARS * 4].decode("utf-8", "replace"))


def _cut(text: str) -> str:
    return text if len(text) <= MAX_RAW_LINE_CHARS else text[:MAX_RAW_LINE_CHARS] + _CUT_MARK


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
