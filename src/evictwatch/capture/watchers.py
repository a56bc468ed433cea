"""The backstop and the other doors: disruptions the Pods show, turned into records.

The Pod-facts cache's watch (the process's only Pod watch) hands over every disruption a Pod
shows (:attr:`PodFactsCache.on_sighting`): a kubelet eviction (``phase: Failed``,
``reason: Evicted``) and every ``DisruptionTarget`` condition — scheduler preemption, the taint
manager, PodGC, the kubelet, and Eviction API calls that the webhook missed while it was down.

Events are evidence, never a source: anyone allowed to create Events could otherwise make a
signed record of a Pod that never existed. They only explain records (the controller's "why").

A sighting the records cache shows as already recorded writes nothing; above all, the
``DisruptionTarget`` of an API eviction that the webhook recorded (it waits a moment for the
webhook's record to arrive first). Merges are idempotent, so re-lists and restarts make no
duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from .. import telemetry
from ..kube.client import namespace_is_going
from ..kube.errors import is_permanent
from ..model.record import Sighting, merge_sighting, record_name
from ..model.types import Source
from ..records.cache import RecordCache
from ..records.store import RecordStore
from .filtering import CaptureFilter
from .podcache import PodFactsCache
from .unknown_reasons import note_unknown_reason

log = logging.getLogger("evictwatch.watchers")

WEBHOOK_GRACE_SECONDS = 2.0
"""How long an API eviction's DisruptionTarget waits for the webhook's record to be seen."""


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
    """Records what the Pod cache sees; runs while this replica leads."""

    name = "pods"

    def __init__(
        self,
        store: RecordStore,
        records: RecordCache,
        pods: PodFactsCache,
        capture_filter: CaptureFilter,
        *,
        webhook_grace: float = WEBHOOK_GRACE_SECONDS,
    ) -> None:
        self.store = store
        self.records = records
        self.pods = pods
        self.filter = capture_filter
        self.webhook_grace = webhook_grace
        self.seen = SeenCache()
        self.sightings = 0
        self._queue: asyncio.Queue[tuple[float, Sighting]] = asyncio.Queue()

    def _enqueue(self, sighting: Sighting) -> None:
        grace = self.webhook_grace if sighting.source == Source.EVICTION_API else 0.0
        self._queue.put_nowait((time.monotonic() + grace, sighting))

    async def run(self) -> None:
        """Until cancelled: catch up on what the cache shows now, then follow what it sees."""
        self.pods.on_sighting = self._enqueue
        try:
            await self.pods.watch.synced.wait()
            await self.records.watch.synced.wait()
            for sighting in self.pods.sightings():
                self._enqueue(sighting)
            while True:
                due, sighting = await self._queue.get()
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._record(sighting)
        finally:
            if self.pods.on_sighting == self._enqueue:
                self.pods.on_sighting = None

    def _already_recorded(self, sighting: Sighting) -> bool:
        pod = sighting.pod
        spec = self.records.spec(pod.namespace, record_name(pod.name, pod.uid))
        if spec is None:
            return False
        sources = spec.get("sources") or [spec.get("source")]
        if sighting.source == Source.EVICTION_API and str(Source.EVICTION_API) in sources:
            return True  # the webhook's record says more than the condition does
        return merge_sighting(spec, sighting) is None

    async def _record(self, sighting: Sighting) -> None:
        pod = sighting.pod
        if not self.filter.namespace(pod.namespace).capture or not self.filter.pod(pod).capture:
            return
        key = (pod.uid or f"{pod.namespace}/{pod.name}", f"{sighting.source}:{bool(sighting.pressure)}")
        if self.seen.check_and_add(key) or self._already_recorded(sighting):
            return
        extra = {"namespace": pod.namespace, "pod": pod.name}
        try:
            result = await self.store.record_sighting(sighting)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - one Pod's trouble never stops the others
            if namespace_is_going(error):
                # Nothing can be written there any more, and the Pod goes with its namespace.
                log.info(
                    "not recording the %s disruption of %s/%s: its namespace is being deleted",
                    sighting.source,
                    pod.namespace,
                    pod.name,
                    extra=extra,
                )
                return
            if is_permanent(error):
                self._lost(sighting, error)
                return  # kept in ``seen``: the same object would only be refused again
            self.seen.forget(key)
            log.warning(
                "could not record the %s disruption of %s/%s (%s); trying again in 1 s",
                sighting.source,
                pod.namespace,
                pod.name,
                error,
                extra=extra,
            )
            asyncio.get_running_loop().call_later(1.0, self._enqueue, sighting)
            return
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
                extra={**extra, "source": str(sighting.source), "record": result.name},
            )

    def _lost(self, sighting: Sighting, error: BaseException) -> None:
        """A record the API server will never take (it refused the object itself): counted, logged
        with the object, and skipped, so that one bad object never holds up the watch behind it."""
        pod = sighting.pod
        telemetry.RECORDS_LOST.labels(str(sighting.source)).inc()
        log.error(
            "LOST the %s disruption of %s/%s (uid %s): the API server refused its record for good: %s",
            sighting.source,
            pod.namespace,
            pod.name,
            pod.uid or "unknown",
            error,
            extra={"namespace": pod.namespace, "pod": pod.name, "source": str(sighting.source)},
        )
