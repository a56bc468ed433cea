"""A real ``kubectl drain`` of a real node: Pods that run, a budget that blocks, containers that stop."""

from __future__ import annotations

import asyncio
import datetime
import time
from dataclasses import dataclass, field
from typing import Any

from lightkube.codecs import from_dict

from evictwatch.model.hooks import HOOKS_ANNOTATION
from evictwatch.records.resource import PodEviction
from evictwatch.testing.cluster import Cluster, wait_for
from evictwatch.testing.fixtures import StartOperator
from evictwatch.testing.hookserver import HookServer
from evictwatch.testing.node import RealNode
from evictwatch.testing.node_pods import deployment, graceful_command, pod_spec, wait_running

LABELS = {"app": "shop"}
STOP_SECONDS = 4


def parse_time(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def records_by_pod(cluster: Cluster) -> dict[str, dict[str, Any]]:
    items = [item.to_dict() async for item in cluster.client.list(PodEviction, namespace=cluster.namespace)]
    return {item["spec"]["pod"]["name"]: item for item in items}


@dataclass
class Drain:
    """What a ``kubectl drain`` printed, and what the test saw while it ran."""

    returncode: int | None = None
    output: str = ""
    seconds: float = 0.0
    seen: dict[str, list[str]] = field(default_factory=dict)
    """Each Pod's record outcomes, in the order they were seen."""
    gone_at: dict[str, float] = field(default_factory=dict)
    """When each Pod object disappeared (wall clock)."""


async def drain_and_follow(node: RealNode, cluster: Cluster, pods: list[str]) -> Drain:
    """Run ``kubectl drain`` of the node, noting record outcomes and Pod removals until it exits."""
    began, result = time.monotonic(), Drain(seen={name: [] for name in pods})
    drain = await asyncio.create_subprocess_exec(
        str(node.kubectl),
        f"--kubeconfig={cluster.cp.kubeconfig_path}",
        "drain",
        node.name,
        "--ignore-daemonsets",
        "--timeout=120s",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    waiting = asyncio.ensure_future(drain.communicate())

    async def follow() -> bool:
        for name, record in (await records_by_pod(cluster)).items():
            outcome = (record.get("status") or {}).get("outcome")
            outcomes = result.seen.get(name)
            if outcomes is not None and outcome and (not outcomes or outcomes[-1] != outcome):
                outcomes.append(outcome)
        for name in pods:
            if name not in result.gone_at and await cluster.pod_or_none(name) is None:
                result.gone_at[name] = time.time()
        return waiting.done()

    await wait_for(follow, timeout=150, interval=0.2, what="kubectl drain to finish")
    out, _ = await waiting
    result.returncode, result.output = drain.returncode, out.decode()
    result.seconds = time.monotonic() - began
    return result


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

    drain = await drain_and_follow(real_node, cluster, list(originals))
    output = drain.output
    assert drain.returncode == 0, output
    assert "Cannot evict pod as it would violate the pod's disruption budget" in output
    assert f"node/{real_node.name} drained" in output

    records = await records_by_pod(cluster)
    assert set(records) >= set(originals)
    seen, gone_at = drain.seen, drain.gone_at
    blocked = [name for name in originals if "Blocked" in seen[name]]
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
        assert seen[name][-1] == "Evicted" and seen[name].index("Blocked") < len(seen[name]) - 1
        assert records[name]["spec"]["attempts"] >= 2, records[name]["spec"]

    # kubectl waited for each container to stop: each Pod went away only after its container
    # had handled SIGTERM (STOP_SECONDS), which only a real kubelet reports.
    stopped = {
        name: round(gone_at[name] - parse_time(records[name]["spec"]["lastAttemptTime"]), 1)
        for name in originals
    }
    assert all(seconds >= STOP_SECONDS for seconds in stopped.values()), stopped
    print(f"drain took {drain.seconds:.1f} s; outcomes {seen}; stopped after eviction {stopped} s")


async def test_kubectl_drain_waits_for_a_pre_eviction_hook(
    real_node: RealNode, cluster: Cluster, start_operator: StartOperator
) -> None:
    """A real drain of a Pod whose template asks for a hook: held (429) while the hook works, then
    evicted; the container is stopped only after the hook said done."""
    hook = await HookServer(work_seconds=10).start()
    try:
        await start_operator(
            {
                "capture": {"namespaces": [cluster.namespace]},
                "self": {"namespace": cluster.namespace},
                "controller": {"leaderElection": {"enabled": False}},
                "hooks": [{"name": "flush-cache", "url": hook.url, "retryAfterSeconds": 2}],
            },
            record_key=b"drain-test-key",
        )
        labels = {"app": "cache"}
        spec = pod_spec(real_node.name, command=graceful_command(1))
        manifest = deployment("cache", cluster.namespace, labels, spec, replicas=1)
        manifest["spec"]["template"]["metadata"]["annotations"] = {HOOKS_ANNOTATION: "flush-cache"}
        await cluster.client.create(from_dict(manifest))
        (pod,) = await wait_running(cluster.client, cluster.namespace, count=1, labels=labels)
        assert pod.metadata is not None and pod.metadata.name is not None
        name = pod.metadata.name

        drain = await drain_and_follow(real_node, cluster, [name])
        assert drain.returncode == 0, drain.output
        assert "waiting for pre-eviction hook flush-cache" in drain.output
        assert f"node/{real_node.name} drained" in drain.output
        assert hook.done_at is not None
        record = (await records_by_pod(cluster))[name]
        assert record["spec"]["hold"]["released"] == "HooksDone"
        assert record["status"]["hooks"][0]["state"] == "Done"
        assert record["status"]["outcome"] == "Evicted"
        assert hook.most_in_flight == 1 and len({key for _, key in hook.calls}) == 1
        # The Pod went only after the hook had said done (wall clock vs. monotonic: both now-relative).
        done_wall = time.time() - (time.monotonic() - hook.done_at)
        assert drain.gone_at[name] >= done_wall - 0.5, (drain.gone_at[name], done_wall)
        print(f"drain with a 10 s hook took {drain.seconds:.1f} s")
    finally:
        await hook.stop()
