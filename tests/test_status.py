"""`status` as an operator reads it: columns sized to their content, waiting streams shown as such."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from collector.config import load_config
from collector.service.status import render_status, status_report
from collector.state.store import Store
from tests.helpers import write_config

LONG_REPORT: dict[str, Any] = {
    "streams": [
        {
            "stream": "prod-eu-tenant-01/ttp_impersonation",
            "state": "paging",
            "position": "2026-11-30T23:59:59Z",
            "lag_secs": 90061,
            "events_total": 123456,
            "last_error": "HTTP 503",
        },
        {"stream": "a/ttp_url", "state": "not started"},
    ],
    "sinks": [
        {
            "sink": "splunk-hec-frankfurt",
            "type": "splunk_hec",
            "backlog": 1234567893,
            "delivered_total": 9876543210,
            "last_delivery": "2026-12-01T23:59:59.123456+00:00",
            "last_error": "refused",
        },
        {"sink": "f", "type": "file", "backlog": 0, "delivered_total": 0, "last_delivery": None, "last_error": None},
    ],
}


def test_status_columns_fit_long_cells_and_stay_aligned() -> None:
    """Long stream and sink names, counts and timestamps push their column wider instead of into the next."""
    assert render_status(LONG_REPORT, as_json=False).splitlines() == [
        "STREAM                               STATE        POSITION              LAG     EVENTS  LAST ERROR / WAITING",
        "prod-eu-tenant-01/ttp_impersonation  paging       2026-11-30T23:59:59Z  25h01m  123456  HTTP 503",
        "a/ttp_url                            not started  -                     -       0       -",
        "",
        "SINK                  TYPE        BACKLOG     DELIVERED   LAST DELIVERY                     LAST ERROR",
        "splunk-hec-frankfurt  splunk_hec  1234567893  9876543210  2026-12-01T23:59:59.123456+00:00  refused",
        "f                     file        0           0           -                                 -",
    ]


WAIT_WHY = "rate limited (HTTP 429); the server asked to wait 999999999 s (retry-after), capped at max_wait_secs = 300"


@pytest.mark.parametrize(
    ("now", "state", "until"),
    [(1_000_000.0, "waiting", "1970-01-12T13:51:40Z"), (1_000_301.0, "ok", None)],
    ids=["during", "after"],
)
async def test_status_shows_a_waiting_stream_until_its_wait_is_over(
    tmp_path: Path, now: float, state: str, until: str | None
) -> None:
    """A recorded wait makes the stream "waiting", with until when and why; once it has passed, it is "ok"."""
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9"), resolve_secrets=False)
    store = await Store.open(config.state.path)
    try:
        await store.stream("acme", "ttp_url", start=900_000)
        await store.record_waiting("acme", "ttp_url", 1_000_300.0, WAIT_WHY)
        report = await status_report(config, store, now=now)
    finally:
        await store.close()

    [entry] = [s for s in report["streams"] if s["stream"] == "acme/ttp_url"]
    assert (entry["state"], entry.get("waiting_until"), entry.get("waiting_reason")) == (
        state,
        until,
        WAIT_WHY if until else None,
    )


def test_a_waiting_stream_reads_as_waiting_in_the_table() -> None:
    """The text table shows state "waiting" and, in its last column, until when and why."""
    report: dict[str, Any] = {
        "streams": [
            {
                "stream": "acme/ttp_url",
                "state": "waiting",
                "position": "2026-11-30T23:59:59Z",
                "lag_secs": 65,
                "events_total": 7,
                "last_error": None,
                "waiting_until": "2026-12-01T00:05:00Z",
                "waiting_reason": "rate limited",
            }
        ],
        "sinks": [],
    }

    assert render_status(report, as_json=False).splitlines()[:2] == [
        "STREAM        STATE    POSITION              LAG    EVENTS  LAST ERROR / WAITING",
        "acme/ttp_url  waiting  2026-11-30T23:59:59Z  1m05s  7       until 2026-12-01T00:05:00Z: rate limited",
    ]
