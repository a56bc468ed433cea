"""The Grafana dashboard, built here and written to ``deploy/grafana/evictwatch.json``.

Every query uses only metrics of :mod:`evictwatch.telemetry` (a unit test checks the labels
against it, an end-to-end test the names against a live ``/metrics``). Owners are not metric
labels (they are unbounded): the dashboard goes down to namespaces, the report to workloads.

Regenerate the JSON after a change:
``python -m evictwatch.report.dashboard > deploy/grafana/evictwatch.json``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from .render import COLOURS

UID = "evictwatch"
TITLE = "evictwatch: evictions"
SCHEMA_VERSION = 39
CONFIGMAP_KEY = "evictwatch.json"
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'

_ATTEMPTS = "evictwatch_eviction_attempts_total"
_EVICTIONS = "evictwatch_evictions_total"
_WEBHOOK_SECONDS = "evictwatch_webhook_handling_seconds_bucket"
_SETTLE_SECONDS = "evictwatch_settle_seconds_bucket"


def _target(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False) -> dict[str, Any]:
    target: dict[str, Any] = {"datasource": DATASOURCE, "refId": ref, "expr": expr, "editorMode": "code"}
    if instant:
        target.update({"instant": True, "range": False, "format": "table"})
    else:
        target.update({"range": True, "legendFormat": legend or "__auto"})
    return target


def _quantiles(bucket: str, selector: str = "") -> list[dict[str, Any]]:
    inner = f"sum by (le) (rate({bucket}{selector}[$__rate_interval]))"
    return [
        _target(f"histogram_quantile(0.5, {inner})", "p50", "A"),
        _target(f"histogram_quantile(0.99, {inner})", "p99", "B"),
    ]


def _outcome_colours() -> list[dict[str, Any]]:
    return [
        {
            "matcher": {"id": "byName", "options": outcome},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": colour}}],
        }
        for outcome, colour in COLOURS.items()
    ]


class _Layout:
    """Places panels left to right on Grafana's 24-column grid and numbers them."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "id": len(self.panels) + 1,
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def _newline(self) -> None:
        self.y += self.row_h
        self.x = 0
        self.row_h = 0

    def add(self, panel: dict[str, Any], w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def _stat(
    title: str, expr: str, description: str, *, unit: str = "short", red_above: float | None = None
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if red_above is not None:
        steps.append({"color": "red", "value": red_above})
    defaults: dict[str, Any] = {
        "unit": unit,
        "color": {"mode": "thresholds"},
        "thresholds": {"mode": "absolute", "steps": steps},
        "noValue": "0",
    }
    if unit == "short":
        defaults["decimals"] = 0
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [_target(expr, title)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "textMode": "auto",
        },
    }


def _timeseries(
    title: str,
    targets: list[dict[str, Any]],
    description: str,
    *,
    unit: str = "short",
    bars: bool = True,
    overrides: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    custom: dict[str, Any] = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 80 if bars else 10,
        "lineWidth": 1,
        "showPoints": "never",
        "stacking": {"mode": "normal" if bars else "none", "group": "A"},
        "spanNulls": False,
    }
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {
            "defaults": {"unit": unit, "custom": custom, "color": {"mode": "palette-classic"}, "min": 0},
            "overrides": overrides or [],
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["sum"], "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def _top_namespaces() -> dict[str, Any]:
    window = "[$__range]"
    targets = [
        _target(
            f"topk(15, sum by (namespace) (increase({_EVICTIONS}{{{NS}}}{window})))", ref="A", instant=True
        ),
        _target(
            f'sum by (namespace) (increase({_EVICTIONS}{{outcome="Blocked", {NS}}}{window}))',
            ref="B",
            instant=True,
        ),
        _target(f"sum by (namespace) (increase({_ATTEMPTS}{{{NS}}}{window}))", ref="C", instant=True),
    ]
    return {
        "type": "table",
        "title": "Top namespaces",
        "description": "Settled evictions, blocked evictions and attempts per namespace over the "
        "dashboard's time range. Owners (Deployments, StatefulSets, …) are not metric labels: "
        "`evictwatch report` groups by workload.",
        "datasource": DATASOURCE,
        "targets": targets,
        "transformations": [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {
                        "namespace": "Namespace",
                        "Value #A": "Evictions",
                        "Value #B": "Blocked",
                        "Value #C": "Attempts",
                    },
                },
            },
            {"id": "sortBy", "options": {"sort": [{"field": "Evictions", "desc": True}]}},
        ],
        "fieldConfig": {"defaults": {"decimals": 0, "custom": {"align": "auto"}}, "overrides": []},
        "options": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
    }


def dashboard() -> dict[str, Any]:
    """The dashboard model (Grafana schema version 39), data source chosen by ``${datasource}``."""
    layout = _Layout()
    in_range = "[$__range]"
    layout.add(
        _stat(
            "Evictions",
            f"sum(increase({_EVICTIONS}{{{NS}}}{in_range}))",
            "Settled evictions (one per record and outcome) in the time range.",
        ),
        4,
        4,
    )
    layout.add(
        _stat(
            "Blocked",
            f'sum(increase({_EVICTIONS}{{outcome="Blocked", {NS}}}{in_range}))',
            "Evictions that settled as Blocked (a PodDisruptionBudget kept refusing).",
            red_above=1,
        ),
        4,
        4,
    )
    layout.add(
        _stat(
            "Attempts",
            f"sum(increase({_ATTEMPTS}{{{NS}}}{in_range}))",
            "Eviction attempts recorded (every retry of a drain counts).",
        ),
        4,
        4,
    )
    layout.add(
        _stat(
            "Records lost",
            f"sum(increase(evictwatch_records_lost_total{in_range}))",
            "Attempts that could not be written as a record (the eviction itself was not held up).",
            red_above=1,
        ),
        4,
        4,
    )
    layout.add(
        _stat(
            "Deliveries given up",
            f'sum(increase(evictwatch_sink_failures_total{{final="true"}}{in_range}))',
            "Sink deliveries that failed every try and were given up (retried failures are below).",
            red_above=1,
        ),
        4,
        4,
    )
    layout.add(
        _stat(
            "Webhook p99",
            "histogram_quantile(0.99, sum by (le) (rate(evictwatch_webhook_handling_seconds_bucket"
            f"{in_range})))",
            "99th percentile of the time the webhook took to answer, over the time range.",
            unit="s",
            red_above=1,
        ),
        4,
        4,
    )

    layout.row("Evictions")
    rate = "[$__rate_interval]"
    layout.add(
        _timeseries(
            "Evictions by source",
            [_target(f"sum by (source) (increase({_EVICTIONS}{{{NS}}}{rate}))", "{{source}}")],
            "Settled evictions per interval, by the door they came through (EvictionAPI, Kubelet, …).",
        ),
        12,
        8,
    )
    layout.add(
        _timeseries(
            "Evictions by outcome",
            [_target(f"sum by (outcome) (increase({_EVICTIONS}{{{NS}}}{rate}))", "{{outcome}}")],
            "Settled evictions per interval, by outcome (same colours as the report).",
            overrides=_outcome_colours(),
        ),
        12,
        8,
    )
    layout.add(
        _timeseries(
            "Blocked evictions",
            [
                _target(
                    f'sum by (namespace) (increase({_EVICTIONS}{{outcome="Blocked", {NS}}}{rate}))',
                    "{{namespace}}",
                )
            ],
            "Evictions that settled as Blocked, per namespace.",
        ),
        12,
        8,
    )
    layout.add(
        _timeseries(
            "Attempts by requester",
            [_target(f"sum by (component) (increase({_ATTEMPTS}{{{NS}}}{rate}))", "{{component}}")],
            "Eviction attempts per interval, by the recognised requesting program.",
        ),
        12,
        8,
    )
    layout.add(_top_namespaces(), 16, 9)
    layout.add(
        {
            "type": "text",
            "title": "Owners",
            "options": {
                "mode": "markdown",
                "content": "Which **Deployments, StatefulSets and Jobs** lost Pods, who asked and how "
                "long PodDisruptionBudgets held them is in the drain report, not in metrics "
                "(owners would be unbounded labels):\n\n"
                "```\nevictwatch report --since 12h -o report.html\n```\n\nSee docs/report.md.",
            },
        },
        8,
        9,
    )

    layout.row("Operator health")
    layout.add(
        _timeseries(
            "Webhook handling time",
            _quantiles(_WEBHOOK_SECONDS),
            "p50 and p99 of the time the webhook took to answer an AdmissionReview.",
            unit="s",
            bars=False,
        ),
        12,
        8,
    )
    layout.add(
        _timeseries(
            "Webhook answers by decision",
            [
                _target(
                    f"sum by (decision) (rate(evictwatch_webhook_requests_total{rate}))",
                    "{{decision}}",
                )
            ],
            "AdmissionReviews answered per second: recorded, dry_run, filtered, lost, bad_request, …",
            unit="reqps",
            bars=False,
        ),
        12,
        8,
    )
    layout.add(
        _timeseries(
            "Sink deliveries and failures",
            [
                _target(
                    f"sum by (sink, final) (increase(evictwatch_sink_failures_total{rate}))",
                    "{{sink}} failed (final={{final}})",
                    "A",
                ),
                _target(
                    f"sum by (sink) (increase(evictwatch_sink_deliveries_total{rate}))",
                    "{{sink}} delivered",
                    "B",
                ),
            ],
            "Deliveries to sinks; failures by whether they were given up (final) or retried.",
        ),
        8,
        8,
    )
    layout.add(
        _timeseries(
            "Records lost",
            [_target(f"sum by (source) (increase(evictwatch_records_lost_total{rate}))", "{{source}}")],
            "Attempts seen but not recorded because the API write failed. Should stay at zero.",
        ),
        8,
        8,
    )
    layout.add(
        _timeseries(
            "Time to outcome",
            _quantiles(_SETTLE_SECONDS),
            "p50 and p99 of the time from the last attempt to the settled outcome.",
            unit="s",
            bars=False,
        ),
        8,
        8,
    )
    layout.add(
        _timeseries(
            "Watch restarts",
            [
                _target(
                    f"sum by (watch, reason) (increase(evictwatch_watch_restarts_total{rate}))",
                    "{{watch}} {{reason}}",
                )
            ],
            "Watches restarted: gone (410, re-listed) or error (reconnected).",
        ),
        12,
        7,
    )
    layout.add(
        _timeseries(
            "Records removed by retention",
            [
                _target(
                    f"sum by (reason) (increase(evictwatch_records_deleted_total{rate}))",
                    "{{reason}}",
                )
            ],
            "PodEviction records deleted by retention (ttl or max_per_namespace).",
        ),
        12,
        7,
    )
    layout.add(
        _timeseries(
            "Webhook Pod lookups",
            [
                _target(
                    f"sum by (result) (rate(evictwatch_pod_cache_lookups_total{rate}))",
                    "{{result}}",
                )
            ],
            "Where the webhook found the evicted Pod: hit = its Pod cache (no API call); "
            "miss, recent or unsynced = a GET (unseen, just changed, or the watch down).",
            bars=False,
        ),
        12,
        7,
    )
    layout.add(
        _timeseries(
            "Pods in the cache",
            [_target("sum(evictwatch_pod_cache_pods)", "pods")],
            "Pods whose facts the webhook keeps (summed over replicas); memory is about 0.7 KB each.",
            bars=False,
        ),
        12,
        7,
    )

    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": "Pod evictions captured by evictwatch: sources, outcomes, namespaces, and the "
        "operator's own health.",
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": layout.panels,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["evictwatch", "kubernetes"],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "includeAll": False,
                    "multi": False,
                    "options": [],
                    "refresh": 1,
                    "regex": "",
                },
                {
                    "name": "namespace",
                    "label": "Namespace",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "definition": f"label_values({_ATTEMPTS}, namespace)",
                    "query": {
                        "qryType": 1,
                        "query": f"label_values({_ATTEMPTS}, namespace)",
                        "refId": "PrometheusVariableQueryEditor-VariableQuery",
                    },
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "includeAll": True,
                    "allValue": ".*",
                    "multi": True,
                    "hide": 0,
                    "options": [],
                    "refresh": 2,
                    "regex": "",
                    "sort": 1,
                },
            ]
        },
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": TITLE,
        "uid": UID,
        "version": 1,
        "weekStart": "",
    }


def dashboard_json(model: Mapping[str, Any] | None = None) -> str:
    """The dashboard as the file ``deploy/grafana/evictwatch.json`` holds it (ends in a newline)."""
    return json.dumps(model if model is not None else dashboard(), indent=2, ensure_ascii=False) + "\n"


def dashboard_configmap(
    namespace: str = "monitoring", name: str = "evictwatch-dashboard", labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A ConfigMap of the dashboard, labelled for Grafana's sidecar (``grafana_dashboard: "1"``)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"grafana_dashboard": "1", "app.kubernetes.io/name": "evictwatch", **(labels or {})},
        },
        "data": {CONFIGMAP_KEY: dashboard_json()},
    }


# ---- reading the queries back (the tests check them against the metrics) ---------------------

_METRIC = re.compile(r"\b(evictwatch_[a-zA-Z0-9_]+)\b")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_MATCHER_NAME = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_LABEL_VALUES = re.compile(r"label_values\(\s*[^,()]*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)")


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


if __name__ == "__main__":
    sys.stdout.write(dashboard_json())
