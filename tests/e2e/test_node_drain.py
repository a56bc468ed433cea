"""A real ``kubectl drain`` of a real node: Pods that run, a budget that blocks, containers that stop."""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

from lightkube.codecs import from_dict

from evictwatch.records.resource import PodEviction
from evictwatch.testing.cluster import Cluster, wait_for
from evictwatch.testing.fixtures import StartOperator
from evictwatch.testing.node import RealNode
from evictwatch.testing.node_pods import deployment, graceful_command, pod_spec, wait_running

LABELS = {"app": "shop"}
STOP_SECONDS = 4


def parse_time(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def records_by_pod(cluster: Cluster) -> dict[str, dict[str, Any]]:
    items = [item.to_dict() async for item in cluster.client.list(PodEviction, namespace=cluster.namespace)]
    return {item["spec"]["pod"]["name"]: item for item in items}


async def test_kubectl_drain_waits_for_the_budget_and_records_each_pod(
    real_node: RealNode, cluster: Cluster, start_operator: StartOperator
) -> None:
    await start_operator(
        {
            "capture": {"namespaces": [cluster.namespace]},
            "self": {"namespace": cluster.namespace},
            "controller": {"blockedAfterSeconds": 2, "leaderElection": {"enabled": False}},
        },
        record_key=b"drain-test-key",
    )
    # Replacements become Ready 6 s after they start: while one is not, the budget blocks.
    spec = pod_spec(real_node.name, command=graceful_command(STOP_SECONDS), ready_after=6)
    await cluster.client.create(from_dict(deployment("shop", cluster.namespace, LABELS, spec, replicas=2)))
    running = await wait_running(cluster.client, cluster.namespace, count=2, labels=LABELS)
    originals = {p.metadata.name: p.metadata.uid for p in running if p.metadata and p.metadata.name}
    await cluster.create_pdb("shop", LABELS, min_available=1)

    began = time.monotonic()
    drain = await asyncio.create_subprocess_exec(
        str(real_node.kubectl),
        f"--kubeconfig={cluster.cp.kubeconfig_path}",
        "drain",
        real_node.name,
        "--ignore-daemonsets",
        "--timeout=120s",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    seen: dict[str, list[str]] = {name: [] for name in originals}
    gone_at: dict[str, float] = {}

    async def follow() -> bool:
        """Note each record's outcomes as they change; done when kubectl has exited."""
        for name, record in (await records_by_pod(cluster)).items():
            outcome = (record.get("status") or {}).get("outcome")
            if name in seen and outcome and (not seen[name] or seen[name][-1] != outcome):
                seen[name].append(outcome)
        for name in originals:
            if name not in gone_at and await cluster.pod_or_none(name) is None:
                gone_at[name] = time.time()
        return drain.returncode is not None

    waiting = asyncio.ensure_future(drain.wait())
    await wait_for(follow, timeout=150, interval=0.2, what="kubectl drain to finish")
    await waiting
    output = (await drain.stdout.read()).decode() if drain.stdout else ""
    drained_seconds = time.monotonic() - began
    assert drain.returncode == 0, output
    assert "Cannot evict pod as it would violate the pod's disruption budget" in output
    assert f"node/{real_node.name} drained" in output

    records = await records_by_pod(cluster)
    assert set(records) >= set(originals)
    blocked = [name for name in originals if seen[name][:1] == ["Blocked"] or "Blocked" in seen[name]]
    assert blocked, f"no Pod was recorded Blocked: {seen}"
    for name, uid in originals.items():
        record = records[name]
        assert record["status"]["outcome"] == "Evicted", record
        assert record["spec"]["source"] == "EvictionAPI"
        assert record["spec"]["pod"]["uid"] == uid
        assert record["spec"]["pod"]["phase"] == "Running"  # a real container ran until evicted
        assert record["spec"]["pod"]["nodeName"] == real_node.name
        assert record["spec"]["requester"]["username"] == "admin"
        assert record["spec"]["requester"]["component"] == "kubectl"
        assert record["status"]["node"]["unschedulable"] is True  # kubectl cordoned it first
    for name in blocked:
        assert seen[name][-1] == "Evicted"
        assert records[name]["spec"]["attempts"] >= 2, records[name]["spec"]

    # kubectl waited for each container to stop: each Pod went away only after its container
    # had handled SIGTERM (STOP_SECONDS), which only a real kubelet reports.
    stopped = {
        name: round(gone_at[name] - parse_time(records[name]["spec"]["lastAttemptTime"]), 1)
        for name in originals
    }
    assert all(seconds >= STOP_SECONDS for seconds in stopped.values()), stopped
    print(f"drain took {drained_seconds:.1f} s; outcomes {seen}; stopped after eviction {stopped} s")
