"""A NoExecute taint on the real node: kube-controller-manager deletes the Pod, the kubelet stops it."""

from __future__ import annotations

import time

from lightkube.resources.core_v1 import Node

from evictwatch.testing.cluster import Cluster, wait_for
from evictwatch.testing.fixtures import StartOperator
from evictwatch.testing.node import RealNode
from evictwatch.testing.node_pods import create_pod, graceful_command, kubelet_record, pod_spec, wait_running

STOP_SECONDS = 8
"""The container takes this long to stop after SIGTERM (a fake node would never stop it)."""
TAINT = {"key": "evictwatch.io/test", "value": "now", "effect": "NoExecute"}


async def test_noexecute_taint_evicts_a_running_pod(
    real_node: RealNode, cluster: Cluster, start_operator: StartOperator
) -> None:
    await start_operator(
        {
            "capture": {"namespaces": [cluster.namespace]},
            "self": {"namespace": cluster.namespace},
            "controller": {"blockedAfterSeconds": 2, "leaderElection": {"enabled": False}},
        },
        record_key=b"taint-test-key",
    )
    spec = pod_spec(real_node.name, command=graceful_command(STOP_SECONDS), grace_seconds=10)
    await create_pod(cluster.client, "tainted", cluster.namespace, spec)
    await wait_running(cluster.client, cluster.namespace, count=1)
    tainted_at = time.monotonic()
    await cluster.client.patch(Node, real_node.name, {"spec": {"taints": [TAINT]}})
    try:
        record = await kubelet_record(cluster.client, cluster.namespace, "tainted", timeout=30)
        assert record["spec"]["source"] == "TaintManager", record["spec"]
        assert record["spec"]["reason"] in ("DeletionByTaintManager", "TaintManagerEviction")
        assert record["status"]["outcome"] == "Evicted", record["status"]

        async def gone() -> bool:
            return await cluster.pod_or_none("tainted") is None

        # The kubelet really ran the container's SIGTERM handler before the Pod went away.
        await wait_for(gone, timeout=30, what="the tainted Pod to stop")
        stopped = time.monotonic() - tainted_at
        print(f"stopped {stopped:.1f} s after the taint")
        assert stopped >= STOP_SECONDS
    finally:
        await cluster.client.patch(Node, real_node.name, {"spec": {"taints": None}})
