"""Watch-fed caches, as Go's informers: one list-watch per kind, a small view of each object.

The operator reads what it needs to settle an eviction (Nodes, PodDisruptionBudgets, Events,
its own records) from these instead of asking the API server per eviction: an observer that
multiplied the server's load during a drain would cost most exactly when the control plane is
busiest. Each cache keeps only what its readers use (``transform``), indexed by namespace, and
tells its subscribers about every change, synchronously and cheaply (a subscriber that has
work to do queues it).

A cache answers only once it has listed (:attr:`synced`) and while its stream is open
(:attr:`live`); readers that cannot wait fall back to a GET and count it
(``evictwatch_cache_fallbacks_total``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .. import telemetry
from .api import JsonApi
from .listwatch import ListWatch

log = logging.getLogger("evictwatch.informer")

T = TypeVar("T")
Key = tuple[str, str]
Subscriber = Callable[[str, Key, Any], None]
"""(event type, (namespace, name), the new view or None when deleted)."""


def object_key(obj: dict[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))


class Informer(Generic[T]):
    """``(namespace, name) -> view`` of one kind, kept current by one watch."""

    def __init__(
        self,
        api: JsonApi,
        path: str,
        name: str,
        transform: Callable[[dict[str, Any]], T | None],
        *,
        field_selector: str | None = None,
        page_size: int = 500,
        decode_event: Callable[[bytes], dict[str, Any]] | None = None,
        decode_page: Callable[[bytes], dict[str, Any]] | None = None,
    ) -> None:
        self.name = name
        self.transform = transform
        self.by_namespace: dict[str, dict[str, T]] = {}
        self.subscribers: list[Subscriber] = []
        self._listed: set[Key] | None = None
        self.watch = ListWatch(
            api,
            path,
            self._on_event,
            name,
            field_selector=field_selector,
            page_size=page_size,
            on_list_start=self._list_started,
            on_list_done=self._list_done,
            decode_page=decode_page,
        )
        if decode_event is not None:
            self.watch.decode_event = decode_event

    @property
    def synced(self) -> bool:
        return self.watch.synced.is_set()

    @property
    def live(self) -> bool:
        """Listed and streaming: what it holds is current, up to the stream's own delay."""
        return self.watch.synced.is_set() and self.watch.live

    async def run(self) -> None:
        await self.watch.run()

    def get(self, namespace: str, name: str) -> T | None:
        return (self.by_namespace.get(namespace) or {}).get(name)

    def in_namespace(self, namespace: str) -> Iterator[T]:
        return iter(list((self.by_namespace.get(namespace) or {}).values()))

    def items(self) -> Iterator[tuple[Key, T]]:
        for namespace, objects in list(self.by_namespace.items()):
            for name, view in list(objects.items()):
                yield (namespace, name), view

    def __len__(self) -> int:
        return sum(len(objects) for objects in self.by_namespace.values())

    def put(self, key: Key, view: T) -> None:
        """Store a view learnt elsewhere (the answer to our own write), ahead of its watch event."""
        self.by_namespace.setdefault(key[0], {})[key[1]] = view

    def _remove(self, key: Key) -> None:
        objects = self.by_namespace.get(key[0])
        if objects is not None:
            objects.pop(key[1], None)
            if not objects:
                del self.by_namespace[key[0]]

    async def _on_event(self, kind: str, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        view = None if kind == "DELETED" else self.transform(obj)
        if view is None:
            self._remove(key)
        else:
            self.put(key, view)
            if self._listed is not None:
                self._listed.add(key)
        for subscriber in self.subscribers:
            subscriber(kind, key, view)
        telemetry.CACHE_OBJECTS.labels(self.name).set(len(self))

    def _list_started(self) -> None:
        self._listed = set()

    def _list_done(self) -> None:
        listed, self._listed = self._listed or set(), None
        for key, _ in list(self.items()):
            if key not in listed:
                self._remove(key)
                for subscriber in self.subscribers:
                    subscriber("DELETED", key, None)
        telemetry.CACHE_OBJECTS.labels(self.name).set(len(self))
        log.info("%s cache synced: %d objects", self.name, len(self))


def count_fallback(kind: str, why: str) -> None:
    """A read that went to the API server because a cache could not answer yet."""
    telemetry.CACHE_FALLBACKS.labels(kind, why).inc()
