"""The drain report as one self-contained HTML page (pure: records and a window in, a string out).

Nothing is fetched by the page: styles and the small script are inline and pinned by hash in
the page's Content-Security-Policy, charts are inline SVG, and every string that came from the
cluster (Pod names, labels, requesters, reasons, messages) is escaped where it is written, so
a Pod named ``<script>`` is text, and even a missed escape would not run under the policy.

Sections: a summary, evictions over time (stacked by outcome), a timeline with one row per
node and one mark per record (``class="mark"``, ``data-outcome``), a table per owning
workload, kubelet pressure evictions by resource, and the list of records.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .window import UTC, Window, format_time, record_times

OUTCOMES = ("Evicted", "Blocked", "PodGone", "Failed", "Pending")
"""Known outcomes, in the order they stack and appear in legends."""

MEANING = {
    "Evicted": "the Pod went (terminating, disrupted or gone) after the attempt",
    "Blocked": "the Pod was still running after the attempts (a PodDisruptionBudget, usually)",
    "PodGone": "there was no such Pod when the attempt came",
    "Failed": "the kubelet evicted the Pod under node pressure (phase Failed)",
    "Pending": "not settled yet",
}
EVICTED = frozenset({"Evicted", "Failed"})
"""Outcomes in which the Pod was evicted: by the API, or by the kubelet (``Failed``)."""

COLOURS = {
    "Evicted": "#0072B2",
    "Blocked": "#E69F00",
    "PodGone": "#009E73",
    "Failed": "#CC79A7",
    "Pending": "#8C8C8C",
}
"""Okabe-Ito colours (distinguishable with the common colour-vision deficiencies)."""

UNKNOWN_COLOUR = "#444444"
NO_NODE = "(no node)"
NO_OWNER = "(no controller)"

WIDTH = 1360
_LABEL_W = 210
_RIGHT = 16
_PLOT_W = WIDTH - _LABEL_W - _RIGHT
_ROW_H = 24
_AXIS_H = 26
_BARS_H = 130
_BUCKETS = 60
_TICK_STEPS = (
    1,
    5,
    10,
    30,
    60,
    300,
    600,
    900,
    1800,
    3600,
    2 * 3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
    28 * 86400,
)


def esc(value: object) -> str:
    """Text or attribute value, escaped (quotes included)."""
    return html.escape(str(value), quote=True)


# ---- reading records ------------------------------------------------------------------------


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


@dataclass(frozen=True)
class Row:
    """What the report needs of one record, read once and defensively."""

    namespace: str
    name: str
    pod: str
    labels: Mapping[str, str]
    node: str
    source: str
    sources: tuple[str, ...]
    requester: str
    username: str
    outcome: str
    attempts: int
    first: datetime.datetime | None
    last: datetime.datetime | None
    outcome_time: datetime.datetime | None
    owner_kind: str
    owner_name: str
    reason: str
    message: str
    pressure_resource: str
    pressure_usage: str

    @property
    def when(self) -> datetime.datetime | None:
        return self.outcome_time or self.last or self.first

    @property
    def workload(self) -> str:
        return f"{self.owner_kind}/{self.owner_name}" if self.owner_name else NO_OWNER

    @property
    def blocked_seconds(self) -> float:
        """How long a Blocked record kept being refused (last attempt minus first)."""
        if self.outcome != "Blocked" or self.first is None or self.last is None:
            return 0.0
        return max((self.last - self.first).total_seconds(), 0.0)

    @property
    def refused_attempts(self) -> int:
        """Attempts the API refused: all of a Blocked record's, all but the last of any other."""
        if self.outcome == "Blocked":
            return self.attempts
        return max(self.attempts - 1, 0)

    @property
    def is_pressure(self) -> bool:
        return self.source == "Kubelet" or "Kubelet" in self.sources


def requester_label(requester: Mapping[str, Any]) -> str:
    """Who asked, short: ``alice (kubectl)``, or a recognised program's service account by its name."""
    username = _str(requester.get("username"))
    component = _str(requester.get("component"))
    if component in ("", "unknown"):
        return username
    if not username or username.startswith("system:serviceaccount:"):
        return component
    return f"{username} ({component})"


def read_row(record: Mapping[str, Any]) -> Row:
    metadata = _map(record.get("metadata"))
    spec = _map(record.get("spec"))
    status = _map(record.get("status"))
    pod = _map(spec.get("pod"))
    owners = status.get("owners")
    top: Mapping[str, Any] = {}
    if isinstance(owners, list) and owners:
        top = _map(owners[-1])
    if not _str(top.get("name")):
        top = _map(pod.get("owner"))
    why = _map(status.get("why"))
    pressure = _map(spec.get("pressure"))
    first, last, outcome_time = record_times(record)
    source = _str(spec.get("source"))
    sources_value = spec.get("sources")
    sources = tuple(s for s in sources_value if isinstance(s, str)) if isinstance(sources_value, list) else ()
    requester_map = _map(spec.get("requester"))
    labels = {str(k): str(v) for k, v in _map(pod.get("labels")).items()}
    return Row(
        namespace=_str(metadata.get("namespace")),
        name=_str(metadata.get("name")),
        pod=_str(pod.get("name")) or _str(metadata.get("name")),
        labels=labels,
        node=_str(pod.get("nodeName")) or _str(_map(status.get("node")).get("name")),
        source=source,
        sources=sources or ((source,) if source else ()),
        requester=requester_label(requester_map),
        username=_str(requester_map.get("username")),
        outcome=_str(status.get("outcome")) or "Pending",
        attempts=_int(spec.get("attempts"), 1),
        first=first,
        last=last,
        outcome_time=outcome_time,
        owner_kind=_str(top.get("kind")),
        owner_name=_str(top.get("name")),
        reason=_str(why.get("reason")) or _str(spec.get("reason")) or _str(status.get("outcomeReason")),
        message=_str(why.get("message")) or _str(spec.get("message")) or _str(pressure.get("message")),
        pressure_resource=_str(pressure.get("resource")),
        pressure_usage=_str(pressure.get("usage")),
    )


# ---- aggregates (plain data, tested on their own) -------------------------------------------


@dataclass
class WorkloadSummary:
    namespace: str
    workload: str
    records: int = 0
    evicted: int = 0
    blocked_records: int = 0
    refused_attempts: int = 0
    blocked_seconds: float = 0.0
    requesters: Counter[str] = field(default_factory=Counter)


@dataclass
class PressureSummary:
    resource: str
    evictions: int = 0
    nodes: Counter[str] = field(default_factory=Counter)
    namespaces: set[str] = field(default_factory=set)
    last: datetime.datetime | None = None
    usages: list[str] = field(default_factory=list)


def by_workload(rows: Iterable[Row]) -> list[WorkloadSummary]:
    """One summary per (namespace, top owner): most evicted first, then most refused."""
    groups: dict[tuple[str, str], WorkloadSummary] = {}
    for row in rows:
        key = (row.namespace, row.workload)
        summary = groups.get(key)
        if summary is None:
            summary = groups[key] = WorkloadSummary(row.namespace, row.workload)
        summary.records += 1
        if row.outcome in EVICTED:
            summary.evicted += 1
        if row.outcome == "Blocked":
            summary.blocked_records += 1
        summary.refused_attempts += row.refused_attempts
        summary.blocked_seconds += row.blocked_seconds
        summary.requesters[row.requester or row.source or "?"] += 1
    return sorted(
        groups.values(),
        key=lambda s: (-s.evicted, -s.refused_attempts, -s.records, s.namespace, s.workload),
    )


def by_pressure(rows: Iterable[Row]) -> list[PressureSummary]:
    """Kubelet evictions grouped by the starved resource (``spec.pressure.resource``)."""
    groups: dict[str, PressureSummary] = {}
    for row in rows:
        if not row.is_pressure:
            continue
        resource = row.pressure_resource or "(not given)"
        summary = groups.get(resource)
        if summary is None:
            summary = groups[resource] = PressureSummary(resource)
        summary.evictions += 1
        summary.nodes[row.node or NO_NODE] += 1
        if row.namespace:
            summary.namespaces.add(row.namespace)
        when = row.when
        if when is not None and (summary.last is None or when > summary.last):
            summary.last = when
        if row.pressure_usage and len(summary.usages) < 3 and row.pressure_usage not in summary.usages:
            summary.usages.append(row.pressure_usage)
    return sorted(groups.values(), key=lambda s: (-s.evictions, s.resource))


def by_node(rows: Sequence[Row]) -> list[tuple[str, list[int]]]:
    """Row indexes per node, nodes ordered by their first eviction (a drain reads as a staircase)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        groups[row.node or NO_NODE].append(index)
    far = datetime.datetime.max.replace(tzinfo=UTC)

    def first_seen(item: tuple[str, list[int]]) -> tuple[datetime.datetime, str]:
        times = [w for w in (rows[i].when for i in item[1]) if w is not None]
        return (min(times) if times else far, item[0])

    return sorted(groups.items(), key=first_seen)


def chart_window(rows: Sequence[Row], window: Window, min_seconds: float = 120.0) -> Window:
    """The part of ``window`` the charts show: where its records are, with a margin.

    A 20-minute drain in a 12-hour window would be one column of dots; the charts zoom to the
    records (at least ``min_seconds`` wide) and stay on the whole window when they fill most of it.
    """
    times = [t for row in rows for t in (row.first, row.when) if t is not None]
    if not times:
        return window
    low = min(max(min(times), window.start), window.end)
    high = max(min(max(times), window.end), window.start)
    margin = max((high - low).total_seconds() * 0.05, 30.0)
    span = (high - low).total_seconds() + 2 * margin
    if span < min_seconds:
        margin += (min_seconds - span) / 2
    start = max(low - datetime.timedelta(seconds=margin), window.start)
    end = min(high + datetime.timedelta(seconds=margin), window.end)
    if (end - start).total_seconds() >= 0.8 * window.seconds:
        return window
    if (end - start).total_seconds() < min(min_seconds, window.seconds):
        # pinned against an edge of the window: widen towards the other one
        width = datetime.timedelta(seconds=min(min_seconds, window.seconds))
        start, end = (window.start, window.start + width) if start == window.start else (end - width, end)
    return Window(start, end)


# ---- formatting -----------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """``2d 3h``, ``1h 5m``, ``4m 10s``, ``12s``: the two largest units."""
    total = round(seconds)
    if total <= 0:
        return "0s"
    parts: list[tuple[int, str]] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, total = divmod(total, size)
        if amount or parts:
            parts.append((amount, unit))
    return " ".join(f"{amount}{unit}" for amount, unit in parts[:2] if amount)


def _short_time(moment: datetime.datetime | None) -> str:
    return format_time(moment) if moment is not None else "—"


def _outcome_attr(outcome: str) -> str:
    return esc(outcome)


def _tick_step(span: float) -> int:
    for step in _TICK_STEPS:
        if span / step <= 8:
            return step
    return _TICK_STEPS[-1]


def _ticks(window: Window) -> list[tuple[float, str]]:
    """``(x offset in the plot, label)`` for round times inside the window (UTC)."""
    span = window.seconds
    step = _tick_step(span)
    start = window.start.timestamp()
    first = (int(start) // step + 1) * step if start % step else int(start)
    ticks: list[tuple[float, str]] = []
    previous_day = ""
    moment = first
    while moment <= window.end.timestamp():
        when = datetime.datetime.fromtimestamp(moment, UTC)
        day = when.strftime("%b %d")
        if step >= 86400:
            label = day
        else:
            clock = when.strftime("%H:%M:%S" if step < 60 else "%H:%M")
            label = f"{day} {clock}" if day != previous_day else clock
        previous_day = day
        ticks.append(((moment - start) / span * _PLOT_W, label))
        moment += step
    return ticks


class _X:
    """Maps a time to an x position inside the plot, clamped to the window."""

    def __init__(self, window: Window) -> None:
        self.start = window.start.timestamp()
        self.scale = _PLOT_W / window.seconds

    def __call__(self, moment: datetime.datetime) -> float:
        offset = (moment.timestamp() - self.start) * self.scale
        return _LABEL_W + min(max(offset, 0.0), float(_PLOT_W))


# ---- sections -------------------------------------------------------------------------------


def _legend(counts: Counter[str]) -> str:
    items = []
    for outcome in [*OUTCOMES, *sorted(set(counts) - set(OUTCOMES))]:
        if outcome not in OUTCOMES and not counts[outcome]:
            continue
        items.append(
            f'<button type="button" class="legend-item" data-toggle="{_outcome_attr(outcome)}" '
            f'title="{esc(MEANING.get(outcome, ""))}" aria-pressed="true">'
            f'<span class="swatch" data-outcome="{_outcome_attr(outcome)}"></span>'
            f"{esc(outcome)} <b>{counts[outcome]}</b></button>"
        )
    return f'<div class="legend" role="group" aria-label="Outcomes">{"".join(items)}</div>'


def _axis(window: Window, top: float, height: float) -> list[str]:
    parts = []
    for offset, label in _ticks(window):
        x = _LABEL_W + offset
        parts.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top:.0f}" y2="{top + height:.0f}"/>'
            f'<text class="tick" x="{x:.1f}" y="{top - 8:.0f}">{esc(label)}</text>'
        )
    return parts


def _histogram(rows: Sequence[Row], window: Window) -> str:
    """Evictions over time: records per bucket, stacked by outcome."""
    width = _PLOT_W / _BUCKETS
    buckets: list[Counter[str]] = [Counter() for _ in range(_BUCKETS)]
    for row in rows:
        when = row.when
        if when is None:
            continue
        index = int((when - window.start).total_seconds() / window.seconds * _BUCKETS)
        buckets[min(max(index, 0), _BUCKETS - 1)][row.outcome] += 1
    peak = max((sum(b.values()) for b in buckets), default=0) or 1
    top = _AXIS_H
    height = top + _BARS_H + 6
    parts = [
        f'<svg class="chart" role="img" aria-label="Evictions over time, by outcome" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">',
        *_axis(window, top, _BARS_H),
        f'<text class="axis-label" x="{_LABEL_W - 8}" y="{top + 10}">{peak}</text>'
        f'<text class="axis-label" x="{_LABEL_W - 8}" y="{top + _BARS_H}">0</text>',
        f'<line class="baseline" x1="{_LABEL_W}" x2="{_LABEL_W + _PLOT_W}" '
        f'y1="{top + _BARS_H}" y2="{top + _BARS_H}"/>',
    ]
    step = window.seconds / _BUCKETS
    for index, bucket in enumerate(buckets):
        total = sum(bucket.values())
        if not total:
            continue
        x = _LABEL_W + index * width
        start = window.start + datetime.timedelta(seconds=index * step)
        detail = ", ".join(f"{bucket[o]} {o}" for o in _ordered(bucket) if bucket[o])
        parts.append(
            f"<g><title>{esc(format_time(start))} +{esc(format_duration(step))}: {esc(detail)}</title>"
        )
        y = float(top + _BARS_H)
        for outcome in _ordered(bucket):
            if not bucket[outcome]:
                continue
            h = bucket[outcome] / peak * _BARS_H
            y -= h
            parts.append(
                f'<rect class="bar" data-outcome="{_outcome_attr(outcome)}" x="{x + 1:.1f}" y="{y:.1f}" '
                f'width="{max(width - 2, 1):.1f}" height="{h:.1f}"/>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _ordered(counts: Mapping[str, int]) -> list[str]:
    return [*OUTCOMES, *sorted(set(counts) - set(OUTCOMES))]


def _timeline(rows: Sequence[Row], window: Window) -> str:
    """One row per node, one ``.mark`` per record; a line shows a record's span of attempts."""
    nodes = by_node(rows)
    height = _AXIS_H + max(len(nodes), 1) * _ROW_H + 8
    x_of = _X(window)
    parts = [
        f'<svg id="timeline" class="chart" role="img" aria-label="Evictions per node over time" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">',
    ]
    for number in range(len(nodes)):
        if number % 2:
            band = _AXIS_H + number * _ROW_H
            parts.append(f'<rect class="band" x="0" y="{band}" width="{WIDTH}" height="{_ROW_H}"/>')
    parts.extend(_axis(window, _AXIS_H, height - _AXIS_H - 8))
    if not nodes:
        parts.append(
            f'<text class="empty" x="{_LABEL_W + 8}" y="{_AXIS_H + 16}">No evictions in this window.</text>'
        )
    for number, (node, indexes) in enumerate(nodes):
        middle = _AXIS_H + number * _ROW_H + _ROW_H / 2
        label = node if len(node) <= 28 else node[:26] + "…"
        parts.append(
            f'<text class="node" x="{_LABEL_W - 8}" y="{middle + 4:.0f}"><title>{esc(node)}</title>'
            f"{esc(label)} ({len(indexes)})</text>"
        )
        for position, index in enumerate(indexes):
            row = rows[index]
            when = row.when
            if when is None:
                continue
            jitter = ((position * 7) % 11 - 5) * 0.9
            y = middle + jitter
            outcome = _outcome_attr(row.outcome)
            if row.first is not None and row.attempts > 1 and row.first < when:
                parts.append(
                    f'<line class="span" data-outcome="{outcome}" x1="{x_of(row.first):.1f}" '
                    f'x2="{x_of(when):.1f}" y1="{y:.1f}" y2="{y:.1f}"/>'
                )
            tip = (
                f"{row.namespace}/{row.pod} · {row.outcome} · {format_time(when)} · "
                f"{row.requester or row.source} · {row.attempts} attempt{'s' if row.attempts != 1 else ''}"
            )
            parts.append(
                f'<circle class="mark" data-outcome="{outcome}" cx="{x_of(when):.1f}" cy="{y:.1f}" r="4">'
                f"<title>{esc(tip)}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _workloads_table(rows: Sequence[Row]) -> str:
    summaries = by_workload(rows)
    if not summaries:
        return '<p class="empty">No records.</p>'
    body = []
    for s in summaries:
        requesters = [f"{esc(name)} \u00d7{count}" for name, count in s.requesters.most_common(3)]
        if len(s.requesters) > 3:
            requesters.append(f"+{len(s.requesters) - 3} more")
        body.append(
            f"<tr><td>{esc(s.namespace)}</td><td>{esc(s.workload)}</td>"
            f'<td class="num">{s.records}</td><td class="num">{s.evicted}</td>'
            f'<td class="num">{s.blocked_records}</td><td class="num">{s.refused_attempts}</td>'
            f'<td class="num">{esc(format_duration(s.blocked_seconds))}</td>'
            f"<td>{', '.join(requesters)}</td></tr>"
        )
    return (
        '<table id="workloads"><thead><tr><th>Namespace</th><th>Workload (top owner)</th>'
        '<th class="num">Records</th><th class="num">Pods evicted</th><th class="num">Blocked Pods</th>'
        '<th class="num">Refused attempts</th><th class="num">Time blocked</th><th>Requesters</th>'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _pressure_table(rows: Sequence[Row]) -> str:
    summaries = by_pressure(rows)
    if not summaries:
        return '<p class="empty" id="pressure-empty">No kubelet pressure evictions in this window.</p>'
    body = []
    for s in summaries:
        nodes = [f"{esc(name)} \u00d7{count}" for name, count in s.nodes.most_common(5)]
        if len(s.nodes) > 5:
            nodes.append(f"+{len(s.nodes) - 5} more")
        body.append(
            f"<tr><td class='nw'>{esc(s.resource)}</td><td class='num'>{s.evictions}</td>"
            f"<td class='num'>{len(s.nodes)}</td><td>{', '.join(nodes)}</td>"
            f"<td class='num'>{len(s.namespaces)}</td><td>{esc(', '.join(s.usages))}</td>"
            f"<td class='nw'>{esc(_short_time(s.last))}</td></tr>"
        )
    return (
        '<table id="pressure"><thead><tr><th>Resource</th><th class="num">Evictions</th>'
        '<th class="num">Nodes</th><th>Most affected nodes</th><th class="num">Namespaces</th>'
        f"<th>Usage (examples)</th><th>Last</th></tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _records_table(rows: Sequence[Row], max_listed: int | None) -> str:
    order = sorted(
        range(len(rows)),
        key=lambda i: rows[i].when or datetime.datetime.min.replace(tzinfo=UTC),
        reverse=True,
    )
    shown = order if max_listed is None else order[:max_listed]
    body = []
    for index in shown:
        row = rows[index]
        labels = ", ".join(f"{k}={v}" for k, v in sorted(row.labels.items()))
        message = row.message if len(row.message) <= 240 else row.message[:239] + "…"
        body.append(
            f"<tr><td class='nw'>{esc(_short_time(row.when))}</td><td class='nw'>{esc(row.namespace)}</td>"
            f'<td class="nw" title="{esc(labels)}">{esc(row.pod)}</td><td>{esc(row.node)}</td>'
            f"<td class='nw'>{esc(', '.join(row.sources) or row.source)}</td>"
            f'<td title="{esc(row.username)}">{esc(row.requester or "—")}</td>'
            f'<td><span class="badge" data-outcome="{_outcome_attr(row.outcome)}">'
            f"{esc(row.outcome)}</span></td>"
            f"<td class='num'>{row.attempts}</td><td class='nw'>{esc(row.workload)}</td>"
            f'<td class="why"><b>{esc(row.reason)}</b> <span class="msg" title="{esc(row.message)}">'
            f"{esc(message)}</span></td>"
            "</tr>"
        )
    note = ""
    if len(shown) < len(rows):
        note = (
            f'<p class="note">The latest {len(shown)} of {len(rows)} records; the HTML report lists all.</p>'
        )
    return (
        f'{note}<input id="filter" type="search" placeholder="Filter records…" aria-label="Filter records">'
        f' <span id="shown">{len(shown)}</span> shown'
        '<table id="records"><thead><tr><th>Time (UTC)</th><th>Namespace</th><th>Pod</th><th>Node</th>'
        "<th>Source</th><th>Requester</th><th>Outcome</th><th class='num'>Attempts</th><th>Workload</th>"
        f"<th>Reason</th></tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


# ---- the page -------------------------------------------------------------------------------


def _style() -> str:
    colours = "".join(
        f'[data-outcome="{o}"]{{fill:{c};stroke:{c}}}.swatch[data-outcome="{o}"],'
        f'.badge[data-outcome="{o}"]{{background:{c}}}.hide-{o} [data-outcome="{o}"]'
        f':not(.swatch):not(.badge){{display:none}}.hide-{o} [data-toggle="{o}"]{{opacity:.4}}'
        for o, c in COLOURS.items()
    )
    return (
        "*{box-sizing:border-box}body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,"
        "'DejaVu Sans',sans-serif;color:#1d1d1f;background:#fff;margin:20px}"
        "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}"
        ".scope{color:#555;margin:0 0 12px}.cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}"
        ".card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:110px}"
        ".card b{display:block;font-size:20px}.card span{color:#555;font-size:12px}"
        ".legend{display:flex;gap:8px;flex-wrap:wrap;margin:6px 0}"
        ".legend-item{border:1px solid #ccc;border-radius:14px;background:#fafafa;padding:2px 10px;"
        "font:inherit;cursor:pointer}.swatch{display:inline-block;width:10px;height:10px;"
        "border-radius:50%;margin-right:6px;background:#444}"
        "svg.chart{display:block;max-width:100%;height:auto;font-size:11px}"
        ".band{fill:#f4f6f8;stroke:none}.grid{stroke:#e2e2e2}.baseline{stroke:#999}"
        ".tick{fill:#555;text-anchor:middle}.node,.axis-label{fill:#222;text-anchor:end}"
        ".empty{fill:#777;color:#777}.mark{fill-opacity:.85;stroke:#fff;stroke-width:1}"
        ".span{stroke-width:2;stroke-opacity:.45;fill:none}.bar{stroke:none}"
        "table{border-collapse:collapse;width:100%;margin:6px 0 4px;font-size:13px}"
        "th,td{border-bottom:1px solid #e5e5e5;padding:4px 8px;text-align:left;vertical-align:top}"
        "th{background:#f4f6f8;position:sticky;top:0}.num{text-align:right}.nw{white-space:nowrap}"
        ".why{min-width:260px}"
        ".badge{color:#fff;border-radius:4px;padding:0 6px;font-size:12px;background:#444}"
        ".msg{color:#444}.note{color:#555}#filter{padding:4px 8px;width:320px;font:inherit}"
        "footer{color:#777;margin-top:24px;font-size:12px}" + colours
    )


_SCRIPT = (
    "(function(){'use strict';var body=document.body;"
    "document.querySelectorAll('button[data-toggle]').forEach(function(b){"
    "b.addEventListener('click',function(){var off=body.classList.toggle('hide-'+b.dataset.toggle);"
    "b.setAttribute('aria-pressed',off?'false':'true');});});"
    "var f=document.getElementById('filter'),shown=document.getElementById('shown');if(!f){return;}"
    "var rows=document.querySelectorAll('#records tbody tr'),texts=null;"
    "f.addEventListener('input',function(){if(!texts){texts=Array.prototype.map.call(rows,"
    "function(r){return r.textContent.toLowerCase();});}var q=f.value.toLowerCase(),n=0;"
    "for(var i=0;i<rows.length;i++){var hit=!q||texts[i].indexOf(q)>=0;rows[i].hidden=!hit;"
    "if(hit){n++;}}shown.textContent=String(n);});})();"
)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_security_policy(style: str, script: str) -> str:
    """Nothing may load; only our own inline style and script (pinned by hash) may apply."""
    return (
        f"default-src 'none'; style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )


def _card(value: object, label: str) -> str:
    return f'<div class="card"><b>{esc(value)}</b><span>{esc(label)}</span></div>'


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
    charts zoom to where the records are (:func:`chart_window`), else they span the window.
    """
    rows = [read_row(record) for record in records]
    outcomes: Counter[str] = Counter(row.outcome for row in rows)
    nodes = {row.node for row in rows if row.node}
    workloads = {(row.namespace, row.workload) for row in rows}
    scope = [f"namespace {namespace}" if namespace else "all namespaces"]
    if node:
        scope.append(f"node {node}")
    window_text = f"{format_time(window.start)} → {format_time(window.end)}"
    refused = sum(row.refused_attempts for row in rows)
    charts = chart_window(rows, window) if fit else window
    zoom = ""
    if charts != window:
        zoom = (
            f'<p class="scope">The charts show {esc(format_time(charts.start))} to '
            f"{esc(format_time(charts.end))}, where this window's records are.</p>"
        )
    style = _style()
    csp = content_security_policy(style, _SCRIPT)
    cards = "".join(
        [
            _card(len(rows), "records"),
            _card(sum(outcomes[o] for o in EVICTED), "Pods evicted"),
            _card(outcomes["Blocked"], "Pods blocked"),
            _card(refused, "refused attempts"),
            _card(len(nodes), "nodes"),
            _card(len(workloads), "workloads"),
            _card(format_duration(window.seconds), "window"),
        ]
    )
    footer = "evictwatch report"
    if generated is not None:
        footer += f", generated {format_time(generated)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Evictions {esc(window_text)}</title>",
        f"<style>{style}</style></head><body>",
        f"<h1>Evictions {esc(window_text)}</h1>",
        f'<p class="scope">{esc(", ".join(scope))} · times in UTC</p>',
        f'<div class="cards">{cards}</div>',
        "<h2>Over time</h2>",
        zoom,
        _legend(outcomes),
        _histogram(rows, charts),
        '<h2>Timeline per node</h2><p class="scope">One mark per record at its outcome (or last attempt); '
        "a line spans its attempts. Nodes in the order they were first hit.</p>",
        _timeline(rows, charts),
        '<h2>Per workload</h2><p class="scope">Grouped by the top owner (the controller at the end of '
        "the owner chain). Pods evicted: Evicted, or Failed (evicted by the kubelet). "
        "Refused attempts: all of a Blocked Pod's, all but the last of any other. "
        "Time blocked: last attempt minus first, of Blocked Pods.</p>",
        _workloads_table(rows),
        "<h2>Kubelet pressure evictions</h2>",
        _pressure_table(rows),
        "<h2>Records</h2>",
        _records_table(rows, max_listed),
        f"<footer>{esc(footer)}</footer>",
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)
