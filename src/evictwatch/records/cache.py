"""The PodEviction records, kept by one watch in every replica.

The webhook reads a record's last spec from here to fold a retry into it with one
compare-and-swap write, even when another replica made the record; the watchers read it to
write nothing for a disruption that is already recorded; the controller settles from it
instead of reading each record back.

Each record is kept as its compact JSON (about 1.8 KB for a settled record with every field),
not as decoded dicts (about 11 KB each, measured with tracemalloc): with retention's default of
1,000 records per namespace a cluster can hold tens of thousands, and decoding one on use costs
about 17 µs. managedFields are dropped: nothing here reads them, so the watch does not even
decode them (:data:`evictwatch.kube.slim.record_event`), and the packing and unpacking are
msgspec's (about 4 x faster than the json module's for a record).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..kube import slim
from ..kube.api import JsonApi
from ..kube.informer import Informer, Key
from ..model.podeviction import record_path

RecordSubscriber = Callable[[str, Key, dict[str, Any] | None], None]


def _pack(record: dict[str, Any]) -> bytes:
    metadata = dict(record.get("metadata") or {})
    metadata.pop("managedFields", None)
    return slim.compact({**record, "metadata": metadata})


class RecordCache:
    """``(namespace, name) -> record`` for every PodEviction."""

    def __init__(self, api: JsonApi) -> None:
        self.informer: Informer[bytes] = Informer(
            api,
            record_path(""),
            "podevictions",
            _pack,
            decode_event=slim.record_event,
            decode_page=slim.record_page,
        )
        self.watch = self.informer.watch
        self.subscribers: list[RecordSubscriber] = []
        self.informer.subscribers.append(self._tell)

    def _tell(self, kind: str, key: Key, packed: bytes | None) -> None:
        if not self.subscribers:
            return
        record = slim.loads(packed) if packed is not None else None
        for subscriber in list(self.subscribers):
            subscriber(kind, key, record)

    async def run(self) -> None:
        await self.informer.run()

    @property
    def live(self) -> bool:
        return self.informer.live

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        packed = self.informer.get(namespace, name)
        if packed is None:
            return None
        record: dict[str, Any] = slim.loads(packed)
        return record

    def items(self) -> Iterator[tuple[Key, dict[str, Any]]]:
        for key, packed in self.informer.items():
            yield key, slim.loads(packed)

    def __len__(self) -> int:
        return len(self.informer)

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
        self.informer.put(key, _pack(record))


def _version(record: dict[str, Any]) -> int:
    """The resourceVersion as a number where it is one (etcd's revision), else 0."""
    value = str((record.get("metadata") or {}).get("resourceVersion") or "")
    return int(value) if value.isdigit() else 0
