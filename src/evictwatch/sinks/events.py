"""Kubernetes Events on the Pod and on its top owner, so ``kubectl describe`` tells the story.

Event names are derived from the record and outcome, so a repeated delivery (after a crash)
meets a 409 and counts as done instead of writing a second Event.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..kube.api import JsonApi
from ..kube.errors import Conflict
from ..model.notice import Eviction
from ..model.types import Outcome
from .base import SinkBase

REASONS = {
    Outcome.EVICTED: ("Evicted", "Normal"),
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


def event_message(eviction: Eviction) -> str:
    who = eviction.requester or "an unknown requester"
    if eviction.component and eviction.component != "unknown":
        who += f" ({eviction.component})"
    text = {
        Outcome.EVICTED: f"Pod {eviction.pod} evicted by {who} via {eviction.source}",
        Outcome.FAILED: f"Pod {eviction.pod} evicted by the kubelet on {eviction.node or 'its node'}",
        Outcome.BLOCKED: (
            f"Eviction of Pod {eviction.pod} by {who} blocked after {eviction.attempts} attempt(s)"
        ),
        Outcome.POD_GONE: f"Eviction of Pod {eviction.pod} by {who}: the Pod did not exist",
    }.get(eviction.outcome, f"Pod {eviction.pod}: {eviction.outcome}")
    details = "; ".join(part for part in (eviction.outcome_reason, eviction.why) if part)
    return f"{text}: {details}"[:1024] if details else text


@dataclass
class EventsSink(SinkBase):
    api: JsonApi | None = None
    on_owner: bool = True

    async def deliver(self, eviction: Eviction) -> None:
        if eviction.outcome not in REASONS:
            return
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
                }
            )
        for target in targets:
            await self._write(eviction, target)

    async def _write(self, eviction: Eviction, target: dict[str, Any]) -> None:
        assert self.api is not None
        reason, kind = REASONS[eviction.outcome]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        name = f"{eviction.record[:200]}.{str(eviction.outcome).lower()}.{target['kind'].lower()}"
        manifest = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": name,
                "namespace": eviction.namespace,
                "labels": {"app.kubernetes.io/managed-by": "evictwatch"},
            },
            "involvedObject": target,
            "reason": reason,
            "type": kind,
            "message": event_message(eviction),
            "source": {"component": "evictwatch"},
            "reportingComponent": "evictwatch.io/controller",
            "reportingInstance": os.environ.get("POD_NAME", "evictwatch"),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        path = f"/api/v1/namespaces/{quote(eviction.namespace, safe='')}/events"
        with contextlib.suppress(Conflict):  # made before a crash: delivered already
            await self.api.request("POST", path, manifest)
