"""Leader election on a coordination.k8s.io Lease, with client-go's semantics.

Every replica serves the webhook; only the leader runs the controller and the watchers, so
each record is settled and delivered by one process.

No replica's wall clock is trusted, not even its own, since replicas run on different nodes:

* a Lease held by someone else expires ``leaseDurationSeconds`` after **we last saw it
  change**, timed on our own monotonic clock. The holder's ``renewTime`` is never compared
  with anything: a replica whose clock is ahead cannot think a live leader's Lease is old, and
  a dead holder's ``renewTime`` a day in the future keeps nobody out longer than one duration;
* the leader gives up (clears ``lead``, sets ``lost``) once ``renew_deadline`` has passed since
  the start of its last successful renewal, without waiting for a hung call. Every other
  replica saw that renewal no earlier than it was sent, so it cannot take the Lease before
  ``leaseDurationSeconds`` after that; ``renew_deadline`` is shorter, so two never lead at once
  (as long as the two monotonic clocks run at nearly the same rate, as client-go assumes too).

``renewTime`` and ``acquireTime`` are still written from the wall clock, for people and tools
that read the Lease.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast
from urllib.parse import quote

from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from ..kube.api import JsonApi
from ..kube.client import is_conflict, is_not_found
from ..kube.errors import ApiError

log = logging.getLogger("evictwatch.leader")

CLOCK_OFFSET_ENV = "EVICTWATCH_TEST_WALL_CLOCK_OFFSET_SECONDS"
"""For tests only: pretend this process's wall clock is off by this many seconds (it may be
negative), to show on a real API server that election does not depend on the wall clock."""

RENEW_DEADLINE_FRACTION = 2 / 3
"""The renew deadline as a part of the lease duration (client-go's defaults: 10 s of 15 s)."""


def wall_clock_from_env() -> Callable[[], datetime.datetime]:
    offset = datetime.timedelta(seconds=float(os.environ.get(CLOCK_OFFSET_ENV) or 0))
    return lambda: datetime.datetime.now(datetime.UTC) + offset


class Leases(Protocol):
    """What the elector needs of the API: a Lease read, created, replaced (a fake in unit tests)."""

    async def get(self, kind: Any, name: str, *, namespace: str) -> Lease: ...
    async def create(self, lease: Lease) -> Lease: ...
    async def replace(self, lease: Lease) -> Lease: ...


class LeaseApi:
    """Leases through the one HTTP stack, as lightkube's typed Lease (which the elector reasons on)."""

    def __init__(self, api: JsonApi) -> None:
        self.api = api

    @staticmethod
    def _path(namespace: str, name: str = "") -> str:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace, safe='')}/leases"
        return f"{base}/{quote(name, safe='')}" if name else base

    async def get(self, kind: Any, name: str, *, namespace: str) -> Lease:
        return cast(Lease, Lease.from_dict(await self.api.request("GET", self._path(namespace, name))))

    async def create(self, lease: Lease) -> Lease:
        assert lease.metadata is not None and lease.metadata.namespace is not None
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **lease.to_dict()}
        params = {"fieldManager": "evictwatch"}
        created = await self.api.request("POST", self._path(lease.metadata.namespace), body, params)
        return cast(Lease, Lease.from_dict(created))

    async def replace(self, lease: Lease) -> Lease:
        assert lease.metadata is not None and lease.metadata.namespace and lease.metadata.name
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **lease.to_dict()}
        path = self._path(lease.metadata.namespace, lease.metadata.name)
        return cast(
            Lease, Lease.from_dict(await self.api.request("PUT", path, body, {"fieldManager": "evictwatch"}))
        )


@dataclass
class LeaderElector:
    client: Leases
    namespace: str
    name: str
    identity: str
    lease_seconds: float = 15.0
    renew_seconds: float = 5.0
    """How often the leader renews, and twice as often a follower looks (client-go's retry period)."""
    renew_deadline: float = 0.0
    """How long the leader keeps acting without a successful renewal; 0: 2/3 of the lease."""
    monotonic: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime.datetime] = field(default_factory=wall_clock_from_env)
    _seen_version: str | None = None
    _seen_at: float = 0.0
    _renewed_at: float | None = None
    """Monotonic time at which our last successful renewal was sent; None while not leading."""
    _holder: str | None = None
    """The holder in the Lease as last read."""

    def __post_init__(self) -> None:
        self.renew_deadline = self.renew_deadline or self.lease_seconds * RENEW_DEADLINE_FRACTION
        if not 0 < self.renew_seconds < self.renew_deadline < self.lease_seconds:
            raise ValueError(
                f"leader election needs renewSeconds ({self.renew_seconds}) < the renew deadline "
                f"({self.renew_deadline:.1f}) < leaseDurationSeconds ({self.lease_seconds})"
            )

    def _observe(self, lease: Lease, now: float) -> None:
        """Restart the expiry timer whenever the Lease changed since we last looked."""
        version = (lease.metadata.resourceVersion if lease.metadata else None) or ""
        if version != self._seen_version:
            self._seen_version = version
            self._seen_at = now

    def _held_by_other(self, spec: LeaseSpec, now: float) -> bool:
        if not spec.holderIdentity or spec.holderIdentity == self.identity:
            return False
        duration = float(spec.leaseDurationSeconds or self.lease_seconds)
        return now < self._seen_at + duration

    async def _create(self) -> bool:
        stamp = self.wall_clock()
        spec = LeaseSpec(
            holderIdentity=self.identity,
            leaseDurationSeconds=int(self.lease_seconds),
            acquireTime=stamp,
            renewTime=stamp,
            leaseTransitions=0,
        )
        try:
            await self.client.create(
                Lease(metadata=ObjectMeta(name=self.name, namespace=self.namespace), spec=spec)
            )
        except ApiError as error:
            if is_conflict(error):
                return False
            raise
        return True

    async def _try(self) -> bool:
        """One acquire-or-renew round; True when we hold the Lease afterwards."""
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as error:
            if not is_not_found(error):
                raise
            return await self._create()
        now = self.monotonic()
        self._observe(lease, now)
        spec = lease.spec or LeaseSpec()
        self._holder = spec.holderIdentity
        if self._held_by_other(spec, now):
            return False
        stamp = self.wall_clock()
        if spec.holderIdentity != self.identity:
            spec.leaseTransitions = (spec.leaseTransitions or 0) + 1
            spec.acquireTime = stamp
            log.info("taking over the lease %s/%s from %s", self.namespace, self.name, spec.holderIdentity)
        spec.holderIdentity = self.identity
        spec.renewTime = stamp
        spec.leaseDurationSeconds = int(self.lease_seconds)
        lease.spec = spec
        try:
            updated = await self.client.replace(lease)
        except ApiError as error:
            if is_conflict(error):
                return False
            raise
        self._observe(updated, self.monotonic())
        return True

    async def step(self, lead: asyncio.Event, lost: asyncio.Event) -> float:
        """One round; returns the seconds until the next. Sets ``lost`` when leadership ended."""
        started = self.monotonic()
        budget = None if self._renewed_at is None else self._renewed_at + self.renew_deadline - started
        held = False
        if budget is None or budget > 0:
            try:
                async with asyncio.timeout(budget):
                    held = await self._try()
            except TimeoutError:
                log.warning("lease round took longer than the renew deadline")
            except Exception as error:  # noqa: BLE001 - the API server may be restarting
                log.warning("lease round failed: %s", error)
        if held:
            self._renewed_at = started
            if not lead.is_set():
                log.info("became the leader (%s)", self.identity)
                lead.set()
            return self.renew_seconds
        if self._renewed_at is None:
            return self.renew_seconds / 2
        deadline = self._renewed_at + self.renew_deadline
        now = self.monotonic()
        if now >= deadline or self._holder not in (None, self.identity):
            log.warning("could not renew the lease in time; stepping down")
            self._renewed_at = None
            lead.clear()
            lost.set()
            return 0.0
        return min(self.renew_seconds / 2, deadline - now)

    async def run(self, lead: asyncio.Event, lost: asyncio.Event) -> None:
        """Set ``lead`` while leading; on losing the lease set ``lost`` and return."""
        while True:
            delay = await self.step(lead, lost)
            if lost.is_set():
                return
            await asyncio.sleep(delay)

    async def release(self) -> None:
        """Give the lease up on a clean exit so a successor need not wait for it to expire."""
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
            if lease.spec is not None and lease.spec.holderIdentity == self.identity:
                lease.spec.renewTime = None
                lease.spec.holderIdentity = None
                await self.client.replace(lease)
        except Exception as error:  # noqa: BLE001 - shutdown goes on
            log.debug("could not release the lease: %s", error)
