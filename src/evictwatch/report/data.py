"""The report's data: records in, plain summaries out (pure; the page is drawn from these).

Each record is decoded once by the model's codec into a :class:`Row`. Everything the page
shows is computed here and unit-tested here: what a drain left blocked at the end of the
window (per Node and per PodDisruptionBudget), budgets that can never allow an eviction,
groups per workload and per starved resource, and the nodes in the order they were hit.

Time blocked is wall-clock: the union of the spans during which a group's evictions were
being refused, so ten Pods held for the same ten minutes count ten minutes, not a hundred.
"""

from __future__ import annotations

import datetime
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model.podeviction import Budget, PodEviction
from ..model.types import Requester
from .window import UTC, Window

OUTCOMES = ("Evicted", "Blocked", "PodGone", "EvictedByKubelet", "Pending")
"""Known outcomes, in the order they stack and appear in legends."""

MEANING = {
    "Evicted": "the Pod went (terminating, disrupted or gone) after the attempt",
    "Blocked": "the Pod was still running after the attempts (a PodDisruptionBudget, usually)",
    "PodGone": "there was no such Pod when the attempt came",
    "EvictedByKubelet": "the kubelet evicted the Pod under node pressure (phase Failed)",
    "Pending": "not settled yet",
}
EVICTED = frozenset({"Evicted", "EvictedByKubelet"})
"""Outcomes in which the Pod was evicted: by the API, or by the kubelet (``EvictedByKubelet``)."""

NO_NODE = "(no node)"
NO_OWNER = "(no controller)"

Span = tuple[datetime.datetime, datetime.datetime]


def requester_label(requester: Requester | None) -> str:
    """Who asked, short: ``alice (kubectl)``, or a recognised program's service account by its name."""
    if requester is None:
        return ""
    component = str(requester.component)
    if component in ("", "unknown"):
        return requester.username
    if not requester.username or requester.username.startswith("system:serviceaccount:"):
        return component
    return f"{requester.username} ({component})"


@dataclass(frozen=True)
class Row:
    """What the report needs of one record."""

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
    budgets: tuple[Budget, ...] = ()
    hooks: tuple[tuple[str, str, int], ...] = ()
    """Each pre-eviction hook as (name, state, calls)."""
    held_seconds: float | None = None
    released: str = ""

    @property
    def hooks_text(self) -> str:
        return ", ".join(f"{name} {state or 'Pending'} ({calls} calls)" for name, state, calls in self.hooks)

    @property
    def when(self) -> datetime.datetime | None:
        return self.outcome_time or self.last or self.first

    @property
    def labels_text(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in sorted(self.labels.items()))

    @property
    def workload(self) -> str:
        return f"{self.owner_kind}/{self.owner_name}" if self.owner_name else NO_OWNER

    @property
    def refused_attempts(self) -> int:
        """Attempts the API refused: all of a Blocked record's, all but the last of any other."""
        if self.outcome == "Blocked":
            return self.attempts
        return max(self.attempts - 1, 0)

    @property
    def refused_span(self) -> Span | None:
        """From the first refused attempt to the last attempt, for a record that was refused."""
        if self.first is None or self.last is None or self.refused_attempts == 0:
            return None
        return (self.first, max(self.last, self.first))

    @property
    def is_pressure(self) -> bool:
        return self.source == "Kubelet" or "Kubelet" in self.sources


def read_row(record: Mapping[str, Any]) -> Row:
    """One record (a plain dict, as the API returns it) as a :class:`Row`."""
    pev = PodEviction.from_json(record)
    spec, status = pev.spec, pev.status
    top = pev.top_owner
    why = status.why
    pressure = spec.pressure
    return Row(
        namespace=pev.metadata.namespace,
        name=pev.metadata.name,
        pod=pev.pod_name,
        labels=spec.pod.labels,
        node=pev.node_name,
        source=str(spec.source),
        sources=pev.all_sources,
        requester=requester_label(spec.requester),
        username=spec.requester.username if spec.requester is not None else "",
        outcome=str(status.outcome),
        attempts=spec.attempts,
        first=pev.first_attempt,
        last=pev.last_attempt,
        outcome_time=pev.outcome_at,
        owner_kind=top.kind if top is not None else "",
        owner_name=top.name if top is not None else "",
        reason=(why.reason if why else "") or spec.reason or status.outcome_reason,
        message=(why.message if why else "") or spec.message or (pressure.message if pressure else ""),
        pressure_resource=pressure.resource if pressure else "",
        pressure_usage=pressure.usage if pressure else "",
        budgets=status.disruption_budgets,
        hooks=_hooks(pev),
        held_seconds=pev.held_seconds,
        released=spec.hold.released if spec.hold is not None else "",
    )


def _hooks(pev: PodEviction) -> tuple[tuple[str, str, int], ...]:
    progress = {item.name: item for item in pev.status.hooks}
    return tuple(
        (
            name,
            progress[name].state if name in progress else "",
            progress[name].calls if name in progress else 0,
        )
        for name in pev.spec.hooks
    )


def held_by_hooks(rows: Iterable[Row]) -> list[Row]:
    """The evictions pre-eviction hooks held, the longest held first."""
    held = [row for row in rows if row.held_seconds is not None]
    return sorted(held, key=lambda row: row.held_seconds or 0.0, reverse=True)


def union_seconds(spans: Iterable[Span]) -> float:
    """The wall-clock length covered by ``spans`` (overlaps counted once)."""
    total = 0.0
    end: datetime.datetime | None = None
    start: datetime.datetime | None = None
    for low, high in sorted(spans):
        if end is None or start is None or low > end:
            if end is not None and start is not None:
                total += (end - start).total_seconds()
            start, end = low, high
        else:
            end = max(end, high)
    if end is not None and start is not None:
        total += (end - start).total_seconds()
    return total


# ---- what was still blocked when the window ended ---------------------------------------------


def blocked_at_end(row: Row, window: Window) -> bool:
    """Whether ``row``'s Pod was still being refused when ``window`` ended.

    A Blocked record is; so is a Pending one with refused attempts (a drain still retrying: the
    controller says Blocked only once the retries stop), and one that was refused inside the
    window and only got through (or went) after it ended.
    """
    if row.first is None or row.first > window.end or row.refused_attempts == 0:
        return False
    if row.outcome in ("Blocked", "Pending"):
        return True
    return row.outcome_time is not None and row.outcome_time > window.end


@dataclass
class StillBlocked:
    """One Node, or one PodDisruptionBudget, with Pods still refused at the window's end."""

    name: str
    """The Node's name, or the budget's ``namespace/name``."""
    pods: list[str] = field(default_factory=list)
    since: datetime.datetime | None = None
    """The first refused attempt of the Pods still blocked: when this drain got stuck."""
    last_attempt: datetime.datetime | None = None
    """The latest attempt: a drain still retrying has one near the window's end."""
    attempts: int = 0
    related: Counter[str] = field(default_factory=Counter)
    """Per Node: the budgets holding its Pods. Per budget: the Nodes its Pods are on."""
    budget: Budget | None = None
    """Per budget: the latest the controller saw of it."""
    _budget_time: datetime.datetime | None = None

    def blocked_seconds(self, window: Window) -> float:
        """Wall-clock from the first refusal still unresolved to the window's end (not per Pod)."""
        return max((window.end - self.since).total_seconds(), 0.0) if self.since is not None else 0.0

    def add(self, row: Row, related: str, budget: Budget | None = None) -> None:
        self.pods.append(f"{row.namespace}/{row.pod}")
        self.attempts += row.refused_attempts
        if row.first is not None and (self.since is None or row.first < self.since):
            self.since = row.first
        if row.last is not None and (self.last_attempt is None or row.last > self.last_attempt):
            self.last_attempt = row.last
        self.related[related] += 1
        when = row.when
        if budget is not None and (
            self._budget_time is None or (when is not None and when >= self._budget_time)
        ):
            self.budget, self._budget_time = budget, when


def still_blocked(rows: Sequence[Row], window: Window) -> tuple[list[StillBlocked], list[StillBlocked]]:
    """``(per Node, per budget)``: what a drain had not got through by the window's end.

    Longest blocked first. A record without a budget (the controller found none, or the
    refusal came from elsewhere) still counts for its Node.
    """
    nodes: dict[str, StillBlocked] = {}
    budgets: dict[str, StillBlocked] = {}
    for row in rows:
        if not blocked_at_end(row, window):
            continue
        node = row.node or NO_NODE
        named = [(f"{row.namespace}/{b.name}", b) for b in row.budgets if b.name]
        nodes.setdefault(node, StillBlocked(node)).add(
            row, ", ".join(n for n, _ in named) or "(no budget found)"
        )
        for name, budget in named:
            budgets.setdefault(name, StillBlocked(name)).add(row, node, budget)

    def order(entry: StillBlocked) -> tuple[datetime.datetime, str]:
        return (entry.since or datetime.datetime.max.replace(tzinfo=UTC), entry.name)

    return sorted(nodes.values(), key=order), sorted(budgets.values(), key=order)


@dataclass(frozen=True)
class ImpossibleBudget:
    """A budget that requires every Pod it selects to stay healthy: no eviction ever passes."""

    namespace: str
    name: str
    desired_healthy: int
    expected_pods: int
    pods_refused: int

    @property
    def fix(self) -> str:
        return (
            f"it requires {self.desired_healthy} healthy of {self.expected_pods} Pods, so no eviction "
            f"can pass: lower minAvailable below {self.expected_pods} (or use maxUnavailable: 1), "
            "or run more replicas than the budget requires"
        )


def impossible_budgets(rows: Iterable[Row]) -> list[ImpossibleBudget]:
    """Every budget named in the records whose latest state can never allow a disruption."""
    latest: dict[tuple[str, str], tuple[datetime.datetime, Budget]] = {}
    refused: Counter[tuple[str, str]] = Counter()
    oldest = datetime.datetime.min.replace(tzinfo=UTC)
    for row in rows:
        for budget in row.budgets:
            if not budget.name:
                continue
            key = (row.namespace, budget.name)
            when = row.when or oldest
            if key not in latest or when >= latest[key][0]:
                latest[key] = (when, budget)
            if row.refused_attempts:
                refused[key] += 1
    found = [
        ImpossibleBudget(
            ns, name, budget.desired_healthy or 0, budget.expected_pods or 0, refused[(ns, name)]
        )
        for (ns, name), (_, budget) in latest.items()
        if budget.never_allows
    ]
    return sorted(found, key=lambda b: (-b.pods_refused, b.namespace, b.name))


# ---- groups -----------------------------------------------------------------------------------


@dataclass
class WorkloadSummary:
    namespace: str
    workload: str
    records: int = 0
    evicted: int = 0
    blocked_records: int = 0
    refused_attempts: int = 0
    spans: list[Span] = field(default_factory=list)
    requesters: Counter[str] = field(default_factory=Counter)

    @property
    def blocked_seconds(self) -> float:
        """Wall-clock time during which some eviction of this workload was being refused."""
        return union_seconds(self.spans)


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
        if row.refused_span is not None:
            summary.spans.append(row.refused_span)
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
