"""The PodEviction records, kept by one watch in every replica.

The webhook reads a record's last spec from here to fold a retry into it with one
compare-and-swap write, even when another replica made the record; the watchers read it to
write nothing for a disruption that is already recorded; the controller settles from it
instead of reading each record back. Records are small and few (retention keeps them so), so
the whole object is kept.
"""

from __future__ import annotations

from typing import Any

from ..kube.api import JsonApi
from ..kube.informer import Informer
from ..model.podeviction import record_path


def _keep(record: dict[str, Any]) -> dict[str, Any]:
    metadata = record.get("metadata") or {}
    metadata.pop("managedFields", None)
    return record


class RecordCache(Informer[dict[str, Any]]):
    """``(namespace, name) -> record`` for every PodEviction."""

    def __init__(self, api: JsonApi) -> None:
        super().__init__(api, record_path(""), "podevictions", _keep)

    def spec(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The record's spec as last seen, when the cache is current enough to trust it."""
        record = self.get(namespace, name) if self.live else None
        return None if record is None else dict(record.get("spec") or {})

    def write_through(self, record: dict[str, Any]) -> None:
        """Keep the answer to our own write, unless the watch has already brought a newer one."""
        metadata = record.get("metadata") or {}
        key = (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        cached = self.get(*key)
        if cached is not None and _version(cached) > _version(record):
            return
        self.put(key, _keep(record))


def _version(record: dict[str, Any]) -> int:
    """The resourceVersion as a number where it is one (etcd's revision), else 0."""
    value = str((record.get("metadata") or {}).get("resourceVersion") or "")
    return int(value) if value.isdigit() else 0
