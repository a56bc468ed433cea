"""The controller's work queue: per-key exponential backoff with jitter, on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from evictwatch.controller.workqueue import ItemExponentialBackoff, Key, WorkQueue


@dataclass
class FakeTimer:
    at: float
    callback: Callable[[], None]
    cancelled: bool = False

    def when(self) -> float:
        return self.at

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeClock:
    """Time stands still until the test moves it; due timers fire in order as it passes them."""

    now: float = 1000.0
    timers: list[FakeTimer] = field(default_factory=list)

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def pending(self) -> list[float]:
        """Delays from now of the timers still to fire."""
        return sorted(t.at - self.now for t in self.timers if not t.cancelled)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = sorted((t for t in self.timers if not t.cancelled and t.at <= self.now), key=lambda t: t.at)
        for timer in due:
            self.timers.remove(timer)
            timer.callback()


KEY: Key = ("shop", "web-0.0123abcd")


def test_backoff_doubles_from_5_ms_to_the_1000_s_cap_and_forgets_on_success() -> None:
    backoff = ItemExponentialBackoff(jitter=0.0)
    delays = [backoff.when(KEY) for _ in range(22)]
    assert delays[:4] == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert delays[17] == pytest.approx(0.005 * 2**17)  # 655 s
    assert delays[18:] == [1000.0] * 4  # 0.005 * 2**18 = 1311 s: capped
    assert backoff.retries(KEY) == 22
    assert backoff.when(("other", "x")) == pytest.approx(0.005)  # per key
    backoff.forget(KEY)
    assert backoff.retries(KEY) == 0
    assert backoff.when(KEY) == pytest.approx(0.005)


def test_jitter_spreads_within_its_fraction_and_never_passes_the_cap() -> None:
    draws = iter([0.0, 1.0, 0.5])
    backoff = ItemExponentialBackoff(jitter=0.25, rng=lambda: next(draws))
    assert backoff.when(KEY) == pytest.approx(0.005)
    assert backoff.when(KEY) == pytest.approx(0.01 * 1.25)
    assert backoff.when(KEY) == pytest.approx(0.02 * 1.125)
    capped = ItemExponentialBackoff(jitter=0.25, rng=lambda: 1.0)
    assert max(capped.when(KEY) for _ in range(2000)) == 1000.0  # and no overflow after many


async def _turns(count: int = 20) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_failing_work_comes_back_after_growing_delays_and_success_resets() -> None:
    clock = FakeClock()
    queue = WorkQueue(ItemExponentialBackoff(jitter=0.0), clock)
    outcomes = iter([False, False, False, True, False])
    runs: list[float] = []

    async def work(key: Key) -> None:
        runs.append(clock.now)
        if not next(outcomes):
            raise RuntimeError("the API server is away")

    task = asyncio.create_task(queue.run_workers(2, work))
    try:
        queue.add(KEY)
        await _turns()
        assert len(runs) == 1 and clock.pending() == pytest.approx([0.005])
        clock.advance(0.004)  # not yet
        await _turns()
        assert len(runs) == 1
        clock.advance(0.001)
        await _turns()
        assert len(runs) == 2 and clock.pending() == pytest.approx([0.01])
        clock.advance(0.01)
        await _turns()
        assert len(runs) == 3 and clock.pending() == pytest.approx([0.02])
        assert queue.retries(KEY) == 3
        clock.advance(0.02)
        await _turns()
        assert len(runs) == 4  # this one succeeded: failures forgotten, no timer left
        assert queue.retries(KEY) == 0 and clock.pending() == []
        queue.add(KEY)
        await _turns()
        assert len(runs) == 5 and clock.pending() == pytest.approx([0.005])  # starts over at 5 ms
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_planned_recheck_and_a_retry_keep_the_earlier_timer() -> None:
    clock = FakeClock()
    queue = WorkQueue(ItemExponentialBackoff(jitter=0.0), clock)
    queue.add_after(KEY, 30.0)  # the controller's "Blocked after 30 s" re-check
    assert queue.add_rate_limited(KEY) == pytest.approx(0.005)
    assert clock.pending() == pytest.approx([0.005])  # the earlier one replaced the later
    queue.add_after(KEY, 30.0)
    assert clock.pending() == pytest.approx([0.005])  # a later one never replaces an earlier
    clock.advance(0.005)
    assert len(queue) == 1  # queued
