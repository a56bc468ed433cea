"""How records look on a terminal: tables like ``kubectl get``, and ``describe`` text (no I/O)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .model.hooks import held_seconds, progress_from_status
from .model.outcome import parse_time
from .model.selector import matches
from .model.types import Outcome, outcome_of
from .model.why import DOOR_ONLY_REASONS, describes_the_door
from .report.window import WindowError
from .report.window import parse_duration as _seconds

COLUMNS = ("NAMESPACE", "POD", "NODE", "SOURCE", "REQUESTER", "OUTCOME", "ATTEMPTS", "AGE")
WIDE = ("OWNER", "COMPONENT", "WHY")


def parse_duration(text: str) -> datetime.timedelta:
    """``90s``, ``15m``, ``1h30m``, ``7d``: the report's parser, so every ``--since`` agrees."""
    try:
        return datetime.timedelta(seconds=_seconds(text))
    except WindowError as error:
        raise ValueError(str(error)) from None


def age(since: str | None, now: datetime.datetime) -> str:
    """kubectl's compact age: 45s, 12m, 3h, 5d."""
    moment = parse_time(since)
    if moment is None:
        return "<unknown>"
    seconds = max(int((now - moment).total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "d" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def last_activity(record: Mapping[str, Any]) -> str:
    spec = record.get("spec") or {}
    status = record.get("status") or {}
    return str(
        status.get("outcomeTime")
        or spec.get("lastAttemptTime")
        or (record.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def outcome_text(record: Mapping[str, Any]) -> str:
    """The record's outcome by its current name (``Failed`` reads as ``EvictedByKubelet``)."""
    return str(outcome_of((record.get("status") or {}).get("outcome")))


def of_missing_pod(record: Mapping[str, Any]) -> bool:
    """An eviction of a Pod that did not exist (a typo): PodGone, hidden unless asked for."""
    return outcome_text(record) == Outcome.POD_GONE


def select(
    records: Iterable[Mapping[str, Any]],
    *,
    source: str | None = None,
    outcome: str | None = None,
    since: datetime.timedelta | None = None,
    labels: Mapping[str, Any] | None = None,
    show_missing: bool = True,
    now: datetime.datetime,
) -> list[Mapping[str, Any]]:
    """Filter by source, outcome, recency and the Pod's labels; newest activity last.

    ``labels`` is a selector (matchLabels/matchExpressions) evaluated on ``spec.pod.labels``.
    Records of Pods that never existed are left out unless ``show_missing`` or the outcome
    asked for is ``PodGone``.
    """
    kept = []
    for record in records:
        spec = record.get("spec") or {}
        if source and source not in (spec.get("sources") or [spec.get("source")]):
            continue
        if outcome and outcome_text(record) != str(outcome_of(outcome)):
            continue
        if not show_missing and not outcome and of_missing_pod(record):
            continue
        if labels and not matches(labels, (spec.get("pod") or {}).get("labels") or {}):
            continue
        if since is not None:
            moment = parse_time(last_activity(record))
            if moment is None or now - moment > since:
                continue
        kept.append(record)
    return sorted(kept, key=last_activity)


def requester_name(record: Mapping[str, Any]) -> str:
    """Who asked first; for a kubelet record from before requesters were kept, its Node's kubelet."""
    spec = record.get("spec") or {}
    username = (spec.get("requester") or {}).get("username")
    if username:
        return str(username)
    node = (spec.get("pod") or {}).get("nodeName")
    if spec.get("source") == "Kubelet" and node:
        return f"system:node:{node}"
    return "<unknown>"


def why_text(record: Mapping[str, Any]) -> str:
    """The evicting component's own reason; empty rather than the door's name repeated."""
    spec = record.get("spec") or {}
    status = record.get("status") or {}
    why = status.get("why") or {}
    if why.get("reason"):
        return str(why["reason"])
    reason = str(spec.get("reason") or "")
    if reason and not describes_the_door(reason):
        return reason
    outcome_reason = str(status.get("outcomeReason") or "")
    return "" if any(door in outcome_reason for door in DOOR_ONLY_REASONS) else outcome_reason


def row(record: Mapping[str, Any], now: datetime.datetime, wide: bool = False) -> list[str]:
    metadata = record.get("metadata") or {}
    spec = record.get("spec") or {}
    status = record.get("status") or {}
    pod = spec.get("pod") or {}
    requester = spec.get("requester") or {}
    cells = [
        str(metadata.get("namespace", "")),
        str(pod.get("name", "")),
        str(pod.get("nodeName") or "<none>"),
        str(spec.get("source", "")),
        requester_name(record),
        outcome_text(record),
        str(spec.get("attempts", 0)),
        age(str(metadata.get("creationTimestamp", "")), now),
    ]
    if wide:
        owners = status.get("owners") or []
        top = owners[-1] if owners else pod.get("owner") or {}
        cells += [
            f"{top.get('kind')}/{top.get('name')}" if top.get("name") else "<none>",
            str(requester.get("component") or "unknown"),
            why_text(record),
        ]
    return cells


def table(rows: Sequence[Sequence[str]], headers: Sequence[str] | None) -> str:
    """Aligned columns, three spaces apart, as kubectl prints them; no header line for None."""
    widths = [len(h) for h in headers] if headers else [0] * len(rows[0] if rows else ())
    for cells in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()] if headers else []
    lines += ["   ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() for cells in rows]
    return "\n".join(lines)


def without_managed_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as ``kubectl get -o yaml`` shows it: no managedFields bookkeeping."""
    metadata = {k: v for k, v in (record.get("metadata") or {}).items() if k != "managedFields"}
    return {**record, "metadata": metadata}


def resource_name(record: Mapping[str, Any]) -> str:
    """``-o name``: what ``kubectl get pev -o name`` prints, and ``describe`` accepts back."""
    return f"podeviction.evictwatch.io/{(record.get('metadata') or {}).get('name', '')}"


def sort_key(path: str) -> Any:
    """A key for ``--sort-by`` given as kubectl writes it (``.spec.attempts``, ``{.status.outcome}``).

    Numbers sort as numbers, missing fields first, everything else as text; ValueError for a
    path that is not a dotted field path.
    """
    fields = path.strip().removeprefix("{").removesuffix("}").strip().lstrip(".").split(".")
    if not all(fields):
        raise ValueError(f"{path!r} is not a field path: use one like .spec.attempts or .status.outcome")

    def key(record: Mapping[str, Any]) -> tuple[int, float, str]:
        value: Any = record
        for name in fields:
            value = value.get(name) if isinstance(value, Mapping) else None
        if value is None:
            return (0, 0.0, "")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return (2, 0.0, str(value))
        return (1, float(value), "")

    return key


def when(moment: object, now: datetime.datetime) -> str:
    """``3m ago (2026-12-03T10:24:11Z)``: relative first, the exact time for the record."""
    parsed = parse_time(moment)
    if parsed is None:
        return "<unknown>"
    exact = parsed.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{age(str(moment), now)} ago ({exact})"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _requester_lines(requester: Mapping[str, Any], indent: str) -> list[str]:
    lines = [
        f"{indent}User:        {requester.get('username') or '<unknown>'}",
        f"{indent}Component:   {requester.get('component') or 'unknown'}",
    ]
    if requester.get("serviceAccount"):
        account = requester["serviceAccount"]
        lines.append(f"{indent}Account:     {account.get('namespace')}/{account.get('name')}")
    if requester.get("fieldManager"):
        lines.append(f"{indent}Manager:     {requester['fieldManager']}")
    if requester.get("groups"):
        lines.append(f"{indent}Groups:      {', '.join(requester['groups'])}")
    return lines


def _why_lines(spec: Mapping[str, Any], status: Mapping[str, Any]) -> list[str]:
    why = status.get("why") or {}
    reason = str(spec.get("reason") or "")
    lines: list[str] = []
    if why:
        text = f"{why.get('component', '')} {why.get('reason', '')}: {why.get('message', '')}"
        lines.append(f"  {text.strip().rstrip(':')}")
    if reason and not describes_the_door(reason):
        lines.append(f"  {reason}: {spec.get('message', '')}".rstrip(": "))
    return ["Why:", *lines] if lines else []


def _context_lines(status: Mapping[str, Any], now: datetime.datetime) -> list[str]:
    lines: list[str] = []
    owners = status.get("owners") or []
    if owners:
        chain = " <- ".join(f"{o.get('kind')}/{o.get('name')}" for o in reversed(owners))
        lines.append(f"Owners:        {chain}")
    for budget in status.get("disruptionBudgets") or []:
        lines.append(
            f"PDB:           {budget.get('name')}: {budget.get('currentHealthy')} healthy, "
            f"{budget.get('desiredHealthy')} required, "
            f"{_plural(int(budget.get('disruptionsAllowed') or 0), 'disruption')} allowed"
        )
    deliveries = status.get("deliveries") or {}
    if deliveries:
        lines.append("Deliveries:")
        for sink, state in sorted(deliveries.items()):
            error = f"  ({state['lastError']})" if state.get("lastError") else ""
            tries = _plural(int(state.get("attempts") or 0), "try")
            moment = f", {age(state['time'], now)} ago" if state.get("time") else ""
            lines.append(
                f"  {sink:<24} {state.get('state')} ({state.get('outcome', '')}) after {tries}{moment}{error}"
            )
    return lines


def _hooks_lines(spec: Mapping[str, Any], status: Mapping[str, Any], now: datetime.datetime) -> list[str]:
    """The pre-eviction hooks this eviction waited for: how long it was held, each hook's state."""
    names = [str(name) for name in spec.get("hooks") or []]
    unknown = [str(name) for name in spec.get("unknownHooks") or []]
    if not names and not unknown:
        return []
    hold = spec.get("hold") or {}
    held = held_seconds(spec, now)
    released = hold.get("released")
    state = (f"released ({released})" if isinstance(released, str) else "released") if released else "held"
    lines = [f"Hooks:         {state}" + (f" for {held:.0f}s" if held is not None else "")]
    if hold.get("heldAttempts"):
        lines[0] += f", {_plural(int(hold['heldAttempts']), 'attempt')} answered 429"
    progress = progress_from_status(status)
    for name in names:
        hook = progress.get(name)
        if hook is None:
            lines.append(f"  {name:<24} not started")
            continue
        started = f", started {age(hook.start_time, now)} ago" if hook.start_time else ""
        finished = f", finished {age(hook.end_time, now)} ago" if hook.end_time else ""
        error = f"  ({hook.last_error})" if hook.last_error else ""
        calls = _plural(hook.calls, "call")
        lines.append(f"  {name:<24} {hook.state or 'Pending'} after {calls}{started}{finished}{error}")
    for name in unknown:
        lines.append(f"  {name:<24} unknown: no hook of this name is configured (not waited for)")
    return lines


def describe(record: Mapping[str, Any], now: datetime.datetime | None = None) -> str:
    """One record in full: the Pod, who, why, the timeline, context and deliveries."""
    now = now or datetime.datetime.now(datetime.UTC)
    metadata = record.get("metadata") or {}
    spec = record.get("spec") or {}
    status = record.get("status") or {}
    pod = spec.get("pod") or {}
    labels = ", ".join(f"{k}={v}" for k, v in sorted((pod.get("labels") or {}).items()))
    lines = [
        f"Name:          {metadata.get('name')}",
        f"Namespace:     {metadata.get('namespace')}",
        f"Pod:           {pod.get('name')}" + ("" if pod.get("found", True) else "  (did not exist)"),
        f"Pod UID:       {pod.get('uid', '<unknown>')}",
        f"Node:          {pod.get('nodeName') or '<none>'}",
        f"Labels:        {labels or '<none>'}",
        f"Source:        {spec.get('source')}  (seen through: {', '.join(spec.get('sources') or [])})",
        f"Outcome:       {outcome_text(record)}"
        + (f"  {when(status['outcomeTime'], now)}" if status.get("outcomeTime") else ""),
    ]
    if status.get("outcomeReason"):
        lines.append(f"Reason:        {status['outcomeReason']}")
    requester = dict(spec.get("requester") or {})
    if not requester.get("username"):
        requester["username"] = requester_name(record)
    lines += ["Requester:", *_requester_lines(requester, "  ")]
    later = [r for r in spec.get("requesters") or [] if r != spec.get("requester")]
    for index, other in enumerate(later, start=2):
        lines += [f"Requester {index}:", *_requester_lines(other, "  ")]
    lines += [
        "Timeline:",
        f"  First:       {when(spec.get('firstAttemptTime'), now)}",
        f"  Last:        {when(spec.get('lastAttemptTime'), now)}",
        f"  Attempts:    {spec.get('attempts', 0)}",
    ]
    if spec.get("deleteOptions"):
        lines.append(f"  Options:     {spec['deleteOptions']}")
    lines += _why_lines(spec, status)
    if spec.get("pressure"):
        pressure = spec["pressure"]
        lines.append(f"Pressure:      {pressure.get('resource', '')} {pressure.get('usage', '')}".rstrip())
    lines += _hooks_lines(spec, status, now)
    lines += _context_lines(status, now)
    return "\n".join(lines)
