"""Leader election on a fake clock: expiry is timed from what we observed, never from renewTime.

The Lease store is a fake (a dict with resourceVersions and 409 on a stale write): what is under
test is the timing, which the real API server cannot be made to show at fake speed. The same
rules run on a real API server in tests/e2e/test_leases.py.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
from dataclasses import dataclass, field
from typing import Any

import pytest
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from evictwatch.controller.leader import LeaderElector
from evictwatch.kube.errors import ApiError, error_for

EPOCH = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)


def api_error(code: int) -> ApiError:
    return error_for(code, b'{"kind": "Status", "message": "fake"}', "fake")


@dataclass
class FakeLeases:
    """get / create / replace of one Lease, with optimistic concurrency; ``down`` fails every call."""

    lease: Lease | None = None
    version: int = 0
    down: set[str] = field(default_factory=set)
    """Identities whose calls fail (a network partition between them and the API server)."""
    caller: str = ""

    def _stored(self) -> Lease:
        assert self.lease is not None
        return copy.deepcopy(self.lease)

    def _check(self) -> None:
        if self.caller in self.down:
            raise ConnectionError("the API server is unreachable")

    async def get(self, _kind: Any, _name: str, namespace: str) -> Lease:
        self._check()
        if self.lease is None:
            raise api_error(404)
        return self._stored()

    async def create(self, lease: Lease) -> Lease:
        self._check()
        if self.lease is not None:
            raise api_error(409)
        return self._store(lease)

    async def replace(self, lease: Lease) -> Lease:
        self._check()
        assert lease.metadata is not None and self.lease is not None and self.lease.metadata is not None
        if lease.metadata.resourceVersion != self.lease.metadata.resourceVersion:
            raise api_error(409)
        return self._store(lease)

    def _store(self, lease: Lease) -> Lease:
        self.version += 1
        stored = copy.deepcopy(lease)
        assert stored.metadata is not None
        stored.metadata.resourceVersion = str(self.version)
        self.lease = stored
        return self._stored()

    def holder(self) -> str | None:
        return self.lease.spec.holderIdentity if self.lease is not None and self.lease.spec else None


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Replica:
    elector: LeaderElector
    lead: asyncio.Event = field(default_factory=asyncio.Event)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    next_at: float = 0.0


def replica(store: FakeLeases, clock: Clock, identity: str, wall_offset: float = 0.0) -> Replica:
    elector = LeaderElector(
        store,  # type: ignore[arg-type]
        "ns",
        "lease",
        identity,
        lease_seconds=15,
        renew_seconds=2,
        renew_deadline=10,
        monotonic=clock,
        wall_clock=lambda: EPOCH + datetime.timedelta(seconds=clock.now + wall_offset),
    )
    return Replica(elector)


async def simulate(store: FakeLeases, clock: Clock, replicas: list[Replica], until: float) -> list[float]:
    """Step every replica when due, on the fake clock, until ``until``; returns when two led at once."""
    both: list[float] = []
    while clock.now < until:
        for r in replicas:
            if r.next_at <= clock.now:
                if r.lost.is_set():  # the operator starts a fresh elector round after losing
                    r.lost.clear()
                store.caller = r.elector.identity
                r.next_at = clock.now + await r.elector.step(r.lead, r.lost)
        if sum(r.lead.is_set() for r in replicas) > 1:
            both.append(clock.now)
        clock.now = max(min(r.next_at for r in replicas), clock.now + 0.01)
    return both


def lease_left_by(holder: str, renew_time: datetime.datetime, duration: int = 15) -> Lease:
    return Lease(
        metadata=ObjectMeta(name="lease", namespace="ns", resourceVersion="0"),
        spec=LeaseSpec(holderIdentity=holder, renewTime=renew_time, leaseDurationSeconds=duration),
    )


async def test_a_dead_holders_future_renew_time_keeps_nobody_out_longer_than_the_duration() -> None:
    clock = Clock()
    store = FakeLeases(lease_left_by("dead", EPOCH + datetime.timedelta(days=1)))
    alive = replica(store, clock, "alive")
    await simulate(store, clock, [alive], until=clock.now + 14.9)
    assert store.holder() == "dead", "taken before the duration had passed since it was first seen"
    await simulate(store, clock, [alive], until=clock.now + 1.5)
    assert store.holder() == "alive" and alive.lead.is_set()


async def test_an_old_renew_time_is_not_expiry_either() -> None:
    """A Lease renewed an hour ago by the holder's clock may be fresh by ours: wait one duration."""
    clock = Clock()
    store = FakeLeases(lease_left_by("other", EPOCH - datetime.timedelta(hours=1)))
    newcomer = replica(store, clock, "newcomer")
    await simulate(store, clock, [newcomer], until=clock.now + 14.0)
    assert store.holder() == "other"


async def test_clocks_minutes_apart_never_lead_together() -> None:
    clock = Clock()
    store = FakeLeases()
    ahead, behind = replica(store, clock, "ahead", wall_offset=300), replica(store, clock, "behind", -300)
    both = await simulate(store, clock, [behind, ahead], until=clock.now + 120)
    assert both == []
    assert store.holder() == "behind" and store.lease is not None and store.lease.spec is not None
    assert store.lease.spec.leaseTransitions == 0, "the Lease changed hands while its holder was healthy"


async def test_a_leader_that_cannot_renew_stops_before_anyone_may_take_over() -> None:
    clock = Clock()
    store = FakeLeases()
    first, second = replica(store, clock, "first"), replica(store, clock, "second")
    await simulate(store, clock, [first, second], until=clock.now + 10)
    assert first.lead.is_set() and not second.lead.is_set()
    store.down.add("first")  # partitioned: its renewals fail, the other still reaches the API server
    cut_at = clock.now
    stepped_down_at = taken_at = None
    while clock.now < cut_at + 40 and taken_at is None:
        both = await simulate(store, clock, [first, second], until=clock.now + 0.1)
        assert both == []
        if stepped_down_at is None and not first.lead.is_set():
            stepped_down_at = clock.now
        if second.lead.is_set():
            taken_at = clock.now
    assert stepped_down_at is not None and taken_at is not None
    # The last renewal was at most one period (2 s) before the cut: it stops within its 10 s
    # deadline of it, and the other waits the full 15 s from when it saw that renewal.
    assert stepped_down_at - cut_at <= 10 and taken_at - cut_at >= 13
    assert stepped_down_at < taken_at


async def test_a_hung_renewal_stops_the_leader_at_its_deadline() -> None:
    """A call that never answers (a SIGSTOPped API server) must not hold the leader in office."""
    store = FakeLeases()
    elector = LeaderElector(store, "ns", "lease", "me", lease_seconds=1.5, renew_seconds=0.2)  # type: ignore[arg-type]
    lead, lost = asyncio.Event(), asyncio.Event()
    await elector.step(lead, lost)
    assert lead.is_set()

    async def hang(*_args: Any, **_kwargs: Any) -> Lease:
        await asyncio.sleep(3600)
        raise AssertionError

    store.get = hang  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(elector.run(lead, lost), timeout=5)
    assert lost.is_set() and not lead.is_set()
    assert loop.time() - started <= 1.0 + 0.2, "it must stop within its 1 s deadline (2/3 of 1.5 s)"


def test_renew_deadline_must_fit_inside_the_lease() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        LeaderElector(None, "ns", "l", "me", lease_seconds=6, renew_seconds=2, renew_deadline=7)  # type: ignore[arg-type]
