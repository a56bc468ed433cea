"""Deciding what came of an eviction, from the record and the Pod as it is now (no I/O).

The webhook sees an *attempt*: the API server calls it before it looks the Pod up or checks
PodDisruptionBudgets. So the outcome is decided afterwards, from evidence:

* ``EvictedByKubelet``: the kubelet evicted the Pod (node pressure): the Pod is Failed/Evicted.
  (Called ``Failed`` before; old records keep that value and are read as this one.)
* ``PodGone``: there was no Pod when the attempt (or the EvictionRequest) came.
* ``Evicted``: the Pod (same UID) has a deletionTimestamp or a ``DisruptionTarget``
  condition, or is gone (or replaced by another UID) since the attempt.
* ``Blocked``: still there, untouched, ``blocked_after`` seconds after the last attempt;
  a PodDisruptionBudget with no disruptions allowed is named as the reason.
* an EvictionRequest with no attempt yet stays pending while any request says ``Eviction``,
  and is ``Blocked`` once every request is withdrawn (or deleted) with the Pod still running.
* otherwise: not yet known; look again when ``blocked_after`` has passed.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .evictionrequests import eviction_still_requested
from .types import Outcome, Source

DISRUPTION_REASON_SOURCE = {
    "EvictionByEvictionAPI": Source.EVICTION_API,
    "PreemptionByScheduler": Source.PREEMPTION,
    "DeletionByTaintManager": Source.TAINT_MANAGER,
    "DeletionByPodGC": Source.POD_GC,
    "TerminationByKubelet": Source.KUBELET,
    "DeletionByDeviceTaintManager": Source.DEVICE_TAINT_MANAGER,
}
"""The six DisruptionTarget reasons of Kubernetes 1.37's own code. Any other reason is a door
this list does not know yet: it is recorded as :attr:`Source.OTHER`, never dropped."""


def source_of_reason(reason: str) -> Source:
    """The door a DisruptionTarget reason names; :attr:`Source.OTHER` for one not known here."""
    return DISRUPTION_REASON_SOURCE.get(reason, Source.OTHER)


STALE_DISRUPTION_SECONDS = 180.0
REQUESTED_RECHECK_SECONDS = 60.0
"""How often a Pod that an EvictionRequest asks to evict is looked at again: its responders
may take many minutes, and nothing but the Pod's own end settles it."""
_ASKED = (Source.EVICTION_API, Source.EVICTION_REQUEST)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome | None
    reason: str = ""
    recheck_after: float = 0.0
    """Seconds until the evidence may change (only when ``outcome`` is None)."""


def parse_time(value: object) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def disruption_target(pod: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The Pod's ``DisruptionTarget=True`` condition, if it has one."""
    if not pod:
        return None
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            return dict(condition)
    return None


def blocking_budget(budgets: Sequence[Mapping[str, Any]]) -> str:
    for budget in budgets:
        if int(budget.get("disruptionsAllowed") or 0) <= 0:
            return str(budget.get("name", ""))
    return ""


def precondition_refusal(spec: Mapping[str, Any]) -> str:
    """Why the API server refused the last attempt with 409, if its preconditions could not hold.

    An Eviction may carry ``deleteOptions.preconditions.uid``; the webhook records the uid of the
    Pod that really has the name. When the two differ the client was told 409 Conflict and the
    Pod was never at risk: saying it is "still running" would blame a PDB or a slow kubelet.
    """
    wanted = ((spec.get("deleteOptions") or {}).get("preconditions") or {}).get("uid")
    actual = (spec.get("pod") or {}).get("uid")
    if not wanted or not actual or wanted == actual:
        return ""
    return (
        f"the precondition failed: the eviction asked for Pod uid {wanted}, the Pod has uid {actual} "
        "(the client was answered 409 Conflict)"
    )


def decide(
    spec: Mapping[str, Any],
    pod: Mapping[str, Any] | None,
    budgets: Sequence[Mapping[str, Any]],
    now: datetime.datetime,
    blocked_after: float,
) -> Decision:
    """The outcome a record should have now; ``pod`` is the live Pod of that name or None."""
    record_pod = spec.get("pod") or {}
    sources = set(spec.get("sources") or [spec.get("source")])
    if Source.KUBELET in sources and spec.get("reason") == "Evicted":
        return Decision(Outcome.EVICTED_BY_KUBELET, "the kubelet evicted the Pod under node pressure")
    if record_pod.get("found") is False and spec.get("source") in _ASKED:
        return Decision(Outcome.POD_GONE, "no such Pod when the eviction was attempted")
    uid = record_pod.get("uid")
    live_uid = ((pod or {}).get("metadata") or {}).get("uid")
    if pod is None or (uid and live_uid != uid):
        return Decision(Outcome.EVICTED, "the Pod is gone")
    target = disruption_target(pod)
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return Decision(Outcome.EVICTED, "the Pod is terminating")
    if target is not None:
        return Decision(Outcome.EVICTED, f"DisruptionTarget: {target.get('reason', '')}")
    if spec.get("source") == Source.EVICTION_REQUEST and not int(spec.get("attempts") or 0):
        # Asked for, not attempted yet: Pending while a request stands, however long that is.
        if eviction_still_requested(spec):
            return Decision(None, recheck_after=max(blocked_after, REQUESTED_RECHECK_SECONDS))
        return Decision(Outcome.BLOCKED, "every eviction request was withdrawn; the Pod is still running")
    last = parse_time(spec.get("lastAttemptTime")) or now
    waited = (now - last).total_seconds()
    if spec.get("source") not in _ASKED:
        # A watcher saw a DisruptionTarget that is gone again: the server clears a stale one after
        # about two minutes when the disruption did not happen. Wait that long before saying so.
        if waited < max(blocked_after, STALE_DISRUPTION_SECONDS):
            return Decision(None, recheck_after=blocked_after)
        return Decision(Outcome.BLOCKED, "the disruption did not happen: the Pod is still running")
    if waited < blocked_after:
        return Decision(None, recheck_after=max(blocked_after - waited, 0.05))
    refused = precondition_refusal(spec)
    if refused:
        return Decision(Outcome.BLOCKED, refused)
    hold = spec.get("hold")
    if isinstance(hold, Mapping) and not hold.get("released"):
        hooks = ", ".join(str(name) for name in spec.get("hooks") or [])
        return Decision(
            Outcome.BLOCKED,
            f"held by pre-eviction hooks ({hooks}) and not attempted again for {blocked_after:.0f} s",
        )
    budget = blocking_budget(budgets)
    if budget:
        return Decision(Outcome.BLOCKED, f"PodDisruptionBudget {budget} allows no disruption")
    return Decision(Outcome.BLOCKED, f"the Pod is still running {blocked_after:.0f} s after the last attempt")
