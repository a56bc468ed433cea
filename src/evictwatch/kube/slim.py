"""Watch events decoded only as far as a cache reads them (msgspec, a schema per kind).

Every replica follows every Pod of the cluster, and each Pod event is a whole Pod of 4 to 8 KB
(``managedFields``, volumes, container statuses) of which the Pod cache keeps a dozen fields.
``json.loads`` builds every dict and string of it, about 45 µs per 4 KB Pod here; msgspec,
given a schema of the fields we read, skips the rest as it parses, in about 6 µs, and builds
only plain dicts and lists, so the readers (:mod:`evictwatch.model.podfacts`, the Pod cache)
stay as they are. The numbers and how they were taken are in docs/DESIGN.md.

A schema that meets a value of an unexpected type (a server or a webhook that writes what the
API would not) is not trusted blindly: the decoders fall back to the full ``json.loads``,
so a surprise costs time, never an object.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypedDict, cast

import msgspec


class _OwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool


# Of a Pod's annotations only the one the hooks read (kubectl's last-applied-configuration and
# the like are skipped as they are parsed). The key is not an identifier, hence this spelling.
_PodAnnotations = TypedDict("_PodAnnotations", {"evictwatch.io/pre-eviction-hooks": str}, total=False)


class _PodMetadata(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    resourceVersion: str
    labels: dict[str, str]
    annotations: _PodAnnotations
    ownerReferences: list[_OwnerReference]
    deletionTimestamp: str


class _PodSpec(TypedDict, total=False):
    nodeName: str


class _Condition(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str
    lastTransitionTime: str


class _PodStatus(TypedDict, total=False):
    phase: str
    reason: str
    message: str
    conditions: list[_Condition]


class _Pod(TypedDict, total=False):
    metadata: _PodMetadata
    spec: _PodSpec
    status: _PodStatus
    # A watch ERROR carries a Status: its code (410) and message are read in its place.
    code: int


class _ObjectMeta(TypedDict, total=False):
    """Every ObjectMeta field but ``managedFields`` (nothing of ours reads those)."""

    name: str
    generateName: str
    namespace: str
    uid: str
    resourceVersion: str
    generation: int
    creationTimestamp: str
    deletionTimestamp: str
    deletionGracePeriodSeconds: int
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[dict[str, Any]]
    finalizers: list[str]


class _Record(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: _ObjectMeta
    spec: dict[str, Any]
    status: dict[str, Any]
    code: int
    message: str


class _PodEvent(TypedDict, total=False):
    type: str
    object: _Pod


class _PodPage(TypedDict, total=False):
    metadata: dict[str, Any]
    items: list[_Pod]


class _RecordEvent(TypedDict, total=False):
    type: str
    object: _Record


class _RecordPage(TypedDict, total=False):
    metadata: dict[str, Any]
    items: list[_Record]


Decoder = Callable[[bytes], dict[str, Any]]


def _decoder(schema: type) -> Decoder:
    decode: Callable[[bytes], Any] = msgspec.json.Decoder(schema).decode

    def slim(data: bytes) -> dict[str, Any]:
        try:
            return cast(dict[str, Any], decode(data))
        except msgspec.ValidationError:
            result: dict[str, Any] = json.loads(data)
            return result

    return slim


pod_event: Decoder = _decoder(_PodEvent)
"""A Pod watch event: what :func:`evictwatch.model.podfacts.pod_info_from_json`, the
``DisruptionTarget`` condition and a kubelet eviction's reason and message need."""
pod_page: Decoder = _decoder(_PodPage)
"""A page of a Pod list, each item as :data:`pod_event`'s object."""
record_event: Decoder = _decoder(_RecordEvent)
"""A PodEviction watch event: the whole record but its ``managedFields``."""
record_page: Decoder = _decoder(_RecordPage)

_encode = msgspec.json.Encoder().encode


def compact(obj: Any) -> bytes:
    """Compact JSON (as ``json.dumps(obj, separators=(",", ":"))``, several times faster)."""
    return _encode(obj)


def loads(data: bytes) -> Any:
    """Any JSON document (msgspec's untyped decode: the same objects as ``json.loads``, faster)."""
    return msgspec.json.decode(data)


__all__ = ["compact", "loads", "pod_event", "pod_page", "record_event", "record_page"]
