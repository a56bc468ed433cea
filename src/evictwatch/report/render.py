"""The drain report as one self-contained HTML page: records and a window in, a string out.

The data is computed by :mod:`.data` and :mod:`.charts`; the page is Jinja2 templates
(``templates/``) with autoescaping on, so every string that came from the cluster (Pod names,
labels, requesters, reasons, messages) is escaped by the template engine, never by hand. Nothing
is fetched by the page: the style and the small script are inline and pinned by their hashes in
the page's Content-Security-Policy, the charts are inline SVG, so even a missed escape would not
run under the policy.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup

from . import charts
from .data import (
    EVICTED,
    MEANING,
    OUTCOMES,
    by_pressure,
    by_workload,
    format_duration,
    held_by_hooks,
    impossible_budgets,
    read_row,
    still_blocked,
)
from .window import Window, format_time

COLOURS = {
    "Evicted": "#0072B2",
    "Blocked": "#E69F00",
    "PodGone": "#009E73",
    "EvictedByKubelet": "#CC79A7",
    "Pending": "#8C8C8C",
}
"""Okabe-Ito colours (distinguishable with the common colour-vision deficiencies)."""


def _time(moment: datetime.datetime | None) -> str:
    return format_time(moment) if moment is not None else "—"


@cache
def environment() -> jinja2.Environment:
    """The templates, autoescaped whatever their name, and strict about undefined names."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("evictwatch.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = format_duration
    env.filters["time"] = _time
    return env


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_security_policy(style: str, script: str) -> str:
    """Nothing may load; only our own inline style and script (pinned by hash) may apply."""
    return (
        f"default-src 'none'; style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )


@cache
def _style_and_script() -> tuple[str, str]:
    env = environment()
    style = env.get_template("style.css.j2").render(colours=COLOURS).strip()
    loader = env.loader
    assert loader is not None
    script = loader.get_source(env, "script.js")[0].strip()
    return style, script


def render(
    records: Sequence[Mapping[str, Any]],
    window: Window,
    *,
    node: str | None = None,
    namespace: str | None = None,
    generated: datetime.datetime | None = None,
    max_listed: int | None = None,
    fit: bool = True,
) -> str:
    """The report of ``records`` (plain dicts, as the API returns them) over ``window``.

    Records are drawn as given (the caller filters); a time outside the window is drawn at its
    edge. ``node`` and ``namespace`` only label the scope. ``max_listed`` caps the record list
    (for a screenshot); the timeline and tables always cover every record. With ``fit`` the
    charts zoom to where the records are (:func:`.charts.chart_window`), else they span the window.
    """
    rows = [read_row(record) for record in records]
    outcomes: Counter[str] = Counter(row.outcome for row in rows)
    scope = [f"namespace {namespace}" if namespace else "all namespaces"] + ([f"node {node}"] if node else [])
    shown = charts.chart_window(rows, window) if fit else window
    style, script = _style_and_script()
    stuck_nodes, stuck_budgets = still_blocked(rows, window)
    oldest = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    listed = sorted(rows, key=lambda row: row.when or oldest, reverse=True)[:max_listed]
    cards = [
        (len(rows), "records"),
        (sum(outcomes[o] for o in EVICTED), "Pods evicted"),
        (outcomes["Blocked"], "Pods blocked"),
        (sum(row.refused_attempts for row in rows), "refused attempts"),
        (len({row.node for row in rows if row.node}), "nodes"),
        (len({(row.namespace, row.workload) for row in rows}), "workloads"),
        (format_duration(window.seconds), "window"),
    ]
    known = [o for o in charts.ordered(outcomes) if o in OUTCOMES or outcomes[o]]
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            csp=content_security_policy(style, script),
            style=Markup(style),
            script=Markup(script),
            window=window,
            charts=shown,
            window_text=f"{format_time(window.start)} → {format_time(window.end)}",
            scope=", ".join(scope),
            cards=cards,
            stuck_nodes=stuck_nodes,
            stuck_budgets=stuck_budgets,
            impossible=impossible_budgets(rows),
            legend=[(o, MEANING.get(o, ""), outcomes[o]) for o in known],
            over_time=charts.histogram(rows, shown),
            per_node=charts.timeline(rows, shown),
            workloads=by_workload(rows),
            pressure=by_pressure(rows),
            held=held_by_hooks(rows),
            rows=rows,
            listed=listed,
            footer="evictwatch report" + (f", generated {format_time(generated)}" if generated else ""),
        )
    )
