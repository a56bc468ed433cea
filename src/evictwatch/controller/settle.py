"""Settle one record: decide the outcome, gather context, deliver to every sink once.

All progress lives in the record's status, never in memory, so a restart (or a failover to
another replica) picks up exactly where the last writer left off:

* ``status.outcome`` plus ``status.observedGeneration``: settled for this version of the spec;
  any change of the spec (a new attempt, a watcher seeing the Pod's DisruptionTarget) re-opens
  the record, so Blocked can become Evicted;
* ``status.deliveries[sink]``: ``{state, outcome, attempts, lastError}``; a sink delivered
  for the current outcome is never called again; one that failed is retried with its backoff
  until ``maxAttempts``, then marked Failed, without holding the others back.

Each delivery is followed at once by a status write, so the window in which a crash could
repeat a delivery is one API call wide; the HTTP idempotency key covers even that.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lightkube import ApiError

from .. import telemetry
from ..kube.client import is_conflict, is_not_found
from ..kube.raw import JsonApi
from ..model.notice import notice_from_record
from ..model.outcome import decide, parse_time
from ..model.types import Outcome
from ..model.why import pick_why
from ..records.crd import GROUP, KIND, PLURAL, VERSION
from ..records.signing import verify
from ..sinks.base import Sink, wants
from . import context
from .devicetaints import device_taint_context

log = logging.getLogger("evictwatch.controller")

FINAL = {Outcome.EVICTED, Outcome.BLOCKED, Outcome.POD_GONE, Outcome.FAILED}
PDB_CACHE_SECONDS = 1.0


async def _nothing() -> list[dict[str, Any]]:
    return []


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Result:
    """What the queue should do next with this record."""

    requeue_after: float | None = None


class Settler:
    def __init__(self, api: JsonApi, sinks: Sequence[Sink], key: bytes, *, blocked_after: float) -> None:
        self.api = api
        self.sinks = list(sinks)
        self.key = key
        self.blocked_after = blocked_after
        self._untrusted: set[str] = set()
        self._pdb_cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    @staticmethod
    def _path(namespace: str, name: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"

    async def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.api.request("GET", self._path(namespace, name))
        except ApiError as error:
            if is_not_found(error):
                return None
            raise

    async def _budgets(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """The namespace's PDBs (listed at most once a second: a drain settles many Pods of one
        workload at once) narrowed to those that select the Pod."""
        loop = asyncio.get_running_loop()
        cached = self._pdb_cache.get(namespace)
        if cached is None or loop.time() - cached[0] > PDB_CACHE_SECONDS:
            cached = (loop.time(), await context.list_budgets(self.api, namespace))
            self._pdb_cache[namespace] = cached
            if len(self._pdb_cache) > 1024:
                self._pdb_cache.pop(next(iter(self._pdb_cache)))
        return context.budgets_selecting(cached[1], labels)

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
        return all(
            (deliveries.get(sink.name) or {}).get("outcome") == outcome
            and (deliveries.get(sink.name) or {}).get("state") in ("Delivered", "Failed", "Skipped")
            for sink in self.sinks
        )

    async def _status_call(self, record: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """PUT the status subresource with the record's resourceVersion (optimistic concurrency)."""
        metadata = record["metadata"]
        body = {
            "apiVersion": record.get("apiVersion") or f"{GROUP}/{VERSION}",
            "kind": record.get("kind") or KIND,
            "metadata": metadata,
            "spec": record.get("spec"),
            "status": status,
        }
        path = self._path(metadata["namespace"], metadata["name"]) + "/status"
        return await self.api.request("PUT", path, body, {"fieldManager": "evictwatch-controller"})

    async def reconcile(self, namespace: str, name: str) -> Result:
        record = await self._get(namespace, name)
        if record is None:
            return Result()
        if not verify(self.key, record):
            if f"{namespace}/{name}" not in self._untrusted:
                self._untrusted.add(f"{namespace}/{name}")
                log.warning(
                    "ignoring PodEviction %s/%s: its signature does not check out (not written by "
                    "evictwatch)",
                    namespace,
                    name,
                    extra={"namespace": namespace, "record": name},
                )
            return Result()
        spec = record.get("spec") or {}
        status = dict(record.get("status") or {})
        attempts = int(spec.get("attempts") or 0)
        current = status.get("outcome")
        generation = int((record.get("metadata") or {}).get("generation") or 0)
        reopened = current in FINAL and int(status.get("observedGeneration") or 0) < generation
        if current not in FINAL or reopened:
            settled = await self._settle(record, spec, status, attempts)
            if isinstance(settled, Result):
                return settled
            record = settled
            status = dict(record.get("status") or {})
        return await self._deliver(record, status)

    async def _settle(
        self, record: dict[str, Any], spec: dict[str, Any], status: dict[str, Any], attempts: int
    ) -> dict[str, Any] | Result:
        namespace = record["metadata"]["namespace"]
        pod_name = (spec.get("pod") or {}).get("name", "")
        pod = await context.live_pod(self.api, namespace, pod_name)
        labels = (
            (spec.get("pod") or {}).get("labels") or ((pod or {}).get("metadata") or {}).get("labels") or {}
        )
        budgets = await self._budgets(namespace, labels) if labels else []
        now = _now()
        decision = decide(spec, pod, budgets, now, self.blocked_after)
        if decision.outcome is None:
            return Result(requeue_after=decision.recheck_after)
        refs = ((pod or {}).get("metadata") or {}).get("ownerReferences") or []
        controlling = next((ref for ref in refs if ref.get("controller")), refs[0] if refs else None)
        first_ref = controlling or (spec.get("pod") or {}).get("owner")
        node_name = (spec.get("pod") or {}).get("nodeName") or ((pod or {}).get("spec") or {}).get(
            "nodeName", ""
        )
        # The rest of the context is independent: read it at once.
        owners, node, events = await asyncio.gather(
            context.owner_chain(self.api, namespace, first_ref),
            context.node_info(self.api, node_name),
            context.pod_events(self.api, namespace, pod_name) if pod_name else _nothing(),
        )
        why = pick_why(events)
        device_taints = await device_taint_context(self.api, namespace, spec, pod)
        new_status: dict[str, Any] = {
            **status,
            "outcome": str(decision.outcome),
            "outcomeTime": status["outcomeTime"]
            if status.get("outcome") == str(decision.outcome) and status.get("outcomeTime")
            else _stamp(now),
            "outcomeReason": decision.reason,
            "observedAttempts": attempts,
            "observedGeneration": int((record.get("metadata") or {}).get("generation") or 0),
            "owners": owners,
            "disruptionBudgets": budgets,
        }
        if node is not None:
            new_status["node"] = node
        if why is not None:
            new_status["why"] = why
        if device_taints:
            new_status["deviceTaints"] = device_taints
        updated = await self._status_call_safe(record, new_status)
        if updated is None:
            return Result(requeue_after=0.05)
        started = parse_time(spec.get("lastAttemptTime")) or now
        telemetry.SETTLE_SECONDS.labels(str(decision.outcome)).observe(
            max((now - started).total_seconds(), 0.0)
        )
        log.info(
            "eviction of %s/%s settled: %s (%s)",
            namespace,
            pod_name,
            decision.outcome,
            decision.reason,
            extra={
                "namespace": namespace,
                "pod": pod_name,
                "outcome": str(decision.outcome),
                "record": record["metadata"]["name"],
            },
        )
        return updated

    async def _status_call_safe(
        self, record: dict[str, Any], status: dict[str, Any]
    ) -> dict[str, Any] | None:
        try:
            return await self._status_call(record, status)
        except ApiError as error:
            if is_conflict(error) or is_not_found(error):
                return None
            raise

    async def _deliver(self, record: dict[str, Any], status: dict[str, Any]) -> Result:
        outcome = status.get("outcome")
        if outcome not in FINAL:
            return Result()
        eviction = notice_from_record(record)
        deliveries: dict[str, Any] = dict(status.get("deliveries") or {})
        now = _now()
        due: list[Sink] = []
        wait: list[float] = []
        for sink in self.sinks:
            state = deliveries.get(sink.name) or {}
            if state.get("outcome") == outcome and state.get("state") in ("Delivered", "Failed", "Skipped"):
                continue
            if state.get("outcome") != outcome:
                state = {}
            if not wants(sink.filter, eviction):
                deliveries[sink.name] = {"state": "Skipped", "outcome": outcome, "attempts": 0}
                continue
            next_at = parse_time(state.get("time")) if state.get("state") == "Pending" else None
            tries = int(state.get("attempts") or 0)
            if next_at is not None and tries:
                remaining = (next_at + datetime.timedelta(seconds=sink.backoff(tries)) - now).total_seconds()
                if remaining > 0:
                    wait.append(remaining)
                    continue
            due.append(sink)
        if deliveries != (status.get("deliveries") or {}):
            updated = await self._status_call_safe(record, {**status, "deliveries": deliveries})
            if updated is None:
                return Result(requeue_after=0.05)
            record = updated
        holder = {"record": record}
        lock = asyncio.Lock()

        async def run(sink: Sink) -> None:
            error = await self._one(sink, eviction)
            async with lock:
                wait_for = await self._record_delivery(holder, sink, str(outcome), error, eviction)
            if wait_for is not None:
                wait.append(wait_for)

        await asyncio.gather(*(run(sink) for sink in due))
        return Result(requeue_after=min(wait) if wait else None)

    async def _record_delivery(
        self, holder: dict[str, dict[str, Any]], sink: Sink, outcome: str, error: str | None, eviction: Any
    ) -> float | None:
        """Write one sink's result into the status at once; returns the retry delay, if any."""
        retry: float | None = None
        for _ in range(8):
            record = holder["record"]
            status = dict(record.get("status") or {})
            deliveries = dict(status.get("deliveries") or {})
            previous = deliveries.get(sink.name) or {}
            tries = (int(previous.get("attempts") or 0) if previous.get("outcome") == outcome else 0) + 1
            entry: dict[str, Any] = {"outcome": outcome, "attempts": tries, "time": _stamp(_now())}
            if error is None:
                entry["state"] = "Delivered"
            else:
                final = tries >= sink.max_attempts
                entry["state"] = "Failed" if final else "Pending"
                entry["lastError"] = error[:512]
                retry = None if final else sink.backoff(tries)
            deliveries[sink.name] = entry
            updated = await self._status_call_safe(record, {**status, "deliveries": deliveries})
            if updated is not None:
                holder["record"] = updated
                break
            fresh = await self._get(record["metadata"]["namespace"], record["metadata"]["name"])
            if fresh is None:
                return None
            holder["record"] = fresh
        if error is None:
            telemetry.SINK_DELIVERIES.labels(sink.name).inc()
        else:
            final = retry is None
            telemetry.SINK_FAILURES.labels(sink.name, str(final).lower()).inc()
            log.warning(
                "delivery of %s to %s failed: %s%s",
                eviction.key,
                sink.name,
                error,
                " (giving up)" if final else f" (retrying in {retry:.1f} s)",
                extra={"namespace": eviction.namespace, "pod": eviction.pod, "sink": sink.name},
            )
        return retry

    async def _one(self, sink: Sink, eviction: Any) -> str | None:
        try:
            await sink.deliver(eviction)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - a sink's failure is data, not a crash
            return f"{type(error).__name__}: {error}"
        return None
