"""How records look on a terminal: tables like ``kubectl get``, and ``describe`` text (no I/O).

Every view reads a record through the one codec (:class:`PodEviction`), so the CLI shows the
same defaults as the report and the sinks; only ``-o json|yaml`` and ``--sort-by`` read the
record as the API gave it."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .model.outcome import parse_time
from .model.podeviction import PodEviction, Status
from .model.selector import matches
from .model.types import DeleteOptions, Outcome, Requester, Source, outcome_of
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


def decoded(record: Mapping[str, Any] | PodEviction) -> PodEviction:
    """The record through the one codec (``model/podeviction_json.py``): its defaults, its types."""
    return record if isinstance(record, PodEviction) else PodEviction.from_json(record)


def last_activity(record: Mapping[str, Any] | PodEviction) -> str:
    """When the record last changed as a story: its outcome, else its last attempt, else its birth."""
    typed = decoded(record)
    return typed.status.outcome_time or typed.spec.last_attempt_time or typed.metadata.creation_timestamp


def outcome_text(record: Mapping[str, Any] | PodEviction) -> str:
    """The record's outcome by its current name (``Failed`` reads as ``EvictedByKubelet``)."""
    return str(decoded(record).status.outcome)


def of_missing_pod(record: Mapping[str, Any] | PodEviction) -> bool:
    """An eviction of a Pod that did not exist (a typo): PodGone, hidden unless asked for."""
    return decoded(record).status.outcome == Outcome.POD_GONE


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
    asked for is ``PodGone``. The records come back as they were given (``-o yaml`` prints them).
    """
    wanted = outcome_of(outcome) if outcome else None
    kept: list[tuple[str, Mapping[str, Any]]] = []
    for record in records:
        typed = decoded(record)
        if source and source not in typed.all_sources:
            continue
        if wanted is not None and typed.status.outcome != wanted:
            continue
        if not show_missing and wanted is None and typed.status.outcome == Outcome.POD_GONE:
            continue
        if labels and not matches(labels, typed.spec.pod.labels):
            continue
        moment = last_activity(typed)
        if since is not None:
            parsed = parse_time(moment)
            if parsed is None or now - parsed > since:
                continue
        kept.append((moment, record))
    return [record for _, record in sorted(kept, key=lambda pair: pair[0])]


def requester_name(record: Mapping[str, Any] | PodEviction) -> str:
    """Who asked first; for a kubelet record from before requesters were kept, its Node's kubelet."""
    typed = decoded(record)
    if typed.spec.requester is not None and typed.spec.requester.username:
        return typed.spec.requester.username
    node = typed.spec.pod.node_name
    if typed.spec.source == Source.KUBELET and node:
        return f"system:node:{node}"
    return "<unknown>"


def why_text(record: Mapping[str, Any] | PodEviction) -> str:
    """The evicting component's own reason; empty rather than the door's name repeated."""
    typed = decoded(record)
    if typed.status.why is not None and typed.status.why.reason:
        return typed.status.why.reason
    reason = typed.spec.reason
    if reason and not describes_the_door(reason):
        return reason
    outcome_reason = typed.status.outcome_reason
    return "" if any(door in outcome_reason for door in DOOR_ONLY_REASONS) else outcome_reason


def row(record: Mapping[str, Any] | PodEviction, now: datetime.datetime, wide: bool = False) -> list[str]:
    """One line of ``get``: the columns of :data:`COLUMNS` (and :data:`WIDE` with ``-o wide``)."""
    typed = decoded(record)
    spec = typed.spec
    cells = [
        typed.metadata.namespace,
        spec.pod.name,
        spec.pod.node_name or "<none>",
        str(spec.source),
        requester_name(typed),
        str(typed.status.outcome),
        str(spec.attempts),
        age(typed.metadata.creation_timestamp, now),
    ]
    if wide:
        top = typed.top_owner
        component = spec.requester.component if spec.requester is not None else "unknown"
        cells += [
            f"{top.kind}/{top.name}" if top is not None and top.name else "<none>",
            str(component or "unknown"),
            why_text(typed),
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


def _requester_lines(requester: Requester, indent: str) -> list[str]:
    lines = [
        f"{indent}User:        {requester.username or '<unknown>'}",
        f"{indent}Component:   {requester.component or 'unknown'}",
    ]
    if requester.service_account is not None:
        account = requester.service_account
        lines.append(f"{indent}Account:     {account.namespace}/{account.name}")
    if requester.field_manager:
        lines.append(f"{indent}Manager:     {requester.field_manager}")
    if requester.groups:
        lines.append(f"{indent}Groups:      {', '.join(requester.groups)}")
    return lines


def _why_lines(record: PodEviction) -> list[str]:
    why, spec = record.status.why, record.spec
    lines: list[str] = []
    if why is not None and (why.component or why.reason or why.message):
        text = f"{why.component} {why.reason}: {why.message}"
        lines.append(f"  {text.strip().rstrip(':')}")
    if spec.reason and not describes_the_door(spec.reason):
        lines.append(f"  {spec.reason}: {spec.message}".rstrip(": "))
    return ["Why:", *lines] if lines else []


def _options_text(options: DeleteOptions) -> str:
    """The attempt's DeleteOptions as the API names them, only those given."""
    given = {
        "gracePeriodSeconds": options.grace_period_seconds,
        "preconditions.uid": options.precondition_uid,
        "preconditions.resourceVersion": options.precondition_resource_version,
        "dryRun": ",".join(options.dry_run) or None,
        "propagationPolicy": options.propagation_policy,
    }
    return ", ".join(f"{name}={value}" for name, value in given.items() if value is not None)


def _context_lines(status: Status, now: datetime.datetime) -> list[str]:
    lines: list[str] = []
    if status.owners:
        chain = " <- ".join(f"{owner.kind}/{owner.name}" for owner in reversed(status.owners))
        lines.append(f"Owners:        {chain}")
    for budget in status.disruption_budgets:
        lines.append(
            f"PDB:           {budget.name}: {budget.current_healthy} healthy, "
            f"{budget.desired_healthy} required, "
            f"{_plural(budget.disruptions_allowed or 0, 'disruption')} allowed"
        )
    if status.deliveries:
        lines.append("Deliveries:")
        for sink, state in sorted(status.deliveries.items()):
            error = f"  ({state.last_error})" if state.last_error else ""
            moment = f", {age(state.time, now)} ago" if state.time else ""
            tries = _plural(state.attempts, "try")
            lines.append(f"  {sink:<24} {state.state} ({state.outcome}) after {tries}{moment}{error}")
    return lines


def _hooks_lines(record: PodEviction, now: datetime.datetime) -> list[str]:
    """The pre-eviction hooks this eviction waited for: how long it was held, each hook's state."""
    spec = record.spec
    if not spec.hooks and not spec.unknown_hooks:
        return []
    hold = spec.hold
    state = (f"released ({hold.released})" if hold.released else "held") if hold is not None else "held"
    held = record.held_seconds if hold is not None and hold.released else _held_until(record, now)
    lines = [f"Hooks:         {state}" + (f" for {held:.0f}s" if held is not None else "")]
    if hold is not None and hold.held_attempts:
        lines[0] += f", {_plural(hold.held_attempts, 'attempt')} answered 429"
    progress = {hook.name: hook for hook in record.status.hooks}
    for name in spec.hooks:
        hook = progress.get(name)
        if hook is None:
            lines.append(f"  {name:<24} not started")
            continue
        started = f", started {age(hook.start_time, now)} ago" if hook.start_time else ""
        finished = f", finished {age(hook.end_time, now)} ago" if hook.end_time else ""
        error = f"  ({hook.last_error})" if hook.last_error else ""
        calls = _plural(hook.calls, "call")
        lines.append(f"  {name:<24} {hook.state or 'Pending'} after {calls}{started}{finished}{error}")
    for name in spec.unknown_hooks:
        lines.append(f"  {name:<24} unknown: no hook of this name is configured (not waited for)")
    return lines


def _held_until(record: PodEviction, now: datetime.datetime) -> float | None:
    """How long a still-held eviction has been held, as of ``now``."""
    since = parse_time(record.spec.hold.since) if record.spec.hold is not None else None
    return max((now - since).total_seconds(), 0.0) if since is not None else None


def describe(record: Mapping[str, Any] | PodEviction, now: datetime.datetime | None = None) -> str:
    """One record in full: the Pod, who, why, the timeline, context and deliveries."""
    now = now or datetime.datetime.now(datetime.UTC)
    typed = decoded(record)
    metadata, spec, status, pod = typed.metadata, typed.spec, typed.status, typed.spec.pod
    labels = ", ".join(f"{k}={v}" for k, v in sorted(pod.labels.items()))
    lines = [
        f"Name:          {metadata.name}",
        f"Namespace:     {metadata.namespace}",
        f"Pod:           {pod.name}" + ("" if pod.exists else "  (did not exist)"),
        f"Pod UID:       {pod.uid or '<unknown>'}",
        f"Node:          {pod.node_name or '<none>'}",
        f"Labels:        {labels or '<none>'}",
        f"Source:        {spec.source}  (seen through: {', '.join(spec.sources)})",
        f"Outcome:       {status.outcome}"
        + (f"  {when(status.outcome_time, now)}" if status.outcome_time else ""),
    ]
    if status.outcome_reason:
        lines.append(f"Reason:        {status.outcome_reason}")
    requester = spec.requester or Requester(username="")
    if not requester.username:
        requester = dataclasses.replace(requester, username=requester_name(typed))
    lines += ["Requester:", *_requester_lines(requester, "  ")]
    later = [other for other in spec.requesters if other != spec.requester]
    for index, other in enumerate(later, start=2):
        lines += [f"Requester {index}:", *_requester_lines(other, "  ")]
    lines += [
        "Timeline:",
        f"  First:       {when(spec.first_attempt_time, now)}",
        f"  Last:        {when(spec.last_attempt_time, now)}",
        f"  Attempts:    {spec.attempts}",
    ]
    if not spec.delete_options.is_empty():
        lines.append(f"  Options:     {_options_text(spec.delete_options)}")
    lines += _why_lines(typed)
    if spec.pressure is not None:
        lines.append(f"Pressure:      {spec.pressure.resource} {spec.pressure.usage}".rstrip())
    lines += _hooks_lines(typed, now)
    lines += _context_lines(status, now)
    return "\n".join(lines)
