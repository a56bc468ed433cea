"""The Grafana dashboard's queries, run by a real Prometheus against a real operator's metrics.

The name check (test_dashboard_metrics.py) proves each queried metric exists; this proves the
queries answer as the panels mean them to. Prometheus (built from the Go module proxy) scrapes
the operator every second while evictions go through the real API server: some go at once,
one is held by a PodDisruptionBudget and later let through. Then every panel's PromQL is
evaluated with Grafana's variables filled in, and the preview page is rendered to PNG in
Chromium, kept as a test artifact.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from click.testing import CliRunner
from lightkube.resources.policy_v1 import PodDisruptionBudget

from evictwatch.cli import main
from evictwatch.operator import Operator
from evictwatch.report.browser import Chromium
from evictwatch.report.dashboard import dashboard
from evictwatch.report.preview import HttpProm, PanelResult, Window, evaluate, render_preview
from evictwatch.report.preview_command import write_page
from evictwatch.testing.cluster import Cluster, wait_for
from evictwatch.testing.prometheus import PrometheusServer, ensure_prometheus

ARTIFACTS = Path(os.environ.get("EVICTWATCH_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))


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


PANEL_BOXES = """(() => {
  const board = document.querySelector('.board').getBoundingClientRect();
  return {board: board.width, panels: Array.from(document.querySelectorAll('section.panel'), (el) => {
    const r = el.getBoundingClientRect();
    const m = parseFloat(getComputedStyle(el).marginLeft);
    return {x: r.left - board.left - m, width: r.width + 2 * m, height: r.height + 2 * m};
  })};
})()"""


def panel(results: list[PanelResult], title: str, kind: str | None = None) -> PanelResult:
    (found,) = [r for r in results if r.panel.get("title") == title and kind in (None, r.panel["type"])]
    return found


def legends(result: PanelResult) -> set[str]:
    return {s.legend for s in result.series}


def finite_values(result: PanelResult) -> list[float]:
    return [v for s in result.series for _, v in s.points if v == v and abs(v) != float("inf")]


async def test_every_panel_answers_from_a_real_prometheus(
    cluster: Cluster, operator: Operator, prometheus_binary: Path, tmp_path: Path
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
        model = dashboard()
        async with HttpProm(prom.url) as api:
            results = await evaluate(model, api, window, {"namespace": cluster.namespace})
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
        assert [row["namespace"] for row in top.table] == [cluster.namespace]
        assert any(s.labels.get("sink") for s in panel(results, "Sink deliveries and failures").series)
        lookups = legends(panel(results, "Webhook Pod lookups"))
        assert lookups and lookups <= {"hit", "miss", "recent", "unsynced"}, lookups
        cached = finite_values(panel(results, "Pods in the cache"))
        assert cached and max(cached) >= len(batch) + len(shop) - 1, cached

        # The command does the same from the outside (in a thread: it runs its own event loop).
        command = ["dashboard", "--prometheus", prom.url, "--since", "5m", "--scrape-interval", "1"]
        command += ["--namespace", cluster.namespace, "-o", str(tmp_path / "cli.html")]
        outcome = await asyncio.to_thread(CliRunner().invoke, main, command)
        assert outcome.exit_code == 0, outcome.output
        assert "20 panels with queries" in outcome.output and "0 query errors" in outcome.output
        assert f"<td>{cluster.namespace}</td>" in (tmp_path / "cli.html").read_text()

        page = render_preview(model, results, window, source="Prometheus 3.16 (test)")
        await asyncio.to_thread(ARTIFACTS.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(write_page, page, ARTIFACTS / "dashboard-preview.html", "html")
        await asyncio.to_thread(write_page, page, ARTIFACTS / "dashboard-preview.png", "png")
        png = (ARTIFACTS / "dashboard-preview.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 20_000
    finally:
        await asyncio.to_thread(server.stop)

    # In Chromium: nothing refused by the page's CSP, and every panel where its gridPos puts it.
    async with Chromium() as browser:
        tab = await browser.page()
        await tab.goto((ARTIFACTS / "dashboard-preview.html").resolve().as_uri())
        boxes = await tab.evaluate(PANEL_BOXES)
        assert not tab.console_errors, tab.console_errors
    column = boxes["board"] / 24
    placed = [p for p in model["panels"] if p["type"] != "row"]
    assert len(boxes["panels"]) == len(placed)
    for spec, box in zip(placed, boxes["panels"], strict=True):
        grid = spec["gridPos"]
        assert abs(box["x"] - grid["x"] * column) <= 12, (spec["title"], box)
        assert abs(box["width"] - grid["w"] * column) <= 12, (spec["title"], box)
        assert abs(box["height"] - grid["h"] * 30) <= 12, (spec["title"], box)


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
