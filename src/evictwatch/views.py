"""How records look on a terminal: tables like ``kubectl get``, and ``describe`` text (no I/O)."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .model.outcome import parse_time
from .model.podeviction import PodEviction

COLUMNS = ("NAMESPACE", "POD", "NODE", "SOURCE", "REQUESTER", "OUTCOME", "ATTEMPTS", "AGE")
WIDE = ("OWNER", "COMPONENT", "WHY")
_DURATION = re.compile(r"^(\d+)([smhd])$")


def parse_duration(text: str) -> datetime.timedelta:
    """``90s``, ``15m``, ``12h``, ``7d`` as a timedelta; ValueError names what is accepted."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration: use a number and s, m, h or d (like 30m or 12h)")
    amount, unit = int(match.group(1)), match.group(2)
    return datetime.timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: amount})


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
    pev = PodEviction.from_json(record)
    return pev.status.outcome_time or pev.spec.last_attempt_time or pev.metadata.creation_timestamp


def select(
    records: Iterable[Mapping[str, Any]],
    *,
    source: str | None = None,
    outcome: str | None = None,
    since: datetime.timedelta | None = None,
    now: datetime.datetime,
) -> list[Mapping[str, Any]]:
    """Filter by source, outcome and recency; newest activity last, as kubectl sorts events."""
    kept = []
    for record in records:
        pev = PodEviction.from_json(record)
        if source and source not in pev.all_sources:
            continue
        if outcome and pev.status.outcome != outcome:
            continue
        if since is not None:
            moment = parse_time(last_activity(record))
            if moment is None or now - moment > since:
                continue
        kept.append(record)
    return sorted(kept, key=last_activity)


def row(record: Mapping[str, Any], now: datetime.datetime, wide: bool = False) -> list[str]:
    pev = PodEviction.from_json(record)
    spec, status = pev.spec, pev.status
    requester = spec.requester
    cells = [
        pev.metadata.namespace,
        spec.pod.name,
        spec.pod.node_name or "<none>",
        str(spec.source),
        (requester.username if requester is not None else "") or "<unknown>",
        str(status.outcome),
        str(spec.attempts),
        age(pev.metadata.creation_timestamp, now),
    ]
    if wide:
        top = pev.top_owner
        why = status.why
        cells += [
            f"{top.kind}/{top.name}" if top is not None else "<none>",
            str(requester.component) if requester is not None else "unknown",
            (why.reason if why is not None else "") or spec.reason or status.outcome_reason,
        ]
    return cells


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    widths = [len(h) for h in headers]
    for cells in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["   ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() for cells in rows]
    return "\n".join(lines)


def describe(record: Mapping[str, Any]) -> str:
    """One record in full: the Pod, who, why, the timeline, context and deliveries."""
    metadata = record.get("metadata") or {}
    spec = record.get("spec") or {}
    status = record.get("status") or {}
    pod = spec.get("pod") or {}
    requester = spec.get("requester") or {}
    labels = ", ".join(f"{k}={v}" for k, v in sorted((pod.get("labels") or {}).items()))
    lines = [
        f"Name:          {metadata.get('name')}",
        f"Namespace:     {metadata.get('namespace')}",
        f"Pod:           {pod.get('name')}" + ("" if pod.get("found", True) else "  (did not exist)"),
        f"Pod UID:       {pod.get('uid', '<unknown>')}",
        f"Node:          {pod.get('nodeName') or '<none>'}",
        f"Labels:        {labels or '<none>'}",
        f"Source:        {spec.get('source')}  (seen through: {', '.join(spec.get('sources') or [])})",
        f"Outcome:       {status.get('outcome') or 'Pending'}"
        + (f"  at {status['outcomeTime']}" if status.get("outcomeTime") else ""),
    ]
    if status.get("outcomeReason"):
        lines.append(f"Reason:        {status['outcomeReason']}")
    lines += [
        "Requester:",
        f"  User:        {requester.get('username') or '<unknown>'}",
        f"  Component:   {requester.get('component') or 'unknown'}",
    ]
    if requester.get("serviceAccount"):
        account = requester["serviceAccount"]
        lines.append(f"  Account:     {account.get('namespace')}/{account.get('name')}")
    if requester.get("fieldManager"):
        lines.append(f"  Manager:     {requester['fieldManager']}")
    if requester.get("groups"):
        lines.append(f"  Groups:      {', '.join(requester['groups'])}")
    lines += [
        "Timeline:",
        f"  First:       {spec.get('firstAttemptTime', '')}",
        f"  Last:        {spec.get('lastAttemptTime', '')}",
        f"  Attempts:    {spec.get('attempts', 0)}",
    ]
    if spec.get("deleteOptions"):
        lines.append(f"  Options:     {spec['deleteOptions']}")
    why = status.get("why") or {}
    if why or spec.get("reason"):
        lines.append("Why:")
        if why:
            lines.append(
                f"  {why.get('component', '')} {why.get('reason', '')}: {why.get('message', '')}".rstrip(": ")
            )
        if spec.get("reason"):
            lines.append(f"  {spec['reason']}: {spec.get('message', '')}".rstrip(": "))
    if spec.get("pressure"):
        pressure = spec["pressure"]
        lines.append(f"Pressure:      {pressure.get('resource', '')} {pressure.get('usage', '')}".rstrip())
    owners = status.get("owners") or []
    if owners:
        lines.append(
            "Owners:        " + " <- ".join(f"{o.get('kind')}/{o.get('name')}" for o in reversed(owners))
        )
    for budget in status.get("disruptionBudgets") or []:
        lines.append(
            f"PDB:           {budget.get('name')}  allowed={budget.get('disruptionsAllowed')} "
            f"healthy={budget.get('currentHealthy')}/{budget.get('desiredHealthy')}"
        )
    deliveries = status.get("deliveries") or {}
    if deliveries:
        lines.append("Deliveries:")
        for sink, state in sorted(deliveries.items()):
            error = f"  ({state['lastError']})" if state.get("lastError") else ""
            lines.append(
                f"  {sink:<24} {state.get('state')} {state.get('outcome', '')} "
                f"after {state.get('attempts', 0)} try(s){error}"
            )
    return "\n".join(lines)
