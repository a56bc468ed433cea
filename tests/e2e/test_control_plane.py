"""The harness is real: these are things only a real kube-apiserver (and controller manager) do."""

from __future__ import annotations

from evictwatch.testing.binaries import selected_version
from evictwatch.testing.cluster import Cluster
from evictwatch.testing.controlplane import ControlPlane


def test_server_reports_the_pinned_version(control_plane: ControlPlane, record_property: object) -> None:
    version = control_plane.version()
    print(f"kube-apiserver /version: {version}")
    record_property("kube_apiserver_version", version["gitVersion"])  # type: ignore[operator]
    assert version["gitVersion"] == selected_version()  # the pin, or $EVICTWATCH_KUBERNETES_VERSION
    assert control_plane.running("kube-controller-manager")


async def test_pending_pod_is_evicted_and_gone(cluster: Cluster) -> None:
    await cluster.create_pod("victim")
    reply = await cluster.evict("victim")
    assert reply.status == 201, reply.body
    assert await cluster.pod_or_none("victim") is None


async def test_pdb_with_max_unavailable_zero_refuses_with_429(cluster: Cluster) -> None:
    node = await cluster.create_node()
    for name in ("web-a", "web-b"):
        await cluster.create_pod(name, labels={"app": "web"}, node=node, ready=True)
    pdb = await cluster.create_pdb("web", {"app": "web"}, max_unavailable=0)
    # kube-controller-manager's disruption controller has counted the healthy Pods.
    assert pdb.status is not None and pdb.status.currentHealthy == 2
    reply = await cluster.evict("web-a")
    assert reply.status == 429, reply.body
    assert "disruption budget" in reply.message
    pod = await cluster.pod_or_none("web-a")
    assert pod is not None and pod.metadata is not None and pod.metadata.deletionTimestamp is None


async def test_evicted_bound_pod_gets_disruption_target(cluster: Cluster) -> None:
    node = await cluster.create_node()
    await cluster.create_pod("bound", node=node, ready=True)
    reply = await cluster.evict("bound", delete_options={"gracePeriodSeconds": 30})
    assert reply.status == 201, reply.body
    pod = await cluster.pod_or_none("bound")
    assert pod is not None and pod.metadata is not None and pod.metadata.deletionTimestamp is not None
    assert pod.status is not None
    conditions = {c.type: c for c in pod.status.conditions or []}
    assert conditions["DisruptionTarget"].status == "True"
    assert conditions["DisruptionTarget"].reason == "EvictionByEvictionAPI"


async def test_service_account_without_rbac_is_refused_403(cluster: Cluster) -> None:
    await cluster.create_pod("guarded")
    token = await cluster.service_account_token("nobody")
    reply = await cluster.evict("guarded", token=token)
    assert reply.status == 403, reply.body
    assert f"system:serviceaccount:{cluster.namespace}:nobody" in reply.message
    assert await cluster.pod_or_none("guarded") is not None


async def test_service_account_with_rbac_may_evict(cluster: Cluster) -> None:
    await cluster.create_pod("allowed")
    token = await cluster.service_account_token(
        "evictor", rules=[{"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]}]
    )
    reply = await cluster.evict("allowed", token=token)
    assert reply.status == 201, reply.body


async def test_impersonated_user_without_rights_is_refused(cluster: Cluster) -> None:
    await cluster.create_pod("other")
    reply = await cluster.evict("other", impersonate="alice")
    assert reply.status == 403, reply.body
