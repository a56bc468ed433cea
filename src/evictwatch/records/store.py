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

from ..kube.api import JsonApi
from ..kube.errors import ApiError, Conflict, NotFound
from ..model.hooks import HoldAnswer, apply_hold
from ..model.podeviction import record_path
from ..model.record import (
    PodInfo,
    Sighting,
    merge_api_attempt,
    merge_missing_pod_attempt,
    merge_sighting,
    missing_pods_record_name,
    new_api_record_spec,
    new_missing_pod_spec,
    new_sighting_spec,
    record_name,
)
from ..model.types import EvictionAttempt
from .cache import RecordCache
from .crd import API_VERSION, KIND
from .signing import SIGNATURE_ANNOTATION, signature, verify

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
        api: JsonApi,
        key: bytes,
        *,
        field_manager: str = "evictwatch",
        records: RecordCache | None = None,
    ) -> None:
        self.api = api
        self.records = records
        """The watch-fed records, where the process has them: another replica's record is then
        known too, and its next attempt is one compare-and-swap write."""
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
        if known is None and self.records is not None:
            cached = self.records.get(namespace, name) if self.records.live else None
            if cached is not None and verify(self.key, cached):  # another replica's, not a forgery
                known = dict(cached.get("spec") or {})
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
            log.debug("patch of %s/%s fell back to a merge: %s", namespace, name, error.code)
            self._known.pop(f"{namespace}/{name}", None)
            return None
        self._remember(namespace, name, spec)
        return WriteResult(name, False, int(spec.get("attempts") or 0))

    def _new(self, pod: PodInfo, spec: dict[str, Any], name: str = "") -> dict[str, Any]:
        name = name or record_name(pod.name, pod.uid)
        annotations = {SIGNATURE_ANNOTATION: signature(self.key, pod.namespace, name, spec)}
        metadata = {
            "name": name,
            "namespace": pod.namespace,
            "labels": dict(MANAGED_BY),
            "annotations": annotations,
        }
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}

    def _path(self, namespace: str, name: str = "") -> str:
        return record_path(namespace, name)

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
        except Conflict:
            return False

    async def record_api_attempt(
        self, attempt: EvictionAttempt, pod: PodInfo, hold: HoldAnswer | None = None
    ) -> WriteResult:
        """Record one Eviction API attempt at ``pod``; attempts at Pods that do not exist are
        counted in one record per requester and namespace (see ``missing_pods_record_name``).

        ``hold`` is the webhook's answer for a Pod with pre-eviction hooks: it goes into the same
        write (the hooks, the hold's start, a release), so holding costs no call of its own.
        """
        moment = datetime.datetime.now(datetime.UTC)
        now = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if pod.exists:
            body = self._new(pod, _held(new_api_record_spec(attempt, pod, now), hold, moment))
            merge = merge_api_attempt
        else:
            name = missing_pods_record_name(attempt.requester.username)
            body = self._new(pod, new_missing_pod_spec(attempt, pod, now), name)
            merge = merge_missing_pod_attempt
            hold = None
        name = body["metadata"]["name"]

        def change(spec: Mapping[str, Any]) -> dict[str, Any]:
            return _held(merge(spec, attempt, pod, now), hold, moment)

        patched = await self._patch_known(pod.namespace, name, change)
        if patched is not None:
            return patched
        if await self._create(body):
            self._remember(pod.namespace, name, body["spec"])
            return WriteResult(name, True, 1)
        return await self._merge(body, change)

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
        return await self._merge(body, lambda spec: merge_sighting(spec, sighting))

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
        return await self._merge(body, change)

    async def _merge(
        self, fresh: dict[str, Any], change: Callable[[Mapping[str, Any]], dict[str, Any] | None]
    ) -> WriteResult:
        """Fold ``change`` into the stored record, or replace it with ``fresh`` if it is not ours.

        A stored record whose signature does not check out was written by someone else (anyone
        allowed to create PodEvictions can pre-create ``<pod>.<hash>``). Merging into it would
        sign their spec as ours and every sink would deliver it as fact, so it is replaced whole
        by ``fresh``: a record built only from what this write saw.
        """
        namespace, name = fresh["metadata"]["namespace"], fresh["metadata"]["name"]
        for attempt in range(_MAX_MERGE_TRIES):
            try:
                current = await self.api.request("GET", self._path(namespace, name))
            except NotFound:
                raise RuntimeError(f"record {namespace}/{name} vanished while merging") from None
            trusted = verify(self.key, current)
            spec = change(current.get("spec") or {}) if trusted else fresh["spec"]
            if spec is None:
                self._remember(namespace, name, current.get("spec") or {})
                return WriteResult(name, False, int((current.get("spec") or {}).get("attempts") or 0), False)
            body = _signed_body(current, spec, self.key) if trusted else _replacement(current, fresh)
            try:
                await self.api.request(
                    "PUT",
                    self._path(namespace, name),
                    body,
                    {"fieldManager": self.field_manager},
                )
            except Conflict:
                log.debug("merge conflict on %s/%s, try %d", namespace, name, attempt + 1)
                await asyncio.sleep(0.005 * (attempt + 1))
                continue
            if not trusted:
                _log_replaced(current)
            self._remember(namespace, name, spec)
            return WriteResult(name, not trusted, int(spec.get("attempts") or 0))
        raise RuntimeError(f"could not merge into {namespace}/{name} after {_MAX_MERGE_TRIES} tries")


def _held(spec: dict[str, Any], hold: HoldAnswer | None, now: datetime.datetime) -> dict[str, Any]:
    return spec if hold is None else apply_hold(spec, hold, now)


def _signed_body(current: dict[str, Any], spec: dict[str, Any], key: bytes) -> dict[str, Any]:
    """The stored record with ``spec`` in place and signed (the status is not sent back)."""
    metadata = current.setdefault("metadata", {})
    body = {**current, "spec": spec}
    body.pop("status", None)  # the main resource ignores it; do not send it back
    annotations = metadata.setdefault("annotations", {})
    annotations[SIGNATURE_ANNOTATION] = signature(key, metadata["namespace"], metadata["name"], spec)
    return body


def _replacement(current: Mapping[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """``fresh`` in place of a record we did not write: its labels, annotations, finalizers and
    owner references go too; only the resourceVersion is kept (so a concurrent write conflicts)."""
    metadata = dict(fresh["metadata"])
    metadata["resourceVersion"] = (current.get("metadata") or {}).get("resourceVersion", "")
    return {**fresh, "metadata": metadata}


def _log_replaced(forged: Mapping[str, Any]) -> None:
    metadata = forged.get("metadata") or {}
    namespace, name = metadata.get("namespace", ""), metadata.get("name", "")
    pod = ((forged.get("spec") or {}).get("pod") or {}).get("name", "")
    log.warning(
        "replaced PodEviction %s/%s: its signature did not check out (written by someone other "
        "than evictwatch); it now holds only what evictwatch saw",
        namespace,
        name,
        extra={"namespace": namespace, "pod": str(pod), "record": name},
    )
