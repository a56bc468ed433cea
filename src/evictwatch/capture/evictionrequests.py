"""The Eviction Request API door: EvictionRequests and Evictions watched, folded into records.

Kubernetes 1.37 serves ``lifecycle.k8s.io/v1alpha1`` (``evictionrequests`` and ``evictions``)
only with the alpha ``EvictionRequestAPI`` feature gate on. So the API is discovered first
(``GET /apis/lifecycle.k8s.io/v1alpha1``, which every authenticated client may read): when it
is not served, one INFO line says so and discovery is tried again every
:data:`REDISCOVER_SECONDS`, so a cluster that turns the gate on later is followed without a
restart. When it is served, both kinds are listed and watched (:class:`ListWatch`, raw JSON),
and each one lands on its Pod's record (see :mod:`evictwatch.model.evictionrequests`): the
request as soon as it is made, before anything is evicted, then the responders' progress.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from ..kube.client import is_not_found, namespace_is_going
from ..kube.errors import ApiError, NotFound
from ..kube.listwatch import Handler, ListWatch
from ..model.evictionrequests import (
    eviction_entry,
    merge_eviction,
    merge_request,
    new_request_spec,
    request_entry,
    target_pod,
)
from ..model.podfacts import pod_info_from_json
from ..model.record import PodInfo, pod_to_json
from ..records.store import RecordStore, utc_now
from .filtering import CaptureFilter

log = logging.getLogger("evictwatch.watchers")

GROUP = "lifecycle.k8s.io"
VERSION = "v1alpha1"
DISCOVERY_PATH = f"/apis/{GROUP}/{VERSION}"
REDISCOVER_SECONDS = 300.0
EVICTION_REQUESTS = f"{DISCOVERY_PATH}/evictionrequests"
EVICTIONS = f"{DISCOVERY_PATH}/evictions"

Change = Callable[[Mapping[str, Any]], dict[str, Any] | None]


class EvictionRequestWatcher:
    """Runs while leading, like the other watchers; never ends on its own."""

    def __init__(
        self,
        store: RecordStore,
        capture_filter: CaptureFilter,
        *,
        rediscover_seconds: float = REDISCOVER_SECONDS,
    ) -> None:
        self.store = store
        self.filter = capture_filter
        self.rediscover_seconds = rediscover_seconds
        self.watches: list[ListWatch] = []
        self.served: set[str] = set()

    async def discover(self) -> set[str]:
        """The resources of ``lifecycle.k8s.io/v1alpha1`` this server serves; empty when none."""
        try:
            document = await self.store.api.request("GET", DISCOVERY_PATH)
        except NotFound:  # a group not served (a plain 404 page: still our NotFound)
            return set()
        names = {str(item.get("name")) for item in document.get("resources") or []}
        return names & {"evictionrequests", "evictions"}

    def _watch(self, path: str, handler: Handler, name: str) -> ListWatch:
        return ListWatch(self.store.api, path, handler, name)

    async def run(self) -> None:
        announced = False
        while True:
            try:
                self.served = await self.discover()
            except Exception as error:  # noqa: BLE001 - discovery is retried; the other doors go on
                log.warning(
                    "could not discover the Eviction Request API: %s: %s", type(error).__name__, error
                )
                self.served = set()
            if self.served:
                self.watches = []
                if "evictionrequests" in self.served:
                    self.watches.append(self._watch(EVICTION_REQUESTS, self._on_request, "evictionrequests"))
                if "evictions" in self.served:
                    self.watches.append(self._watch(EVICTIONS, self._on_eviction, "evictions"))
                log.info("watching %s in %s/%s", ", ".join(sorted(self.served)), GROUP, VERSION)
                await asyncio.gather(*(watch.run() for watch in self.watches))
            elif not announced:
                log.info(
                    "the Eviction Request API (%s/%s) is not served here (feature gate EvictionRequestAPI "
                    "off); looking again every %.0f s",
                    GROUP,
                    VERSION,
                    self.rediscover_seconds,
                )
                announced = True
            await asyncio.sleep(self.rediscover_seconds)

    async def _on_request(self, kind: str, request: dict[str, Any]) -> None:
        target = target_pod(request)
        if target is None:
            return
        entry = request_entry(request, deleted_at=utc_now() if kind == "DELETED" else "")
        namespace = str((request.get("metadata") or {}).get("namespace") or "")
        await self._record(
            namespace, target, lambda spec: merge_request(spec, entry), deleted=kind == "DELETED"
        )

    async def _on_eviction(self, kind: str, eviction: dict[str, Any]) -> None:
        target = target_pod(eviction)
        if target is None or kind == "DELETED":  # collected after the end: the record keeps its last state
            return
        entry = eviction_entry(eviction)
        namespace = str((eviction.get("metadata") or {}).get("namespace") or "")
        await self._record(namespace, target, lambda spec: merge_eviction(spec, entry))

    async def pod_info(self, namespace: str, name: str, uid: str) -> PodInfo:
        """The target Pod's facts; ``exists=False`` when no Pod of that name has that uid.

        A GET: requests are few (one per requester and Pod), and the Pod's labels are needed
        for the capture filter and the record alike.
        """
        try:
            pod = await self.store.api.request(
                "GET", f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}"
            )
        except ApiError as error:
            if not is_not_found(error):
                raise
            pod = None
        if pod is None or (pod.get("metadata") or {}).get("uid") != uid:
            return PodInfo(name=name, namespace=namespace, uid=uid, exists=False)
        return pod_info_from_json(pod)

    async def _record(
        self, namespace: str, target: tuple[str, str], change: Change, *, deleted: bool = False
    ) -> None:
        name, uid = target
        if not namespace or not self.filter.namespace(namespace).capture:
            return
        pod = await self.pod_info(namespace, name, uid)
        if (deleted and not pod.exists) or not self.filter.pod(pod).capture:
            return  # a request deleted after its Pod went adds nothing worth a new record
        fresh = change(new_request_spec(pod_to_json(pod), utc_now()))
        if fresh is None:  # cannot happen: every change adds to an empty record
            return
        try:
            result = await self.store.record_change(pod, fresh, change)
        except Exception as error:
            if namespace_is_going(error):
                return
            log.error(
                "could not record the eviction request for %s/%s: %s",
                namespace,
                name,
                error,
                extra={"namespace": namespace, "pod": name},
            )
            raise  # the watch resumes from before this event, after a backoff
        if result.changed:
            log.info(
                "eviction request for %s/%s recorded",
                namespace,
                name,
                extra={
                    "namespace": namespace,
                    "pod": name,
                    "source": "EvictionRequest",
                    "record": result.name,
                },
            )
