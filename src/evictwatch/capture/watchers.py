"""The backstop and the other doors: Pods and Events watched, turned into records.

* Pods with ``status.phase=Failed`` (a server-side field selector) catch the kubelet's
  node-pressure evictions;
* all Pods, streamed and never cached, catch the ``DisruptionTarget`` condition: scheduler
  preemption, the taint manager, PodGC, the kubelet, and Eviction API calls that the webhook
  missed while it was down;
* Events on Pods (``involvedObject.kind=Pod``) catch what the kubelet, the scheduler and the
  taint manager say.

Every sighting merges into the Pod's record by name; the merge is idempotent, so re-lists
and restarts make no duplicates. A bounded cache of recent sightings skips the API round
trip for the many status updates a terminating Pod goes through.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Event, Pod

from ..kube.client import namespace_is_going
from ..kube.listwatch import ListWatch
from ..model.podfacts import sighting_from_event, sighting_from_pod
from ..model.record import Sighting
from ..model.types import Source
from ..records.store import RecordStore, utc_now
from .filtering import CaptureFilter
from .unknown_reasons import note_unknown_reason

log = logging.getLogger("evictwatch.watchers")


class SeenCache:
    """The last N sightings (pod uid, source); bounded, so memory does not grow with the cluster."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str], None] = OrderedDict()

    def check_and_add(self, key: tuple[str, str]) -> bool:
        """True if ``key`` was seen before (and refresh it)."""
        if key in self._items:
            self._items.move_to_end(key)
            return True
        self._items[key] = None
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return False

    def forget(self, key: tuple[str, str]) -> None:
        self._items.pop(key, None)


class Watchers:
    def __init__(
        self,
        client: AsyncClient,
        store: RecordStore,
        capture_filter: CaptureFilter,
        *,
        pods: bool = True,
        events: bool = True,
    ) -> None:
        self.store = store
        self.filter = capture_filter
        self.seen = SeenCache()
        self.sightings = 0
        self.watches: list[ListWatch] = []
        if pods:
            self.watches.append(
                ListWatch(
                    client,
                    Pod,
                    self._on_pod,
                    "pods-failed",
                    field_selector="status.phase=Failed",
                    api=store.api,
                )
            )
            self.watches.append(ListWatch(client, Pod, self._on_pod, "pods", api=store.api))
        if events:
            self.watches.append(
                ListWatch(
                    client,
                    Event,
                    self._on_event,
                    "events",
                    field_selector="involvedObject.kind=Pod",
                    api=store.api,
                )
            )

    async def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        sighting = sighting_from_pod(pod, utc_now())
        if sighting is not None:
            await self._record(sighting)

    async def _on_event(self, kind: str, event: dict[str, Any]) -> None:
        if kind == "DELETED":
            return
        sighting = sighting_from_event(event, utc_now())
        if sighting is not None:
            await self._record(sighting)

    async def _record(self, sighting: Sighting) -> None:
        pod = sighting.pod
        if not self.filter.namespace(pod.namespace).capture or not self.filter.pod(pod).capture:
            return
        key = (pod.uid or f"{pod.namespace}/{pod.name}", f"{sighting.source}:{bool(sighting.pressure)}")
        if self.seen.check_and_add(key):
            return
        try:
            result = await self.store.record_sighting(sighting)
        except Exception as error:
            if namespace_is_going(error):
                # Nothing can be written there any more, and the Pod goes with its namespace.
                log.info(
                    "not recording the %s disruption of %s/%s: its namespace is being deleted",
                    sighting.source,
                    pod.namespace,
                    pod.name,
                    extra={"namespace": pod.namespace, "pod": pod.name},
                )
                return
            self.seen.forget(key)
            log.error(
                "could not record the %s disruption of %s/%s: %s",
                sighting.source,
                pod.namespace,
                pod.name,
                error,
                extra={"namespace": pod.namespace, "pod": pod.name},
            )
            raise  # the watch resumes from before this event, after a backoff
        self.sightings += 1
        if result.changed and sighting.source is Source.OTHER:
            note_unknown_reason(sighting, result.name)
        if result.changed:
            log.info(
                "%s disruption of %s/%s recorded (%s)",
                sighting.source,
                pod.namespace,
                pod.name,
                sighting.reason,
                extra={
                    "namespace": pod.namespace,
                    "pod": pod.name,
                    "source": str(sighting.source),
                    "record": result.name,
                },
            )
