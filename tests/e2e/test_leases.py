"""Leader election on a real API server with real replicas (``evictwatch run`` child processes).

Expiry is timed on each replica's own monotonic clock from when it saw the Lease change, so:

* a replica that believes the wall clock is five minutes ahead never takes the Lease from a
  healthy leader: the two never lead at once, and no notification goes out twice;
* a Lease whose ``renewTime`` is a day in the future, left by a holder that is gone, is taken
  one lease duration after it was first seen, not a day later.

The skew is injected with ``EVICTWATCH_TEST_WALL_CLOCK_OFFSET_SECONDS``, which moves the wall
clock the elector writes and could compare: the only clock a Lease carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration
from lightkube.resources.coordination_v1 import Lease

from evictwatch.capture import registration
from evictwatch.config import parse_config
from evictwatch.controller.leader import CLOCK_OFFSET_ENV
from evictwatch.records.resource import PodEviction
from evictwatch.testing.cluster import Cluster, unique, wait_for
from evictwatch.testing.controlplane import ControlPlane
from evictwatch.testing.operator_process import OperatorProcess, webhook_certificates
from evictwatch.testing.receiver import Receiver
from evictwatch.testing.tcpproxy import TcpProxy

LEASE = "evictwatch"
LEASE_SECONDS, RENEW_SECONDS = 6, 2


def config(namespace: str, hook_url: str, webhook: dict[str, str]) -> dict[str, Any]:
    return {
        "logFormat": "json",
        "capture": {"namespaces": [namespace]},
        "self": {"namespace": namespace},
        "webhook": {
            "host": "127.0.0.1",
            "advertiseHost": "127.0.0.1",
            "configurationName": unique("evictwatch-leases"),
            "timeoutSeconds": 5,
            **webhook,
        },
        "controller": {
            "blockedAfterSeconds": 10,
            "leaderElection": {
                "leaseName": LEASE,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewSeconds": RENEW_SECONDS,
            },
        },
        "watchers": {"enabled": False},
        "sinks": {"http": [{"name": "audit", "url": hook_url, "filter": {"namespaces": [namespace]}}]},
    }


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


@pytest.fixture
async def processes(kube: AsyncClient) -> AsyncIterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for process in started:
        await process.stop()
        with contextlib.suppress(ApiError):
            await kube.delete(ValidatingWebhookConfiguration, process.config["webhook"]["configurationName"])


async def holder(kube: AsyncClient, namespace: str) -> str | None:
    try:
        lease = await kube.get(Lease, LEASE, namespace=namespace)
    except ApiError:
        return None
    return lease.spec.holderIdentity if lease.spec is not None else None


def replica(
    processes: list[OperatorProcess],
    settings: dict[str, Any],
    folder: Path,
    kubeconfig: Path,
    name: str,
    **env: str,
) -> OperatorProcess:
    process = OperatorProcess(
        settings, folder / name, kubeconfig, name=name, env={"EVICTWATCH_RECORD_KEY": "lease-test-key", **env}
    )
    processes.append(process)
    return process


async def test_a_replica_whose_clock_is_minutes_ahead_never_leads_beside_the_leader(
    control_plane: ControlPlane,
    cluster: Cluster,
    receiver: Receiver,
    processes: list[OperatorProcess],
    tmp_path: Path,
) -> None:
    certs = webhook_certificates(tmp_path / "tls")
    settings = config(cluster.namespace, receiver.url, certs.webhook_settings())
    kubeconfig = control_plane.kubeconfig_path
    steady = await replica(processes, settings, tmp_path, kubeconfig, "steady").start()
    await wait_for(lambda: _held_by(cluster, "steady"), what="the first replica to lead")
    skew = {CLOCK_OFFSET_ENV: "300"}
    ahead = await replica(processes, settings, tmp_path, kubeconfig, "ahead", **skew).start()
    proxy = await TcpProxy([("127.0.0.1", r.webhook_port) for r in (steady, ahead)]).start()
    try:
        manifest = registration.webhook_configuration(
            parse_config(settings).webhook,
            registration.url_client_config(
                f"https://127.0.0.1:{proxy.port}/validate-pods-eviction", certs.ca.cert_pem
            ),
        )
        await cluster.register_webhook(manifest)
        node = await cluster.create_node()
        pods = [f"skew-{i:02d}" for i in range(30)]
        for name in pods:
            await cluster.create_pod(name, node=node)
        holders: Counter[str | None] = Counter()
        watching = asyncio.create_task(_watch_holder(cluster, holders))
        try:
            # Evictions spread over three lease durations while both replicas run.
            for name in pods:
                assert (await cluster.evict(name)).status == 201
                await asyncio.sleep(LEASE_SECONDS * 3 / len(pods))
            found = await _all_delivered(cluster, pods)
        finally:
            watching.cancel()
        keys = Counter(r.headers.get("Idempotency-Key") for r in receiver.requests)
        repeated = sum(count - 1 for count in keys.values())
        assert set(holders) == {"steady"}, f"the Lease changed hands: {holders}; {repeated} repeats"
        assert "became the leader" not in ahead.stderr(), "the replica with the skewed clock led"
        assert len(keys) == len(found) == len(pods) and repeated == 0, f"{repeated} deliveries went twice"

        # It is not simply unable to lead: once the leader is gone, it takes over in one duration.
        await steady.kill()
        killed_at = time.monotonic()
        await wait_for(lambda: _held_by(cluster, "ahead"), timeout=LEASE_SECONDS * 3, what="the takeover")
        took = time.monotonic() - killed_at
        assert took <= LEASE_SECONDS + RENEW_SECONDS + 1, f"took {took:.1f} s"
        print(
            f"\nclock 300 s ahead: {len(pods)} evictions over {LEASE_SECONDS * 3} s, "
            f"{len(receiver.requests)} deliveries, Lease never moved ({holders['steady']} polls); "
            f"after SIGKILL of the leader the skewed replica led {took:.1f} s later "
            f"(leaseDurationSeconds {LEASE_SECONDS})"
        )
    finally:
        await proxy.stop()


async def _held_by(cluster: Cluster, name: str) -> bool:
    return await holder(cluster.client, cluster.namespace) == name


async def _watch_holder(cluster: Cluster, holders: Counter[str | None]) -> None:
    while True:
        holders[await holder(cluster.client, cluster.namespace)] += 1
        await asyncio.sleep(0.2)


async def _all_delivered(cluster: Cluster, pods: list[str]) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        listing = cluster.client.list(PodEviction, namespace=cluster.namespace)
        found = [item.to_dict() async for item in listing]
        deliveries = [
            ((r.get("status") or {}).get("deliveries") or {}).get("http:audit") or {} for r in found
        ]
        delivered = [d for d in deliveries if d.get("state") == "Delivered"]
        return found if len(delivered) == len(pods) else None

    return await wait_for(probe, timeout=90, interval=0.5, what="every eviction delivered")


async def test_a_dead_holders_lease_dated_a_day_ahead_is_taken_after_its_duration(
    control_plane: ControlPlane,
    cluster: Cluster,
    receiver: Receiver,
    processes: list[OperatorProcess],
    tmp_path: Path,
) -> None:
    tomorrow = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    spec = LeaseSpec(
        holderIdentity="gone-replica",
        leaseDurationSeconds=LEASE_SECONDS,
        acquireTime=tomorrow,
        renewTime=tomorrow,
    )
    await cluster.client.create(
        Lease(metadata=ObjectMeta(name=LEASE, namespace=cluster.namespace), spec=spec)
    )
    certs = webhook_certificates(tmp_path / "tls")
    settings = config(cluster.namespace, receiver.url, certs.webhook_settings())
    started_at = time.monotonic()
    survivor = replica(processes, settings, tmp_path, control_plane.kubeconfig_path, "survivor")
    await survivor.start()
    ready_at = time.monotonic()
    await wait_for(lambda: _held_by(cluster, "survivor"), timeout=LEASE_SECONDS * 4, what="the Lease taken")
    took, after_ready = time.monotonic() - started_at, time.monotonic() - ready_at
    assert took >= LEASE_SECONDS, f"taken after {took:.1f} s: before the holder's duration had passed"
    assert after_ready <= LEASE_SECONDS + RENEW_SECONDS, f"taken {after_ready:.1f} s after it was ready"
    print(
        f"\na Lease dated a day ahead by a dead holder was taken {took:.1f} s after the replica was "
        f"started ({after_ready:.1f} s after it was ready; leaseDurationSeconds {LEASE_SECONDS})"
    )
