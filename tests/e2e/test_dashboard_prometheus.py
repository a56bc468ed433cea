"""The Grafana dashboard's queries, run by a real Prometheus against a real operator's metrics.

The name check (test_dashboard_metrics.py) proves each queried metric exists; this proves the
queries answer as the panels mean them to. Prometheus (built from the Go module proxy) scrapes
the operator every second while evictions go through the real API server: some go at once,
one is held by a PodDisruptionBudget and later let through. Then every panel's PromQL, read
from ``deploy/grafana/evictwatch.json``, is evaluated with Grafana's variables filled in.
Drawing the panels is Grafana's job, not ours.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from lightkube.resources.policy_v1 import PodDisruptionBudget

from evictwatch.operator import Operator
from evictwatch.testing.cluster import Cluster, wait_for
from evictwatch.testing.dashboard import PanelResult, Window, evaluate, load_dashboard
from evictwatch.testing.prometheus import PrometheusServer, ensure_prometheus

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "evictwatch.json"


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    return ensure_prometheus()


@pytest.fixture
def operator(metrics_operator: Operator) -> Operator:
    return metrics_operator


async def settled(cluster: Cluster, outcomes: dict[str, str]) -> None:
    """Wait until each Pod's record has the outcome given."""

    async def check() -> bool | None:
        async with cluster.http() as http:
            path = f"/apis/evictwatch.io/v1alpha1/namespaces/{cluster.namespace}/podevictions"
            items = (await http.get(path)).json()["items"]
        seen = {r["spec"]["pod"]["name"]: (r.get("status") or {}).get("outcome") for r in items}
        last.update(seen)
        return all(seen.get(pod) == outcome for pod, outcome in outcomes.items()) or None

    last: dict[str, Any] = {}
    try:
        await wait_for(check, timeout=60, interval=0.5, what=f"outcomes {outcomes}")
    except AssertionError as error:
        raise AssertionError(f"{error}; records: {last}") from None


def panel(results: list[PanelResult], title: str, kind: str | None = None) -> PanelResult:
    (found,) = [r for r in results if r.panel.get("title") == title and kind in (None, r.panel["type"])]
    return found


def legends(result: PanelResult) -> set[str]:
    return {s.legend for s in result.series}


def finite_values(result: PanelResult) -> list[float]:
    return [v for s in result.series for _, v in s.points if v == v and abs(v) != float("inf")]


async def test_every_panel_answers_from_a_real_prometheus(
    cluster: Cluster, operator: Operator, prometheus_binary: Path
) -> None:
    node = await cluster.create_node()
    shop = await cluster.create_deployment("shop", {"app": "shop"}, replicas=2)
    batch = [f"batch-{i}" for i in range(4)]
    for pod in shop:
        await cluster.bind(pod, node)
        await cluster.mark_ready(pod)
    for pod in batch:
        await cluster.create_pod(pod, labels={"app": "batch"}, node=node, ready=True)
    await cluster.create_pdb("shop", {"app": "shop"}, min_available=2)

    server = PrometheusServer(
        [f"127.0.0.1:{operator.metrics_port}"],
        binary=prometheus_binary,
        extra_args=["--enable-feature=created-timestamp-zero-ingestion"],
    )
    # Started and stopped in a thread: both wait (for readiness, for the process to end), and
    # the operator under test shares this event loop.
    prom = await asyncio.to_thread(server.start)
    try:
        await asyncio.to_thread(prom.wait_for_targets)
        started = time.time()
        # The first wave: one eviction through, one held by the budget.
        assert (await cluster.evict(batch[0])).status == 201
        assert (await cluster.evict(shop[0])).status == 429
        await settled(cluster, {batch[0]: "Evicted", shop[0]: "Blocked"})
        await asyncio.sleep(3)
        # The second: the rest of the batch, then the budget goes and the drain's retry passes.
        for pod in batch[1:]:
            assert (await cluster.evict(pod)).status == 201
        await cluster.client.delete(PodDisruptionBudget, "shop", namespace=cluster.namespace)
        assert (await cluster.evict(shop[0])).status == 201
        await settled(cluster, {**dict.fromkeys(batch, "Evicted"), shop[0]: "Evicted"})
        await asyncio.sleep(4)  # a few more scrapes

        window = Window(start=started - 2, end=time.time(), step=1, scrape_interval=1)
        model = load_dashboard(DASHBOARD)
        results = await asyncio.to_thread(evaluate, model, prom, window, {"namespace": cluster.namespace})
        assert sum(1 for r in results if r.queries) >= 20
        errors = [e for r in results for e in r.errors]
        assert not errors, errors

        # Stats: six outcomes (five Pods evicted at once, one blocked and then evicted), seven
        # attempts, nothing lost. increase() extrapolates over the window, so never exact.
        evictions = panel(results, "Evictions", "stat").value
        attempts = panel(results, "Attempts", "stat").value
        assert evictions is not None and 4.5 <= evictions <= 7.5, evictions
        assert attempts is not None and 5.5 <= attempts <= 8.5, attempts
        assert panel(results, "Records lost", "stat").value in (None, 0.0)
        webhook_p99 = panel(results, "Webhook p99", "stat").value
        assert webhook_p99 is not None and 0 < webhook_p99 < 5, webhook_p99

        # Series carry the labels the panels group by.
        assert legends(panel(results, "Evictions by source")) == {"EvictionAPI"}
        assert {"Evicted", "Blocked"} <= legends(panel(results, "Evictions by outcome"))
        assert legends(panel(results, "Blocked evictions")) == {cluster.namespace}
        assert legends(panel(results, "Attempts by requester")) == {"unknown"}  # admin is no known component
        assert "recorded" in legends(panel(results, "Webhook answers by decision"))
        handling = finite_values(panel(results, "Webhook handling time"))
        assert handling and all(0 < v < 5 for v in handling), handling
        assert finite_values(panel(results, "Time to outcome"))
        top = panel(results, "Top namespaces")
        assert [labels["namespace"] for labels in top.labels] == [cluster.namespace] * len(top.labels)
        assert top.labels
        assert any(s.labels.get("sink") for s in panel(results, "Sink deliveries and failures").series)
        lookups = legends(panel(results, "Webhook Pod lookups"))
        assert lookups and lookups <= {"hit", "miss", "recent", "unsynced"}, lookups
        cached = finite_values(panel(results, "Pods in the cache"))
        assert cached and max(cached) >= len(batch) + len(shop) - 1, cached

    finally:
        await asyncio.to_thread(server.stop)


async def test_metrics_endpoint_speaks_openmetrics_when_asked(operator: Operator) -> None:
    """Prometheus asks for OpenMetrics first; its _created lines carry each series' start."""
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    async with httpx2.AsyncClient(timeout=10) as http:
        open_metrics = await http.get(url, headers={"Accept": "application/openmetrics-text;version=1.0.0"})
        plain = await http.get(url)
    assert open_metrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert open_metrics.text.rstrip().endswith("# EOF")
    assert plain.headers["Content-Type"].startswith("text/plain")
    body: Any = plain.text
    assert "evictwatch_webhook_requests_total" in body or "evictwatch_webhook_handling_seconds" in body
