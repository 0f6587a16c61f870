"""`status` as an operator reads it: columns sized to their content, waiting streams shown as such."""

from __future__ import annotations

from typing import Any

from collector.status import render_status

LONG_REPORT: dict[str, Any] = {
    "streams": [
        {
            "stream": "emea-production-tenant/ttp_impersonation",
            "state": "paging",
            "position": "2026-11-30T23:59:59Z",
            "lag_secs": 90061,
            "events_total": 123456789,
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
        "STREAM                                    STATE        POSITION              LAG     EVENTS     LAST ERROR",
        "emea-production-tenant/ttp_impersonation  paging       2026-11-30T23:59:59Z  25h01m  123456789  HTTP 503",
        "a/ttp_url                                 not started  -                     -       0          -",
        "",
        "SINK                  TYPE        BACKLOG     DELIVERED   LAST DELIVERY                     LAST ERROR",
        "splunk-hec-frankfurt  splunk_hec  1234567893  9876543210  2026-12-01T23:59:59.123456+00:00  refused",
        "f                     file        0           0           -                                 -",
    ]
