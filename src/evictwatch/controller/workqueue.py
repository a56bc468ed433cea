"""A small work queue: each key at most once in the queue, delayed re-adds, per-key backoff, N workers.

Like client-go's workqueue: a key added while queued is not queued twice; a key added while
being processed is processed again afterwards, never concurrently with itself. A key whose
work raised comes back after a delay that doubles with each failure in a row (client-go's
``ItemExponentialFailureRateLimiter``: 5 ms, 10 ms, 20 ms, ... up to 1000 s), with jitter so
that keys failing together (an API server restart) do not come back together; one success
forgets the key's failures.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..aio import cancel_and_wait

log = logging.getLogger("evictwatch.controller")

Key = tuple[str, str]


class Timer(Protocol):
    """What :meth:`Clock.call_later` returns (an ``asyncio.TimerHandle`` is one)."""

    def when(self) -> float: ...

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Time as the queue sees it: the event loop's, or a test's fake one."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class LoopClock:
    """The running event loop's clock and timers."""

    def time(self) -> float:
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)


class ItemExponentialBackoff:
    """Per-key delay before a retry: ``base * 2**failures`` capped at ``cap``, plus jitter.

    The same numbers as client-go's default controller rate limiter (5 ms doubling to 1000 s).
    ``jitter`` adds up to that fraction of the delay (drawn from ``rng``), never beyond ``cap``.
    """

    def __init__(
        self,
        base: float = 0.005,
        cap: float = 1000.0,
        jitter: float = 0.25,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self.rng = rng
        self._failures: dict[Key, int] = {}

    def when(self, key: Key) -> float:
        """The delay before ``key``'s next try, counting this failure."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # 2**failures overflows a float near 1024 failures: the cap has long been reached by then
        delay = self.cap if failures > 64 else min(self.base * 2.0**failures, self.cap)
        return min(delay * (1.0 + self.jitter * self.rng()), self.cap)

    def retries(self, key: Key) -> int:
        """Failures in a row so far."""
        return self._failures.get(key, 0)

    def forget(self, key: Key) -> None:
        """A success: the next failure starts again at ``base``."""
        self._failures.pop(key, None)


class WorkQueue:
    def __init__(self, backoff: ItemExponentialBackoff | None = None, clock: Clock | None = None) -> None:
        self.backoff = backoff or ItemExponentialBackoff()
        self.clock: Clock = clock or LoopClock()
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._again: set[Key] = set()
        self._timers: dict[Key, Timer] = {}

    def add(self, key: Key) -> None:
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Add ``key`` after ``delay`` seconds; an earlier pending timer wins."""
        existing = self._timers.get(key)
        if existing is not None:
            if existing.when() <= self.clock.time() + delay:
                return
            existing.cancel()

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key)

        self._timers[key] = self.clock.call_later(max(delay, 0.0), fire)

    def add_rate_limited(self, key: Key) -> float:
        """Add ``key`` again after its next backoff delay (one more failure); returns the delay."""
        delay = self.backoff.when(key)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Key) -> None:
        """Forget ``key``'s failures (its work succeeded); a pending timer stays."""
        self.backoff.forget(key)

    def retries(self, key: Key) -> int:
        return self.backoff.retries(key)

    def __len__(self) -> int:
        return len(self._queued) + len(self._active) + len(self._timers)

    async def _process(self, key: Key, work: Callable[[Key], Awaitable[None]]) -> None:
        self._queued.discard(key)
        self._active.add(key)
        try:
            await work(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            delay = self.add_rate_limited(key)
            log.exception(
                "reconciling %s/%s failed (%d in a row); retrying in %.3g s",
                *key,
                self.retries(key),
                delay,
                extra={"namespace": key[0], "record": key[1]},
            )
        else:
            self.forget(key)
        finally:
            self._active.discard(key)
            if key in self._again:
                self._again.discard(key)
                self.add(key)

    async def run_workers(self, count: int, work: Callable[[Key], Awaitable[None]]) -> None:
        async def worker() -> None:
            while True:
                await self._process(await self._queue.get(), work)

        tasks = [asyncio.create_task(worker(), name=f"worker-{i}") for i in range(count)]
        try:
            await asyncio.gather(*tasks)
        finally:
            await cancel_and_wait(tasks)
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
