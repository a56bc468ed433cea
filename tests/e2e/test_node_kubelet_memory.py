"""The kubelet evicts for real under memory pressure, with a threshold set from this machine's memory.

The node is started with ``evictionHard: memory.available<X`` where X is what is available at
the start less MARGIN, so a Pod that fills more than MARGIN of memory crosses it on any machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lightkube.resources.core_v1 import Node

from evictwatch.testing.cluster import Cluster, wait_for
from evictwatch.testing.fixtures import StartOperator
from evictwatch.testing.node import RealNode
from evictwatch.testing.node_config import DEFAULT_EVICTION_HARD
from evictwatch.testing.node_pods import create_pod, kubelet_record, pod_spec, wait_evicted, wait_running

MIB = 1024 * 1024
MARGIN_MIB = 1024
CHUNK_MIB, CHUNKS = 128, 20
"""The hog fills MARGIN + 1.5 GiB at most, 128 MiB every 0.2 s, into a memory-backed volume."""


def available_mib() -> int:
    """memory.available as the kubelet computes it: capacity less the root cgroup's working set."""
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    total = int(meminfo["MemTotal"].split()[0]) * 1024
    root = Path("/sys/fs/cgroup/memory")
    if not (root / "memory.usage_in_bytes").is_file():  # cgroup v2: the kernel's own estimate
        return int(meminfo["MemAvailable"].split()[0]) * 1024 // MIB
    usage = int((root / "memory.usage_in_bytes").read_text())
    stat = dict(line.split() for line in (root / "memory.stat").read_text().splitlines())
    working_set = max(usage - int(stat.get("total_inactive_file", 0)), 0)
    return (total - working_set) // MIB


@pytest.fixture(scope="module")
def real_node_options() -> dict[str, Any]:
    threshold = available_mib() - MARGIN_MIB
    return {"eviction_hard": {**DEFAULT_EVICTION_HARD, "memory.available": f"{threshold}Mi"}}


HOG = [
    "/bin/sh",
    "-c",
    f"i=0; while [ $i -lt {CHUNKS} ]; do dd if=/dev/zero of=/mem/f$i bs=1M count={CHUNK_MIB} 2>/dev/null;"
    " i=$((i+1)); sleep 0.2; done; sleep 3600",
]


async def test_memory_pressure_eviction_is_recorded(
    real_node: RealNode, cluster: Cluster, start_operator: StartOperator
) -> None:
    await start_operator(
        {
            "capture": {"namespaces": [cluster.namespace]},
            "self": {"namespace": cluster.namespace},
            "controller": {"blockedAfterSeconds": 2, "leaderElection": {"enabled": False}},
        },
        record_key=b"memory-test-key",
    )
    spec = pod_spec(
        real_node.name,
        command=HOG,
        # Burstable, not BestEffort: a node under memory pressure still admits it.
        resources={"requests": {"memory": "64Mi"}},
        volumes=[{"name": "mem", "emptyDir": {"medium": "Memory"}}],
        mounts=[{"name": "mem", "mountPath": "/mem"}],
        grace_seconds=1,
    )
    await create_pod(cluster.client, "hungry", cluster.namespace, spec)
    await wait_running(cluster.client, cluster.namespace, count=1)

    pod = await wait_evicted(cluster.client, cluster.namespace, "hungry", timeout=60)
    assert pod.status is not None
    record = await kubelet_record(cluster.client, cluster.namespace, "hungry", timeout=20)
    targets = [c for c in pod.status.conditions or [] if c.type == "DisruptionTarget"]
    assert [c.reason for c in targets] == ["TerminationByKubelet"]
    spec_out = record["spec"]
    assert spec_out["source"] == "Kubelet"
    assert spec_out["reason"] == "Evicted"
    assert spec_out["pressure"]["resource"] == "memory", spec_out
    assert spec_out["pod"]["nodeName"] == real_node.name
    assert record["status"]["outcome"] == "EvictedByKubelet", record["status"]

    async def pressure_seen() -> bool:
        node = await cluster.client.get(Node, real_node.name)
        conditions = (node.status.conditions if node.status else None) or []
        return any(c.type == "MemoryPressure" and c.status == "True" for c in conditions) or any(
            t.key == "node.kubernetes.io/memory-pressure"
            for t in (node.spec.taints if node.spec else None) or []
        )

    await wait_for(pressure_seen, timeout=10, what="the Node's MemoryPressure condition")
    print(f"record: {spec_out['message']!r} pressure={spec_out['pressure']}")
