"""The Grafana dashboard's panels, evaluated by a real Prometheus and drawn as one HTML page.

Grafana itself can't run beside the project (it is AGPL-licensed, which this workplace does not
use, and its front end is not in any package we can install), yet people want to *see* the
dashboard before they import it, and we want proof that its queries give sensible answers, not
only that their metric names exist. So this module reads the same dashboard JSON that the chart
ships, asks any Prometheus for every panel's PromQL over a window (Grafana's variables replaced
the way Grafana replaces them), and lays the answers out on Grafana's 24-column grid: stat
panels as numbers, time series as SVG line charts, tables as tables, text as text.

It is a preview, not a Grafana: no interaction, and only the panel types our dashboard uses.

    evictwatch dashboard --prometheus http://localhost:9090 --since 30m -o dashboard.png
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from .render import COLOURS, content_security_policy, esc

GRID_COLUMNS = 24
ROW_HEIGHT = 30
"""Pixels per grid unit of height, as in Grafana."""
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


class PromError(RuntimeError):
    """Prometheus answered with an error, or not at all."""


class PromApi(Protocol):
    """The two Prometheus HTTP API calls the preview needs (``data`` of the answer)."""

    async def query(self, expr: str, at: float) -> Mapping[str, Any]: ...

    async def query_range(self, expr: str, start: float, end: float, step: float) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Series:
    labels: Mapping[str, str]
    points: Sequence[tuple[float, float]]
    legend: str


@dataclass
class PanelResult:
    """What one panel's queries gave."""

    panel: Mapping[str, Any]
    series: list[Series] = field(default_factory=list)
    table: list[dict[str, str]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    value: float | None = None
    errors: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        return bool(self.series or self.table) or (self.value is not None and not math.isnan(self.value))


@dataclass(frozen=True)
class Window:
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


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


async def evaluate(
    dashboard: Mapping[str, Any],
    prom: PromApi,
    window: Window,
    variables: Mapping[str, str] | None = None,
) -> list[PanelResult]:
    """Every panel's queries, asked of ``prom``; a failing query is kept as an error, not raised."""
    results = []
    for panel in dashboard.get("panels") or []:
        result = PanelResult(panel)
        kind = panel.get("type")
        for target in panel.get("targets") or []:
            expr = substitute(str(target.get("expr") or ""), window, variables)
            result.queries.append(expr)
            try:
                if kind == "stat":
                    data = await prom.query(expr, window.end)
                    values = [_number(s["value"][1]) for s in data.get("result") or []]
                    result.value = sum(values) if values else None
                elif kind == "table":
                    data = await prom.query(expr, window.end)
                    _merge_table(result, target, data)
                else:
                    data = await prom.query_range(expr, window.start, window.end, window.step)
                    template = str(target.get("legendFormat") or "")
                    for item in data.get("result") or []:
                        labels = dict(item.get("metric") or {})
                        points = [(float(t), _number(v)) for t, v in item.get("values") or []]
                        result.series.append(Series(labels, points, legend_for(template, labels)))
            except Exception as error:  # noqa: BLE001 - one bad query must not hide the others
                result.errors.append(f"{expr}: {type(error).__name__}: {error}")
        results.append(result)
    return results


def _merge_table(result: PanelResult, target: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    """Grafana's "merge" of instant queries: one row per label set, one column per query."""
    column = f"Value #{target.get('refId') or len(result.columns)}"  # Grafana's name before "organize"
    result.columns.append(column)
    for item in data.get("result") or []:
        labels = {k: v for k, v in (item.get("metric") or {}).items() if k != "__name__"}
        key = ", ".join(f"{v}" for _, v in sorted(labels.items()))
        row = next((r for r in result.table if r.get("\0key") == key), None)
        if row is None:
            row = {"\0key": key, **labels}
            result.table.append(row)
        row[column] = _format(_number(item["value"][1]), "", _decimals(result.panel))


def _defaults(panel: Mapping[str, Any]) -> Mapping[str, Any]:
    defaults: Mapping[str, Any] = (panel.get("fieldConfig") or {}).get("defaults") or {}
    return defaults


def _decimals(panel: Mapping[str, Any]) -> int | None:
    decimals = _defaults(panel).get("decimals")
    return int(decimals) if isinstance(decimals, int) else None


def _format(value: float | None, unit: str, decimals: int | None = None) -> str:
    if value is None or math.isnan(value):
        return "No data"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"  # a division by zero in a custom panel
    if unit == "s":
        return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"
    if decimals is not None:
        return f"{value:,.{decimals}f}"
    if abs(value - round(value)) < 0.005:
        return f"{round(value):,}"
    return f"{value:,.2f}"


def _threshold_colour(panel: Mapping[str, Any], value: float | None) -> str:
    """The colour of the last threshold step the value reaches (Grafana's "absolute" mode)."""
    steps = ((_defaults(panel).get("thresholds") or {}).get("steps")) or []
    colour = "blue"
    for step in steps:
        limit = step.get("value")
        if limit is None or (value is not None and not math.isnan(value) and value >= float(limit)):
            colour = str(step.get("color") or colour)
    return _THRESHOLD_COLOURS.get(colour, _THRESHOLD_COLOURS["blue"])


_THRESHOLD_COLOURS = {"green": "#1a7f37", "red": "#c62828", "orange": "#E69F00", "blue": "#0072B2"}


def _colour(name: str, index: int) -> str:
    return COLOURS.get(name, PALETTE[index % len(PALETTE)])


def _colour_class(name: str, index: int) -> str:
    return f"c-{_colour(name, index).lstrip('#').lower()}"


def _series_rules() -> str:
    colours = {*COLOURS.values(), *PALETTE}
    swatches = "".join(f".c-{c.lstrip('#').lower()}{{background:{c}}}" for c in sorted(colours))
    return swatches + "".join(f".t-{c.lstrip('#').lower()}{{color:{c}}}" for c in _THRESHOLD_COLOURS.values())


def _chart(result: PanelResult, window: Window, width: float, height: float) -> str:
    unit = str(((result.panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit") or "")
    finite = [v for s in result.series for _, v in s.points if not math.isnan(v) and not math.isinf(v)]
    if not finite:
        return '<div class="nodata">No data</div>'
    left, right, top, bottom = 54.0, 8.0, 8.0, 22.0
    plot_w, plot_h = width - left - right, height - top - bottom
    high = max(finite) or 1.0
    low = min(0.0, min(finite))
    span_t = (window.end - window.start) or 1.0

    def x(t: float) -> float:
        return left + (t - window.start) / span_t * plot_w

    def y(v: float) -> float:
        return top + plot_h - (v - low) / ((high - low) or 1.0) * plot_h

    parts = [f'<svg class="chart" viewBox="0 0 {width:.0f} {height:.0f}" role="img">']
    for fraction in (0.0, 0.5, 1.0):
        value = low + (high - low) * fraction
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}"/>'
            f'<text class="ylabel" x="{left - 4}" y="{y(value) + 4:.1f}">{esc(_format(value, unit))}</text>'
        )
    for fraction in (0.0, 0.5, 1.0):
        moment = window.start + span_t * fraction
        label = datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%H:%M:%S")
        anchor = ("start", "middle", "end")[int(fraction * 2)]
        parts.append(
            f'<text class="xlabel" text-anchor="{anchor}" x="{x(moment):.1f}" y="{height - 6}">{label}</text>'
        )
    for index, series in enumerate(result.series):
        colour = _colour(series.legend, index)
        runs: list[list[str]] = [[]]
        for t, v in series.points:
            if math.isnan(v) or math.isinf(v):
                runs.append([])
            else:
                runs[-1].append(f"{x(t):.1f},{y(v):.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
            elif run:
                parts.append(f'<polyline class="line" stroke="{colour}" points="{" ".join(run)}"/>')
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><i class="{_colour_class(s.legend, i)}"></i>{esc(s.legend)}</span>'
        for i, s in enumerate(result.series)
    )
    return "".join(parts) + f'<div class="keys">{legend}</div>'


def _transformed(result: PanelResult) -> tuple[list[str], list[dict[str, str]]]:
    """The table after the panel's "organize" (rename, exclude) and "sortBy" transformations."""
    labels = sorted({k for row in result.table for k in row if k != "\0key" and k not in result.columns})
    columns = [*labels, *result.columns]
    rename: dict[str, str] = {}
    exclude: set[str] = set()
    sort_by: list[dict[str, Any]] = []
    for step in result.panel.get("transformations") or []:
        options = step.get("options") or {}
        if step.get("id") == "organize":
            rename.update(options.get("renameByName") or {})
            exclude.update(k for k, v in (options.get("excludeByName") or {}).items() if v)
        elif step.get("id") == "sortBy":
            sort_by = list(options.get("sort") or [])
    kept = [c for c in columns if c not in exclude]
    rows = [{rename.get(c, c): row.get(c, "") for c in kept} for row in result.table]
    for rule in reversed(sort_by):
        field_name = str(rule.get("field") or "")

        def key(row: dict[str, str], name: str = field_name) -> tuple[float, str]:
            number = _number(row.get(name, "").replace(",", ""))
            return (number if not math.isnan(number) else -math.inf, row.get(name, ""))

        rows.sort(key=key, reverse=bool(rule.get("desc")))
    return [rename.get(c, c) for c in kept], rows


def _num(numeric: bool) -> str:
    return ' class="num"' if numeric else ""


def _table(result: PanelResult) -> str:
    if not result.table:
        return '<div class="nodata">No data</div>'
    columns, rows = _transformed(result)
    numeric = set(columns[-len(result.columns) :]) if result.columns else set()
    head = "".join(f"<th{_num(c in numeric)}>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td{_num(c in numeric)}>{esc(row.get(c, ''))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _inline(text: str) -> str:
    """Escaped text with markdown's **bold** and `code`."""
    html = esc(text)
    html = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html)


def _text(panel: Mapping[str, Any]) -> str:
    """A text panel's markdown: paragraphs, **bold**, `code` and fenced code blocks."""
    content = str((panel.get("options") or {}).get("content") or "")
    parts = re.split(r"```[a-z]*\n?(.*?)```", content, flags=re.S)
    html = []
    for index, part in enumerate(parts):
        if index % 2:
            html.append(f"<pre>{esc(part.strip())}</pre>")
        else:
            html.extend(f"<p>{_inline(p.strip())}</p>" for p in part.split("\n\n") if p.strip())
    return "".join(html)


def _placement(panel: Mapping[str, Any]) -> tuple[int, int, int, int]:
    grid = panel.get("gridPos") or {}
    x, y, w, h = (int(grid.get(k, d)) for k, d in (("x", 0), ("y", 0), ("w", 12), ("h", 8)))
    return x, y, w, h


def _panel_html(index: int, result: PanelResult, window: Window, page_width: int) -> str:
    panel = result.panel
    _, _, w, h = _placement(panel)
    title = esc(panel.get("title") or "")
    kind = panel.get("type")
    if kind == "row":
        return f'<h2 class="row" id="p{index}">{title}</h2>'
    width = page_width / GRID_COLUMNS * w - 16
    if kind == "stat":
        defaults = _defaults(panel)
        if result.value is None and defaults.get("noValue") is not None:
            shown = str(defaults["noValue"])  # what Grafana shows for an empty answer
        else:
            shown = _format(result.value, str(defaults.get("unit") or ""), _decimals(panel))
        colour = _threshold_colour(panel, result.value).lstrip("#").lower()
        body = f'<div class="stat t-{colour}">{esc(shown)}</div>'
    elif kind == "table":
        body = _table(result)
    elif kind == "text":
        body = _text(panel)
    else:
        body = _chart(result, window, width, h * ROW_HEIGHT - 64)
    errors = "".join(f'<div class="error">{esc(e)}</div>' for e in result.errors)
    return (
        f'<section class="panel" id="p{index}" data-type="{esc(kind)}" '
        f'data-has-data="{str(result.has_data).lower()}"><h3>{title}</h3>{body}{errors}</section>'
    )


def _layout_rules(results: Sequence[PanelResult]) -> str:
    """Each panel's place on the grid, as rules of the one stylesheet (the page's CSP allows no
    inline style attributes, only the hashed stylesheet)."""
    rules = []
    for index, result in enumerate(results):
        x, y, w, h = _placement(result.panel)
        rules.append(f"#p{index}{{grid-column:{x + 1}/span {w};grid-row:{y + 1}/span {h}}}")
    return "".join(rules)


def _style(page_width: int) -> str:
    return (
        "*{box-sizing:border-box}body{font:13px/1.35 system-ui,'DejaVu Sans',sans-serif;margin:16px;"
        f"color:#1d1d1f;background:#f4f5f5;width:{page_width + 32}px}}"
        "h1{font-size:20px;margin:0 0 2px}.scope{color:#555;margin:0 0 10px}"
        f".board{{display:grid;grid-template-columns:repeat({GRID_COLUMNS},1fr);"
        f"grid-auto-rows:{ROW_HEIGHT}px;gap:0;width:{page_width}px}}"
        ".panel{background:#fff;border:1px solid #dcdcdc;border-radius:4px;margin:4px;padding:6px 8px;"
        "overflow:hidden}.panel h3{font-size:13px;margin:0 0 4px;font-weight:600}"
        ".row{font-size:15px;margin:8px 4px 0;align-self:end}"
        ".stat{font-size:34px;font-weight:600;text-align:center;margin-top:4px}"
        ".nodata{color:#888;text-align:center;margin-top:30px}.error{color:#b00020;font-size:11px}"
        "svg.chart{display:block;width:100%;height:auto}.line{fill:none;stroke-width:1.6}"
        "svg .grid{stroke:#e6e6e6}.ylabel{fill:#555;font-size:10px;text-anchor:end}"
        ".xlabel{fill:#555;font-size:10px}.keys{display:flex;flex-wrap:wrap;gap:4px 10px;font-size:11px}"
        ".key i{display:inline-block;width:10px;height:3px;margin-right:4px;vertical-align:middle}"
        "table{border-collapse:collapse;width:100%;font-size:12px}th,td{border-bottom:1px solid #eee;"
        "padding:2px 6px;text-align:left}th{background:#f4f6f8}.num{text-align:right}"
        "p{margin:0 0 6px;color:#333}"
        "pre{background:#f4f6f8;padding:4px 6px;margin:0 0 6px}"
        "footer{color:#777;font-size:11px;margin-top:8px}"
    )


def render_preview(
    dashboard: Mapping[str, Any],
    results: Sequence[PanelResult],
    window: Window,
    *,
    source: str,
    page_width: int = 1400,
) -> str:
    """One self-contained HTML page (no script, nothing loaded) laid out on Grafana's grid."""
    style = _style(page_width) + _layout_rules(results) + _series_rules()
    start = datetime.datetime.fromtimestamp(window.start, datetime.UTC)
    end = datetime.datetime.fromtimestamp(window.end, datetime.UTC)
    panels = "".join(_panel_html(i, r, window, page_width) for i, r in enumerate(results))
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy(style, "")}">'
        f"<title>{esc(dashboard.get('title') or 'dashboard')}</title><style>{style}</style></head><body>"
        f"<h1>{esc(dashboard.get('title') or 'dashboard')}</h1>"
        f'<p class="scope">{start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC, step {window.step:g} s; '
        f"queries evaluated by {esc(source)}; a preview of the Grafana dashboard, drawn by evictwatch</p>"
        f'<div class="board">{panels}</div>'
        f"<footer>{sum(1 for r in results if r.queries)} panels with queries, "
        f"{sum(1 for r in results if r.queries and r.has_data)} with data, "
        f"{sum(len(r.errors) for r in results)} query errors</footer></body></html>"
    )


class HttpProm:
    """:class:`PromApi` over Prometheus's HTTP API (``/api/v1/query`` and ``/api/v1/query_range``)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpProm:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get(self, path: str, params: Mapping[str, str]) -> Mapping[str, Any]:
        if self._session is None:
            raise RuntimeError("use HttpProm as an async context manager")
        try:
            async with self._session.get(self.base_url + path, params=dict(params)) as reply:
                answer = await reply.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise PromError(f"{self.base_url}{path}: {type(error).__name__}: {error}") from error
        if not isinstance(answer, dict) or answer.get("status") != "success":
            detail = answer.get("error") if isinstance(answer, dict) else answer
            raise PromError(f"{path}: {detail}")
        data: Mapping[str, Any] = answer.get("data") or {}
        return data

    async def query(self, expr: str, at: float) -> Mapping[str, Any]:
        return await self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})

    async def query_range(self, expr: str, start: float, end: float, step: float) -> Mapping[str, Any]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return await self._get("/api/v1/query_range", params)
