"""docs/fields.md is what the code does: regenerated here and compared, and checked against the
literal real-shaped records of every log type (fixture pages and the case table)."""

from __future__ import annotations

from pathlib import Path

from collector.logtypes import LOG_TYPES, build_event
from collector.simulator import fields_doc
from tests import logtype_cases
from tests.test_logtypes import FIXTURE_CASES, fixture_records

DOC = Path(__file__).parent.parent / "docs" / "fields.md"


def rows() -> dict[str, list[str]]:
    """field path -> the log types the committed table marks, from docs/fields.md."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    header = next(line for line in lines if line.startswith("| field |"))
    names = [cell.strip().strip("`") for cell in header.strip("|").split("|")[1:]]
    table = lines[lines.index(header) + 2 :]
    out = {}
    for line in table:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        out[cells[0].strip("`")] = [name for name, cell in zip(names, cells[1:], strict=True) if cell == "x"]
    return out


def test_committed_fields_doc_is_what_the_generator_writes() -> None:
    """Regenerating docs/fields.md changes nothing: run `python -m collector.simulator.fields_doc >
    docs/fields.md` after changing a normalizer."""
    assert DOC.read_text(encoding="utf-8") == fields_doc.render()


def test_every_log_type_has_a_column_and_every_event_has_the_common_fields() -> None:
    """All log types are in the table; ecs.version, @timestamp, event.id and related.user are set by each."""
    table = rows()
    for path in ("@timestamp", "ecs.version", "event.id", "event.dataset", "related.user", "mimecast.*"):
        assert table[path] == list(LOG_TYPES), path


def test_table_lists_every_field_the_real_shaped_records_give() -> None:
    """No field a literal test record of a log type produces is missing from that log type's column."""
    table = rows()
    records = [(name, fixture_records(LOG_TYPES[name])[index]) for name, index, *_ in FIXTURE_CASES]
    records += [(case[0], case[1]) for case in logtype_cases.CASES]
    for name, record in records:
        for path in fields_doc.field_paths(build_event(LOG_TYPES[name], record, "acme", 0).doc):
            assert name in table.get(path, []), (name, path)
