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

Memory is kept near 0.5 KB per Pod (``bench.watch_cost``) by sharing what Pods repeat:
strings that recur (namespaces, nodes, label keys and values, owner fields) are interned, and
Pods with the same labels or the same owner share one object, held weakly so nothing outlives
its last Pod.
"""

from __future__ import annotations

import logging
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod

from .. import telemetry
from ..kube.listwatch import ListWatch
from ..kube.pods import lookup_pod
from ..kube.raw import JsonApi
from ..model.podfacts import pod_info_from_json
from ..model.record import OwnerRef, PodInfo

log = logging.getLogger("evictwatch.podcache")

QUIET_SECONDS = 1.0
"""A Pod's cached facts are used only once they have not changed for this long."""


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
        client: AsyncClient,
        api: JsonApi,
        *,
        page_size: int = 500,
        quiet_seconds: float = QUIET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.quiet_seconds = quiet_seconds
        self.clock = clock
        self.pods: dict[tuple[str, str], tuple[PodInfo, float]] = {}
        """Each Pod's facts and the (monotonic) time they last changed."""
        self._listed: set[tuple[str, str]] | None = None
        self._sharing = _Sharing()
        self.watch = ListWatch(
            client,
            Pod,
            self._on_event,
            name="pod-cache",
            page_size=page_size,
            on_list_start=self._list_started,
            on_list_done=self._list_done,
            api=api,
        )

    async def run(self) -> None:
        await self.watch.run()

    async def _on_event(self, kind: str, obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        key = (str(metadata.get("namespace", "")), str(metadata.get("name", "")))
        if kind == "DELETED":
            known = self.pods.get(key)
            if known is not None and known[0].uid == metadata.get("uid"):
                del self.pods[key]
        else:
            info = pod_info_from_json(obj)
            known = self.pods.get(key)
            # Most Pod updates touch nothing we keep (conditions, container states): those
            # do not restart the quiet period.
            if known is None or known[0] != info:
                self.pods[key] = (self._sharing.compact(info), self.clock())
            if self._listed is not None:
                self._listed.add(key)
        telemetry.POD_CACHE_PODS.set(len(self.pods))

    def _list_started(self) -> None:
        self._listed = set()

    def _list_done(self) -> None:
        listed, self._listed = self._listed or set(), None
        for key in [key for key in self.pods if key not in listed]:
            del self.pods[key]
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
