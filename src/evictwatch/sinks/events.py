"""Kubernetes Events on the Pod and on its top owner, so ``kubectl describe`` tells the story.

One Event per record and target (the Pod, its top owner), named after both, updated as the
story moves on: a Blocked eviction that later goes through turns its Event into ``Evicted``,
and a drain that kept retrying shows ``x7`` (the Event's ``count`` is the record's attempts,
its first and last timestamps the first and latest attempt). Every Event carries the target's
uid in ``involvedObject``: ``kubectl describe`` lists Events by uid, and one without it is
never shown.

The Event remembers the state it tells (annotation ``evictwatch.io/state``: outcome and
attempts), so a repeated delivery after a crash changes nothing and counts nothing twice.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..kube.api import JsonApi
from ..kube.errors import Conflict, NotFound
from ..model.notice import Eviction
from ..model.outcome import parse_time
from ..model.types import Outcome
from .base import SinkBase

STATE_ANNOTATION = "evictwatch.io/state"
_MAX_UPDATE_TRIES = 5

REASONS = {
    Outcome.EVICTED: ("Evicted", "Normal"),
    Outcome.EVICTED_BY_KUBELET: ("Evicted", "Warning"),
    Outcome.FAILED: ("Evicted", "Warning"),
    Outcome.BLOCKED: ("EvictionBlocked", "Warning"),
    Outcome.POD_GONE: ("EvictionPodGone", "Normal"),
}
_OWNER_API = {
    "Deployment": "apps/v1",
    "ReplicaSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}


def _attempts(eviction: Eviction) -> str:
    return "1 attempt" if eviction.attempts == 1 else f"{eviction.attempts} attempts"


def event_message(eviction: Eviction) -> str:
    """What the Event says now; rewritten whenever the outcome or the attempt count moves."""
    kubelet = f"Pod {eviction.pod} evicted by the kubelet on {eviction.node or 'its node'}"
    who = eviction.requester or "an unknown requester"
    if eviction.component and eviction.component != "unknown":
        who += f" ({eviction.component})"
    text = {
        Outcome.EVICTED: f"Pod {eviction.pod} evicted by {who} via {eviction.source}"
        + (f" after {_attempts(eviction)}" if eviction.attempts > 1 else ""),
        Outcome.EVICTED_BY_KUBELET: kubelet,
        Outcome.FAILED: kubelet,
        Outcome.BLOCKED: f"Eviction of Pod {eviction.pod} by {who} blocked after {_attempts(eviction)}",
        Outcome.POD_GONE: f"Eviction of Pod {eviction.pod} by {who}: the Pod did not exist",
    }.get(eviction.outcome, f"Pod {eviction.pod}: {eviction.outcome}")
    details = "; ".join(part for part in (eviction.outcome_reason, eviction.why) if part)
    return f"{text}: {details}"[:1024] if details else text


def _time(value: str, default: str) -> str:
    """An RFC 3339 time at second precision (core/v1 Events reject fractions)."""
    moment = parse_time(value)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else default


@dataclass
class EventsSink(SinkBase):
    api: JsonApi | None = None
    on_owner: bool = True
    follows_attempts = True
    """Tell the controller to deliver again when the record's attempts grow (the Event's count)."""

    def targets(self, eviction: Eviction) -> list[dict[str, Any]]:
        """The Pod, and its top owner when known: each by kind, name and uid."""
        targets: list[dict[str, Any]] = [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": eviction.pod,
                "namespace": eviction.namespace,
                **({"uid": eviction.pod_uid} if eviction.pod_uid else {}),
            }
        ]
        if self.on_owner and eviction.owner_name:
            targets.append(
                {
                    "apiVersion": _OWNER_API.get(eviction.owner_kind, "v1"),
                    "kind": eviction.owner_kind,
                    "name": eviction.owner_name,
                    "namespace": eviction.namespace,
                    **({"uid": eviction.owner_uid} if eviction.owner_uid else {}),
                }
            )
        return targets

    async def deliver(self, eviction: Eviction) -> None:
        if eviction.outcome not in REASONS:
            return
        for target in self.targets(eviction):
            await self._write(eviction, target)

    def _manifest(self, eviction: Eviction, target: dict[str, Any]) -> dict[str, Any]:
        reason, kind = REASONS[eviction.outcome]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{eviction.record[:200]}.{target['kind'].lower()}",
                "namespace": eviction.namespace,
                "labels": {"app.kubernetes.io/managed-by": "evictwatch"},
                "annotations": {STATE_ANNOTATION: f"{eviction.outcome}/{eviction.attempts}"},
            },
            "involvedObject": target,
            "reason": reason,
            "type": kind,
            "message": event_message(eviction),
            "source": {"component": "evictwatch"},
            "reportingComponent": "evictwatch.io/controller",
            "reportingInstance": os.environ.get("POD_NAME", "evictwatch"),
            "firstTimestamp": _time(eviction.first_attempt, now),
            "lastTimestamp": now,
            "count": max(eviction.attempts, 1),
        }

    async def _write(self, eviction: Eviction, target: dict[str, Any]) -> None:
        """Create the Event, or bring the existing one up to date (compare-and-swap)."""
        assert self.api is not None
        manifest = self._manifest(eviction, target)
        name, namespace = manifest["metadata"]["name"], eviction.namespace
        events = f"/api/v1/namespaces/{quote(namespace, safe='')}/events"
        for _ in range(_MAX_UPDATE_TRIES):
            try:
                await self.api.request("POST", events, manifest)
                return
            except Conflict:
                pass
            try:
                current = await self.api.request("GET", f"{events}/{quote(name, safe='')}")
            except NotFound:  # expired between the two calls: create it again
                continue
            metadata = current.get("metadata") or {}
            state = (metadata.get("annotations") or {}).get(STATE_ANNOTATION)
            if state == manifest["metadata"]["annotations"][STATE_ANNOTATION]:
                return  # a repeat of a delivery that was written already
            update = {
                **manifest,
                "metadata": {**manifest["metadata"], "resourceVersion": metadata.get("resourceVersion")},
                "firstTimestamp": current.get("firstTimestamp") or manifest["firstTimestamp"],
            }
            try:
                await self.api.request("PUT", f"{events}/{quote(name, safe='')}", update)
                return
            except (Conflict, NotFound):
                continue
        raise RuntimeError(f"Event {namespace}/{name} kept changing under us")
