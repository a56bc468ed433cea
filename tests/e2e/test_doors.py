"""Doors beyond the classic five, on the real API server: a DisruptionTarget reason nobody knows
yet, the kubelet's ephemeral-storage eviction (no condition at all), and the Eviction Request
API (``lifecycle.k8s.io/v1alpha1``, served only with its alpha gate on)."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod

from evictwatch import telemetry
from evictwatch.config import parse_config
from evictwatch.operator import Operator
from evictwatch.records.resource import PodEviction
from evictwatch.testing.cluster import Cluster, admin_client, create_namespace, unique, wait_for
from evictwatch.testing.controlplane import ControlPlane
from evictwatch.testing.fixtures import LOCAL, StartOperator, merge

KEY = b"doors-test-key"
LIFECYCLE = "/apis/lifecycle.k8s.io/v1alpha1"


def stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_config(namespace: str, **extra: Any) -> dict[str, Any]:
    return merge(
        {
            "capture": {"namespaces": [namespace]},
            "self": {"namespace": namespace},
            "controller": {"blockedAfterSeconds": 2, "leaderElection": {"enabled": False}},
        },
        extra,
    )


async def record_of(
    kube: AsyncClient, namespace: str, pod: str, outcome: str | None = None
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        async for item in kube.list(PodEviction, namespace=namespace):
            record = item.to_dict()
            if record["spec"]["pod"]["name"] == pod and outcome in (
                None,
                (record.get("status") or {}).get("outcome"),
            ):
                return record
        return None

    return await wait_for(
        probe, timeout=30, what=f"a record of {pod}" + (f" settled {outcome}" if outcome else "")
    )


async def write_pod_status(cluster: Cluster, pod: str, status: dict[str, Any]) -> None:
    resource: Any = Pod.Status
    await cluster.client.patch(resource, pod, {"status": status}, namespace=cluster.namespace)


async def test_an_unknown_disruption_reason_is_recorded_counted_and_logged(
    cluster: Cluster, start_operator: StartOperator, caplog: pytest.LogCaptureFixture
) -> None:
    await start_operator(local_config(cluster.namespace), record_key=KEY)
    reason = "DeletionByNextReleasesController"
    counter = telemetry.UNKNOWN_DISRUPTION_REASONS.labels(reason)
    before = counter._value.get()
    node = await cluster.create_node()
    await cluster.create_pod("future", node=node, ready=True)
    message = "next-release-controller: making room, in words nobody has read yet"
    with caplog.at_level(logging.WARNING, logger="evictwatch.watchers"):
        # What a component of a newer release might write before it deletes the Pod.
        condition = {"type": "DisruptionTarget", "status": "True", "reason": reason, "message": message}
        await write_pod_status(
            cluster, "future", {"conditions": [{**condition, "lastTransitionTime": stamp()}]}
        )
        await cluster.client.delete(Pod, "future", namespace=cluster.namespace)
        record = await record_of(cluster.client, cluster.namespace, "future", "Evicted")
    assert record["spec"]["source"] == "Other"
    assert record["spec"]["reason"] == reason
    assert record["spec"]["message"] == message
    assert counter._value.get() == before + 1
    named = [r for r in caplog.records if getattr(r, "reason", None) == reason]
    assert len(named) == 1 and reason in named[0].getMessage()
    assert getattr(named[0], "pod", None) == "future"


async def test_kubelet_ephemeral_storage_eviction_without_a_condition_is_recorded(
    cluster: Cluster, start_operator: StartOperator
) -> None:
    await start_operator(local_config(cluster.namespace), record_key=KEY)
    node = await cluster.create_node()
    await cluster.create_pod("scratchy", node=node, ready=True)
    # What the kubelet writes when a Pod outgrows its ephemeral-storage limit: Failed, Evicted, and
    # no DisruptionTarget condition (the eviction manager passes none for this kind).
    message = "Pod ephemeral local storage usage exceeds the total limit of containers 1Mi. "
    await write_pod_status(
        cluster,
        "scratchy",
        {
            "phase": "Failed",
            "reason": "Evicted",
            "message": message,
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": stamp()}],
        },
    )
    record = await record_of(cluster.client, cluster.namespace, "scratchy", "EvictedByKubelet")
    assert record["spec"]["source"] == "Kubelet"
    assert record["spec"]["reason"] == "Evicted"
    assert record["spec"]["message"] == message
    assert record["spec"]["pod"]["nodeName"] == node


async def test_without_the_eviction_request_api_nothing_changes_and_no_error_is_logged(
    cluster: Cluster, start_operator: StartOperator, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="evictwatch"):
        operator = await start_operator(local_config(cluster.namespace), record_key=KEY)
        assert operator.eviction_requests is not None
        await wait_for(
            lambda: _said(caplog, "is not served"),
            timeout=20,
            what="the Eviction Request API reported not served",
        )
        node = await cluster.create_node()
        await cluster.create_pod("plain", node=node, ready=True)
        assert (await cluster.evict("plain")).status == 201
        await record_of(cluster.client, cluster.namespace, "plain", "Evicted")
    assert operator.eviction_requests.served == set()
    assert operator.eviction_requests.watches == []
    assert [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "Eviction Request" in r.getMessage()
    ] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def _said(caplog: pytest.LogCaptureFixture, words: str) -> bool:
    return any(words in record.getMessage() for record in caplog.records)


# ---- the Eviction Request API, gate on ----------------------------------------------------------
@pytest.fixture
async def gated(eviction_request_control_plane: ControlPlane) -> AsyncIterator[tuple[Cluster, Operator]]:
    cp = eviction_request_control_plane
    kube = admin_client(cp.kubeconfig_path)
    cluster = Cluster(cp, kube, await create_namespace(kube, unique("er")))
    config = merge(LOCAL, local_config(cluster.namespace, watchers={"events": False}))
    operator = Operator(parse_config(config), kubeconfig=cp.kubeconfig_path, self_signed=True, record_key=KEY)
    await operator.start()
    try:
        yield cluster, operator
    finally:
        await operator.stop()
        await cluster.cleanup()
        await kube.close()


async def lifecycle(cluster: Cluster, method: str, path: str, body: Any = None) -> dict[str, Any]:
    async with cluster.http() as http:
        reply = await http.request(method, f"{LIFECYCLE}/namespaces/{cluster.namespace}/{path}", json=body)
    assert reply.status_code < 300, f"{method} {path}: {reply.status_code} {reply.text}"
    data: dict[str, Any] = reply.json()
    return data


def eviction_request(
    name: str, pod: str, uid: str, requester: str, intent: str = "Eviction"
) -> dict[str, Any]:
    return {
        "apiVersion": "lifecycle.k8s.io/v1alpha1",
        "kind": "EvictionRequest",
        "metadata": {"name": name},
        "spec": {"target": {"pod": {"name": pod, "uid": uid}}, "requester": requester, "intent": intent},
    }


async def test_an_eviction_request_is_on_the_record_before_any_eviction(
    gated: tuple[Cluster, Operator],
) -> None:
    cluster, operator = gated
    assert operator.eviction_requests is not None
    await wait_for(lambda: _served(operator), timeout=20, what="the Eviction Request API discovered")
    node = await cluster.create_node()
    pod = await cluster.create_pod("batch-1", labels={"app": "batch"}, node=node, ready=True)
    assert pod.metadata is not None and pod.metadata.uid is not None
    uid = pod.metadata.uid
    await lifecycle(
        cluster,
        "POST",
        "evictionrequests",
        eviction_request("drain-batch-1", "batch-1", uid, "acme.io/drainer"),
    )
    record = await record_of(cluster.client, cluster.namespace, "batch-1")
    spec = record["spec"]
    assert spec["source"] == "EvictionRequest" and spec["attempts"] == 0
    assert spec["pod"]["uid"] == uid and spec["pod"]["labels"] == {"app": "batch"}
    (request,) = spec["evictionRequests"]
    assert request["name"] == "drain-batch-1"
    assert request["requester"] == "acme.io/drainer" and request["intent"] == "Eviction"
    assert request["time"]
    await asyncio.sleep(3)  # past blockedAfterSeconds: asked for, not done, so still Pending
    assert (await record_of(cluster.client, cluster.namespace, "batch-1"))["status"]["outcome"] == "Pending"

    # What the eviction-request controller (not merged in 1.37) would make of it: the Eviction,
    # with the Pod's responders; then a responder reports progress.
    eviction = await lifecycle(cluster, "POST", "evictions", {
        "apiVersion": "lifecycle.k8s.io/v1alpha1",
        "kind": "Eviction",
        "metadata": {"name": uid},
        "spec": {"target": {"pod": {"name": "batch-1", "uid": uid}}},
    })  # fmt: skip
    eviction["status"] = {
        "requesters": [{"name": "acme.io/drainer", "intent": "Eviction"}],
        "targetResponders": [
            {"name": "imperative-eviction.k8s.io/evictor", "priority": 100, "state": "Active"},
        ],
        "responders": [{"name": "imperative-eviction.k8s.io/evictor", "startTime": _micro_now()}],
    }
    await lifecycle(cluster, "PUT", f"evictions/{uid}/status", eviction)

    async def responders() -> list[dict[str, Any]] | None:
        found = await record_of(cluster.client, cluster.namespace, "batch-1")
        return ((found["spec"].get("eviction") or {}).get("responders")) or None

    (responder,) = await wait_for(responders, timeout=20, what="the Eviction's responders on the record")
    assert responder["name"] == "imperative-eviction.k8s.io/evictor"
    assert responder["state"] == "Active" and responder["priority"] == 100 and responder["startTime"]

    # The default responder's last step: the Eviction API. One record, now an attempt too.
    assert (await cluster.evict("batch-1")).status == 201
    done = await record_of(cluster.client, cluster.namespace, "batch-1", "Evicted")
    assert done["spec"]["source"] == "EvictionRequest"
    assert set(done["spec"]["sources"]) >= {"EvictionRequest", "EvictionAPI"}
    assert done["spec"]["attempts"] == 1
    assert done["spec"]["evictionRequests"][0]["requester"] == "acme.io/drainer"


async def test_a_withdrawn_eviction_request_settles_blocked(gated: tuple[Cluster, Operator]) -> None:
    cluster, operator = gated
    await wait_for(lambda: _served(operator), timeout=20, what="the Eviction Request API discovered")
    node = await cluster.create_node()
    pod = await cluster.create_pod("kept", node=node, ready=True)
    assert pod.metadata is not None and pod.metadata.uid is not None
    request = eviction_request("maybe-kept", "kept", pod.metadata.uid, "acme.io/rebalancer")
    created = await lifecycle(cluster, "POST", "evictionrequests", request)
    await record_of(cluster.client, cluster.namespace, "kept")
    created["spec"]["intent"] = "Withdrawn"
    await lifecycle(cluster, "PUT", "evictionrequests/maybe-kept", created)
    record = await record_of(cluster.client, cluster.namespace, "kept", "Blocked")
    assert record["spec"]["evictionRequests"][0]["intent"] == "Withdrawn"
    assert "withdrawn" in record["status"]["outcomeReason"]


async def _served(operator: Operator) -> bool:
    watcher = operator.eviction_requests
    return watcher is not None and bool(watcher.watches) and all(w.synced.is_set() for w in watcher.watches)


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
