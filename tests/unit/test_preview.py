"""The dashboard preview's own logic: Grafana's variables, legends, the layout of each panel type."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from evictwatch.cli import main
from evictwatch.report.dashboard import dashboard
from evictwatch.report.preview import Window, evaluate, legend_for, render_preview, substitute
from evictwatch.report.preview_command import auto_step
from evictwatch.testing.controlplane import free_port


class FakeProm:
    """Answers like Prometheus for a few expressions; fails for those marked bad."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def query(self, expr: str, at: float) -> Mapping[str, Any]:
        self.asked.append(expr)
        if "records_lost" in expr:
            return {"resultType": "vector", "result": []}
        if "by (namespace)" in expr:
            return {
                "resultType": "vector",
                "result": [
                    {"metric": {"namespace": "shop"}, "value": [at, "7"]},
                    {"metric": {"namespace": "db"}, "value": [at, "2"]},
                ],
            }
        return {"resultType": "vector", "result": [{"metric": {}, "value": [at, "12"]}]}

    async def query_range(self, expr: str, start: float, end: float, step: float) -> Mapping[str, Any]:
        self.asked.append(expr)
        if "deleted" in expr:
            raise RuntimeError("bad_data: parse error")
        values = [[start + i * step, str(i % 3)] for i in range(int((end - start) / step) + 1)]
        if "by (outcome)" in expr:
            return {
                "resultType": "matrix",
                "result": [
                    {"metric": {"outcome": "Evicted"}, "values": values},
                    {"metric": {"outcome": "Blocked"}, "values": values[:3]},
                ],
            }
        return {"resultType": "matrix", "result": [{"metric": {"source": "EvictionAPI"}, "values": values}]}


def test_grafana_variables_are_replaced_as_grafana_does() -> None:
    window = Window(start=1000, end=1600, step=10, scrape_interval=1)
    expr = 'sum(increase(x{namespace=~"$namespace"}[$__rate_interval])) / ${__range} + $__interval'
    assert substitute(expr, window, {"namespace": "team-a|team-b"}) == (
        'sum(increase(x{namespace=~"team-a|team-b"}[11s])) / 600s + 10s'
    )
    # With a slow scrape, the rate window is four scrapes, whatever the step.
    assert Window(0, 60, 1, 15).rate_interval == 60


def test_legends_follow_legend_format() -> None:
    assert legend_for("{{sink}} failed", {"sink": "slack"}) == "slack failed"
    assert legend_for("__auto", {"outcome": "Blocked"}) == "Blocked"
    assert legend_for("", {"a": "1", "b": "2", "__name__": "m"}) == "a=1, b=2"


def test_step_keeps_series_short() -> None:
    assert auto_step(600, 1) == 2.0
    assert auto_step(60, 15) == 15.0
    assert auto_step(24 * 3600, 15) == 360.0


async def test_every_panel_is_laid_out_with_its_answer() -> None:
    board = dashboard()
    prom = FakeProm()
    window = Window(start=0, end=300, step=10, scrape_interval=1)
    results = await evaluate(board, prom, window, {"namespace": ".*"})
    assert len(results) == len(board["panels"])
    assert all("$" not in expr for expr in prom.asked), [e for e in prom.asked if "$" in e]
    html = render_preview(board, results, window, source="a fake")
    sections = re.findall(r'<section class="panel" id="p\d+" data-type="(\w+)" data-has-data="(\w+)"', html)
    kinds = [p["type"] for p in board["panels"] if p["type"] != "row"]
    assert [kind for kind, _ in sections] == kinds
    # One line per series: the outcome panel has two, in the report's outcome colours.
    outcome = next(r for r in results if r.panel["title"] == "Evictions by outcome")
    assert [s.legend for s in outcome.series] == ["Evicted", "Blocked"]
    assert 'stroke="#0072B2"' in html and 'stroke="#E69F00"' in html
    # A failing query shows its error on its panel; an empty answer says so.
    removed = next(r for r in results if r.panel["title"] == "Records removed by retention")
    assert removed.errors and "bad_data" in removed.errors[0] and not removed.has_data
    lost = next(r for r in results if r.panel["title"] == "Records lost" and r.panel["type"] == "stat")
    assert lost.value is None and not lost.has_data
    assert "No data" in html and "bad_data: parse error" in html
    top = next(r for r in results if r.panel["title"] == "Top namespaces")
    assert [row["namespace"] for row in top.table] == ["shop", "db"]
    # Grafana's "organize" renames the merged columns and "sortBy" orders the rows.
    assert '<th class="num">Evictions</th>' in html and "Value #A" not in html
    assert html.index(">shop</td>") < html.index(">db</td>")
    # Stats: the panel's decimals, and its noValue for an empty answer.
    assert '<div class="stat t-1a7f37">12</div>' in html
    assert '<div class="stat t-1a7f37">0</div>' in html  # Records lost: no series, shown as 0
    # The page's CSP allows no inline style and no script.
    assert "<script" not in html and 'style="' not in html


def test_command_names_an_unreachable_prometheus(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = CliRunner().invoke(
        main, ["dashboard", "--prometheus", f"http://127.0.0.1:{port}", "-o", str(tmp_path / "d.html")]
    )
    assert result.exit_code == 3, result.output
    assert f"error: Prometheus did not answer: http://127.0.0.1:{port}/api/v1/query" in result.output
    assert not (tmp_path / "d.html").exists()


def test_command_rejects_a_bad_window() -> None:
    result = CliRunner().invoke(
        main, ["dashboard", "--prometheus", "http://x", "--to", "2026-01-01T00:00:00Z"]
    )
    assert result.exit_code == 2 and "--to needs --from" in result.output
