"""The controller on the real control plane: context, outcome, why, and every sink exactly once."""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Event
from lightkube.resources.policy_v1 import PodDisruptionBudget
from prometheus_client.parser import text_string_to_metric_families

from evictwatch.operator import Operator
from evictwatch.records.resource import PodEviction
from evictwatch.sinks.handlers import REGISTRY
from evictwatch.sinks.http import sign
from evictwatch.testing.cluster import Cluster, wait_for
from evictwatch.testing.controlplane import free_port
from evictwatch.testing.fixtures import StartOperator, merge
from evictwatch.testing.receiver import Receiver

KEY = b"test-record-key"
HMAC = "s3cret-hmac"
Start = Callable[..., Awaitable[Operator]]


@pytest.fixture
async def receivers() -> AsyncIterator[dict[str, Receiver]]:
    started = {"http": await Receiver(fail_first=2).start(), "slack": await Receiver().start()}
    yield started
    for receiver in started.values():
        await receiver.stop()


@pytest.fixture
def start(start_operator: StartOperator, cluster: Cluster, receivers: dict[str, Receiver]) -> Start:
    """The operator with every sink: HTTP and Slack to local receivers, a shared record key."""
    REGISTRY.clear()

    async def go(extra: dict[str, Any] | None = None, *, handler_file: Path | None = None) -> Operator:
        data: dict[str, Any] = {
            "self": {"namespace": cluster.namespace},
            "controller": {
                "blockedAfterSeconds": 2,
                "leaderElection": {"leaseDurationSeconds": 4, "renewSeconds": 1},
            },
            "watchers": {"enabled": False},
            "sinks": {
                # Earlier tests' namespaces may still be terminating, with records in them.
                "http": [
                    {
                        "name": "audit",
                        "url": receivers["http"].url,
                        "hmacSecretEnv": "HOOK_KEY",
                        "backoffSeconds": 0.2,
                        "filter": {"namespaces": [cluster.namespace]},
                    }
                ],
                "slack": [
                    {
                        "name": "ops",
                        "urlEnv": "SLACK_URL",
                        "backoffSeconds": 0.2,
                        "filter": {"namespaces": [cluster.namespace]},
                    }
                ],
            },
        }
        return await start_operator(
            merge(data, extra or {}),
            record_key=KEY,
            metrics_port=free_port(),
            environ={"HOOK_KEY": HMAC, "SLACK_URL": receivers["slack"].url},
            handler_files=[str(handler_file)] if handler_file else [],
        )

    return go


async def record_of(kube: AsyncClient, namespace: str, pod: str) -> dict[str, Any] | None:
    async for item in kube.list(PodEviction, namespace=namespace):
        data = item.to_dict()
        if data["spec"]["pod"]["name"] == pod:
            return data
    return None


async def settled(
    kube: AsyncClient, namespace: str, pod: str, outcome: str, sinks: tuple[str, ...] = ()
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        record = await record_of(kube, namespace, pod)
        if record is None or (record.get("status") or {}).get("outcome") != outcome:
            return None
        deliveries = record["status"].get("deliveries") or {}
        if any(
            (deliveries.get(s) or {}).get("state") != "Delivered" or deliveries[s].get("outcome") != outcome
            for s in sinks
        ):
            return None
        return record

    return await wait_for(probe, timeout=30, what=f"{namespace}/{pod} settled as {outcome}")


HANDLER = textwrap.dedent(
    """
    import evictwatch

    CALLS = []

    @evictwatch.on_eviction(outcomes=["Evicted", "Blocked"], labels={"app": "shop"})
    async def remember(eviction):
        CALLS.append((eviction.pod, str(eviction.outcome), eviction.owner))
    """
)


async def test_blocked_then_evicted_with_owner_chain_and_every_sink(
    cluster: Cluster, start: Start, receivers: dict[str, Receiver], tmp_path: Path
) -> None:
    handler_file = tmp_path / "handlers.py"
    handler_file.write_text(HANDLER)
    operator = await start(handler_file=handler_file)
    node = await cluster.create_node()
    pods = await cluster.create_deployment("shop", {"app": "shop"}, replicas=2)
    for pod in pods:
        await cluster.bind(pod, node)
        await cluster.mark_ready(pod)
    await cluster.create_pdb("shop", {"app": "shop"}, min_available=2)
    victim = pods[0]
    assert (await cluster.evict(victim)).status == 429

    all_sinks = (
        "metrics",
        "log",
        "events",
        "http:audit",
        "slack:ops",
        f"handler:{REGISTRY.handlers[0].name}",
    )
    record = await settled(cluster.client, cluster.namespace, victim, "Blocked", all_sinks)
    status = record["status"]
    assert "PodDisruptionBudget shop" in status["outcomeReason"]
    assert [o["kind"] for o in status["owners"]] == ["ReplicaSet", "Deployment"]
    assert status["owners"][-1]["name"] == "shop"
    assert status["node"]["name"] == node
    assert status["disruptionBudgets"] == [
        {"name": "shop", "disruptionsAllowed": 0, "currentHealthy": 2, "desiredHealthy": 2, "expectedPods": 2}
    ]
    assert status["deliveries"]["http:audit"]["attempts"] == 3  # failed twice, then accepted

    # The budget goes; the drain's next try succeeds: the same record becomes Evicted.
    await cluster.client.delete(PodDisruptionBudget, "shop", namespace=cluster.namespace)
    assert (await cluster.evict(victim)).status == 201
    record = await settled(cluster.client, cluster.namespace, victim, "Evicted", all_sinks)
    assert record["spec"]["attempts"] == 2

    # HTTP: CloudEvents, signed, one accepted delivery per outcome (the 503s were retried).
    accepted = receivers["http"].requests[2:]
    assert [r.json()["type"] for r in accepted] == [
        "io.evictwatch.eviction.blocked",
        "io.evictwatch.eviction.evicted",
    ]
    for request in receivers["http"].requests:
        assert request.headers["X-Evictwatch-Signature"] == sign(HMAC.encode(), request.body)
        assert request.headers["Content-Type"] == "application/cloudevents+json"
    assert accepted[1].json()["data"]["owner_name"] == "shop"
    assert len(set(receivers["http"].keys())) == 2

    # Slack: one readable message per outcome.
    texts = [r.json()["blocks"][0]["text"]["text"] for r in receivers["slack"].requests]
    assert len(texts) == 2
    assert f"{cluster.namespace}/{victim}" in texts[1] and "Deployment/shop" in texts[1] and node in texts[1]

    # The Python handler ran once per outcome.
    import sys

    calls = sys.modules["evictwatch_user_handlers"].CALLS
    assert calls == [(victim, "Blocked", "Deployment/shop"), (victim, "Evicted", "Deployment/shop")]

    # Events on the Pod and on the Deployment tell the story.
    events = [
        e.to_dict()
        async for e in cluster.client.list(Event, namespace=cluster.namespace)
        if e.source is not None and e.source.component == "evictwatch"
    ]
    seen = {(e["involvedObject"]["kind"], e["reason"], e["count"]) for e in events}
    assert seen == {("Pod", "Evicted", 2), ("Deployment", "Evicted", 2)}  # one Event each, moved on

    # Metrics, scraped and parsed as Prometheus does.
    async with httpx2.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{operator.metrics_port}/metrics")).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.labels["namespace"], s.labels["outcome"]): s.value
        for s in families["evictwatch_evictions"].samples
        if s.name == "evictwatch_evictions_total"
    }
    assert samples[(cluster.namespace, "Blocked")] == 1
    assert samples[(cluster.namespace, "Evicted")] == 1
    assert "evictwatch_webhook_handling_seconds" in families


async def owner_events(cluster: Cluster, uid: str) -> list[dict[str, Any]]:
    """Ours among what kubectl describe lists for an object: Events selected by involvedObject.uid."""
    return [
        e.to_dict()
        async for e in cluster.client.list(
            Event, namespace=cluster.namespace, fields={"involvedObject.uid": uid}
        )
        if e.source is not None and e.source.component == "evictwatch"
    ]


async def test_owner_events_carry_the_uid_and_follow_the_story(cluster: Cluster, start: Start) -> None:
    await start({"sinks": {"http": [], "slack": []}})
    node = await cluster.create_node()
    pods = await cluster.create_deployment("cart", {"app": "cart"}, replicas=2)
    for pod in pods:
        await cluster.bind(pod, node)
        await cluster.mark_ready(pod)
    deployment = await cluster.client.get(Deployment, "cart", namespace=cluster.namespace)
    assert deployment.metadata is not None and deployment.metadata.uid
    uid = deployment.metadata.uid
    await cluster.create_pdb("cart", {"app": "cart"}, min_available=2)
    victim = pods[0]

    async def told(reason: str, count: int) -> list[dict[str, Any]]:
        async def probe() -> list[dict[str, Any]] | None:
            found = await owner_events(cluster, uid)
            return found if [(e["reason"], e["count"]) for e in found] == [(reason, count)] else None

        return await wait_for(probe, timeout=30, what=f"the Deployment's Event: {reason} x{count}")

    for _ in range(2):
        assert (await cluster.evict(victim)).status == 429
    first = (await told("EvictionBlocked", 2))[0]
    assert first["involvedObject"]["kind"] == "Deployment" and first["involvedObject"]["name"] == "cart"
    assert "blocked after 2 attempts" in first["message"]

    # The drain keeps trying: the same Event counts on and says so.
    assert (await cluster.evict(victim)).status == 429
    again = (await told("EvictionBlocked", 3))[0]
    assert again["metadata"]["name"] == first["metadata"]["name"]
    assert (
        "blocked after 3 attempts" in again["message"] and again["firstTimestamp"] == first["firstTimestamp"]
    )

    # The budget goes, the next try succeeds: the Event tells that now.
    await cluster.client.delete(PodDisruptionBudget, "cart", namespace=cluster.namespace)
    assert (await cluster.evict(victim)).status == 201
    final = (await told("Evicted", 4))[0]
    assert final["metadata"]["name"] == first["metadata"]["name"] and final["type"] == "Normal"
    assert "evicted by admin" in final["message"] and "after 4 attempts" in final["message"]
    pod_events = [
        e.to_dict()
        async for e in cluster.client.list(
            Event, namespace=cluster.namespace, fields={"involvedObject.name": victim}
        )
        if e.source is not None and e.source.component == "evictwatch"
    ]
    assert [(e["reason"], e["count"]) for e in pod_events] == [("Evicted", 4)]


async def test_missing_pod_settles_as_pod_gone(cluster: Cluster, start: Start) -> None:
    await start()
    assert (await cluster.evict("nobody-home")).status == 404
    record = await settled(cluster.client, cluster.namespace, "nobody-home", "PodGone", ("log",))
    assert record["status"]["outcomeReason"] == "no such Pod when the eviction was attempted"


async def test_why_is_copied_from_the_evicting_components_event(cluster: Cluster, start: Start) -> None:
    await start()
    pod = await cluster.create_pod("scaled-down", node=await cluster.create_node(), ready=True)
    assert pod.metadata is not None
    # What cluster-autoscaler writes on the Pod before it calls the Eviction API.
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "scaled-down.ca", "namespace": cluster.namespace},
        "involvedObject": {
            "kind": "Pod",
            "name": "scaled-down",
            "namespace": cluster.namespace,
            "uid": pod.metadata.uid,
            "apiVersion": "v1",
        },
        "reason": "ScaleDown",
        "type": "Normal",
        "message": "deleting pod for node scale down",
        "source": {"component": "cluster-autoscaler"},
        "firstTimestamp": "2026-11-27T10:00:00Z",
        "lastTimestamp": "2026-11-27T10:00:00Z",
        "count": 1,
    }
    async with cluster.http() as http:
        assert (
            await http.post(f"/api/v1/namespaces/{cluster.namespace}/events", json=event)
        ).status_code == 201
    assert (await cluster.evict("scaled-down")).status == 201
    record = await settled(cluster.client, cluster.namespace, "scaled-down", "Evicted", ("log",))
    assert record["status"]["why"] == {
        "component": "cluster-autoscaler",
        "reason": "ScaleDown",
        "message": "deleting pod for node scale down",
        "eventTime": "2026-11-27T10:00:00Z",
    }


async def test_restart_mid_delivery_delivers_once_per_sink(
    cluster: Cluster, start: Start, receivers: dict[str, Receiver]
) -> None:
    receivers["http"].fail_first = 0
    receivers["http"].delay = 30.0  # the first operator is stopped while this POST is in flight
    first = await start()
    await cluster.create_pod("restart-me")
    assert (await cluster.evict("restart-me")).status == 201
    await wait_for(lambda: _arrived(receivers["http"]), what="the HTTP delivery to start")
    # Slack's delivery is done and recorded; HTTP's is in flight when the operator goes away.
    await settled(cluster.client, cluster.namespace, "restart-me", "Evicted", ("slack:ops", "events", "log"))
    await first.stop()

    receivers["http"].delay = 0.0
    await start()
    sinks = ("metrics", "log", "events", "http:audit", "slack:ops")
    record = await settled(cluster.client, cluster.namespace, "restart-me", "Evicted", sinks)
    # Every sink is Delivered once in the record; Slack, whose delivery had finished, got exactly one
    # message; the interrupted HTTP delivery was repeated with the same idempotency key.
    assert all(record["status"]["deliveries"][s]["state"] == "Delivered" for s in sinks)
    assert len(receivers["slack"].requests) == 1
    assert len(set(receivers["http"].keys())) == 1


async def _arrived(receiver: Receiver) -> bool:
    return bool(receiver.requests)


async def test_forged_record_triggers_nothing(
    cluster: Cluster, start: Start, receivers: dict[str, Receiver]
) -> None:
    await start()
    forged = PodEviction(
        metadata=ObjectMeta(
            name="forged.00000000",
            namespace=cluster.namespace,
            annotations={"evictwatch.io/signature": "0" * 64},
        ),
        spec={
            "pod": {"name": "ceo-laptop", "found": False},
            "source": "EvictionAPI",
            "attempts": 1,
            "firstAttemptTime": "2026-01-01T00:00:00Z",
            "lastAttemptTime": "2026-01-01T00:00:00Z",
        },
    )
    await cluster.client.create(forged)
    # A genuine eviction afterwards is delivered, so the controller was running when it saw the forgery.
    assert (await cluster.evict("ghost")).status == 404
    await settled(cluster.client, cluster.namespace, "ghost", "PodGone", ("slack:ops",))
    texts = json.dumps([r.json() for r in receivers["slack"].requests])
    assert "ceo-laptop" not in texts
    record = await record_of(cluster.client, cluster.namespace, "ceo-laptop")
    assert record is not None and (record.get("status") or {}).get("outcome") == "Pending"


async def test_retention_keeps_at_most_n_per_namespace(cluster: Cluster, start: Start) -> None:
    await start({"controller": {"retention": {"maxPerNamespace": 2, "intervalSeconds": 0.5}}})
    for name in ("old-1", "old-2", "old-3"):
        await cluster.create_pod(name)  # not bound to a node: the eviction deletes it at once
        assert (await cluster.evict(name)).status == 201
        if name != "old-3":  # settled, so that retention may remove it (it keeps what is Pending)
            await settled(cluster.client, cluster.namespace, name, "Evicted")

    async def trimmed() -> list[str] | None:
        names = [
            i.to_dict()["spec"]["pod"]["name"]
            async for i in cluster.client.list(PodEviction, namespace=cluster.namespace)
        ]
        return sorted(names) if len(names) == 2 else None

    assert await wait_for(trimmed, what="retention to trim to 2 records") == ["old-2", "old-3"]
