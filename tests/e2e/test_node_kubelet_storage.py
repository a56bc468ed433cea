"""The kubelet evicts for real: a Pod that writes past its ephemeral-storage limit."""

from __future__ import annotations

from evictwatch.testing.cluster import Cluster
from evictwatch.testing.fixtures import StartOperator
from evictwatch.testing.node import RealNode
from evictwatch.testing.node_pods import create_pod, kubelet_record, pod_spec, wait_evicted, wait_running

WRITER = ["/bin/sh", "-c", "sleep 1; dd if=/dev/zero of=/data/fill bs=1M count=48; sleep 3600"]


async def test_pod_over_its_ephemeral_storage_limit_is_recorded(
    real_node: RealNode, cluster: Cluster, start_operator: StartOperator
) -> None:
    await start_operator(
        {
            "capture": {"namespaces": [cluster.namespace]},
            "self": {"namespace": cluster.namespace},
            "controller": {"blockedAfterSeconds": 2, "leaderElection": {"enabled": False}},
        },
        record_key=b"storage-test-key",
    )
    spec = pod_spec(
        real_node.name,
        command=WRITER,
        resources={"limits": {"ephemeral-storage": "16Mi"}},
        volumes=[{"name": "data", "emptyDir": {}}],
        mounts=[{"name": "data", "mountPath": "/data"}],
        grace_seconds=1,
    )
    await create_pod(cluster.client, "writer", cluster.namespace, spec)
    await wait_running(cluster.client, cluster.namespace, count=1)

    # The kubelet looks every 10 s (its fixed eviction monitoring period).
    pod = await wait_evicted(cluster.client, cluster.namespace, "writer", timeout=60)
    assert pod.status is not None
    record = await kubelet_record(cluster.client, cluster.namespace, "writer", timeout=20)
    # What makes this case worth a test: the kubelet sets no DisruptionTarget condition here.
    assert not [c for c in pod.status.conditions or [] if c.type == "DisruptionTarget"]
    spec_out = record["spec"]
    assert spec_out["source"] == "Kubelet"
    assert spec_out["reason"] == "Evicted"
    assert "ephemeral local storage" in spec_out["message"]
    assert spec_out["pod"]["nodeName"] == real_node.name
    assert record["status"]["outcome"] == "EvictedByKubelet", record["status"]
    print(f"record: {spec_out['message']!r} pressure={spec_out.get('pressure')}")
