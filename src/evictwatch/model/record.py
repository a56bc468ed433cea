"""The shape of a PodEviction record, built from plain values (no I/O).

One record per evicted Pod: its name is derived from the Pod's name and UID, so every
attempt and every source that sees the same Pod lands on the same object, while a new Pod
that reuses the name (a StatefulSet's ``web-0``) gets a record of its own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .types import Component, EvictionAttempt, Requester, Source

_MAX_NAME = 253
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NOT_NAME_CHARS = re.compile(r"[^a-z0-9.-]+")
_DOT_RUNS = re.compile(r"[-.]*\.[-.]*")
_MAX_REQUESTERS = 16


@dataclass(frozen=True, slots=True, weakref_slot=True)
class OwnerRef:
    kind: str
    name: str
    uid: str = ""
    api_version: str = ""


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What the record keeps of the Pod; absent fields mean the Pod was not found.

    Slotted: the webhook's Pod-facts cache holds one per Pod in the cluster.
    """

    name: str
    namespace: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    node_name: str = ""
    owner: OwnerRef | None = None
    phase: str = ""
    exists: bool = True
    hooks_annotation: str = ""
    """The Pod's ``evictwatch.io/pre-eviction-hooks`` annotation: the hooks it asks for."""


def record_name(pod_name: str, pod_uid: str) -> str:
    """``<pod>.<8 hex of the uid's hash>``: stable per Pod, unique per Pod incarnation.

    A Pod that was not found has no uid; its attempts share the suffix of the empty uid,
    so repeated tries at a missing Pod still merge. The result is always a valid object
    name, whatever ``pod_name`` is: a long name is cut to fit and the cut never leaves a
    ``-`` or ``.`` at its end (the API server refuses such a name with 422, and one Pod
    whose record can never be written must not stop a watch). A name that is not a DNS
    subdomain at all (an Event may name anything) is folded into one, and then the suffix
    also hashes the original, so two such names do not share a record.
    """
    hashed = pod_uid
    prefix = pod_name
    if not _DNS_SUBDOMAIN.fullmatch(pod_name):
        hashed = f"{pod_uid}\n{pod_name}"
        prefix = _NOT_NAME_CHARS.sub("-", pod_name.lower())
    prefix = _DOT_RUNS.sub(".", prefix[: _MAX_NAME - 9]).strip("-.") or "pod"
    suffix = hashlib.sha256(hashed.encode()).hexdigest()[:8]
    return f"{prefix}.{suffix}"


def requester_to_json(requester: Requester) -> dict[str, Any]:
    data: dict[str, Any] = {"username": requester.username, "component": str(requester.component)}
    if requester.uid:
        data["uid"] = requester.uid
    if requester.groups:
        data["groups"] = list(requester.groups)
    if requester.service_account is not None:
        data["serviceAccount"] = {
            "namespace": requester.service_account.namespace,
            "name": requester.service_account.name,
        }
    if requester.field_manager:
        data["fieldManager"] = requester.field_manager
    if requester.pod_name:
        data["podName"] = requester.pod_name
    return data


def pod_to_json(pod: PodInfo) -> dict[str, Any]:
    data: dict[str, Any] = {"name": pod.name, "found": pod.exists}
    if pod.uid:
        data["uid"] = pod.uid
    if pod.labels:
        data["labels"] = dict(pod.labels)
    if pod.node_name:
        data["nodeName"] = pod.node_name
    if pod.phase:
        data["phase"] = pod.phase
    if pod.owner is not None:
        data["owner"] = {
            key: value
            for key, value in (
                ("apiVersion", pod.owner.api_version),
                ("kind", pod.owner.kind),
                ("name", pod.owner.name),
                ("uid", pod.owner.uid),
            )
            if value
        }
    return data


def delete_options_to_json(attempt: EvictionAttempt) -> dict[str, Any]:
    options = attempt.delete_options
    data: dict[str, Any] = {}
    if options.grace_period_seconds is not None:
        data["gracePeriodSeconds"] = options.grace_period_seconds
    preconditions = {
        key: value
        for key, value in (
            ("uid", options.precondition_uid),
            ("resourceVersion", options.precondition_resource_version),
        )
        if value is not None
    }
    if preconditions:
        data["preconditions"] = preconditions
    if options.propagation_policy is not None:
        data["propagationPolicy"] = options.propagation_policy
    return data


def with_requester(spec: Mapping[str, Any], requester: Mapping[str, Any]) -> dict[str, Any]:
    """The spec with one more requester, in order of appearance; the first one never changes.

    ``spec.requester`` is whoever came through the first door (the kubelet that evicted the
    Pod, or the first caller of the Eviction API); ``spec.requesters`` lists every distinct
    requester since, that one first. A drain retrying under the same identity adds nothing.
    Records written before the list existed start it from their ``requester``.
    """
    merged = dict(spec)
    first = spec.get("requester")
    known = [r for r in spec.get("requesters") or [] if isinstance(r, Mapping)]
    if not known and isinstance(first, Mapping):
        known = [first]
    if dict(requester) not in [dict(r) for r in known] and len(known) < _MAX_REQUESTERS:
        known = [*known, requester]
    merged["requesters"] = [dict(r) for r in known]
    if not isinstance(first, Mapping) or not first.get("username"):
        merged["requester"] = dict(known[0]) if known else dict(requester)
    return merged


def kubelet_requester(node_name: str) -> dict[str, Any]:
    """The kubelet of the Pod's Node, as the API server would name it (``system:node:<node>``).

    A node-pressure eviction makes no API call, so there is no identity to record; but there
    is no doubt who did it: the kubelet on that Node.
    """
    return {
        "username": f"system:node:{node_name}" if node_name else "system:node:<unknown>",
        "groups": ["system:nodes"],
        "component": str(Component.KUBELET),
    }


def new_api_record_spec(attempt: EvictionAttempt, pod: PodInfo, now: str) -> dict[str, Any]:
    """The spec of a record created by the first Eviction API attempt at a Pod."""
    requester = requester_to_json(attempt.requester)
    spec: dict[str, Any] = {
        "pod": pod_to_json(pod),
        "source": str(Source.EVICTION_API),
        "sources": [str(Source.EVICTION_API)],
        "requester": requester,
        "requesters": [requester],
        "policyVersion": attempt.policy_version,
        "attempts": 1,
        "firstAttemptTime": now,
        "lastAttemptTime": now,
    }
    options = delete_options_to_json(attempt)
    if options:
        spec["deleteOptions"] = options
    return spec


def merge_api_attempt(
    spec: Mapping[str, Any], attempt: EvictionAttempt, pod: PodInfo, now: str
) -> dict[str, Any]:
    """A record's spec after one more Eviction API attempt at the same Pod.

    The count goes up and the last time moves; the options become the latest attempt's. The
    requester of the first door stays (a Pod the kubelet evicted and a drain touched later
    was evicted by the kubelet); a new requester is appended to ``requesters`` (a drain and an
    autoscaler may take turns). A record first made by a watcher that could not know who asked
    (the backstop) takes this requester as its first.
    """
    merged = with_requester(spec, requester_to_json(attempt.requester))
    attempts = spec.get("attempts")
    merged["attempts"] = (attempts if isinstance(attempts, int) else 0) + 1
    merged.setdefault("firstAttemptTime", now)
    merged["lastAttemptTime"] = now
    merged["policyVersion"] = attempt.policy_version
    options = delete_options_to_json(attempt)
    if options:
        merged["deleteOptions"] = options
    else:  # the options are the latest attempt's: an earlier one's preconditions no longer apply
        merged.pop("deleteOptions", None)
    sources = [s for s in spec.get("sources") or [] if isinstance(s, str)]
    if str(Source.EVICTION_API) not in sources:
        sources.append(str(Source.EVICTION_API))
    merged["sources"] = sources
    merged.setdefault("source", str(Source.EVICTION_API))
    if pod.exists and not (spec.get("pod") or {}).get("found", False):
        merged["pod"] = pod_to_json(pod)
    return merged


MISSING_PODS_KEPT = 20
"""How many of the missing Pods' names an aggregated record lists (the latest, once each)."""


def missing_pods_record_name(username: str) -> str:
    """The one record per requester (and namespace) for evictions of Pods that do not exist.

    Anyone allowed to create ``pods/eviction`` can name Pods that never existed: admission runs
    before the API server looks the Pod up. One record each would let them flood the namespace's
    records and the sinks. The name has no ``.<8 hex>`` end, so it never meets a Pod's record.
    """
    return f"missing-pods-{hashlib.sha256(username.encode()).hexdigest()[:16]}"


def new_missing_pod_spec(attempt: EvictionAttempt, pod: PodInfo, now: str) -> dict[str, Any]:
    """The aggregated record's spec after the first eviction of a missing Pod by this requester."""
    spec = new_api_record_spec(attempt, pod, now)
    spec["missingPods"] = [pod.name]
    return spec


def merge_missing_pod_attempt(
    spec: Mapping[str, Any], attempt: EvictionAttempt, pod: PodInfo, now: str
) -> dict[str, Any]:
    """One more eviction of a missing Pod: the count goes up, the Pod named is the latest one."""
    merged = merge_api_attempt(spec, attempt, pod, now)
    merged["pod"] = pod_to_json(pod)
    names = [n for n in spec.get("missingPods") or [] if isinstance(n, str) and n != pod.name]
    merged["missingPods"] = [*names, pod.name][-MISSING_PODS_KEPT:]
    return merged


@dataclass(frozen=True)
class Sighting:
    """A disruption seen by a watcher (Pod status or condition, or an Event): no attempt count."""

    pod: PodInfo
    source: Source
    time: str
    reason: str = ""
    message: str = ""
    pressure: Mapping[str, str] = field(default_factory=dict)


def new_sighting_spec(sighting: Sighting) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "pod": pod_to_json(sighting.pod),
        "source": str(sighting.source),
        "sources": [str(sighting.source)],
        "attempts": 0,
        "firstAttemptTime": sighting.time,
        "lastAttemptTime": sighting.time,
    }
    if sighting.source is Source.KUBELET:
        spec["requester"] = kubelet_requester(sighting.pod.node_name)
        spec["requesters"] = [spec["requester"]]
    if sighting.reason:
        spec["reason"] = sighting.reason
    if sighting.message:
        spec["message"] = sighting.message[:2048]
    if sighting.pressure:
        spec["pressure"] = dict(sighting.pressure)
    return spec


def merge_sighting(spec: Mapping[str, Any], sighting: Sighting) -> dict[str, Any] | None:
    """The spec with this sighting folded in, or None when it adds nothing (no write needed).

    Idempotent by construction: seeing the same thing again (a re-list, a restart) changes
    nothing, which is what keeps watchers from making duplicates.
    """
    merged = dict(spec)
    if sighting.source is Source.KUBELET:
        node = sighting.pod.node_name or str((spec.get("pod") or {}).get("nodeName") or "")
        merged = with_requester(spec, kubelet_requester(node))
    sources = [s for s in spec.get("sources") or [] if isinstance(s, str)]
    if str(sighting.source) not in sources:
        sources.append(str(sighting.source))
    merged["sources"] = sources
    if sighting.reason and not spec.get("reason"):
        merged["reason"] = sighting.reason
    if sighting.message and not spec.get("message"):
        merged["message"] = sighting.message[:2048]
    if sighting.pressure and not spec.get("pressure"):
        merged["pressure"] = dict(sighting.pressure)
    pod = dict(spec.get("pod") or {})
    if sighting.pod.node_name and not pod.get("nodeName"):
        pod["nodeName"] = sighting.pod.node_name
        merged["pod"] = pod
    return None if merged == dict(spec) else merged
