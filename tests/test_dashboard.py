"""deploy/grafana/mimecast-collector.json, read without Grafana: schema, variables, and queries that
name only metrics and labels the collector exports. tests/test_prometheus.py runs them for real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.promql import balanced, exported, grouping_labels, label_values, selectors

DASHBOARD = Path(__file__).parent.parent / "deploy" / "grafana" / "mimecast-collector.json"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(DASHBOARD.read_bytes())
    return loaded


def targets() -> list[tuple[str, str]]:
    """(panel title, expr) of every query the dashboard runs."""
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_current_schema_with_the_datasource_and_filter_variables() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    assert board["uid"] == "mimecast-collector"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "account", "log_type", "sink"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("account", "log_type", "sink"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        selector, label = label_values(variable["query"]["query"])
        assert label == name
        [metric] = selectors(selector)
        assert name in exported()[metric.metric]


def test_every_panel_has_a_title_a_description_and_queries_on_the_chosen_datasource() -> None:
    panels = [p for p in dashboard()["panels"] if p["type"] != "row"]
    assert len(panels) >= 14
    assert len({p["id"] for p in dashboard()["panels"]}) == len(dashboard()["panels"])
    for panel in panels:
        assert panel["title"]
        assert panel["description"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]


def test_queries_use_only_exported_metrics_and_labels() -> None:
    known = exported()
    for title, expr in targets():
        assert balanced(expr), (title, expr)
        found = selectors(expr)
        assert found, (title, expr)
        labels: set[str] = set()
        for selector in found:
            assert selector.metric in known, (title, selector.metric)
            assert set(selector.labels) <= known[selector.metric], (title, selector)
            labels |= known[selector.metric]
        assert grouping_labels(expr) <= labels, (title, expr)


def test_the_on_call_questions_each_have_a_panel() -> None:
    """The issue's list: what an on-call engineer looks at first."""
    exprs = " ".join(expr for _, expr in targets())
    for metric in (
        "mimecast_events_spooled_total",  # collected per stream
        "mimecast_events_delivered_total",  # delivered per sink
        "mimecast_window_lag_seconds",
        "mimecast_spool_backlog_events",
        "mimecast_spool_limit_bytes",  # how full the spool is
        "mimecast_api_calls_total",  # by status
        "mimecast_api_throttled_total",
        "mimecast_ratelimit_remaining",
        "mimecast_api_retries_total",
        "mimecast_stream_fatal",
        "mimecast_last_success_timestamp_seconds",
    ):
        assert metric in exprs, metric
    rows = [p["title"] for p in dashboard()["panels"] if p["type"] == "row"]
    assert rows == ["Streams", "Sinks and spool", "Mimecast API"]
