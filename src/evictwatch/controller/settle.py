"""Settle one record in one write: the outcome, its context and the sinks' deliveries together.

Everything is read from watch-fed caches (the record, the Pod, the Node, the PDBs, the Events,
the owners: see :mod:`.context`), the sinks that are due are called, and then ONE status write
(a compare-and-swap on the record's resourceVersion) carries the outcome, the context and what
each sink did. A sink slower than :data:`ROUND_SECONDS` finishes on its own and its result is
written afterwards; a sink that failed is retried with its backoff until ``maxAttempts``, then
marked Failed, without holding the others back.

All lasting progress lives in the record's status, so a restart or a fail-over picks up where
the last write left off:

* ``status.outcome`` plus ``status.observedGeneration``: settled for this version of the spec;
  any change of the spec (a new attempt, a watcher's sighting) re-opens the record, so Blocked
  can become Evicted;
* ``status.deliveries[sink]``: ``{state, outcome, attempts, lastError}``.

Deliveries made but not yet written (a write that met a conflict) are remembered in memory and
written with the next try, never made again by this process. A crash between a delivery and its
write repeats that delivery after the restart: sinks are at-least-once (the HTTP sink's
idempotency key and the Events sink's names let a receiver drop the repeat).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .. import telemetry
from ..aio import cancel_and_wait
from ..capture.podcache import PodFactsCache
from ..kube.api import JsonApi
from ..kube.errors import Conflict, NotFound
from ..kube.informer import count_fallback
from ..model.notice import Eviction, notice_from_record
from ..model.outcome import decide, parse_time
from ..model.podeviction import record_path
from ..model.types import Outcome, Source
from ..model.why import pick_why
from ..records.cache import RecordCache
from ..records.crd import GROUP, KIND, VERSION
from ..records.signing import verify
from ..sinks.base import Sink, wants
from . import inflight
from .context import ContextCaches
from .devicetaints import device_taint_context

log = logging.getLogger("evictwatch.controller")

FINAL = {Outcome.EVICTED, Outcome.BLOCKED, Outcome.POD_GONE, Outcome.EVICTED_BY_KUBELET, Outcome.FAILED}
ROUND_SECONDS = 2.0
"""How long the settling write waits for slow sinks; they are written on their own after."""

Key = tuple[str, str]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def delivery_done(sink: Sink, state: dict[str, Any], outcome: object, attempts: int) -> bool:
    """This sink needs nothing more for this outcome.

    A sink that tells a running count (the Events sink: ``follows_attempts``) is due again
    when the record's attempts grew since its last delivery, so that its Event says "x7"
    when the drain tried seven times, not the two it had tried when it was first blocked.
    """
    if state.get("outcome") != outcome or state.get("state") not in inflight.FINAL_STATES:
        return False
    if getattr(sink, "follows_attempts", False) and state.get("state") == "Delivered":
        return int(state.get("recordAttempts") or 0) >= attempts
    return True


@dataclass
class Result:
    """What the queue should do next with this record."""

    requeue_after: float | None = None


@dataclass
class _Round:
    """The deliveries of one record not yet in its status: made (entries) or under way (tasks)."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    late: set[str] = field(default_factory=set)
    """Sinks still running when the round's write went out: they ask for a write of their own."""


class Settler:
    def __init__(
        self,
        api: JsonApi,
        records: RecordCache,
        pods: PodFactsCache | None,
        caches: ContextCaches,
        sinks: Sequence[Sink],
        key: bytes,
        *,
        blocked_after: float,
        requeue: Callable[[Key], None] = lambda key: None,
    ) -> None:
        self.api = api
        self.records = records
        self.pods = pods
        self.caches = caches
        self.sinks = list(sinks)
        self.key = key
        self.blocked_after = blocked_after
        self.requeue = requeue
        self._untrusted: set[str] = set()
        self._rounds: dict[Key, _Round] = {}

    def is_done(self, record: dict[str, Any]) -> bool:
        """Settled for its current spec and every sink final: a watch event of it needs no work."""
        metadata = record.get("metadata") or {}
        status = record.get("status") or {}
        outcome = status.get("outcome")
        if outcome not in FINAL or int(status.get("observedGeneration") or 0) < int(
            metadata.get("generation") or 0
        ):
            return False
        deliveries = status.get("deliveries") or {}
        attempts = int((record.get("spec") or {}).get("attempts") or 0)
        return all(
            delivery_done(sink, deliveries.get(sink.name) or {}, outcome, attempts) for sink in self.sinks
        )

    async def reconcile(self, namespace: str, name: str) -> Result:
        key = (namespace, name)
        record = self.records.get(namespace, name)
        if record is None:
            self._forget(key)
            return Result()
        if not verify(self.key, record):
            if f"{namespace}/{name}" not in self._untrusted:
                self._untrusted.add(f"{namespace}/{name}")
                log.warning(
                    "ignoring PodEviction %s/%s: its signature does not check out (not ours)",
                    namespace,
                    name,
                    extra={"namespace": namespace, "record": name},
                )
            return Result()
        spec = record.get("spec") or {}
        status = dict(record.get("status") or {})
        generation = int((record.get("metadata") or {}).get("generation") or 0)
        current = status.get("outcome")
        settling = current not in FINAL or int(status.get("observedGeneration") or 0) < generation
        new_status = status
        if settling:
            settled = await self._settle(record, spec, status)
            if isinstance(settled, Result):
                return settled
            new_status = settled
        new_status, wait, record = await self._deliver(key, record, new_status)
        status = dict(record.get("status") or {})
        if new_status != status:
            written = await self._write(record, new_status)
            if written is None:
                return Result(requeue_after=0.05)  # the cache brings the newer record; then again
            self.records.write_through(written)
            done = self._rounds.get(key)
            if done is not None:
                for sink_name in list(done.entries):
                    if done.entries[sink_name] == (new_status.get("deliveries") or {}).get(sink_name):
                        del done.entries[sink_name]
                if not done.entries and not done.running:
                    del self._rounds[key]
            if settling:
                self._settled(record, spec, new_status)
        return Result(requeue_after=min(wait) if wait else None)

    async def stop(self) -> None:
        """Cancel the deliveries under way (losing the lead, or stopping): what they did not
        write, the next leader finds as not done (or, for Slack, as Sending: Interrupted)."""
        running = [task for round_ in self._rounds.values() for task in round_.running.values()]
        self._rounds.clear()
        await cancel_and_wait(running)

    def _forget(self, key: Key) -> None:
        round_ = self._rounds.pop(key, None)
        if round_ is not None:
            for task in round_.running.values():
                task.cancel()

    async def _pod(self, namespace: str, name: str, uid: str) -> dict[str, Any] | None:
        """The Pod now, from the Pod cache; a GET only where the cache cannot know yet."""
        if self.pods is not None:
            state = self.pods.state(namespace, name, uid)
            if state is None:
                return None
            if state is not False:
                return state.as_pod()
            count_fallback("Pod", "unseen" if self.pods.watch.live else "unsynced")
        try:
            return await self.api.request(
                "GET", f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"
            )
        except NotFound:
            return None

    async def _settle(
        self, record: dict[str, Any], spec: dict[str, Any], status: dict[str, Any]
    ) -> dict[str, Any] | Result:
        namespace = record["metadata"]["namespace"]
        record_pod = spec.get("pod") or {}
        pod_name = str(record_pod.get("name") or "")
        uid = str(record_pod.get("uid") or "")
        known_end = (record_pod.get("found") is False and spec.get("source") == Source.EVICTION_API) or (
            Source.KUBELET in (spec.get("sources") or [spec.get("source")])
            and spec.get("reason") == "Evicted"
        )
        pod = None if known_end or not pod_name else await self._pod(namespace, pod_name, uid)
        labels = record_pod.get("labels") or ((pod or {}).get("metadata") or {}).get("labels") or {}
        budgets = self.caches.budgets_for(namespace, labels) if labels else []
        now = _now()
        decision = decide(spec, pod, budgets, now, self.blocked_after)
        if decision.outcome is None:
            return Result(requeue_after=decision.recheck_after)
        refs = ((pod or {}).get("metadata") or {}).get("ownerReferences") or []
        controlling = next((ref for ref in refs if ref.get("controller")), refs[0] if refs else None)
        first_ref = record_pod.get("owner") or controlling
        node_name = record_pod.get("nodeName") or ((pod or {}).get("spec") or {}).get("nodeName", "")
        owners = await self.caches.owners.chain(namespace, first_ref)
        new_status: dict[str, Any] = {
            **status,
            "outcome": str(decision.outcome),
            "outcomeTime": status["outcomeTime"]
            if status.get("outcome") == str(decision.outcome) and status.get("outcomeTime")
            else _stamp(now),
            "outcomeReason": decision.reason,
            "observedAttempts": int(spec.get("attempts") or 0),
            "observedGeneration": int((record.get("metadata") or {}).get("generation") or 0),
            "owners": owners,
            "disruptionBudgets": budgets,
        }
        node = self.caches.node(node_name)
        if node is not None:
            new_status["node"] = node
        why = pick_why(self.caches.events.for_pod(namespace, pod_name, uid)) if pod_name else None
        if why is not None:
            new_status["why"] = why
        device_taints = await device_taint_context(self.api, namespace, spec, None)  # a rare door: GETs
        if device_taints:
            new_status["deviceTaints"] = device_taints
        return new_status

    def _settled(self, record: dict[str, Any], spec: dict[str, Any], status: dict[str, Any]) -> None:
        now = _now()
        outcome = str(status.get("outcome"))
        started = parse_time(spec.get("lastAttemptTime")) or now
        telemetry.SETTLE_SECONDS.labels(outcome).observe(max((now - started).total_seconds(), 0.0))
        namespace = record["metadata"]["namespace"]
        pod_name = (spec.get("pod") or {}).get("name", "")
        log.info(
            "eviction of %s/%s settled: %s (%s)",
            namespace,
            pod_name,
            outcome,
            status.get("outcomeReason", ""),
            extra={
                "namespace": namespace,
                "pod": pod_name,
                "outcome": outcome,
                "record": record["metadata"]["name"],
            },
        )

    async def _write(self, record: dict[str, Any], status: dict[str, Any]) -> dict[str, Any] | None:
        """PUT the status subresource with the record's resourceVersion; None on a conflict."""
        metadata = record["metadata"]
        body = {
            "apiVersion": record.get("apiVersion") or f"{GROUP}/{VERSION}",
            "kind": record.get("kind") or KIND,
            "metadata": metadata,
            "spec": record.get("spec"),
            "status": status,
        }
        path = record_path(metadata["namespace"], metadata["name"]) + "/status"
        try:
            return await self.api.request("PUT", path, body, {"fieldManager": "evictwatch-controller"})
        except (Conflict, NotFound):
            return None

    async def _deliver(
        self, key: Key, record: dict[str, Any], status: dict[str, Any]
    ) -> tuple[dict[str, Any], list[float], dict[str, Any]]:
        """Call the sinks that are due: the status with their results, when to look again, and
        the record to write it on (a newer one after a Sending mark was written)."""
        outcome = status.get("outcome")
        if outcome not in FINAL:
            return status, [], record
        eviction = notice_from_record({**record, "status": status})
        deliveries: dict[str, Any] = dict(status.get("deliveries") or {})
        round_ = self._rounds.setdefault(key, _Round())
        now = _now()
        due: list[Sink] = []
        wait: list[float] = []
        for sink in self.sinks:
            made = round_.entries.get(sink.name)
            if made is not None and made.get("outcome") == outcome:
                deliveries[sink.name] = made
            state = deliveries.get(sink.name) or {}
            if sink.name in round_.running:
                continue
            if delivery_done(sink, state, outcome, eviction.attempts):
                continue
            if state.get("outcome") != outcome or state.get("state") not in ("Pending", inflight.SENDING):
                state = {}  # a new outcome, or delivered before: a fresh count of tries
            interrupted = inflight.after_interruption(state, outcome, resend=inflight.deduplicates(sink))
            if interrupted is not None:
                deliveries[sink.name] = interrupted
                inflight.warn_interrupted(sink.name, eviction)
                continue
            if not wants(sink.filter, eviction):
                deliveries[sink.name] = {"state": "Skipped", "outcome": outcome, "attempts": 0}
                continue
            tries = int(state.get("attempts") or 0) if state.get("outcome") == outcome else 0
            last = parse_time(state.get("time")) if state.get("state") == "Pending" else None
            if last is not None and tries:
                remaining = (last + datetime.timedelta(seconds=sink.backoff(tries)) - now).total_seconds()
                if remaining > 0:
                    wait.append(remaining)
                    continue
            due.append(sink)
            if inflight.marks_in_flight(sink):
                deliveries[sink.name] = inflight.sending(state, outcome, _stamp(now))
        if any(inflight.marks_in_flight(sink) for sink in due):
            # A sink that cannot recognise a repeat (Slack) is marked Sending in the status before
            # anything is sent (with the outcome, when settling): one write more, for those only.
            written = await self._write(record, {**status, "deliveries": deliveries})
            if written is None:
                return status, [0.05], record
            self.records.write_through(written)
            record, status = written, dict(written.get("status") or {})
        for sink in due:
            previous = deliveries.get(sink.name) or {}
            retrying = previous.get("outcome") == outcome and previous.get("state") in ("Pending", "Sending")
            tries = (int(previous.get("attempts") or 0) if retrying else 0) + 1
            task = asyncio.create_task(self._one(key, round_, sink, eviction, str(outcome), tries, wait))
            round_.running[sink.name] = task
        if round_.running:
            await asyncio.wait(list(round_.running.values()), timeout=ROUND_SECONDS)
            round_.late.update(round_.running)
        for sink in self.sinks:
            made = round_.entries.get(sink.name)
            if made is not None and made.get("outcome") == outcome:
                deliveries[sink.name] = made
        if not round_.entries and not round_.running:
            self._rounds.pop(key, None)
        return {**status, "deliveries": deliveries}, wait, record

    async def _one(
        self,
        key: Key,
        round_: _Round,
        sink: Sink,
        eviction: Eviction,
        outcome: str,
        tries: int,
        wait: list[float],
    ) -> None:
        """One delivery; its entry is kept for the status write (a slow one asks for its own)."""
        try:
            error = await self._call(sink, eviction)
        finally:
            round_.running.pop(sink.name, None)
        entry: dict[str, Any] = {
            "outcome": outcome,
            "attempts": tries,
            "time": _stamp(_now()),
            "recordAttempts": eviction.attempts,
        }
        if error is None:
            entry["state"] = "Delivered"
            telemetry.SINK_DELIVERIES.labels(sink.name).inc()
        else:
            final = tries >= sink.max_attempts
            entry["state"] = "Failed" if final else "Pending"
            entry["lastError"] = error[:512]
            telemetry.SINK_FAILURES.labels(sink.name, str(final).lower()).inc()
            if not final:
                wait.append(sink.backoff(tries))
            log.warning(
                "delivery of %s to %s failed: %s%s",
                eviction.key,
                sink.name,
                error,
                " (giving up)" if final else f" (retrying in {sink.backoff(tries):.1f} s)",
                extra={"namespace": eviction.namespace, "pod": eviction.pod, "sink": sink.name},
            )
        round_.entries[sink.name] = entry
        if sink.name in round_.late:
            round_.late.discard(sink.name)
            self.requeue(key)  # finished after the round was written: write it on its own

    async def _call(self, sink: Sink, eviction: Eviction) -> str | None:
        try:
            await sink.deliver(eviction)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - a sink's failure is data, not a crash
            return f"{type(error).__name__}: {error}"
        return None
