"""The controller: settle every record the records cache shows, with N workers; retention.

It runs while this replica leads. Its inputs are the watch-fed caches the process already
holds (records, Pods) and those it starts while leading (:class:`ContextCaches`: Nodes, PDBs,
Events, owners), so settling an eviction reads nothing from the API server in the steady state.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ..aio import cancel_and_wait
from ..capture.podcache import PodFactsCache, PodState
from ..config import ControllerConfig
from ..kube.api import JsonApi
from ..model.outcome import parse_time
from ..model.record import record_name
from ..model.types import Outcome, Source
from ..records.cache import RecordCache
from ..sinks.base import Sink
from . import retention
from .context import ContextCaches
from .hooks import HookRunner
from .settle import Settler
from .workqueue import Key, WorkQueue

NUDGE_SECONDS = 0.2
"""A change (a record written, a Pod disrupted, terminating or gone) is settled this long after it
is seen, not at once. One eviction brings the record's create, the Pod's DisruptionTarget and
its deletion within a few milliseconds, while the API server is still deleting the Pod: one
reconcile after them replaces three, and the status write and the Events no longer compete
with the eviction's own request (``bench.added_latency``, docs/DESIGN.md). Settling stays
well within the 2 s budget of issue 14."""

log = logging.getLogger("evictwatch.controller")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def look_after(
    record: Mapping[str, Any],
    pod: PodState | Literal[False] | None,
    now: datetime.datetime,
    blocked_after: float,
) -> float:
    """How long after a change of ``record`` the controller should look at it.

    Soon (:data:`NUDGE_SECONDS`), unless the record is an Eviction API attempt still Pending
    whose Pod the cache shows running, unchanged: nothing can be decided about it before the
    Pod moves, which tells the controller itself (``_on_pod``), or before ``blockedAfterSeconds``
    have passed since the last attempt, when it is Blocked. Looking at once anyway was 147 of
    the 356 reconciles of a burst of 150 evictions, each only scheduling that recheck.
    """
    spec = record.get("spec") or {}
    status = record.get("status") or {}
    record_pod = spec.get("pod") or {}
    waiting = (
        status.get("outcome") in (None, "", str(Outcome.PENDING))
        and spec.get("source") == Source.EVICTION_API
        and record_pod.get("found") is not False
        and isinstance(pod, PodState)
        and pod.info.uid == record_pod.get("uid")
        and not pod.terminating
        and pod.disruption is None
    )
    if not waiting:
        return NUDGE_SECONDS
    last = parse_time(spec.get("lastAttemptTime")) or now
    return max(blocked_after - (now - last).total_seconds(), NUDGE_SECONDS)


SYNC_WAIT_SECONDS = 10.0
"""How long a new leader waits for its caches to list before it settles with what it has."""


class Controller:
    def __init__(
        self,
        api: JsonApi,
        records: RecordCache,
        pods: PodFactsCache | None,
        sinks: Sequence[Sink],
        key: bytes,
        settings: ControllerConfig,
        *,
        events: bool = True,
        hooks: HookRunner | None = None,
    ) -> None:
        self.api = api
        self.key = key
        self.settings = settings
        self.records = records
        self.pods = pods
        self.caches = ContextCaches(api, events=events)
        self.queue = WorkQueue()
        self.settler = Settler(
            api,
            records,
            pods,
            self.caches,
            sinks,
            key,
            blocked_after=settings.blockedAfterSeconds,
            requeue=self.queue.add,
        )
        self.hooks = hooks
        self._leading = False

    def _on_pod(self, namespace: str, name: str, uid: str) -> None:
        """A Pod started terminating, shows a disruption or went: settle its record shortly."""
        if not self._leading:
            return
        key = (namespace, record_name(name, uid))
        record = self.records.get(*key)
        if record is not None and not self.settler.is_done(record):
            self.queue.add_after(key, NUDGE_SECONDS)

    def _on_record(self, kind: str, key: Key, record: dict[str, Any] | None) -> None:
        if not self._leading or record is None:
            return
        if self.hooks is not None:
            self.hooks.consider(key, record)
        if self.settler.is_done(record):
            return
        pod = (record.get("spec") or {}).get("pod") or {}
        state = (
            self.pods.state(key[0], str(pod.get("name") or ""), str(pod.get("uid") or ""))
            if self.pods is not None
            else False
        )
        self.queue.add_after(key, look_after(record, state, _now(), self.settings.blockedAfterSeconds))

    async def _work(self, key: Key) -> None:
        result = await self.settler.reconcile(*key)
        if result.requeue_after is not None:
            self.queue.add_after(key, result.requeue_after)

    async def _retention_loop(self) -> None:
        policy = self.settings.retention
        await asyncio.sleep(min(policy.intervalSeconds, 10.0))  # let the first sync settle first
        while True:
            try:
                records = [record for _, record in self.records.items()]
                await retention.enforce(
                    self.api, records, policy.ttlSeconds, policy.maxPerNamespace, self.key
                )
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - try again next round
                log.warning("retention round failed: %s", error)
            await asyncio.sleep(policy.intervalSeconds)

    async def run(self) -> None:
        """Run until cancelled (leadership lost)."""
        self.caches.start()
        try:
            await self.records.watch.synced.wait()
            if not await self.caches.wait_synced(SYNC_WAIT_SECONDS):
                log.warning("context caches not synced after %.0f s; settling anyway", SYNC_WAIT_SECONDS)
            self._leading = True
            self.records.subscribers.append(self._on_record)
            if self.pods is not None:
                self.pods.on_change = self._on_pod
            for key, record in self.records.items():  # what happened while another replica led
                if self.hooks is not None:
                    self.hooks.consider(key, record)
                if not self.settler.is_done(record):
                    self.queue.add(key)
            tasks = [
                asyncio.create_task(
                    self.queue.run_workers(self.settings.workers, self._work), name="controller-workers"
                ),
                asyncio.create_task(self._retention_loop(), name="retention"),
            ]
            try:
                await asyncio.gather(*tasks)
            finally:
                await cancel_and_wait(tasks)
                if self.hooks is not None:
                    await self.hooks.stop()
                await self.settler.stop()
        finally:
            self._leading = False
            if self.pods is not None and self.pods.on_change == self._on_pod:
                self.pods.on_change = None
            if self._on_record in self.records.subscribers:
                self.records.subscribers.remove(self._on_record)
            await self.caches.stop()
