"""Leader election on a coordination.k8s.io Lease, as controller-runtime does it.

Every replica serves the webhook; only the leader runs the controller and the watchers, so
each record is settled and delivered by one process. When the leader dies its Lease expires
(``leaseDurationSeconds``) and another replica takes over; one that cannot renew in time
steps down by itself before anyone else may take over.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass

from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from ..kube.client import is_conflict, is_not_found

log = logging.getLogger("evictwatch.leader")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class LeaderElector:
    client: AsyncClient
    namespace: str
    name: str
    identity: str
    lease_seconds: float = 15.0
    renew_seconds: float = 5.0

    async def _try(self) -> bool:
        """One acquire-or-renew round; True when we hold the Lease afterwards."""
        now = _now()
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as error:
            if not is_not_found(error):
                raise
            spec = LeaseSpec(
                holderIdentity=self.identity,
                leaseDurationSeconds=int(self.lease_seconds),
                acquireTime=now,
                renewTime=now,
                leaseTransitions=0,
            )
            try:
                await self.client.create(
                    Lease(metadata=ObjectMeta(name=self.name, namespace=self.namespace), spec=spec)
                )
                return True
            except ApiError as create_error:
                if is_conflict(create_error):
                    return False
                raise
        spec = lease.spec or LeaseSpec()
        holder = spec.holderIdentity
        renewed = spec.renewTime
        duration = spec.leaseDurationSeconds or self.lease_seconds
        expired = renewed is None or (now - renewed).total_seconds() > duration
        if holder != self.identity and not expired:
            return False
        if holder != self.identity:
            spec.leaseTransitions = (spec.leaseTransitions or 0) + 1
            spec.acquireTime = now
            log.info("taking over the lease %s/%s from %s", self.namespace, self.name, holder)
        spec.holderIdentity = self.identity
        spec.renewTime = now
        spec.leaseDurationSeconds = int(self.lease_seconds)
        lease.spec = spec
        try:
            await self.client.replace(lease)
        except ApiError as error:
            if is_conflict(error):
                return False
            raise
        return True

    async def run(self, lead: asyncio.Event, lost: asyncio.Event) -> None:
        """Set ``lead`` while leading; on losing the lease set ``lost`` and return."""
        last_renew = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                held = await self._try()
            except Exception as error:  # noqa: BLE001 - the API server may be restarting
                log.warning("lease round failed: %s", error)
                held = False
            if held:
                last_renew = loop.time()
                if not lead.is_set():
                    log.info("became the leader (%s)", self.identity)
                    lead.set()
            elif lead.is_set() and loop.time() - last_renew > self.lease_seconds * 2 / 3:
                log.warning("could not renew the lease in time; stepping down")
                lead.clear()
                lost.set()
                return
            await asyncio.sleep(self.renew_seconds if lead.is_set() else self.renew_seconds / 2)

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
