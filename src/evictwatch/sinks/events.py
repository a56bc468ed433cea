"""Kubernetes Events on the Pod and on its top owner, so ``kubectl describe`` tells the story.

One Event per record and target (the Pod, its top owner), named after both, updated as the
story moves on: a Blocked eviction that later goes through turns its Event into ``Evicted``,
and a drain that kept retrying shows ``x7`` (the Event's ``count`` is the record's attempts,
its first and last timestamps the first and latest attempt). Every Event carries the target's
uid in ``involvedObject``: ``kubectl describe`` lists Events by uid, and one without it is
never shown.

The Event remembers the state it tells (annotation ``evictwatch.io/state``: outcome and
attempts), so a repeated delivery after a crash changes nothing and counts nothing twice.

The sink also remembers, for the Events it wrote itself, their resourceVersion, first timestamp
and state (:class:`Written`, a bounded map): a drain that retries a blocked eviction moves its
Events on with one compare-and-swap PUT each, where a create that meets 409, a GET and the PUT
took three (the storm's 600 blocked retries: 1,770 calls). Only an Event this process has not
written, or one changed since (another replica led meanwhile), costs the create, the GET and
the PUT, as before.
"""

from __future__ import annotations

import datetime
import os
from collections import OrderedDict
from dataclasses import dataclass, field
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
REMEMBERED = 10_000
"""Events whose version this process remembers (about 0.2 KB each), newest last."""

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


@dataclass(frozen=True, slots=True)
class Written:
    """What we last wrote to one Event: enough to replace it without reading it first."""

    resource_version: str
    first_timestamp: str
    state: str


@dataclass
class EventsSink(SinkBase):
    api: JsonApi | None = None
    on_owner: bool = True
    follows_attempts = True
    """Tell the controller to deliver again when the record's attempts grow (the Event's count)."""
    written: OrderedDict[tuple[str, str], Written] = field(default_factory=OrderedDict)
    """(namespace, name) -> the Event as this process last wrote it (at most :data:`REMEMBERED`)."""

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

    def _remember(self, key: tuple[str, str], answer: dict[str, Any], state: str) -> None:
        version = str((answer.get("metadata") or {}).get("resourceVersion") or "")
        if not version:
            self.written.pop(key, None)
            return
        self.written[key] = Written(version, str(answer.get("firstTimestamp") or ""), state)
        self.written.move_to_end(key)
        if len(self.written) > REMEMBERED:
            self.written.popitem(last=False)

    async def _replace(
        self, path: str, manifest: dict[str, Any], version: str, first_timestamp: str
    ) -> dict[str, Any]:
        update = {
            **manifest,
            "metadata": {**manifest["metadata"], "resourceVersion": version},
            "firstTimestamp": first_timestamp or manifest["firstTimestamp"],
        }
        assert self.api is not None
        return await self.api.request("PUT", path, update)

    async def _write(self, eviction: Eviction, target: dict[str, Any]) -> None:
        """Create the Event, or bring the existing one up to date (compare-and-swap)."""
        assert self.api is not None
        manifest = self._manifest(eviction, target)
        name, namespace = manifest["metadata"]["name"], eviction.namespace
        state = manifest["metadata"]["annotations"][STATE_ANNOTATION]
        events = f"/api/v1/namespaces/{quote(namespace, safe='')}/events"
        path = f"{events}/{quote(name, safe='')}"
        key = (namespace, name)
        known = self.written.get(key)
        if known is not None:
            if known.state == state:
                return  # a repeat of a delivery this process wrote already
            try:  # one call: our own last write's version
                answer = await self._replace(path, manifest, known.resource_version, known.first_timestamp)
                self._remember(key, answer, state)
                return
            except (Conflict, NotFound):
                self.written.pop(key, None)  # changed or expired since: read it, as below
        for _ in range(_MAX_UPDATE_TRIES):
            try:
                self._remember(key, await self.api.request("POST", events, manifest), state)
                return
            except Conflict:
                pass
            try:
                current = await self.api.request("GET", path)
            except NotFound:  # expired between the two calls: create it again
                continue
            metadata = current.get("metadata") or {}
            if (metadata.get("annotations") or {}).get(STATE_ANNOTATION) == state:
                self._remember(key, current, state)
                return  # a repeat of a delivery that was written already
            try:
                answer = await self._replace(
                    path,
                    manifest,
                    str(metadata.get("resourceVersion") or ""),
                    current.get("firstTimestamp") or "",
                )
                self._remember(key, answer, state)
                return
            except (Conflict, NotFound):
                continue
        raise RuntimeError(f"Event {namespace}/{name} kept changing under us")
