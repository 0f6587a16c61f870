"""Just enough PromQL reading for the dashboard and alert tests: selectors, grouping labels, variables.

Not a parser: it finds the metric selectors (``name{matchers}``) and the label lists of
``by``/``on``/``without``/``ignoring`` in an expression, which is what "uses only what the collector
exports" needs, and checks brackets balance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client.metrics import MetricWrapperBase

from collector.service.telemetry import Telemetry

_FUNCTIONS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "delta", "time", "by", "on", "and", "or",
    "unless", "without", "ignoring", "label_values", "bool", "offset",
}  # fmt: skip
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?(\[[^\]]*\])?")
_GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')

#: What Prometheus itself adds to every scraped series.
SCRAPE_LABELS = {"job", "instance"}


@dataclass(frozen=True)
class Selector:
    metric: str
    text: str  # the selector as written, without a range
    labels: tuple[str, ...]  # labels its matchers name


def selectors(expr: str) -> list[Selector]:
    """Every metric selector in ``expr`` (function names, keywords and grouping labels left out)."""
    without_groups = _GROUPING.sub(" ", re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: m.group(0).replace(" ", "_"), expr))
    found = []
    for match in _SELECTOR.finditer(without_groups):
        name, matchers = match.group(1), match.group(2) or ""
        following = without_groups[match.end() :].lstrip()
        if name in _FUNCTIONS or following.startswith("(") or re.fullmatch(r"\d+[smhd]?", name):
            continue
        if name.startswith("__") or (matchers == "" and name in ("e", "inf", "nan")):
            continue
        labels = tuple(m.group(1) for m in _MATCHER.finditer(matchers))
        found.append(Selector(name, name + matchers, labels))
    return [s for s in found if not _inside_matcher(expr, s)]


def _inside_matcher(expr: str, selector: Selector) -> bool:
    """Label names inside ``{...}`` are picked up by the pattern too; they never appear outside one."""
    return not re.search(rf"\b{re.escape(selector.metric)}\b(?![^{{]*\}})", expr)


def grouping_labels(expr: str) -> set[str]:
    return {label.strip() for group in _GROUPING.findall(expr) for label in group.split(",") if label.strip()}


def balanced(expr: str) -> bool:
    depth = {"(": 0, "{": 0, "[": 0}
    closing = {")": "(", "}": "{", "]": "["}
    for char in re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr):
        if char in depth:
            depth[char] += 1
        elif char in closing:
            depth[closing[char]] -= 1
            if depth[closing[char]] < 0:
                return False
    return not any(depth.values())


def exported() -> dict[str, set[str]]:
    """Every series name the collector exports (counters with ``_total``) -> the labels it may carry.

    Read off the metric objects a :class:`Telemetry` holds; ``up`` is Prometheus' own.
    """
    names: dict[str, set[str]] = {"up": set()}
    for value in vars(Telemetry()).values():
        if isinstance(value, MetricWrapperBase):
            [described] = value.describe()
            series = described.name + "_total" if described.type == "counter" else described.name
            names[series] = set(value._labelnames)  # no public accessor in prometheus_client
    return {name: labels | SCRAPE_LABELS for name, labels in names.items()}


def label_values(query: str) -> tuple[str, str]:
    """``label_values(selector, label)`` (a Grafana variable query) -> (selector, label)."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", query)
    if match is None:
        raise ValueError(f"not a label_values() query: {query}")
    return match.group(1), match.group(2)


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's variables as Prometheus would see them: ``$name`` and ``${name}``."""
    for name, value in sorted(values.items(), key=lambda item: -len(item[0])):
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    return expr
