"""Which Event explains an eviction: the evicting component's own words, copied into the record.

Events expire after an hour by default, so the controller copies the best one into the
record's ``status.why``. The reasons below are what each component writes (see the project's
KUBERNETES-FACTS): cluster-autoscaler ``ScaleDown``, the descheduler's strategy name with
action ``Descheduled``, Karpenter ``Evicted``/``Disrupted``, the kubelet ``Evicted``, the
scheduler ``Preempted``, the taint manager ``TaintManagerEviction``, and the device-taint
eviction controller (DRA) ``DeviceTaintManagerEviction`` "Marking for deletion".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .types import Component

EXPLAINING_REASONS: dict[str, Component] = {
    "ScaleDown": Component.CLUSTER_AUTOSCALER,
    "Descheduled": Component.DESCHEDULER,
    "Evicted": Component.UNKNOWN,
    "Disrupted": Component.KARPENTER,
    "Preempted": Component.UNKNOWN,
    "TaintManagerEviction": Component.KUBE_CONTROLLER_MANAGER,
    "DeviceTaintManagerEviction": Component.KUBE_CONTROLLER_MANAGER,
    "Killing": Component.UNKNOWN,
}
_COMPONENT_BY_EVENT_SOURCE = {
    "cluster-autoscaler": Component.CLUSTER_AUTOSCALER,
    "karpenter": Component.KARPENTER,
    "descheduler": Component.DESCHEDULER,
    "sigs.k8s.io/descheduler": Component.DESCHEDULER,
    "taint-eviction-controller": Component.KUBE_CONTROLLER_MANAGER,
    "device-taint-eviction-controller": Component.KUBE_CONTROLLER_MANAGER,
    "kubelet": Component.UNKNOWN,
    "default-scheduler": Component.UNKNOWN,
}
DOOR_ONLY_REASONS = frozenset({"EvictionByEvictionAPI"})
"""Reasons that only repeat which door an eviction came through (the API server's own
DisruptionTarget reason, with the message "Eviction API: evicting"): evidence that it happened,
never an explanation of why."""


def describes_the_door(reason: str) -> bool:
    """True for a reason that says nothing the record's ``source`` does not already say."""
    return reason in DOOR_ONLY_REASONS


_PREFERENCE = [
    "ScaleDown",
    "Descheduled",
    "Disrupted",
    "TaintManagerEviction",
    "DeviceTaintManagerEviction",
    "Preempted",
    "Evicted",
    "Killing",
]


def event_component(event: Mapping[str, Any]) -> str:
    """The component that wrote an Event: reportingController, else source.component."""
    return str(event.get("reportingController") or (event.get("source") or {}).get("component") or "")


WRITERS: dict[str, tuple[str, ...]] = {
    "Preempted": ("scheduler",),
    "Evicted": ("kubelet", "karpenter"),
    "TaintManagerEviction": ("taint-eviction-controller", "taint-controller", "node-controller"),
    "DeviceTaintManagerEviction": ("device-taint", "kube-controller-manager"),
}
"""Who may say what: an Event with one of these reasons explains an eviction only when a
component of that kind wrote it (anyone allowed to create Events could write the rest)."""


def trusted(event: Mapping[str, Any]) -> bool:
    """False for an Event whose reason belongs to a component that did not write it."""
    writers = WRITERS.get(str(event.get("reason", "")))
    if writers is None:
        return True
    component = event_component(event)
    return any(writer in component for writer in writers)


_CANCELLING = ("TaintManagerEviction", "DeviceTaintManagerEviction")
"""Reasons the taint managers also use for "Cancelling deletion": that Event explains nothing."""


def explains(event: Mapping[str, Any]) -> bool:
    reason = str(event.get("reason", ""))
    if not trusted(event):
        return False
    if reason in _CANCELLING and str(event.get("message") or event.get("note") or "").startswith(
        "Cancelling"
    ):
        return False
    if reason in EXPLAINING_REASONS:
        return reason != "Killing"
    # The descheduler names the Event after its strategy; its action says what it did.
    return event.get("action") == "Descheduled" or event_component(event) in (
        "descheduler",
        "sigs.k8s.io/descheduler",
    )


def pick_why(events: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The most telling Event for a Pod, as the record's ``why``, or None."""
    candidates = [e for e in events if explains(e) and event_component(e) != "evictwatch"]
    if not candidates:
        return None

    def rank(event: Mapping[str, Any]) -> int:
        reason = str(event.get("reason", ""))
        return _PREFERENCE.index(reason) if reason in _PREFERENCE else 1

    best = sorted(candidates, key=rank)[0]
    writer = event_component(best)
    component = _COMPONENT_BY_EVENT_SOURCE.get(
        writer, EXPLAINING_REASONS.get(str(best.get("reason")), Component.UNKNOWN)
    )
    component_name = writer if writer and component is Component.UNKNOWN else str(component)
    why: dict[str, Any] = {
        "component": component_name,
        "reason": str(best.get("reason", "")),
        "message": str(best.get("message") or best.get("note") or "")[:1024],
    }
    time = (
        best.get("lastTimestamp")
        or best.get("eventTime")
        or (best.get("metadata") or {}).get("creationTimestamp")
    )
    if time:
        why["eventTime"] = str(time)
    return why
