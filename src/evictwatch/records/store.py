"""Create-or-merge of PodEviction records: one per Pod, however many attempts and sources.

The first attempt creates the record (one API write, the cheapest path, which is the one
the webhook takes on every first sight of a Pod). A repeat gets a 409 and merges: read,
add the attempt, replace with the read resourceVersion, and start over on a conflict, so
concurrent replicas of the webhook never lose an attempt.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta

from ..kube.client import is_conflict, is_not_found
from ..model.record import PodInfo, merge_api_attempt, new_api_record_spec, record_name
from ..model.types import EvictionAttempt, Source
from .resource import PodEviction

log = logging.getLogger(__name__)

MANAGED_BY = {"app.kubernetes.io/managed-by": "evictwatch"}
LABEL_SOURCE = "evictwatch.io/source"
LABEL_POD_UID = "evictwatch.io/pod-uid"
_MAX_MERGE_TRIES = 8


def utc_now() -> str:
    """RFC 3339 with microseconds: attempts 5 s apart, or 5 ms apart, keep their order."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class WriteResult:
    name: str
    created: bool
    attempts: int


def _labels(pod: PodInfo, source: Source) -> dict[str, str]:
    labels = dict(MANAGED_BY)
    labels[LABEL_SOURCE] = str(source)
    if pod.uid:
        labels[LABEL_POD_UID] = pod.uid
    return labels


class RecordStore:
    """Writes records through one client; safe to share between concurrent requests."""

    def __init__(self, client: AsyncClient, *, field_manager: str = "evictwatch") -> None:
        self.client = client
        self.field_manager = field_manager

    async def record_api_attempt(self, attempt: EvictionAttempt, pod: PodInfo) -> WriteResult:
        """Record one Eviction API attempt at ``pod`` (which may not exist)."""
        now = utc_now()
        name = record_name(pod.name, pod.uid)
        spec = new_api_record_spec(attempt, pod, now)
        body = PodEviction(
            metadata=ObjectMeta(name=name, namespace=pod.namespace, labels=_labels(pod, Source.EVICTION_API)),
            spec=spec,
        )
        try:
            await self.client.create(body, field_manager=self.field_manager)
            return WriteResult(name, True, 1)
        except ApiError as error:
            if not is_conflict(error):
                raise
        return await self._merge(
            pod.namespace, name, lambda existing: merge_api_attempt(existing, attempt, pod, now)
        )

    async def _merge(
        self, namespace: str, name: str, change: Callable[[Mapping[str, Any]], dict[str, Any]]
    ) -> WriteResult:
        for attempt in range(_MAX_MERGE_TRIES):
            current = await self.client.get(PodEviction, name, namespace=namespace)
            spec = change(current.get("spec") or {})
            current["spec"] = spec
            try:
                await self.client.replace(current, field_manager=self.field_manager)
                return WriteResult(name, False, int(spec.get("attempts") or 0))
            except ApiError as error:
                if not (is_conflict(error) or is_not_found(error)):
                    raise
                log.debug("merge conflict on %s/%s, try %d", namespace, name, attempt + 1)
                await asyncio.sleep(0.005 * (attempt + 1))
        raise RuntimeError(f"could not merge into {namespace}/{name} after {_MAX_MERGE_TRIES} tries")
