"""A small work queue: each key at most once in the queue, delayed re-adds, N workers.

Like client-go's workqueue: a key added while queued is not queued twice; a key added while
being processed is processed again afterwards, never concurrently with itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..aio import cancel_and_wait

log = logging.getLogger("evictwatch.controller")

Key = tuple[str, str]


class WorkQueue:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._again: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}

    def add(self, key: Key) -> None:
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Add ``key`` after ``delay`` seconds; an earlier pending timer wins."""
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        if existing is not None:
            if existing.when() <= loop.time() + delay:
                return
            existing.cancel()

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key)

        self._timers[key] = loop.call_later(max(delay, 0.0), fire)

    def __len__(self) -> int:
        return len(self._queued) + len(self._active) + len(self._timers)

    async def run_workers(self, count: int, work: Callable[[Key], Awaitable[None]]) -> None:
        async def worker() -> None:
            while True:
                key = await self._queue.get()
                self._queued.discard(key)
                self._active.add(key)
                try:
                    await work(key)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception(
                        "reconciling %s/%s failed; retrying in 1 s",
                        *key,
                        extra={"namespace": key[0], "record": key[1]},
                    )
                    self.add_after(key, 1.0)
                finally:
                    self._active.discard(key)
                    if key in self._again:
                        self._again.discard(key)
                        self.add(key)

        tasks = [asyncio.create_task(worker(), name=f"worker-{i}") for i in range(count)]
        try:
            await asyncio.gather(*tasks)
        finally:
            await cancel_and_wait(tasks)
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
