"""The facts of every Pod, kept current by one watch, so a review needs no GET.

An AdmissionReview for ``pods/eviction`` never carries the Pod, yet the record needs its
uid, labels (for the selector), node and owner. Reading it per review costs one API round
trip (about 1.3 ms here, a quarter of the webhook's budget) and one request per drain retry.
Like a Go informer, each webhook replica instead lists the Pods once and follows their watch,
keeping only the small :class:`PodInfo` of each (not the whole object).

It never makes an answer wrong, only faster:

* until the first list is done, while the watch is down (reconnecting, re-listing), and for a
  Pod it has not seen (created a moment ago, or absent), the lookup falls back to a GET;
* so does a Pod whose facts changed less than :data:`QUIET_SECONDS` ago: a new Pod is bound,
  started and relabelled in a burst of writes, and a watch event may still be on its way. A
  Pod that has been quiet that long is, with overwhelming likelihood, what the cache says
  (drains, autoscalers and deschedulers evict Pods that have run for minutes or days);
* when the Eviction names a precondition uid that differs from the cached one (the Pod was
  replaced under the same name and the watch has not caught up), it GETs as well;
* a re-list (after 410 Gone) drops the Pods the new list no longer has.

The same watch is the operator's only Pod watch (one per kind per process): the controller
asks it whether a Pod is terminating, disrupted or gone, and the watchers take from it every
disruption it sees (:attr:`PodFactsCache.on_sighting`: a ``DisruptionTarget`` condition, a
kubelet eviction). Only Pods that show one keep more than their facts.

Each event is decoded only as far as these facts need (:data:`evictwatch.kube.slim.pod_event`:
a fifth of ``json.loads``'s CPU for a typical Pod), and where ``capture.namespaces`` names the
namespaces to capture the watch asks for no others (one namespace: its own collection; several:
Pods elsewhere are dropped on arrival), nor for ``capture.excludeNamespaces`` (a field selector):
Pods the operator will never record cost it nothing.

Memory is kept near 0.5 KB per Pod (``bench.watch_cost``) by sharing what Pods repeat:
strings that recur (namespaces, nodes, label keys and values, owner fields) are interned, and
Pods with the same labels or the same owner share one object, held weakly so nothing outlives
its last Pod.
"""

from __future__ import annotations

import datetime
import logging
import sys
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from .. import telemetry
from ..kube import slim
from ..kube.api import JsonApi
from ..kube.listwatch import ListWatch
from ..kube.pods import lookup_pod
from ..model.outcome import disruption_target
from ..model.podfacts import pod_info_from_json, sighting_from_pod
from ..model.record import OwnerRef, PodInfo, Sighting

log = logging.getLogger("evictwatch.podcache")

QUIET_SECONDS = 1.0
"""A Pod's cached facts are used only once they have not changed for this long."""

TOMBSTONES = 20_000
"""Uids of Pods seen deleted, remembered (newest first) so the controller knows "gone" without a GET."""


@dataclass(frozen=True, slots=True)
class PodState:
    """What the controller asks of a Pod: is it there, terminating, disrupted (and by what)."""

    info: PodInfo
    terminating: bool = False
    disruption: Mapping[str, Any] | None = None
    """The ``DisruptionTarget`` condition, when the Pod has one."""
    owners: tuple[Mapping[str, Any], ...] = ()
    """The Pod's ownerReferences (only kept for Pods that are terminating or disrupted)."""
    sighting: Sighting | None = None
    """The disruption the Pod shows, as the watchers record it."""

    def as_pod(self) -> dict[str, Any]:
        """The parts of a Pod object that :func:`evictwatch.model.outcome.decide` reads."""
        metadata: dict[str, Any] = {
            "name": self.info.name,
            "namespace": self.info.namespace,
            "uid": self.info.uid,
        }
        if self.terminating:
            metadata["deletionTimestamp"] = "(cached)"
        if self.owners:
            metadata["ownerReferences"] = [dict(ref) for ref in self.owners]
        conditions = [dict(self.disruption)] if self.disruption is not None else []
        return {
            "metadata": metadata,
            "spec": {"nodeName": self.info.node_name},
            "status": {"phase": self.info.phase, "conditions": conditions},
        }


class _Labels(dict[str, str]):
    """A label set shared by every Pod that has it (a dict subclass, so it can be held weakly)."""

    __slots__ = ("__weakref__",)


class _Sharing:
    """One object per distinct label set and per owner, alive while some Pod uses it."""

    def __init__(self) -> None:
        self.labels: weakref.WeakValueDictionary[tuple[tuple[str, str], ...], _Labels] = (
            weakref.WeakValueDictionary()
        )
        self.owners: weakref.WeakValueDictionary[tuple[str, str, str, str], OwnerRef] = (
            weakref.WeakValueDictionary()
        )

    def compact(self, info: PodInfo) -> PodInfo:
        intern = sys.intern
        return PodInfo(
            name=info.name,
            namespace=intern(info.namespace),
            uid=info.uid,
            labels=self._labels(info.labels),
            node_name=intern(info.node_name),
            owner=self._owner(info.owner),
            phase=intern(info.phase),
            hooks_annotation=info.hooks_annotation,
        )

    def _labels(self, labels: Mapping[str, str]) -> Mapping[str, str]:
        key = tuple(sorted(labels.items()))
        shared = self.labels.get(key)
        if shared is None:
            shared = _Labels((sys.intern(k), sys.intern(v)) for k, v in key)
            self.labels[key] = shared
        return shared

    def _owner(self, owner: OwnerRef | None) -> OwnerRef | None:
        if owner is None:
            return None
        key = (owner.uid, owner.kind, owner.name, owner.api_version)
        shared = self.owners.get(key)
        if shared is None:
            intern = sys.intern
            shared = OwnerRef(
                kind=intern(owner.kind),
                name=intern(owner.name),
                uid=intern(owner.uid),
                api_version=intern(owner.api_version),
            )
            self.owners[key] = shared
        return shared


class PodFactsCache:
    """``(namespace, name) -> PodInfo`` for all Pods, with a GET behind every miss."""

    def __init__(
        self,
        api: JsonApi,
        *,
        page_size: int = 500,
        quiet_seconds: float = QUIET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        namespaces: Sequence[str] = (),
        exclude_namespaces: Sequence[str] = (),
    ) -> None:
        self.api = api
        self.namespaces = frozenset(namespaces)
        """Only these namespaces' Pods (all when empty): what ``capture.namespaces`` lets in."""
        self.quiet_seconds = quiet_seconds
        self.clock = clock
        self.pods: dict[tuple[str, str], tuple[PodInfo, float]] = {}
        """Each Pod's facts and the (monotonic) time they last changed."""
        self._listed: set[tuple[str, str]] | None = None
        self._sharing = _Sharing()
        self.states: dict[tuple[str, str], PodState] = {}
        """Pods that are terminating or show a disruption (a few at any time)."""
        self.deleted: OrderedDict[str, None] = OrderedDict()
        """Uids of Pods seen deleted (bounded by :data:`TOMBSTONES`)."""
        self.on_sighting: Callable[[Sighting], None] | None = None
        """Told of every disruption a Pod shows (the leader's watchers); must not block."""
        self.on_change: Callable[[str, str, str], None] | None = None
        """Told (namespace, name, uid) when a Pod starts terminating, shows a disruption or goes:
        the controller then looks at its record at once instead of at its next recheck."""
        path, selector = pod_collection(namespaces, exclude_namespaces)
        self.watch = ListWatch(
            api,
            path,
            self._on_event,
            name="pod-cache",
            field_selector=selector,
            page_size=page_size,
            on_list_start=self._list_started,
            on_list_done=self._list_done,
            decode_event=slim.pod_event,
            decode_page=slim.pod_page,
        )

    async def run(self) -> None:
        await self.watch.run()

    async def _on_event(self, kind: str, obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        key = (str(metadata.get("namespace", "")), str(metadata.get("name", "")))
        if self.namespaces and key[0] not in self.namespaces:
            return
        if kind == "DELETED":
            known = self.pods.get(key)
            if known is not None and known[0].uid == metadata.get("uid"):
                del self.pods[key]
                self.states.pop(key, None)
            self._tombstone(str(metadata.get("uid") or ""))
            if self.on_change is not None:
                self.on_change(key[0], key[1], str(metadata.get("uid") or ""))
        else:
            self._track_state(key, obj, metadata)
            info = pod_info_from_json(obj)
            known = self.pods.get(key)
            # Most Pod updates touch nothing we keep (conditions, container states): those
            # do not restart the quiet period.
            if known is None or known[0] != info:
                self.pods[key] = (self._sharing.compact(info), self.clock())
            if self._listed is not None:
                self._listed.add(key)
        telemetry.POD_CACHE_PODS.set(len(self.pods))

    def _track_state(self, key: tuple[str, str], obj: dict[str, Any], metadata: Mapping[str, Any]) -> None:
        """Keep the terminating/disrupted state of the few Pods that have one; tell the watchers."""
        target = disruption_target(obj)
        terminating = bool(metadata.get("deletionTimestamp"))
        status = obj.get("status") or {}
        kubelet = status.get("phase") == "Failed" and status.get("reason") == "Evicted"
        if not (target or terminating or kubelet):
            self.states.pop(key, None)
            return
        previous = self.states.get(key)
        info = self._sharing.compact(pod_info_from_json(obj))
        changed = previous is None or previous.disruption != target or previous.info.phase != info.phase
        sighting = previous.sighting if previous is not None and not changed else None
        if changed and (target or kubelet):
            sighting = sighting_from_pod(obj, _now_stamp())
        self.states[key] = PodState(
            info=info,
            terminating=terminating,
            disruption=target,
            owners=tuple(metadata.get("ownerReferences") or ()),
            sighting=sighting,
        )
        if changed and sighting is not None and self.on_sighting is not None:
            self.on_sighting(sighting)
        moved = previous is None or previous.terminating != terminating or previous.disruption != target
        if moved and self.on_change is not None:
            self.on_change(key[0], key[1], info.uid)

    def sightings(self) -> list[Sighting]:
        """Every disruption the cached Pods show now (what watchers starting to lead catch up on)."""
        return [state.sighting for state in list(self.states.values()) if state.sighting is not None]

    def _tombstone(self, uid: str) -> None:
        if uid:
            self.deleted[uid] = None
            self.deleted.move_to_end(uid)
            if len(self.deleted) > TOMBSTONES:
                self.deleted.popitem(last=False)

    def state(self, namespace: str, name: str, uid: str) -> PodState | Literal[False] | None:
        """For the controller: the Pod's state, None when it is gone, False when only a GET can say."""
        if not self.watch.synced.is_set() or not self.watch.live:
            return False
        if uid and uid in self.deleted:
            return None
        key = (namespace, name)
        state = self.states.get(key)
        if state is not None:
            return state
        entry = self.pods.get(key)
        if entry is None:
            return False  # never seen (created a moment ago) or gone unseen: ask
        return PodState(info=entry[0])

    def _list_started(self) -> None:
        self._listed = set()

    def _list_done(self) -> None:
        listed, self._listed = self._listed or set(), None
        for key in [key for key in self.pods if key not in listed]:
            self._tombstone(self.pods[key][0].uid)
            del self.pods[key]
            self.states.pop(key, None)
        telemetry.POD_CACHE_PODS.set(len(self.pods))
        log.info("pod cache synced: %d pods", len(self.pods))

    def cached(self, namespace: str, name: str, uid: str = "") -> PodInfo | None:
        """The cached facts, or None when only a GET can be trusted."""
        if not self.watch.synced.is_set() or not self.watch.live:
            # Before the first list, and whenever the watch is down (reconnecting, re-listing
            # after a 410): what the cache holds may have changed unseen.
            telemetry.POD_CACHE_LOOKUPS.labels("unsynced").inc()
            return None
        entry = self.pods.get((namespace, name))
        if entry is None or (uid and entry[0].uid != uid):
            telemetry.POD_CACHE_LOOKUPS.labels("miss").inc()
            return None
        if self.clock() - entry[1] < self.quiet_seconds:
            telemetry.POD_CACHE_LOOKUPS.labels("recent").inc()
            return None
        telemetry.POD_CACHE_LOOKUPS.labels("hit").inc()
        return entry[0]

    async def lookup(self, namespace: str, name: str, uid: str = "") -> PodInfo:
        """What the webhook calls: the cache when it can answer, the API server when not."""
        info = self.cached(namespace, name, uid)
        if info is not None:
            return info
        return await lookup_pod(self.api, namespace, name)


def pod_collection(namespaces: Sequence[str], exclude: Sequence[str]) -> tuple[str, str | None]:
    """The Pods to watch: (API path, field selector) for what capture lets in."""
    if len(set(namespaces)) == 1:
        return f"/api/v1/namespaces/{quote(namespaces[0], safe='')}/pods", None
    if namespaces:
        return "/api/v1/pods", None  # several: the server cannot OR them; dropped on arrival
    selector = ",".join(f"metadata.namespace!={name}" for name in sorted(set(exclude)))
    return "/api/v1/pods", selector or None


def _now_stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
