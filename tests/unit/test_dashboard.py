"""The Grafana dashboard file: its queries read only metrics and labels the operator declares.

``deploy/grafana/evictwatch.json`` is the source (Grafana's own format, edited as JSON or
exported from Grafana); tests/e2e/test_dashboard_prometheus.py runs every query in a real
Prometheus.
"""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from evictwatch import telemetry
from evictwatch.testing import dashboard

REPO = Path(__file__).parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "evictwatch.json"


def _declared_metrics() -> dict[str, tuple[str, set[str]]]:
    """Sample name -> (family, label names) for every metric in evictwatch.telemetry."""
    names: dict[str, tuple[str, set[str]]] = {}
    for value in vars(telemetry).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        family = value._name
        labels = set(value._labelnames)
        kind = value._type
        if kind == "counter":
            names[f"{family}_total"] = (family, labels)
        elif kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                names[family + suffix] = (family, labels | ({"le"} if suffix == "_bucket" else set()))
        else:
            names[family] = (family, labels)
    return names


def test_dashboard_queries_use_only_declared_metrics_and_labels() -> None:
    declared = _declared_metrics()
    model = dashboard.load_dashboard(DASHBOARD)
    exprs = dashboard.expressions(model)
    assert len(exprs) >= 20
    used: set[str] = set()
    for expr in exprs:
        names = dashboard.metric_names(expr)
        assert names, f"no evictwatch metric in {expr!r}"
        unknown = names - set(declared)
        assert not unknown, f"{expr!r} uses {unknown}, not in evictwatch.telemetry"
        allowed = set().union(*(declared[name][1] for name in names))
        labels = dashboard.label_names(expr)
        assert labels <= allowed, f"{expr!r} uses labels {labels - allowed}"
        used |= {declared[name][0] for name in names}
    # the panels the issue asks for
    assert {
        "evictwatch_evictions",
        "evictwatch_webhook_handling_seconds",
        "evictwatch_sink_failures",
        "evictwatch_records_lost",
    } <= used
    assert any(
        "histogram_quantile(0.99" in e and "evictwatch_webhook_handling_seconds_bucket" in e for e in exprs
    )
    assert any('evictwatch_evictions_total{outcome="Blocked"' in e for e in exprs)


def test_query_readers_find_names_and_labels() -> None:
    expr = (
        'sum by (namespace, le) (rate(evictwatch_x_bucket{outcome="Blocked", ns=~"$n"}[5m]))'
        " / evictwatch_y_total"
    )
    assert dashboard.metric_names(expr) == {"evictwatch_x_bucket", "evictwatch_y_total"}
    assert dashboard.label_names(expr) == {"namespace", "le", "outcome", "ns"}
    assert dashboard.label_names("label_values(evictwatch_z_total, namespace)") == {"namespace"}


def test_dashboard_shape() -> None:
    model = dashboard.load_dashboard(DASHBOARD)
    assert 38 <= model["schemaVersion"] <= 41
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    panels = model["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in panels}
    assert {
        "Evictions by source",
        "Evictions by outcome",
        "Top namespaces",
        "Blocked evictions",
        "Webhook handling time",
        "Sink deliveries and failures",
        "Records lost",
    } <= titles
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        covered = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered
        if panel["type"] not in ("row", "text"):
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_chart_ships_the_dashboard_file() -> None:
    """The chart's ConfigMap carries the file as it is (deploy/generate.py copies it)."""
    chart_copy = REPO / "deploy" / "helm" / "evictwatch" / "files" / "evictwatch-dashboard.json"
    assert chart_copy.read_text() == DASHBOARD.read_text(), "run: python deploy/generate.py"
    json.loads(DASHBOARD.read_text())
