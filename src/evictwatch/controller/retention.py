"""Retention: records older than the TTL go, and at most N stay per namespace (oldest go first).

The cap counts only records of real evictions that evictwatch signed. A record it did not sign
(anyone allowed to create PodEvictions can make one) and the aggregated record of evictions of
Pods that do not exist (anyone allowed to evict can name any Pod) neither count nor make room:
otherwise the least privileged could wipe the history of real evictions by flooding a namespace.
Those go by the TTL only.
"""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from .. import telemetry
from ..kube.api import JsonApi
from ..kube.errors import NotFound
from ..model.outcome import parse_time
from ..model.podeviction import record_path
from ..records.signing import verify

log = logging.getLogger("evictwatch.retention")


def _created(record: dict[str, Any]) -> datetime.datetime:
    metadata = record.get("metadata") or {}
    return parse_time(metadata.get("creationTimestamp")) or datetime.datetime.now(datetime.UTC)


def counts_toward_cap(record: dict[str, Any], key: bytes) -> bool:
    """Signed by us, and of a Pod that existed (not the aggregate of missing Pods)."""
    pod = (record.get("spec") or {}).get("pod") or {}
    return pod.get("found") is not False and verify(key, record)


def plan(
    records: list[dict[str, Any]],
    now: datetime.datetime,
    ttl_seconds: float,
    max_per_namespace: int,
    key: bytes,
) -> list[tuple[dict[str, Any], str]]:
    """Which records to delete and why (``ttl`` or ``max_per_namespace``); pure, for testing."""
    doomed: list[tuple[dict[str, Any], str]] = []
    by_namespace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        age = (now - _created(record)).total_seconds()
        if age > ttl_seconds:
            doomed.append((record, "ttl"))
        elif counts_toward_cap(record, key):
            by_namespace[(record.get("metadata") or {}).get("namespace", "")].append(record)
    for items in by_namespace.values():
        excess = len(items) - max_per_namespace
        if excess > 0:
            # Only settled records make room: a drain larger than the cap must not lose the
            # attempts it has not settled and delivered yet.
            settled = [r for r in items if (r.get("status") or {}).get("outcome") not in (None, "Pending")]
            settled.sort(key=lambda r: (_created(r), (r.get("metadata") or {}).get("name", "")))
            doomed.extend((record, "max_per_namespace") for record in settled[:excess])
    return doomed


async def enforce(
    api: JsonApi,
    records: Iterable[dict[str, Any]],
    ttl_seconds: float,
    max_per_namespace: int,
    key: bytes,
) -> int:
    """Delete what :func:`plan` picks among ``records`` (the records cache: no list per round);
    returns how many records were deleted."""
    deleted = 0
    now = datetime.datetime.now(datetime.UTC)
    for record, reason in plan(list(records), now, ttl_seconds, max_per_namespace, key):
        metadata = record["metadata"]
        try:
            await api.request("DELETE", record_path(metadata["namespace"], metadata["name"]))
        except NotFound:
            continue
        deleted += 1
        telemetry.RECORDS_DELETED.labels(reason).inc()
    if deleted:
        log.info("retention removed %d record(s)", deleted)
    return deleted
