"""Pre-eviction hooks as plain values: which hooks a Pod has, and what the webhook answers (no I/O).

A hook is work that must be done before a Pod goes (flush a cache, hand over a partition
leader). The webhook holds the eviction by answering 429 Too Many Requests, which every
evicting client (``kubectl drain``, cluster-autoscaler, Karpenter, the descheduler) reads as
"try again later", until each of the Pod's hooks is done or its time is up.

Everything the answer needs is in the record: the hooks the Pod was held for and since when
(``spec.hooks``, ``spec.hold``, written by the webhook with the attempt), and each hook's
progress (``status.hooks``, written by the leader's hook runner). Each hook's
``timeoutSeconds`` counts from the first held attempt, so the longest an eviction is held is
the largest timeout of its hooks, whoever runs them and however often the operator restarts.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .outcome import parse_time
from .selector import matches

HOOKS_ANNOTATION = "evictwatch.io/pre-eviction-hooks"
"""A Pod asks for hooks by name: ``evictwatch.io/pre-eviction-hooks: flush-cache,snapshot``."""

RUNNING, DONE, FAILED, TIMED_OUT = "Running", "Done", "Failed", "TimedOut"
FINISHED = frozenset({DONE, TIMED_OUT})
"""A hook in one of these states holds nothing any more. ``Failed`` is not among them: a failed
call is asked again after ``retryAfterSeconds`` until the hook's time is up."""
HOOKS_DONE, RELEASED_TIMED_OUT = "HooksDone", "TimedOut"
MAX_HOOKS_PER_POD = 8


@dataclass(frozen=True)
class HookRule:
    """One configured hook (``hooks[]`` in the config), as the webhook and the runner see it."""

    name: str
    timeout_seconds: float = 300.0
    retry_after_seconds: float = 5.0
    namespaces: tuple[str, ...] = ()
    pod_selector: Mapping[str, Any] | None = None

    @property
    def selects(self) -> bool:
        """Whether it picks Pods itself; one without a selection runs only where a Pod asks for it."""
        return bool(self.namespaces) or bool(self.pod_selector)

    def picks(self, namespace: str, labels: Mapping[str, str]) -> bool:
        if not self.selects:
            return False
        if self.namespaces and namespace not in self.namespaces:
            return False
        return not self.pod_selector or matches(self.pod_selector, labels)


@dataclass(frozen=True)
class PodHooks:
    """The hooks one Pod's eviction waits for, in the order they run, and the names it asked for
    that the configuration does not have (reported, never held for)."""

    hooks: tuple[HookRule, ...] = ()
    unknown: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(hook.name for hook in self.hooks)


def requested_names(annotation: str) -> tuple[str, ...]:
    """The hook names in the annotation's comma-separated value, once each, in order."""
    names: list[str] = []
    for part in annotation.split(","):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    return tuple(names[:MAX_HOOKS_PER_POD])


def hooks_for(
    rules: Sequence[HookRule], namespace: str, labels: Mapping[str, str], annotation: str
) -> PodHooks:
    """The configured hooks that select the Pod, then those its annotation names, config order."""
    asked = requested_names(annotation)
    by_name = {rule.name: rule for rule in rules}
    chosen = [rule for rule in rules if rule.name in asked or rule.picks(namespace, labels)]
    return PodHooks(tuple(chosen[:MAX_HOOKS_PER_POD]), tuple(name for name in asked if name not in by_name))


@dataclass(frozen=True)
class HookProgress:
    """One hook's line in ``status.hooks``."""

    name: str
    state: str = ""
    start_time: str = ""
    end_time: str = ""
    calls: int = 0
    last_error: str = ""
    last_call_time: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "calls": self.calls}
        for key, value in (
            ("state", self.state),
            ("startTime", self.start_time),
            ("endTime", self.end_time),
            ("lastError", self.last_error),
            ("lastCallTime", self.last_call_time),
        ):
            if value:
                data[key] = value
        return data


def progress_from_status(status: Mapping[str, Any] | None) -> dict[str, HookProgress]:
    """``status.hooks`` by name; entries of the wrong shape read as absent."""
    found: dict[str, HookProgress] = {}
    for item in (status or {}).get("hooks") or []:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            continue
        calls = item.get("calls")
        found[item["name"]] = HookProgress(
            name=item["name"],
            state=str(item.get("state") or ""),
            start_time=str(item.get("startTime") or ""),
            end_time=str(item.get("endTime") or ""),
            calls=calls if isinstance(calls, int) else 0,
            last_error=str(item.get("lastError") or ""),
            last_call_time=str(item.get("lastCallTime") or ""),
        )
    return found


@dataclass(frozen=True)
class HoldAnswer:
    """What the webhook answers an attempt at a Pod with hooks, and what the record keeps of it."""

    hooks: PodHooks
    allowed: bool
    since: datetime.datetime
    released: str = ""
    """Why it is let through: ``HooksDone`` or ``TimedOut`` (empty while held)."""
    message: str = ""
    waiting_for: tuple[str, ...] = ()


def hold_since(spec: Mapping[str, Any] | None, now: datetime.datetime) -> datetime.datetime:
    """When the hold began: the first held attempt in the record, else now (this is the first)."""
    hold = (spec or {}).get("hold")
    since = parse_time(hold.get("since")) if isinstance(hold, Mapping) else None
    return since or now


def answer_hold(
    hooks: PodHooks,
    spec: Mapping[str, Any] | None,
    status: Mapping[str, Any] | None,
    now: datetime.datetime,
) -> HoldAnswer:
    """Hold (429) until every hook is done or past its time; a record once released stays so.

    ``spec`` and ``status`` are the Pod's record as this replica last saw it (None before the
    first attempt): the answer never waits for a call to the API server or to a hook.
    """
    since = hold_since(spec, now)
    hold = (spec or {}).get("hold")
    released = str(hold.get("released") or "") if isinstance(hold, Mapping) else ""
    if released:
        return HoldAnswer(hooks, True, since, released)
    progress = progress_from_status(status)
    elapsed = max((now - since).total_seconds(), 0.0)
    waiting = [
        hook
        for hook in hooks.hooks
        if progress.get(hook.name, HookProgress(hook.name)).state not in FINISHED
        and elapsed < hook.timeout_seconds
    ]
    if not waiting:
        everything_done = all(progress.get(h.name, HookProgress(h.name)).state == DONE for h in hooks.hooks)
        return HoldAnswer(hooks, True, since, HOOKS_DONE if everything_done else RELEASED_TIMED_OUT)
    remaining = max(hook.timeout_seconds for hook in waiting) - elapsed
    names = ", ".join(hook.name for hook in waiting)
    noun = "hook" if len(waiting) == 1 else "hooks"
    message = (
        f"evictwatch: waiting for pre-eviction {noun} {names} "
        f"(started {elapsed:.0f} s ago, at most {max(remaining, 0.0):.0f} s more)"
    )
    return HoldAnswer(hooks, False, since, "", message, tuple(hook.name for hook in waiting))


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _union(first: Iterable[Any], second: Iterable[str]) -> list[str]:
    names = [name for name in first if isinstance(name, str)]
    return names + [name for name in second if name not in names]


def apply_hold(spec: Mapping[str, Any], answer: HoldAnswer, now: datetime.datetime) -> dict[str, Any]:
    """The attempt's spec with the hold folded in: the hooks, when it began, how many attempts
    were held, and (on the attempt that was let through) when and why it was released."""
    merged = dict(spec)
    if answer.hooks.hooks:
        merged["hooks"] = _union(spec.get("hooks") or [], answer.hooks.names)
    if answer.hooks.unknown:
        merged["unknownHooks"] = _union(spec.get("unknownHooks") or [], answer.hooks.unknown)
    if not answer.hooks.hooks:
        return merged
    previous = spec.get("hold")
    hold = dict(previous) if isinstance(previous, Mapping) else {}
    hold.setdefault("since", _stamp(answer.since))
    if not answer.allowed:
        held = hold.get("heldAttempts")
        hold["heldAttempts"] = (held if isinstance(held, int) else 0) + 1
    elif not hold.get("released"):
        hold["released"] = answer.released
        hold["releasedTime"] = _stamp(now)
    merged["hold"] = hold
    return merged


def held_seconds(spec: Mapping[str, Any], now: datetime.datetime) -> float | None:
    """How long the eviction was (or is, while held) held; None when it never was."""
    hold = spec.get("hold")
    if not isinstance(hold, Mapping):
        return None
    since = parse_time(hold.get("since"))
    if since is None:
        return None
    end = parse_time(hold.get("releasedTime")) or now
    return max((end - since).total_seconds(), 0.0)


CALL_LEAD_SECONDS = 1.0
"""A hook still working is asked again this long before the evicting client's next try is due."""
MIN_CALL_GAP_SECONDS = 1.0


def next_call_at(
    last_call: datetime.datetime, last_attempt: datetime.datetime | None, retry_after_seconds: float
) -> datetime.datetime:
    """When to ask a hook that answered "still working" again.

    Every ``retryAfterSeconds``, but timed to land just before the evicting client tries again:
    a client such as ``kubectl drain`` retries a 429 at a fixed interval (5 s), and a hook asked
    at the same rate but just after each try would say "done" just after one and be heard only
    at the next, a whole interval later (``bench.hook_release``). So the calls keep the
    client's rhythm, ``retryAfterSeconds`` apart, :data:`CALL_LEAD_SECONDS` ahead of each try
    expected from the latest one the record holds (the client is assumed to retry about every
    ``retryAfterSeconds``; set it to their interval). Never sooner than
    :data:`MIN_CALL_GAP_SECONDS` after the last call, never later than ``retryAfterSeconds``.
    """
    period = datetime.timedelta(seconds=max(retry_after_seconds, 0.001))
    latest = last_call + period
    if last_attempt is None or retry_after_seconds <= CALL_LEAD_SECONDS + MIN_CALL_GAP_SECONDS:
        return latest
    lead = datetime.timedelta(seconds=CALL_LEAD_SECONDS)
    earliest = last_call + datetime.timedelta(seconds=MIN_CALL_GAP_SECONDS)
    tries = max(int((earliest - last_attempt + lead) / period) + 1, 1)
    before_next_try = last_attempt + tries * period - lead
    return min(max(before_next_try, earliest), latest)
