"""What the operator as installed costs the API server: counted in its audit log, per eviction.

The budget (steady state, per settled eviction): the record's create, one status write, and
the Events sink's Events on the Pod and on its top owner — four calls. Owners are read once per
owner uid, whatever the number of Pods. Every call the operator makes carries its User-Agent
(``evictwatch/<version> (<identity>)``), so the count is exact.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from evictwatch.operator import Operator
from evictwatch.testing.cluster import Cluster, wait_for
from evictwatch.testing.controlplane import ControlPlane
from evictwatch.testing.fixtures import StartOperator

KEY = b"footprint-test-key"
PODS = 12
BUDGET_PER_EVICTION = 4


def audit_lines(control_plane: ControlPlane) -> list[dict[str, Any]]:
    with control_plane.audit_log_path.open() as log:
        return [json.loads(line) for line in log]


def calls_by(events: list[dict[str, Any]], agent: str) -> Counter[str]:
    """Completed requests of one client, as "verb resource[/subresource]" (watches left out: one
    long request per kind, whatever the load)."""
    counted: Counter[str] = Counter()
    for event in events:
        if event.get("stage") != "ResponseComplete" or not str(event.get("userAgent", "")).startswith(agent):
            continue
        if event.get("verb") == "watch":
            continue
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        counted[f"{event.get('verb')} {resource}"] += 1
    return counted


async def all_delivered(cluster: Cluster, names: list[str]) -> list[dict[str, Any]] | None:
    async with cluster.http() as http:
        reply = await http.get(f"/apis/evictwatch.io/v1alpha1/namespaces/{cluster.namespace}/podevictions")
    records = [r for r in reply.json()["items"] if r["spec"]["pod"]["name"] in names]
    done = [
        r
        for r in records
        if (r.get("status") or {}).get("outcome") == "Evicted"
        and all(
            d.get("state") == "Delivered" and d.get("outcome") == "Evicted"
            for d in ((r.get("status") or {}).get("deliveries") or {}).values()
        )
        and len((r.get("status") or {}).get("deliveries") or {}) == 3
    ]
    return records if len(done) == len(names) else None


async def test_a_settled_eviction_costs_four_api_calls(
    cluster: Cluster, start_operator: StartOperator, control_plane: ControlPlane
) -> None:
    # As installed (every door, the default sinks: Events on the Pod and its top owner, metrics,
    # logs), but for the namespace it captures and no Lease (one replica).
    operator: Operator = await start_operator(
        {
            "capture": {"namespaces": [cluster.namespace]},
            "self": {"namespace": cluster.namespace},
            "controller": {"leaderElection": {"enabled": False}},
        },
        record_key=KEY,
        identity="footprint-under-test",
    )
    await operator.leading.wait()
    assert operator.pod_cache is not None and operator.records is not None and operator.controller
    caches = operator.controller.caches
    await asyncio.wait_for(operator.pod_cache.watch.synced.wait(), 30)
    assert await caches.wait_synced(30)
    node = await cluster.create_node()
    pods = await cluster.create_deployment("web", {"app": "web"}, replicas=PODS)
    for pod in pods:
        await cluster.bind(pod, node)
        await cluster.mark_ready(pod)
    await asyncio.sleep(1.5)  # the Pod cache answers for Pods whose facts are a second old
    before = len(audit_lines(control_plane))
    for pod in pods:
        assert (await cluster.evict(pod)).status == 201
    await wait_for(
        lambda: all_delivered(cluster, pods), timeout=60, what=f"{PODS} settled, delivered records"
    )
    await asyncio.sleep(1.0)  # nothing more is written once all is delivered
    calls = calls_by(audit_lines(control_plane)[before:], "evictwatch/")
    owners = calls["get replicasets"] + calls["get deployments"]
    per_eviction = (sum(calls.values()) - owners) / PODS
    print(f"\noperator API calls for {PODS} evictions: {dict(calls)} ({per_eviction:.2f} per eviction)")
    assert calls["create podevictions"] == PODS
    assert calls["update podevictions/status"] == PODS  # one status write per settled eviction
    assert calls["create events"] == 2 * PODS  # the Pod and its Deployment
    assert owners <= 2, "a ReplicaSet and its Deployment are read once, whatever the number of Pods"
    assert per_eviction <= BUDGET_PER_EVICTION, calls
    settled = await all_delivered(cluster, pods)
    assert settled is not None
    for record in settled:
        status = record["status"]
        assert [o["kind"] for o in status["owners"]] == ["ReplicaSet", "Deployment"]
        assert status["node"]["name"] == node
