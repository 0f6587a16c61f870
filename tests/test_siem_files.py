"""The SIEM answer reader: zips, plain files, every record shape, and hostile archives.

Every hostile answer must end as a classified :class:`SiemAnswerError` (or records kept as text),
never as another exception, and never by inflating more than the limit allows.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
import zlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.api.siem_files import (
    MAX_RAW_LINE_CHARS,
    SiemAnswerError,
    SiemLimits,
    disposition_name,
    is_zip,
    parse_file,
    read_files,
)

LIMITS = SiemLimits(max_inflated_bytes=1 << 20, max_members=8)
RECEIPT = {"acc": "C0A0", "datetime": "2026-12-01T08:00:00+0000", "aCode": "A1", "Act": "Acc"}
DELIVERY = {"acc": "C0A0", "datetime": "2026-12-01T08:00:05+0000", "aCode": "A1", "Delivered": True}


def zipped(*members: tuple[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return out.getvalue()


def document(*records: Any) -> bytes:
    return orjson.dumps({"type": "MTA", "data": list(records)})


def read_all(body: bytes, name: str | None = None, file_format: str = "json", limits: SiemLimits = LIMITS) -> Any:
    found = []
    for siem_file in read_files(body, name=name, file_format=file_format, limits=limits):
        records = list(siem_file.records())
        found.append((siem_file.name, records, siem_file.unparsed))
    return found


def parsed(data: bytes, file_format: str = "json") -> tuple[list[Any], int]:
    """(records, how many kept as text) of one file."""
    siem_file = parse_file("f.json", data, file_format)
    records = list(siem_file.records())
    return records, siem_file.unparsed


def test_zip_with_two_files_gives_each_file_and_its_records_in_order() -> None:
    """Members come back in archive order, each with its own records."""
    body = zipped(("receipt_1.json", document(RECEIPT)), ("delivery_1.json", document(DELIVERY, DELIVERY)))
    assert read_all(body) == [("receipt_1.json", [RECEIPT], 0), ("delivery_1.json", [DELIVERY, DELIVERY], 0)]


def test_plain_file_uses_the_disposition_name() -> None:
    """compress=false: the body is the file itself."""
    assert read_all(document(RECEIPT), name="receipt_2.json") == [("receipt_2.json", [RECEIPT], 0)]


@pytest.mark.parametrize(
    ("data", "records"),
    [
        (document(RECEIPT, DELIVERY), [RECEIPT, DELIVERY]),  # {"type": "MTA", "data": [...]}
        (orjson.dumps({"data": [RECEIPT]}), [RECEIPT]),  # Sentinel's reading: data[] only
        (orjson.dumps([RECEIPT, DELIVERY]), [RECEIPT, DELIVERY]),  # a bare list
        (orjson.dumps(RECEIPT) + b"\n" + orjson.dumps(DELIVERY) + b"\n", [RECEIPT, DELIVERY]),  # NDJSON
        (orjson.dumps(RECEIPT), [RECEIPT]),  # one record alone
        (b"", []),
        (b"  \n\r\n", []),
    ],
)
def test_every_json_shape_gives_its_records(data: bytes, records: list[Any]) -> None:
    """The document, list, NDJSON and single-object shapes all read the same way."""
    assert parsed(data)[0] == records


def test_ndjson_keeps_a_broken_line_as_text_and_reads_the_rest() -> None:
    """One bad line costs one raw record, not the file."""
    data = orjson.dumps(RECEIPT) + b'\n{"acc": "C0A0", "datetime\n' + orjson.dumps(DELIVERY)
    assert parsed(data) == ([RECEIPT, '{"acc": "C0A0", "datetime', DELIVERY], 1)


def test_invalid_utf8_inside_a_document_costs_a_replacement_character_only() -> None:
    """orjson refuses invalid UTF-8; the stdlib parser with replacement keeps every record."""
    data = b'{"data": [{"datetime": "2026-12-01T08:00:00+0000", "Subject": "caf\xe9"}]}'
    assert parsed(data)[0] == [{"datetime": "2026-12-01T08:00:00+0000", "Subject": "caf\ufffd"}]


def test_a_file_that_is_not_json_is_kept_line_by_line_as_text() -> None:
    """Binary junk becomes bounded text records, never an exception."""
    assert parsed(b"\x00\xff\xfe junk\nmore junk") == (["\x00\ufffd\ufffd junk", "more junk"], 2)


def test_a_huge_unparseable_line_is_cut_to_a_bounded_record() -> None:
    """A 1 MB line that is not JSON becomes one record of at most MAX_RAW_LINE_CHARS plus a mark."""
    assert parsed(b"x" * 1_000_000) == (["x" * MAX_RAW_LINE_CHARS + "...<cut>"], 1)


def test_key_value_lines_with_crlf_cr_or_lf() -> None:
    """key=value|key=value records, however the lines end; '=' inside a value stays in the value."""
    data = b"datetime=2026-12-01T08:00:00+0000|aCode=A1|Act=Acc\r\ndatetime=2026-12-01T08:00:01+0000|Subject=a=b\rx|y"
    assert parsed(data, "key_value") == (
        [
            {"datetime": "2026-12-01T08:00:00+0000", "aCode": "A1", "Act": "Acc"},
            {"datetime": "2026-12-01T08:00:01+0000", "Subject": "a=b"},
            "x|y",
        ],
        1,
    )


def test_key_value_records_sharing_one_line_split_at_datetime() -> None:
    """Sentinel splits files on 'datetime=': a second datetime key starts the next record."""
    data = b"datetime=2026-12-01T08:00:00+0000|aCode=A1|datetime=2026-12-01T08:00:01+0000|aCode=A2"
    assert parsed(data, "key_value")[0] == [
        {"datetime": "2026-12-01T08:00:00+0000", "aCode": "A1"},
        {"datetime": "2026-12-01T08:00:01+0000", "aCode": "A2"},
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('attachment; filename="receipt_20211018093329655.zip"', "receipt_20211018093329655.zip"),
        ("attachment; filename=delivery_1.json", "delivery_1.json"),
        ("attachment; filename*=UTF-8''jrnl_%31.json", "jrnl_1.json"),
        ("attachment", None),
        ("", None),
        (None, None),
    ],
)
def test_disposition_name(header: str | None, expected: str | None) -> None:
    """The file name from Content-Disposition, in each form RFC 6266 allows."""
    assert disposition_name(header) == expected


def test_zip_with_too_many_members_is_a_classified_error() -> None:
    """More members than the limit: refused before any is inflated."""
    body = zipped(*[(f"receipt_{i}.json", b"") for i in range(9)])
    with pytest.raises(SiemAnswerError) as raised:
        read_all(body)
    assert raised.value.kind == "too_many_members"


def test_zip_declaring_more_than_the_limit_is_refused_before_inflating() -> None:
    """Declared sizes over the cap: refused up front."""
    body = zipped(("receipt_1.json", b" " * (LIMITS.max_inflated_bytes + 1)))
    with pytest.raises(SiemAnswerError) as raised:
        read_all(body)
    assert raised.value.kind == "too_large"


def _lying_zip(real: bytes, declared_size: int) -> bytes:
    """A zip whose headers claim ``declared_size`` bytes for a member that inflates to ``real``."""
    body = bytearray(zipped(("receipt_1.json", real)))
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = body.find(signature)
        body[at + offset : at + offset + 4] = struct.pack("<I", declared_size)
    return bytes(body)


def test_zip_bomb_that_lies_about_its_size_stops_at_the_declared_size() -> None:
    """A member inflating past its declared size is cut there and fails its CRC: classified, bounded."""
    with pytest.raises(SiemAnswerError) as raised:
        read_all(_lying_zip(b"\x00" * (4 << 20), declared_size=1000))
    assert raised.value.kind == "truncated"


def test_members_together_over_the_limit_are_refused() -> None:
    """Two members each under the cap, together over it: refused."""
    half = b" " * (LIMITS.max_inflated_bytes // 2 + 10)
    with pytest.raises(SiemAnswerError) as raised:
        read_all(zipped(("receipt_1.json", half), ("receipt_2.json", half)))
    assert raised.value.kind == "too_large"


@pytest.mark.parametrize("name", ["../receipt_1.json", "/etc/receipt.json", "C:/receipt.json", "a/../../b.json"])
def test_member_names_that_are_paths_are_refused(name: str) -> None:
    """Absolute, climbing or drive-letter names: the whole answer is refused as hostile."""
    with pytest.raises(SiemAnswerError) as raised:
        read_all(zipped((name, document(RECEIPT))))
    assert raised.value.kind == "unsafe_name"


def test_truncated_zip_is_a_classified_error() -> None:
    """A zip cut short in transfer (no central directory) is 'bad_zip'."""
    body = zipped(("receipt_1.json", document(*[RECEIPT] * 200)))
    with pytest.raises(SiemAnswerError) as raised:
        read_all(body[: len(body) * 2 // 3])
    assert raised.value.kind == "bad_zip"


def test_member_with_damaged_data_is_truncated() -> None:
    """Compressed bytes corrupted inside an intact archive: 'truncated' (CRC or inflate error)."""
    body = bytearray(zipped(("receipt_1.json", document(*[RECEIPT] * 200))))
    data_at = body.find(b"receipt_1.json") + len("receipt_1.json")
    for i in range(data_at + 10, data_at + 60):
        body[i] ^= 0x5A
    with pytest.raises(SiemAnswerError) as raised:
        read_all(bytes(body))
    assert raised.value.kind == "truncated"


def test_a_bad_member_beside_a_good_one_keeps_both() -> None:
    """A member that is not JSON is kept as text; the good member's records all come back."""
    body = zipped(("receipt_1.json", document(RECEIPT)), ("delivery_1.json", b'{"data": [{"acc": \x00\xff'))
    found = read_all(body)
    assert found[0] == ("receipt_1.json", [RECEIPT], 0)
    assert found[1][0] == "delivery_1.json"
    assert found[1][2] == 1


def test_stored_members_and_directories() -> None:
    """Uncompressed members read too; directory entries are not files."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("logs/", b"")
        archive.writestr("logs/receipt_1.json", document(RECEIPT))
    assert read_all(out.getvalue()) == [("logs/receipt_1.json", [RECEIPT], 0)]


def test_empty_zip_has_no_files() -> None:
    """An archive with no members: no files, no error."""
    assert read_all(zipped()) == []


def test_plain_body_over_the_limit_is_refused() -> None:
    """An uncompressed file is bounded by the same limit."""
    with pytest.raises(SiemAnswerError):
        read_all(b" " * (LIMITS.max_inflated_bytes + 1), name="receipt_1.json")


def test_a_deflate_stream_that_is_not_deflate_is_classified() -> None:
    """Garbage where the deflate data should be: classified, not zlib.error."""
    body = bytearray(zipped(("receipt_1.json", zlib.compress(b"x" * 1000))))
    data_at = body.find(b"receipt_1.json") + len("receipt_1.json")
    body[data_at : data_at + 8] = b"\xff" * 8
    with pytest.raises(SiemAnswerError):
        read_all(bytes(body))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2000), cut=st.integers(0, 4000), flip=st.integers(0, 4000))
def test_any_damage_to_a_zip_is_read_or_classified(data: bytes, cut: int, flip: int) -> None:
    """Truncating or flipping any byte of a valid answer never raises anything but SiemAnswerError."""
    body = bytearray(zipped(("receipt_1.json", document(RECEIPT)), ("x_2.json", data)))
    if flip < len(body):
        body[flip] ^= 0xFF
    body = body[: max(4, cut)] if cut < len(body) else body
    kind = None
    try:
        files = read_all(bytes(body))
    except SiemAnswerError as error:
        kind, files = error.kind, []
    assert kind in (None, "bad_zip", "truncated", "too_large", "too_many_members", "unsafe_name")
    assert all(isinstance(records, list) for _, records, _ in files)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=3000).filter(lambda d: not is_zip(d)), file_format=st.sampled_from(("json", "key_value"))
)
def test_any_bytes_as_a_plain_file_never_raise(data: bytes, file_format: str) -> None:
    """Whatever a plain file holds, it parses to records (some kept as text)."""
    found = read_all(data, name="receipt_1.json", file_format=file_format)
    assert len(found) == 1
    assert all(isinstance(r, dict | str | list | int | float | bool) or r is None for r in found[0][1])


def test_a_large_document_is_parsed_one_record_at_a_time() -> None:
    """Iterating a 4 MB {"data": [...]} file allocates about its text once, not its parsed records
    (a whole parse of it takes some 15 times its size)."""
    records = [{**RECEIPT, "aCode": f"A{i}", "Subject": "x" * 200} for i in range(15_000)]
    data = document(*records)
    siem_file = parse_file("receipt_1.json", data, "json")
    tracemalloc.start()
    try:
        count = sum(1 for _ in siem_file.records())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 15_000
    assert peak < 1.5 * len(data) + (1 << 20)


def test_records_come_before_the_rest_of_the_file_is_read() -> None:
    """The first record is handed over while a broken tail is still unread."""
    siem_file = parse_file("f.json", document(RECEIPT)[:-2] + b', {"acc": ', "json")
    records = siem_file.records()
    assert next(records) == RECEIPT
    assert siem_file.unparsed == 0
    assert list(records) == ['{"acc":']  # the file's trailing blank is stripped first
    assert siem_file.unparsed == 1


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"type": "MTA", "data": [{"a": 1}, {"b": 2}', ([{"a": 1}, {"b": 2}], 0)),  # cut after an element
        (b'{"type": "MTA", "data": [{"a": 1}, {"b": ', ([{"a": 1}, '{"b":'], 1)),  # cut inside one
        (b'{"data": [{"a": 1} junk {"b": 2}]}', ([{"a": 1}, 'junk {"b": 2}]}'], 1)),  # junk between them
        (b'{"type": "MTA", "data": []}', ([], 0)),
        (b'[{"a": 1}, {"a": 2}]', ([{"a": 1}, {"a": 2}], 0)),
        (b'{"other": 1, "data": [{"a": 1}]}', ([{"a": 1}], 0)),  # not the usual envelope: parsed whole
    ],
)
def test_streamed_documents_keep_what_parses(data: bytes, expected: tuple[list[Any], int]) -> None:
    """A document cut short or with junk: every whole record, then the rest as one text record."""
    assert parsed(data) == expected
