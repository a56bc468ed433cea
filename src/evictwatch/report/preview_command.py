"""``evictwatch dashboard``: the Grafana dashboard's panels from a Prometheus, as HTML or PNG."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import click

from .browser import BrowserError, BrowserNotFound, screenshot_html
from .command import EXIT_BROWSER, _fail, checked_options, output_options, window_options
from .dashboard import dashboard
from .preview import HttpProm, PanelResult, PromError, Window, evaluate, render_preview

EXIT_PROMETHEUS = 3
MAX_POINTS = 240
"""Points per series at most (the step is chosen from the window, as Grafana does)."""


def auto_step(seconds: float, scrape_interval: float) -> float:
    """A step of at least the scrape interval giving at most :data:`MAX_POINTS` points."""
    return max(scrape_interval, float(round(seconds / MAX_POINTS)) or 1.0)


@click.command("dashboard")
@click.option(
    "--prometheus", required=True, metavar="URL", help="Prometheus base URL, e.g. http://localhost:9090."
)
@window_options
@click.option("--step", type=float, default=None, help="Seconds between points (default: from the window).")
@click.option(
    "--scrape-interval", type=float, default=15.0, show_default=True, help="For $__rate_interval, in seconds."
)
@click.option("--namespace", "namespace", default=".*", show_default=True, help="Regex for $namespace.")
@click.option(
    "--dashboard",
    "dashboard_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A dashboard JSON (default: the one evictwatch ships).",
)
@output_options("dashboard")
def dashboard_command(
    prometheus: str,
    since: str | None,
    start: str | None,
    end: str | None,
    step: float | None,
    scrape_interval: float,
    namespace: str,
    dashboard_file: str | None,
    output: str | None,
    output_format: str | None,
) -> None:
    """Draw the Grafana dashboard's panels with their queries evaluated by PROMETHEUS.

    For a look at the dashboard without Grafana, and proof that its queries answer: every
    panel's PromQL goes to Prometheus's HTTP API with Grafana's variables filled in; the page
    shows each answer (or the query's error) on the dashboard's own grid.
    """
    span, target, output_format = checked_options("dashboard", since, start, end, output, output_format)
    model: dict[str, Any] = (
        json.loads(Path(dashboard_file).read_text()) if dashboard_file is not None else dashboard()
    )
    seconds = (span.end - span.start).total_seconds()
    window = Window(
        span.start.timestamp(),
        span.end.timestamp(),
        step or auto_step(seconds, scrape_interval),
        scrape_interval,
    )
    try:
        page, results = asyncio.run(_build(prometheus, model, window, namespace))
    except PromError as error:
        _fail(f"Prometheus did not answer: {error}", EXIT_PROMETHEUS)
        return
    write_page(page, target, output_format)
    with_data = sum(1 for r in results if r.queries and r.has_data)
    errors = sum(len(r.errors) for r in results)
    click.echo(
        f"wrote {target}: {sum(1 for r in results if r.queries)} panels with queries, {with_data} with data, "
        f"{errors} query errors"
    )


async def _build(
    prometheus: str, model: dict[str, Any], window: Window, namespace: str
) -> tuple[str, list[PanelResult]]:
    async with HttpProm(prometheus) as prom:
        await prom.query("vector(1)", window.end)  # unreachable or not Prometheus: one clear error
        results = await evaluate(model, prom, window, {"namespace": namespace})
    return render_preview(model, results, window, source=f"Prometheus at {prometheus}"), results


def write_page(page: str, target: Path, output_format: str) -> None:
    if output_format == "html":
        target.write_text(page, encoding="utf-8")
        return
    with tempfile.TemporaryDirectory(prefix="evictwatch-dashboard-") as folder:
        html_path = Path(folder).resolve() / "dashboard.html"
        html_path.write_text(page, encoding="utf-8")
        try:
            target.write_bytes(asyncio.run(screenshot_html(html_path, width=1440)))
        except BrowserNotFound as error:
            _fail(str(error), EXIT_BROWSER)
        except (BrowserError, TimeoutError) as error:
            _fail(f"Chromium could not render the dashboard: {error}", EXIT_BROWSER)
