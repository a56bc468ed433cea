"""Context for a record, from watch-fed caches: the owner chain, the Node, the PDBs, the Events.

A drain settles hundreds of records a minute, and each used to cost five reads (Pod, owners,
Node, PDBs, Events). Here each kind is watched once (:class:`ContextCaches`) and kept small:

* Nodes: the name, three topology labels and ``unschedulable``;
* PodDisruptionBudgets: the selector and the budget's status figures;
* Events about Pods: only those that can explain an eviction (:func:`explains`), a few per
  Pod, for an hour (Events expire after an hour by default);
* owners (ReplicaSet -> Deployment, Job -> CronJob, ...): read once per owner uid and kept,
  so 2,000 Pods of 20 ReplicaSets cost about 40 reads, not 4,000.

A missing object leaves that part of the context out rather than failing the settlement (a
ReplicaSet deleted since, a Node gone with the drain).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .. import telemetry
from ..aio import cancel_and_wait
from ..kube.api import JsonApi
from ..kube.errors import NotFound
from ..kube.informer import Informer, count_fallback
from ..model.selector import matches
from ..model.why import explains

OWNER_KINDS: dict[str, str] = {
    "ReplicaSet": "/apis/apps/v1/namespaces/{namespace}/replicasets/{name}",
    "Deployment": "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
    "StatefulSet": "/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
    "DaemonSet": "/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}",
    "Job": "/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
    "CronJob": "/apis/batch/v1/namespaces/{namespace}/cronjobs/{name}",
}
"""The owners followed up the chain, by kind: the API path of one."""
_NODE_LABELS = ("topology.kubernetes.io/zone", "node.kubernetes.io/instance-type", "kubernetes.io/hostname")
_MAX_OWNER_DEPTH = 4
OWNERS_KEPT = 10_000
EVENTS_PER_POD = 8
EVENT_SECONDS = 3600.0


def node_view(node: dict[str, Any]) -> dict[str, Any]:
    metadata = node.get("metadata") or {}
    labels = metadata.get("labels") or {}
    return {
        "name": str(metadata.get("name") or ""),
        "labels": {key: labels[key] for key in _NODE_LABELS if key in labels},
        "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
    }


def budget_view(budget: dict[str, Any]) -> dict[str, Any]:
    status = budget.get("status") or {}
    return {
        "name": str((budget.get("metadata") or {}).get("name") or ""),
        "selector": (budget.get("spec") or {}).get("selector"),
        "disruptionsAllowed": int(status.get("disruptionsAllowed") or 0),
        "currentHealthy": int(status.get("currentHealthy") or 0),
        "desiredHealthy": int(status.get("desiredHealthy") or 0),
        "expectedPods": int(status.get("expectedPods") or 0),
    }


def budgets_selecting(budgets: list[dict[str, Any]], labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """The PDBs whose selector matches the Pod's labels, with their current status."""
    return [
        {key: value for key, value in budget.items() if key != "selector"}
        for budget in budgets
        if budget.get("selector") and matches(budget["selector"], labels)
    ]


def event_view(event: dict[str, Any]) -> dict[str, Any] | None:
    """The fields of an explaining Event that the "why" uses; None for every other Event."""
    if not explains(event):
        return None
    metadata = event.get("metadata") or {}
    involved = event.get("involvedObject") or event.get("regarding") or {}
    source = event.get("source") or {}
    return {
        "reason": event.get("reason"),
        "message": str(event.get("message") or event.get("note") or "")[:1024],
        "action": event.get("action"),
        "reportingController": event.get("reportingController") or event.get("reportingComponent"),
        "source": {"component": source.get("component")} if source.get("component") else {},
        "lastTimestamp": event.get("lastTimestamp")
        or event.get("eventTime")
        or metadata.get("creationTimestamp"),
        "involvedObject": {"name": involved.get("name"), "uid": involved.get("uid")},
        "received": time.monotonic(),
    }


class EventCache:
    """Explaining Events per Pod (namespace, name): at most a few each, for an hour."""

    def __init__(self, api: JsonApi) -> None:
        self.by_pod: OrderedDict[tuple[str, str], list[dict[str, Any]]] = OrderedDict()
        self.informer: Informer[dict[str, Any]] = Informer(
            api, "/api/v1/events", "events", self._take, field_selector="involvedObject.kind=Pod"
        )

    def _take(self, event: dict[str, Any]) -> None:
        """Kept in :attr:`by_pod`, never in the informer's own store (Events are many)."""
        view = event_view(event)
        if view is None:
            return
        namespace = str((event.get("metadata") or {}).get("namespace") or "")
        key = (namespace, str(view["involvedObject"].get("name") or ""))
        now = time.monotonic()
        kept = [e for e in self.by_pod.get(key, []) if now - e["received"] < EVENT_SECONDS]
        kept = [e for e in kept if (e["reason"], e["message"]) != (view["reason"], view["message"])]
        self.by_pod[key] = [*kept, view][-EVENTS_PER_POD:]
        self.by_pod.move_to_end(key)
        while self.by_pod and now - self.by_pod[next(iter(self.by_pod))][-1]["received"] > EVENT_SECONDS:
            self.by_pod.popitem(last=False)
        telemetry.CACHE_OBJECTS.labels("events").set(len(self.by_pod))

    def for_pod(self, namespace: str, name: str, uid: str = "") -> list[dict[str, Any]]:
        """The Pod's explaining Events; an Event naming another uid (a predecessor) is left out."""
        events = self.by_pod.get((namespace, name)) or []
        return [
            e
            for e in events
            if not uid or not e["involvedObject"].get("uid") or e["involvedObject"]["uid"] == uid
        ]


@dataclass
class OwnerCache:
    """Each owner's own controlling owner, by uid: read once, then kept (bounded)."""

    api: JsonApi
    parents: OrderedDict[str, dict[str, Any] | None] = field(default_factory=OrderedDict)
    _reading: dict[str, asyncio.Future[dict[str, Any] | None]] = field(default_factory=dict)

    async def parent(self, namespace: str, ref: Mapping[str, Any]) -> dict[str, Any] | None:
        """The controlling ownerReference of the object ``ref`` points at (None: top, or gone)."""
        uid = str(ref.get("uid") or "")
        if uid and uid in self.parents:
            self.parents.move_to_end(uid)
            return self.parents[uid]
        pending = self._reading.get(uid) if uid else None
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        if uid:
            self._reading[uid] = future
        try:
            found = await self._read(namespace, ref)
            future.set_result(found)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: a failed read is the caller's, not the loop's, to report
            raise
        finally:
            self._reading.pop(uid, None)
        if uid:
            self.parents[uid] = found
            if len(self.parents) > OWNERS_KEPT:
                self.parents.popitem(last=False)
            telemetry.CACHE_OBJECTS.labels("owners").set(len(self.parents))
        return found

    async def _read(self, namespace: str, ref: Mapping[str, Any]) -> dict[str, Any] | None:
        template = OWNER_KINDS[str(ref.get("kind"))]
        count_fallback(str(ref.get("kind")), "owner")
        try:
            obj = await self.api.request(
                "GET",
                template.format(
                    namespace=quote(namespace, safe=""), name=quote(str(ref.get("name")), safe="")
                ),
            )
        except NotFound:
            return None
        metadata = obj.get("metadata") or {}
        if ref.get("uid") and metadata.get("uid") != ref.get("uid"):
            return None  # replaced under the same name: the chain we were asked about is gone
        return _controller_ref(metadata)

    async def chain(self, namespace: str, first: Mapping[str, Any] | None) -> list[dict[str, str]]:
        """From the Pod's controlling owner up to the top controller (ReplicaSet -> Deployment ...)."""
        chain: list[dict[str, str]] = []
        ref = first
        while ref and len(chain) < _MAX_OWNER_DEPTH:
            chain.append({k: str(ref[k]) for k in ("apiVersion", "kind", "name", "uid") if ref.get(k)})
            if str(ref.get("kind", "")) not in OWNER_KINDS:
                break
            ref = await self.parent(namespace, ref)
        return chain


def _controller_ref(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    refs = metadata.get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller"):
            return dict(ref)
    return dict(refs[0]) if refs else None


class ContextCaches:
    """The caches the controller settles from; run them while leading."""

    def __init__(self, api: JsonApi, *, events: bool = True) -> None:
        self.nodes: Informer[dict[str, Any]] = Informer(api, "/api/v1/nodes", "nodes", node_view)
        self.budgets: Informer[dict[str, Any]] = Informer(
            api, "/apis/policy/v1/poddisruptionbudgets", "poddisruptionbudgets", budget_view
        )
        self.events = EventCache(api)
        self.owners = OwnerCache(api)
        self._informers: list[Informer[Any]] = [self.nodes, self.budgets]
        if events:  # ``watchers.events``: the evicting components' Events as the "why"
            self._informers.append(self.events.informer)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for informer in self._informers:
            self._tasks.append(asyncio.create_task(informer.run(), name=f"cache-{informer.name}"))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []

    async def wait_synced(self, timeout: float) -> bool:
        """True once every cache has listed (False after ``timeout``: settle anyway, with less)."""
        waits = [informer.watch.synced.wait() for informer in self._informers]
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*waits)
        except TimeoutError:
            return False
        return True

    def node(self, name: str) -> dict[str, Any] | None:
        if not name:
            return None
        return self.nodes.get("", name) or {"name": name}

    def budgets_for(self, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return budgets_selecting(list(self.budgets.in_namespace(namespace)), labels)
