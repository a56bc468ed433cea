"""DRA device taints on the real kube-controller-manager: its device-taint eviction controller
deletes the Pod, and the record names the claim, the device, the taint and where it came from.

The objects are written as their owners write them: a DeviceClass and a ResourceSlice (what a
DRA driver publishes for a Node), a ResourceClaim whose status is written the way the scheduler
allocates and reserves it, a Pod bound to the Node that uses the claim. Then the taint: on the
slice's device, or through a DeviceTaintRule.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from evictwatch.operator import Operator
from evictwatch.testing.cluster import Cluster, unique, wait_for
from evictwatch.testing.fixtures import StartOperator

KEY = b"device-taint-test-key"
API = "/apis/resource.k8s.io/v1"
TAINT = {"key": "example.com/ecc-errors", "value": "uncorrectable", "effect": "NoExecute"}


@dataclass
class Gpu:
    """One fake DRA driver's world: its class, the Node's slice, a claim allocated to a Pod."""

    cluster: Cluster
    driver: str
    node: str
    pool: str
    device: str = "gpu-0"

    @property
    def slice_name(self) -> str:
        return f"{self.pool}-{self.driver}"

    def slice(self, taints: list[dict[str, str]]) -> dict[str, Any]:
        device: dict[str, Any] = {"name": self.device}
        if taints:
            device["taints"] = taints
        return {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": self.slice_name},
            "spec": {
                "driver": self.driver,
                "pool": {"name": self.pool, "generation": 1, "resourceSliceCount": 1},
                "nodeName": self.node,
                "devices": [device, {"name": "gpu-1"}],
            },
        }

    async def call(self, method: str, path: str, body: Any = None, content_type: str = "") -> dict[str, Any]:
        headers = {"Content-Type": content_type} if content_type else {}
        async with self.cluster.http() as http:
            reply = await http.request(method, path, json=body, headers=headers)
        assert reply.status_code < 300, f"{method} {path}: {reply.status_code} {reply.text}"
        data: dict[str, Any] = reply.json()
        return data

    async def publish(self) -> None:
        """The driver's DeviceClass and ResourceSlice (untainted)."""
        await self.call(
            "POST",
            f"{API}/deviceclasses",
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "DeviceClass",
                "metadata": {"name": self.driver},
                "spec": {"selectors": [{"cel": {"expression": f"device.driver == '{self.driver}'"}}]},
            },
        )
        await self.call("POST", f"{API}/resourceslices", self.slice([]))

    async def pod_with_claim(self, pod_name: str, claim_name: str) -> None:
        """A claim, a Pod using it on the Node, and the claim allocated and reserved as the scheduler does."""
        namespace = self.cluster.namespace
        claims = f"{API}/namespaces/{namespace}/resourceclaims"
        await self.call(
            "POST",
            claims,
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceClaim",
                "metadata": {"name": claim_name, "finalizers": ["resource.kubernetes.io/delete-protection"]},
                "spec": {
                    "devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": self.driver}}]}
                },
            },
        )
        pod = await self.call(
            "POST",
            f"/api/v1/namespaces/{namespace}/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod_name},
                "spec": {
                    "nodeName": self.node,
                    "resourceClaims": [{"name": "gpu", "resourceClaimName": claim_name}],
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.invalid/app:1",
                            "resources": {"claims": [{"name": "gpu"}]},
                        }
                    ],
                },
            },
        )
        await self.cluster.mark_ready(pod_name)
        node_selector = {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [self.node]}]}
            ]
        }
        claim = await self.call("GET", f"{claims}/{claim_name}")
        claim["status"] = {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": "gpu", "driver": self.driver, "pool": self.pool, "device": self.device}
                    ]
                },
                "nodeSelector": node_selector,
            },
            "reservedFor": [{"resource": "pods", "name": pod_name, "uid": pod["metadata"]["uid"]}],
        }
        await self.call("PUT", f"{claims}/{claim_name}/status", claim)

    async def taint_slice(self) -> None:
        await self.call("PUT", f"{API}/resourceslices/{self.slice_name}", {
            **self.slice([TAINT]),
            "metadata": (await self.call("GET", f"{API}/resourceslices/{self.slice_name}"))["metadata"],
        })  # fmt: skip

    async def taint_by_rule(self, rule: str) -> None:
        await self.call(
            "POST",
            f"{API}/devicetaintrules",
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "DeviceTaintRule",
                "metadata": {"name": rule},
                "spec": {
                    "deviceSelector": {"driver": self.driver, "pool": self.pool, "device": self.device},
                    "taint": {"key": "example.com/maintenance", "effect": "NoExecute"},
                },
            },
        )

    async def remove(self, *paths: str) -> None:
        async with self.cluster.http() as http:
            for path in paths:
                await http.delete(path)


@pytest.fixture
async def gpu(cluster: Cluster) -> AsyncIterator[Gpu]:
    node = await cluster.create_node()
    world = Gpu(cluster, f"{unique('gpu')}.example.com", node, pool=node)
    await world.publish()
    try:
        yield world
    finally:
        await world.remove(f"{API}/resourceslices/{world.slice_name}", f"{API}/deviceclasses/{world.driver}")


async def items(cluster: Cluster, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The items of a list, or [] while the API cannot answer yet (a CRD just installed: 429)."""
    async with cluster.http() as http:
        reply = await http.get(path, params=params)
    found: list[dict[str, Any]] = reply.json().get("items") or [] if reply.status_code == 200 else []
    return found


async def capture_then_settle(start_operator: StartOperator, cluster: Cluster, pod: str) -> dict[str, Any]:
    """Record with the watchers alone, wait for the controller's Event, then settle.

    The device-taint controller sends its Event asynchronously, and a record settles once: in
    two steps the test knows the Event is there when the "why" is chosen.
    """
    base = {"capture": {"namespaces": [cluster.namespace]}, "self": {"namespace": cluster.namespace}}
    watcher: Operator = await start_operator(
        {**base, "controller": {"enabled": False, "leaderElection": {"enabled": False}}}, record_key=KEY
    )
    await watcher.leading.wait()

    async def recorded() -> list[Any] | None:
        async with cluster.http() as http:
            items = (
                await http.get(f"/apis/evictwatch.io/v1alpha1/namespaces/{cluster.namespace}/podevictions")
            ).json()
            events = (
                await http.get(
                    f"/api/v1/namespaces/{cluster.namespace}/events",
                    params={"fieldSelector": f"involvedObject.name={pod},reason=DeviceTaintManagerEviction"},
                )
            ).json()
        return [items["items"], events["items"]] if items["items"] and events["items"] else None

    await wait_for(recorded, timeout=60, what="the record and the device-taint controller's Event")
    await watcher.stop()
    await start_operator(
        {**base, "controller": {"leaderElection": {"enabled": False}}, "watchers": {"enabled": False}},
        record_key=KEY,
    )

    async def settled() -> dict[str, Any] | None:
        async with cluster.http() as http:
            items = (
                await http.get(f"/apis/evictwatch.io/v1alpha1/namespaces/{cluster.namespace}/podevictions")
            ).json()
        done = [r for r in items["items"] if (r.get("status") or {}).get("outcome") == "Evicted"]
        return done[0] if done else None

    return await wait_for(settled, timeout=30, what="the record settled Evicted")


async def test_noexecute_taint_on_a_slice_device_evicts_and_is_recorded(
    cluster: Cluster, gpu: Gpu, start_operator: StartOperator
) -> None:
    await gpu.pod_with_claim("trainer", "trainer-gpu")
    await asyncio.sleep(0.5)  # the controller's informers see the allocation before the taint
    await gpu.taint_slice()
    record = await capture_then_settle(start_operator, cluster, "trainer")
    spec, status = record["spec"], record["status"]
    assert spec["source"] == "DeviceTaintManager"
    assert spec["reason"] == "DeletionByDeviceTaintManager"
    assert spec["message"] == "Device Taint manager: deleting due to NoExecute taint"
    (cause,) = status["deviceTaints"]
    assert {k: v for k, v in cause.items() if k != "taint"} == {
        "claim": "trainer-gpu",
        "request": "gpu",
        "driver": gpu.driver,
        "pool": gpu.pool,
        "device": "gpu-0",
        "slice": gpu.slice_name,
    }
    assert {k: cause["taint"][k] for k in ("key", "value", "effect")} == TAINT
    assert cause["taint"]["timeAdded"]  # the API server stamps it
    assert status["why"]["reason"] == "DeviceTaintManagerEviction"
    assert status["why"]["component"] == "kube-controller-manager"
    assert status["why"]["message"] == "Marking for deletion"


async def test_noexecute_device_taint_rule_evicts_and_is_named(
    cluster: Cluster, gpu: Gpu, start_operator: StartOperator
) -> None:
    await gpu.pod_with_claim("inference", "inference-gpu")
    await asyncio.sleep(0.5)
    rule = unique("gpu-maintenance")
    await gpu.taint_by_rule(rule)
    try:
        record = await capture_then_settle(start_operator, cluster, "inference")
    finally:
        await gpu.remove(f"{API}/devicetaintrules/{rule}")
    assert record["spec"]["source"] == "DeviceTaintManager"
    (cause,) = record["status"]["deviceTaints"]
    assert cause["rule"] == rule and "slice" not in cause
    assert cause["claim"] == "inference-gpu" and cause["device"] == "gpu-0"
    assert cause["taint"]["key"] == "example.com/maintenance" and cause["taint"]["effect"] == "NoExecute"
