"""Where the report's marks go: the two charts as plain geometry (pure; templates draw it).

``histogram`` stacks records per time slice by outcome; ``timeline`` gives one row per node
and one mark per record. Both return numbers and labels only: ``templates/charts.html.j2``
turns them into SVG, so nothing here writes markup or escapes anything.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .data import OUTCOMES, Row, by_node, format_duration
from .window import UTC, Window, format_time

WIDTH = 1360
LABEL_W = 210
RIGHT = 16
PLOT_W = WIDTH - LABEL_W - RIGHT
ROW_H = 24
AXIS_H = 26
BARS_H = 130
FOOT_H = 22
"""Room under a plot for its axis title."""
BUCKETS = 60
_DAY = 86400
_TICK_STEPS: tuple[int, ...] = (1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
_TICK_STEPS += (_DAY, 2 * _DAY, 7 * _DAY, 14 * _DAY, 28 * _DAY)


def ordered(counts: Mapping[str, int]) -> list[str]:
    """Outcomes in legend order, unknown ones after the known."""
    return [*OUTCOMES, *sorted(set(counts) - set(OUTCOMES))]


def _tick_step(span: float) -> int:
    for step in _TICK_STEPS:
        if span / step <= 8:
            return step
    return _TICK_STEPS[-1]


@dataclass(frozen=True)
class Frame:
    """Where a chart's plot sits: labels end at ``label_x``, the plot spans ``left`` to ``right``."""

    label_x: int = LABEL_W - 8
    left: int = LABEL_W
    right: int = WIDTH - RIGHT


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


def ticks(window: Window) -> list[Tick]:
    """Round UTC times inside the window, at their x position (the day is named when it changes)."""
    span = window.seconds
    step = _tick_step(span)
    start = window.start.timestamp()
    moment = (int(start) // step + 1) * step if start % step else int(start)
    found: list[Tick] = []
    previous_day = ""
    while moment <= window.end.timestamp():
        when = datetime.datetime.fromtimestamp(moment, UTC)
        day = when.strftime("%b %d")
        if step >= 86400:
            label = day
        else:
            clock = when.strftime("%H:%M:%S" if step < 60 else "%H:%M")
            label = f"{day} {clock}" if day != previous_day else clock
        previous_day = day
        found.append(Tick(LABEL_W + (moment - start) / span * PLOT_W, label))
        moment += step
    return found


class XScale:
    """Maps a time to an x position inside the plot, clamped to the window."""

    def __init__(self, window: Window) -> None:
        self.start = window.start.timestamp()
        self.scale = PLOT_W / window.seconds

    def __call__(self, moment: datetime.datetime) -> float:
        offset = (moment.timestamp() - self.start) * self.scale
        return LABEL_W + min(max(offset, 0.0), float(PLOT_W))


@dataclass(frozen=True)
class Bar:
    outcome: str
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Slice:
    title: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Histogram:
    width: int
    height: int
    top: int
    ticks: list[Tick]
    bottom: int
    peak: int
    slice_label: str
    """The y axis' unit: ``records per 12m``."""
    slices: list[Slice] = field(default_factory=list)
    frame: Frame = Frame()


def histogram(rows: Sequence[Row], window: Window) -> Histogram:
    """Records per time slice (``BUCKETS`` of them), stacked by outcome."""
    buckets: list[Counter[str]] = [Counter() for _ in range(BUCKETS)]
    for row in rows:
        when = row.when
        if when is None:
            continue
        index = int((when - window.start).total_seconds() / window.seconds * BUCKETS)
        buckets[min(max(index, 0), BUCKETS - 1)][row.outcome] += 1
    peak = max((sum(b.values()) for b in buckets), default=0) or 1
    width = PLOT_W / BUCKETS
    step = window.seconds / BUCKETS
    slices = []
    for index, bucket in enumerate(buckets):
        if not bucket:
            continue
        x = LABEL_W + index * width
        start = window.start + datetime.timedelta(seconds=index * step)
        detail = ", ".join(f"{bucket[o]} {o}" for o in ordered(bucket) if bucket[o])
        y = float(AXIS_H + BARS_H)
        bars = []
        for outcome in ordered(bucket):
            if bucket[outcome]:
                height = bucket[outcome] / peak * BARS_H
                y -= height
                bars.append(Bar(outcome, x + 1, y, max(width - 2, 1), height))
        slices.append(Slice(f"{format_time(start)} +{format_duration(step)}: {detail}", tuple(bars)))
    return Histogram(
        WIDTH,
        AXIS_H + BARS_H + FOOT_H,
        AXIS_H,
        ticks(window),
        AXIS_H + BARS_H,
        peak,
        f"records per {format_duration(step)}",
        slices,
    )


@dataclass(frozen=True)
class Mark:
    outcome: str
    x: float
    y: float
    title: str
    span_from: float | None = None
    """Where the line of a record's attempts starts (it ends at the mark)."""


@dataclass(frozen=True)
class NodeRow:
    label: str
    full_name: str
    count: int
    middle: float
    band: bool


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    top: int
    plot_bottom: int
    ticks: list[Tick]
    rows: list[NodeRow]
    marks: list[Mark]
    frame: Frame = Frame()


def _mark(row: Row, when: datetime.datetime, y: float, x_of: XScale) -> Mark:
    attempts = f"{row.attempts} attempt{'s' if row.attempts != 1 else ''}"
    who = row.requester or row.source
    title = f"{row.namespace}/{row.pod} · {row.outcome} · {format_time(when)} · {who} · {attempts}"
    span = row.first is not None and row.attempts > 1 and row.first < when
    return Mark(row.outcome, x_of(when), y, title, x_of(row.first) if span and row.first else None)


def timeline(rows: Sequence[Row], window: Window) -> Timeline:
    """One row per node (in the order they were first hit), one mark per record."""
    nodes = by_node(rows)
    plot_bottom = AXIS_H + max(len(nodes), 1) * ROW_H + 8
    x_of = XScale(window)
    node_rows: list[NodeRow] = []
    marks: list[Mark] = []
    for number, (node, indexes) in enumerate(nodes):
        middle = AXIS_H + number * ROW_H + ROW_H / 2
        label = node if len(node) <= 28 else node[:26] + "…"
        node_rows.append(NodeRow(label, node, len(indexes), middle, bool(number % 2)))
        for position, index in enumerate(indexes):
            when = rows[index].when
            if when is not None:
                jitter = ((position * 7) % 11 - 5) * 0.9
                marks.append(_mark(rows[index], when, middle + jitter, x_of))
    return Timeline(WIDTH, plot_bottom + FOOT_H, AXIS_H, plot_bottom, ticks(window), node_rows, marks)


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
