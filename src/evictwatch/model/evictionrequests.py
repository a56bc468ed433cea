"""EvictionRequests and Evictions (``lifecycle.k8s.io/v1alpha1``, KEP-4563) in a record (no I/O).

From Kubernetes 1.37, behind the ``EvictionRequestAPI`` gate, a component can *ask* for a Pod's
eviction by creating an EvictionRequest (``spec.target.pod`` name and uid, ``spec.requester``
a domain-prefixed name such as ``acme.io/drainer``, ``spec.intent`` ``Eviction`` or
``Withdrawn``). A controller (not merged in 1.37) turns the requests of one Pod into one
Eviction, whose status lists the requesters, the responders the Pod named
(``status.targetResponders``: name, priority, state) and each responder's progress
(``status.responders``: start, heartbeat, expected and actual completion, message); the last,
default responder calls ``pods/eviction``.

The record keeps the requests in ``spec.evictionRequests`` (one entry per EvictionRequest) and
the Eviction in ``spec.eviction``, so the request is on the Pod's record before anything is
evicted, and the responders' story is there after the Events are gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .types import Source

INTENT_EVICTION = "Eviction"
_RESPONDER_TIMES = ("startTime", "heartbeatTime", "expectedCompletionTime", "completionTime")


def target_pod(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(name, uid)`` of the Pod an EvictionRequest or Eviction is about; None for other targets."""
    pod = ((obj.get("spec") or {}).get("target") or {}).get("pod") or {}
    if not pod.get("name") or not pod.get("uid"):
        return None
    return str(pod["name"]), str(pod["uid"])


def _creator(metadata: Mapping[str, Any]) -> str:
    """The field manager that created the object: the requesting program, as its client named itself."""
    for entry in metadata.get("managedFields") or []:
        if entry.get("operation") == "Create" and entry.get("manager"):
            return str(entry["manager"])
    return ""


def request_entry(request: Mapping[str, Any], *, deleted_at: str = "") -> dict[str, Any]:
    """What the record keeps of one EvictionRequest."""
    metadata = request.get("metadata") or {}
    spec = request.get("spec") or {}
    entry = {
        "name": str(metadata.get("name") or ""),
        "requester": str(spec.get("requester") or ""),
        "intent": str(spec.get("intent") or ""),
        "time": str(metadata.get("creationTimestamp") or ""),
    }
    manager = _creator(metadata)
    if manager:
        entry["fieldManager"] = manager
    if deleted_at:
        entry["deletedTime"] = deleted_at
    return {key: value for key, value in entry.items() if value}


def eviction_entry(eviction: Mapping[str, Any]) -> dict[str, Any]:
    """What the record keeps of the Pod's Eviction: requesters, responders and their status."""
    status = eviction.get("status") or {}
    progress = {str(item.get("name")): item for item in status.get("responders") or []}
    responders = []
    for target in status.get("targetResponders") or []:
        name = str(target.get("name") or "")
        entry: dict[str, Any] = {"name": name, "state": str(target.get("state") or "")}
        if target.get("priority") is not None:
            entry["priority"] = int(target["priority"])
        reported = progress.get(name) or {}
        entry.update({key: str(reported[key]) for key in _RESPONDER_TIMES if reported.get(key)})
        if reported.get("message"):
            entry["message"] = str(reported["message"])[:1024]
        responders.append(entry)
    return {
        "name": str((eviction.get("metadata") or {}).get("name") or ""),
        "requesters": [
            {"name": str(item.get("name") or ""), "intent": str(item.get("intent") or "")}
            for item in status.get("requesters") or []
        ],
        "responders": responders,
        "conditions": [
            {
                key: str(condition[key])
                for key in ("type", "status", "reason", "message", "lastTransitionTime")
                if condition.get(key)
            }
            for condition in status.get("conditions") or []
        ],
    }


def new_request_spec(pod: Mapping[str, Any], now: str) -> dict[str, Any]:
    """A record first made because an EvictionRequest (or its Eviction) named the Pod."""
    return {
        "pod": dict(pod),
        "source": str(Source.EVICTION_REQUEST),
        "sources": [str(Source.EVICTION_REQUEST)],
        "attempts": 0,
        "firstAttemptTime": now,
        "lastAttemptTime": now,
    }


def _with_source(spec: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(spec)
    sources = [s for s in spec.get("sources") or [] if isinstance(s, str)]
    if str(Source.EVICTION_REQUEST) not in sources:
        sources.append(str(Source.EVICTION_REQUEST))
    merged["sources"] = sources
    return merged


def merge_request(spec: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The spec with this request's entry in (replacing the same request's); None if unchanged.

    A deleted request keeps what it last said, plus when it went: deleting counts as
    withdrawing, and the entry still tells who asked.
    """
    merged = _with_source(spec)
    requests = [dict(item) for item in spec.get("evictionRequests") or []]
    for index, item in enumerate(requests):
        if item.get("name") == entry.get("name"):
            requests[index] = {**item, **entry} if entry.get("deletedTime") else dict(entry)
            break
    else:
        requests.append(dict(entry))
    merged["evictionRequests"] = requests
    return None if merged == dict(spec) else merged


def merge_eviction(spec: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The spec with the Pod's Eviction as it is now; None if unchanged."""
    merged = _with_source(spec)
    merged["eviction"] = dict(entry)
    return None if merged == dict(spec) else merged


def eviction_still_requested(spec: Mapping[str, Any]) -> bool:
    """Some request still says ``Eviction`` and has not been deleted."""
    return any(
        item.get("intent") == INTENT_EVICTION and not item.get("deletedTime")
        for item in spec.get("evictionRequests") or []
    )
