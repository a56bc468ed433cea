"""The Grafana dashboard's queries, asked of a real Prometheus (for tests, not for users).

``deploy/grafana/evictwatch.json`` is the dashboard as Grafana imports it, and the source of
truth: nothing generates it. A panel is only right if its PromQL means what its title says on
the metrics the operator really exposes, so the tests read every query out of the file
(:func:`expressions`, :func:`metric_names`, :func:`label_names`), fill in Grafana's variables as
Grafana does (:func:`substitute`), and ask a :class:`~evictwatch.testing.prometheus.PrometheusServer`
(:func:`evaluate`). Nothing here draws a panel: Grafana does that.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

_METRIC = re.compile(r"\b(evictwatch_[a-zA-Z0-9_]+)\b")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_MATCHER_NAME = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_LABEL_VALUES = re.compile(r"label_values\(\s*[^,()]*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)")


def load_dashboard(path: Path) -> dict[str, Any]:
    """The dashboard JSON at ``path`` (``deploy/grafana/evictwatch.json`` in a checkout)."""
    model: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return model


def _walk(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def expressions(model: Mapping[str, Any]) -> list[str]:
    """Every PromQL string: panel targets (nested rows included) and template variable queries."""
    found: list[str] = []
    for node in _walk(model.get("panels", [])):
        expr = node.get("expr")
        if isinstance(expr, str):
            found.append(expr)
    for variable in model.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query") if isinstance(query, Mapping) else query
        if variable.get("type") == "query" and isinstance(text, str):
            found.append(text)
    return found


def metric_names(expr: str) -> set[str]:
    """Sample names an expression reads (``evictwatch_…`` identifiers)."""
    return set(_METRIC.findall(expr))


def label_names(expr: str) -> set[str]:
    """Label names an expression groups by, matches on, or asks values of."""
    labels: set[str] = set()
    for group in _GROUPING.findall(expr):
        labels.update(part.strip() for part in group.split(",") if part.strip())
    for matchers in _MATCHERS.findall(expr):
        labels.update(_MATCHER_NAME.findall(matchers))
    labels.update(_LABEL_VALUES.findall(expr))
    return labels


@dataclass(frozen=True)
class Window:
    """The time range a dashboard is looked at over, in Unix seconds, and its step."""

    start: float
    end: float
    step: float
    scrape_interval: float = 15.0

    @property
    def rate_interval(self) -> float:
        """Grafana's ``$__rate_interval``: max(step + scrape interval, 4 * scrape interval)."""
        return max(self.step + self.scrape_interval, 4 * self.scrape_interval)


def substitute(expr: str, window: Window, variables: Mapping[str, str] | None = None) -> str:
    """Replace Grafana's variables: ``$__range``, ``$__rate_interval``, ``$__interval``, then ours."""
    seconds = {
        "__range": window.end - window.start,
        "__rate_interval": window.rate_interval,
        "__interval": window.step,
    }
    values = {name: f"{max(1, round(value))}s" for name, value in seconds.items()}
    values.update(variables or {})
    for name, text in values.items():
        # ``${name}`` anywhere, ``$name`` only where the name ends (``$__range`` is not ``$__r``).
        pattern = r"\$(?:\{" + re.escape(name) + r"\}|" + re.escape(name) + r"(?![A-Za-z0-9_]))"
        expr = re.sub(pattern, text.replace("\\", "\\\\"), expr)  # a literal, not a template
    return expr


def legend_for(template: str, labels: Mapping[str, str]) -> str:
    """Grafana's legendFormat: ``{{label}}`` placeholders, or the label set for ``__auto``."""
    if template and template != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    if len(shown) == 1:
        return next(iter(shown.values()))
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "value"


class PromApi(Protocol):
    """The two calls of Prometheus's HTTP API a panel needs (PrometheusServer has them)."""

    def query(self, expr: str, at: float) -> dict[str, Any]: ...

    def query_range(self, expr: str, start: float, end: float, step: float) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Series:
    labels: Mapping[str, str]
    points: Sequence[tuple[float, float]]
    legend: str


@dataclass
class PanelResult:
    """What one panel's queries gave: a stat's value, a time series' series, a table's rows."""

    panel: Mapping[str, Any]
    series: list[Series] = field(default_factory=list)
    table: list[dict[str, float]] = field(default_factory=list)
    labels: list[dict[str, str]] = field(default_factory=list)
    value: float | None = None
    errors: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _ask(result: PanelResult, target: Mapping[str, Any], expr: str, prom: PromApi, window: Window) -> None:
    kind = result.panel.get("type")
    if kind in ("stat", "table"):
        data = prom.query(expr, window.end)
        for item in data.get("result") or []:
            labels = {k: v for k, v in (item.get("metric") or {}).items() if k != "__name__"}
            result.labels.append(labels)
            result.table.append({str(target.get("refId") or "A"): _number(item["value"][1])})
        if kind == "stat":
            values = [v for row in result.table for v in row.values()]
            result.value = sum(values) if values else None
        return
    data = prom.query_range(expr, window.start, window.end, window.step)
    template = str(target.get("legendFormat") or "")
    for item in data.get("result") or []:
        labels = dict(item.get("metric") or {})
        points = [(float(t), _number(v)) for t, v in item.get("values") or []]
        result.series.append(Series(labels, points, legend_for(template, labels)))


def evaluate(
    dashboard: Mapping[str, Any], prom: PromApi, window: Window, variables: Mapping[str, str] | None = None
) -> list[PanelResult]:
    """Every panel's queries, asked of ``prom``; a failing query is kept as an error, not raised.

    Stat and table panels run instant queries at the window's end (as Grafana does for
    ``instant`` targets and reductions over ``$__range``), time series run range queries.
    """
    results = []
    for panel in dashboard.get("panels") or []:
        result = PanelResult(panel)
        for target in panel.get("targets") or []:
            expr = substitute(str(target.get("expr") or ""), window, variables)
            result.queries.append(expr)
            try:
                _ask(result, target, expr, prom, window)
            except Exception as error:  # noqa: BLE001 - one bad query must not hide the others
                result.errors.append(f"{expr}: {type(error).__name__}: {error}")
        results.append(result)
    return results
