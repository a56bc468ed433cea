"""Every metric the Grafana dashboard queries is one the running operator exposes.

The operator runs against the real control plane with its metrics endpoint on; one eviction
goes through the API so the webhook's series exist; ``/metrics`` is scraped over HTTP and
parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from evictwatch.operator import Operator
from evictwatch.testing import dashboard
from evictwatch.testing.cluster import Cluster, wait_for

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "evictwatch.json"
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
}


@pytest.fixture
def operator(metrics_operator: Operator) -> Operator:
    return metrics_operator


def sample_names(families: list[Metric]) -> dict[str, Metric]:
    """Every sample name a family may be queried by (``_total``, ``_bucket``, …) -> its family."""
    names: dict[str, Metric] = {}
    for family in families:
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = family
        for sample in family.samples:
            names[sample.name] = family
    return names


async def test_every_dashboard_metric_is_exposed(cluster: Cluster, operator: Operator) -> None:
    node = await cluster.create_node()
    await cluster.create_pod("scraped", node=node, ready=True)
    reply = await cluster.evict("scraped")
    assert reply.status == 201, reply.body

    assert operator.metrics_port, "the metrics endpoint did not start"

    async def scrape() -> list[Metric] | None:
        """The families, once the controller has counted this namespace's settled eviction."""
        async with httpx2.AsyncClient(timeout=10) as http:
            reply = await http.get(f"http://127.0.0.1:{operator.metrics_port}/metrics")
        assert reply.status_code == 200
        found = list(text_string_to_metric_families(reply.text))
        settled = [
            s
            for f in found
            for s in f.samples
            if s.name == "evictwatch_evictions_total" and s.labels.get("namespace") == cluster.namespace
        ]
        return found if settled else None

    families = await wait_for(scrape, timeout=30, interval=0.5, what="the settled eviction in /metrics")
    exposed = sample_names(families)

    model = json.loads(DASHBOARD.read_text())
    exprs = dashboard.expressions(model)
    assert len(exprs) >= 20
    missing = {name: expr for expr in exprs for name in dashboard.metric_names(expr) if name not in exposed}
    assert not missing, f"queried but not exposed: {missing}"
    assert all(dashboard.metric_names(expr) for expr in exprs), "a query reads no evictwatch metric"

    # The eviction made series: the labels the dashboard groups and filters by are on them.
    by_sample = {s.name: s for family in families for s in family.samples}
    attempts = [
        s
        for s in exposed["evictwatch_eviction_attempts_total"].samples
        if s.name == "evictwatch_eviction_attempts_total" and s.labels.get("namespace") == cluster.namespace
    ]
    assert len(attempts) == 1 and attempts[0].value == 1.0, attempts
    assert attempts[0].labels["source"] == "EvictionAPI"
    assert "evictwatch_webhook_handling_seconds_bucket" in by_sample
    checked = 0
    for expr in exprs:
        labels_by_name = {
            name: set().union(*(s.labels for s in exposed[name].samples if s.name == name))
            for name in dashboard.metric_names(expr)
        }
        if not all(labels_by_name.values()):
            continue  # a metric without series yet (no sink failed): the name check above holds
        on_series = set().union(*labels_by_name.values())
        used = dashboard.label_names(expr)
        assert used <= on_series, f"{expr!r} uses {used - on_series}, not on the exposed series"
        checked += 1
    assert checked >= 10  # attempts, evictions, webhook and settle-time panels at least
