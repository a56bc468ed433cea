"""Create-or-merge of PodEviction records: one per Pod, however many attempts and sources.

The first sight of a Pod creates the record (one API write: the path the webhook takes on
every first attempt). A repeat gets a 409 and merges: read, fold in, replace with the read
resourceVersion, and start over on a conflict, so concurrent replicas never lose an attempt.
Every record is signed (see :mod:`.signing`) so the controller can trust it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from lightkube import ApiError, AsyncClient

from ..kube.client import is_conflict, is_not_found, status_code
from ..kube.raw import JsonApi
from ..model.record import (
    PodInfo,
    Sighting,
    merge_api_attempt,
    merge_sighting,
    new_api_record_spec,
    new_sighting_spec,
    record_name,
)
from ..model.types import EvictionAttempt
from .crd import API_VERSION, GROUP, KIND, PLURAL, VERSION
from .signing import SIGNATURE_ANNOTATION, signature

log = logging.getLogger(__name__)

MANAGED_BY = {"app.kubernetes.io/managed-by": "evictwatch"}
"""The record's only label. The Pod, node, source and outcome are found with field selectors on
the CRD's ``selectableFields`` instead (see :mod:`.crd`): labels would repeat them in every
record's metadata and cost the eviction's write more (about 0.2 ms for three of them)."""
_MAX_MERGE_TRIES = 8
_KNOWN_RECORDS = 4096
_SIGNATURE_PATH = "/metadata/annotations/" + SIGNATURE_ANNOTATION.replace("~", "~0").replace("/", "~1")


def utc_now() -> str:
    """RFC 3339 with microseconds: attempts 5 s apart, or 5 ms apart, keep their order."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class WriteResult:
    name: str
    created: bool
    attempts: int
    changed: bool = True


class RecordStore:
    """Writes records through one client; safe to share between concurrent requests."""

    def __init__(
        self,
        client: AsyncClient,
        key: bytes,
        *,
        field_manager: str = "evictwatch",
        api: JsonApi | None = None,
    ) -> None:
        self.client = client
        self.api = api or JsonApi(client)
        self.key = key
        self.field_manager = field_manager
        self._known: OrderedDict[str, dict[str, Any]] = OrderedDict()
        """The last spec we wrote or read per record (bounded): a repeat is then one PATCH."""

    def _remember(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        key = f"{namespace}/{name}"
        self._known[key] = spec
        self._known.move_to_end(key)
        if len(self._known) > _KNOWN_RECORDS:
            self._known.popitem(last=False)

    async def _patch_known(
        self, namespace: str, name: str, change: Callable[[Mapping[str, Any]], dict[str, Any] | None]
    ) -> WriteResult | None:
        """Compare-and-swap on the spec we last saw, in one call; None when that is not possible.

        The JSON Patch ``test`` makes the server apply the change only if the spec is still the
        one we know, so a concurrent writer (another replica, a watcher) is never overwritten:
        its change makes the test fail, and the caller falls back to read-modify-write.
        """
        known = self._known.get(f"{namespace}/{name}")
        if known is None:
            return None
        spec = change(known)
        if spec is None:  # specs only grow, so what adds nothing to a past one adds nothing now
            return WriteResult(name, False, int(known.get("attempts") or 0), False)
        ops = [
            {"op": "test", "path": "/spec", "value": known},
            {"op": "replace", "path": "/spec", "value": spec},
            {"op": "add", "path": _SIGNATURE_PATH, "value": signature(self.key, namespace, name, spec)},
        ]
        try:
            await self.api.request(
                "PATCH",
                self._path(namespace, name),
                ops,
                {"fieldManager": self.field_manager},
                "application/json-patch+json",
            )
        except ApiError as error:
            log.debug("patch of %s/%s fell back to a merge: %s", namespace, name, status_code(error))
            self._known.pop(f"{namespace}/{name}", None)
            return None
        self._remember(namespace, name, spec)
        return WriteResult(name, False, int(spec.get("attempts") or 0))

    def _new(self, pod: PodInfo, spec: dict[str, Any]) -> dict[str, Any]:
        name = record_name(pod.name, pod.uid)
        annotations = {SIGNATURE_ANNOTATION: signature(self.key, pod.namespace, name, spec)}
        metadata = {
            "name": name,
            "namespace": pod.namespace,
            "labels": dict(MANAGED_BY),
            "annotations": annotations,
        }
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}

    def _path(self, namespace: str, name: str = "") -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/{PLURAL}"
        return f"{base}/{quote(name, safe='')}" if name else base

    async def _create(self, body: dict[str, Any]) -> bool:
        """POST the record; False when one of that name exists already (409)."""
        try:
            await self.api.request(
                "POST",
                self._path(body["metadata"]["namespace"]),
                body,
                {"fieldManager": self.field_manager},
            )
            return True
        except ApiError as error:
            if is_conflict(error):
                return False
            raise

    async def record_api_attempt(self, attempt: EvictionAttempt, pod: PodInfo) -> WriteResult:
        """Record one Eviction API attempt at ``pod`` (which may not exist)."""
        now = utc_now()
        body = self._new(pod, new_api_record_spec(attempt, pod, now))
        name = body["metadata"]["name"]
        patched = await self._patch_known(
            pod.namespace, name, lambda spec: merge_api_attempt(spec, attempt, pod, now)
        )
        if patched is not None:
            return patched
        if await self._create(body):
            self._remember(pod.namespace, name, body["spec"])
            return WriteResult(name, True, 1)
        return await self._merge(pod.namespace, name, lambda spec: merge_api_attempt(spec, attempt, pod, now))

    async def record_sighting(self, sighting: Sighting) -> WriteResult:
        """Fold a watcher's sighting into the Pod's record, creating it if needed; no-op if known."""
        body = self._new(sighting.pod, new_sighting_spec(sighting))
        name = body["metadata"]["name"]
        patched = await self._patch_known(
            sighting.pod.namespace, name, lambda spec: merge_sighting(spec, sighting)
        )
        if patched is not None:
            return patched
        if await self._create(body):
            self._remember(sighting.pod.namespace, name, body["spec"])
            return WriteResult(name, True, 0)
        return await self._merge(sighting.pod.namespace, name, lambda spec: merge_sighting(spec, sighting))

    async def record_change(
        self,
        pod: PodInfo,
        new_spec: dict[str, Any],
        change: Callable[[Mapping[str, Any]], dict[str, Any] | None],
    ) -> WriteResult:
        """Fold ``change`` into the Pod's record, or create it with ``new_spec`` (already changed).

        The same create-or-merge as a sighting, for facts of other shapes (EvictionRequests).
        ``change`` returns None when it adds nothing, and then nothing is written.
        """
        body = self._new(pod, new_spec)
        name = body["metadata"]["name"]
        patched = await self._patch_known(pod.namespace, name, change)
        if patched is not None:
            return patched
        if await self._create(body):
            self._remember(pod.namespace, name, body["spec"])
            return WriteResult(name, True, 0)
        return await self._merge(pod.namespace, name, change)

    async def _merge(
        self, namespace: str, name: str, change: Callable[[Mapping[str, Any]], dict[str, Any] | None]
    ) -> WriteResult:
        for attempt in range(_MAX_MERGE_TRIES):
            try:
                current = await self.api.request("GET", self._path(namespace, name))
            except ApiError as error:
                if not is_not_found(error):
                    raise
                raise RuntimeError(f"record {namespace}/{name} vanished while merging") from None
            spec = change(current.get("spec") or {})
            if spec is None:
                self._remember(namespace, name, current.get("spec") or {})
                return WriteResult(name, False, int((current.get("spec") or {}).get("attempts") or 0), False)
            current["spec"] = spec
            current.pop("status", None)  # the main resource ignores it; do not send it back
            annotations = current.setdefault("metadata", {}).setdefault("annotations", {})
            annotations[SIGNATURE_ANNOTATION] = signature(self.key, namespace, name, spec)
            try:
                await self.api.request(
                    "PUT",
                    self._path(namespace, name),
                    current,
                    {"fieldManager": self.field_manager},
                )
                self._remember(namespace, name, spec)
                return WriteResult(name, False, int(spec.get("attempts") or 0))
            except ApiError as error:
                if not is_conflict(error):
                    raise
                log.debug("merge conflict on %s/%s, try %d", namespace, name, attempt + 1)
                await asyncio.sleep(0.005 * (attempt + 1))
        raise RuntimeError(f"could not merge into {namespace}/{name} after {_MAX_MERGE_TRIES} tries")
