"""Faults on the real control plane: nothing lost, nothing repeated, nothing blocked.

Every test runs ``evictwatch run`` as a child process (:class:`OperatorProcess`), so a fault
is a real one: SIGKILL (no cleanup, no lease release), a kube-apiserver restart under a live
process, two replicas behind one URL, a sink that is down for minutes, RBAC taken away.
Pods are bound to fake Nodes: an evicted Pod stays Terminating with the ``DisruptionTarget``
condition, as when a kubelet is slow, so the backstop watchers can find an eviction that the
webhook missed while it was down.

Delivery is at least once with an idempotency key: a delivery interrupted between "sent"
and "recorded as sent" (the process killed, the API server gone) is sent again with the same
key. The tests count repeats and allow them only for keys whose delivery was under way when
the fault struck; every record's status must show each sink Delivered exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from lightkube import ApiError, AsyncClient, codecs
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event, Namespace
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding

from evictwatch.capture import registration
from evictwatch.config import parse_config
from evictwatch.records.resource import PodEviction
from evictwatch.testing.cluster import Cluster, create_namespace, unique, wait_for
from evictwatch.testing.controlplane import ControlPlane, free_port
from evictwatch.testing.helm import ensure_helm, template
from evictwatch.testing.operator_process import OperatorProcess, webhook_certificates
from evictwatch.testing.receiver import Receiver
from evictwatch.testing.tcpproxy import TcpProxy

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "evictwatch"
RECORD_KEY = "fault-test-record-key"
OUTAGE_SECONDS = float(os.environ.get("EVICTWATCH_SINK_OUTAGE_SECONDS", "120"))
SINKS = ("metrics", "log", "events", "http:audit")


# ---- helpers ----------------------------------------------------------------------------------
@dataclass
class TimedReceiver(Receiver):
    """A :class:`Receiver` that tells when each delivery was first seen."""

    def repeats(self) -> dict[str, int]:
        counts = Counter(self.keys())
        return {key: count for key, count in counts.items() if count > 1}

    def first_seen(self) -> dict[str, float]:
        seen: dict[str, float] = {}
        for request in self.requests:
            seen.setdefault(request.headers.get("Idempotency-Key", ""), request.arrived)
        return seen


def base_config(namespace: str, hook_url: str, **overrides: Any) -> dict[str, Any]:
    """Settings as the chart's ConfigMap would have them, narrowed to this test's namespace."""
    config: dict[str, Any] = {
        "logFormat": "json",
        "capture": {"namespaces": [namespace]},
        "self": {"namespace": namespace},
        "webhook": {
            "host": "127.0.0.1",
            "advertiseHost": "127.0.0.1",
            "configurationName": unique("evictwatch-faults"),
            "timeoutSeconds": 5,
        },
        "controller": {
            "workers": 4,
            "blockedAfterSeconds": 10,
            "leaderElection": {"leaseName": "evictwatch", "leaseDurationSeconds": 6, "renewSeconds": 2},
        },
        "sinks": {
            "events": {"onOwner": False},
            "http": [
                {
                    "name": "audit",
                    "url": hook_url,
                    "backoffSeconds": 0.2,
                    "maxBackoffSeconds": 2,
                    "maxAttempts": 20,
                    "filter": {"namespaces": [namespace]},
                }
            ],
        },
    }
    for key, value in overrides.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


@dataclass
class Storm:
    """Evicts Pods as a drain would: several at a time, retrying what the API server did not answer."""

    cluster: Cluster
    concurrency: int = 8
    replies: dict[str, int] = field(default_factory=dict)
    latencies: dict[str, float] = field(default_factory=dict)
    retries: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, pods: list[str], *, timeout: float = 240.0) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for pod in pods:
            queue.put_nowait(pod)
        deadline = time.monotonic() + timeout
        async with self.cluster.http() as http:

            async def worker() -> None:
                while not queue.empty():
                    pod = queue.get_nowait()
                    await self._evict(http, pod, deadline)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _evict(self, http: httpx2.AsyncClient, pod: str, deadline: float) -> None:
        ns = self.cluster.namespace
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": ns}}
        while True:
            started = time.monotonic()
            try:
                reply = await http.post(f"/api/v1/namespaces/{ns}/pods/{pod}/eviction", json=body)
                status = reply.status_code
            except httpx2.HTTPError:
                status = 0
            if status in (200, 201, 404):
                self.replies[pod] = status
                self.latencies[pod] = time.monotonic() - started
                self.progress.set()
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"eviction of {pod} never went through (last status {status})")
            self.retries += 1
            await asyncio.sleep(0.5)

    async def wait_done(self, count: int) -> None:
        while len(self.replies) < count:
            self.progress.clear()
            await self.progress.wait()


async def make_pods(cluster: Cluster, node: str, count: int, prefix: str) -> list[str]:
    names = [f"{prefix}-{index:03d}" for index in range(count)]
    gate = asyncio.Semaphore(12)

    async def one(name: str) -> None:
        async with gate:
            await cluster.create_pod(name, node=node)

    await asyncio.gather(*(one(name) for name in names))
    return names


async def records(kube: AsyncClient, namespace: str) -> list[dict[str, Any]]:
    return [item.to_dict() async for item in kube.list(PodEviction, namespace=namespace)]


def is_delivered(record: dict[str, Any], sinks: tuple[str, ...], outcome: str = "Evicted") -> bool:
    status = record.get("status") or {}
    deliveries = status.get("deliveries") or {}
    return status.get("outcome") == outcome and all(
        (deliveries.get(sink) or {}).get("state") == "Delivered"
        and (deliveries.get(sink) or {}).get("outcome") == outcome
        for sink in sinks
    )


async def all_settled(
    kube: AsyncClient, namespace: str, pods: list[str], sinks: tuple[str, ...] = SINKS, timeout: float = 180.0
) -> list[dict[str, Any]]:
    """Wait until every Pod has a record, Evicted and delivered to every sink; return the records."""
    expected = set(pods)
    last: list[str] = []

    async def probe() -> list[dict[str, Any]] | None:
        nonlocal last
        found = await records(kube, namespace)
        done = {r["spec"]["pod"]["name"] for r in found if is_delivered(r, sinks)}
        last = sorted(expected - done)
        return found if not last and len(found) >= len(expected) else None

    try:
        return await wait_for(
            probe, timeout=timeout, interval=1.0, what="every eviction settled and delivered"
        )
    except AssertionError:
        raise AssertionError(f"{len(last)} Pods not settled and delivered, e.g. {last[:5]}") from None


async def evictwatch_events(kube: AsyncClient, namespace: str) -> list[dict[str, Any]]:
    return [
        event.to_dict()
        async for event in kube.list(Event, namespace=namespace)
        if event.source is not None and event.source.component == "evictwatch"
    ]


def check_one_record_per_pod(found: list[dict[str, Any]], pods: list[str]) -> None:
    names = Counter(r["spec"]["pod"]["name"] for r in found)
    duplicates = {name: count for name, count in names.items() if count > 1}
    assert duplicates == {}, f"more than one record for {duplicates}"
    assert set(names) == set(pods), f"missing: {sorted(set(pods) - set(names))[:5]}"


def check_deliveries_once(receiver: TimedReceiver, found: list[dict[str, Any]], fault_at: float) -> int:
    """One request per record, except repeats of a delivery that was under way at ``fault_at``."""
    keys = {f"{r['metadata']['uid']}:Evicted" for r in found}
    assert set(receiver.keys()) == keys, "the HTTP sink's idempotency keys are not one per record"
    first = receiver.first_seen()
    for key, count in receiver.repeats().items():
        assert first[key] <= fault_at, f"{key} was delivered {count} times, but not in flight at the fault"
    return len(receiver.requests) - len(keys)


async def register_webhook(cluster: Cluster, config: dict[str, Any], port: int, ca_pem: bytes) -> None:
    """Register the webhook at 127.0.0.1:``port`` as the chart does (removed by the cluster fixture)."""
    settings = parse_config(config).webhook
    url = f"https://127.0.0.1:{port}{settings.path}"
    manifest = registration.webhook_configuration(settings, registration.url_client_config(url, ca_pem))
    await cluster.register_webhook(manifest)


@pytest.fixture
async def receiver() -> AsyncIterator[TimedReceiver]:
    started = TimedReceiver()
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
async def processes(kube: AsyncClient) -> AsyncIterator[list[OperatorProcess]]:
    """Children to stop (and webhook configurations to remove) after the test."""
    started: list[OperatorProcess] = []
    yield started
    for process in started:
        await process.stop()
        name = process.config["webhook"]["configurationName"]
        with contextlib.suppress(ApiError):
            await kube.delete(ValidatingWebhookConfiguration, name)


def spawn(
    processes: list[OperatorProcess], config: dict[str, Any], folder: Path, kubeconfig: Path, **options: Any
) -> OperatorProcess:
    """An operator process with the shared record key, stopped after the test (not started yet)."""
    operator = OperatorProcess(
        config, folder, kubeconfig, env={"EVICTWATCH_RECORD_KEY": RECORD_KEY}, **options
    )
    processes.append(operator)
    return operator


# ---- 1. SIGKILL in the middle of a storm ------------------------------------------------------
async def test_sigkill_mid_storm_loses_and_repeats_nothing(
    control_plane: ControlPlane,
    cluster: Cluster,
    receiver: TimedReceiver,
    processes: list[OperatorProcess],
    tmp_path: Path,
) -> None:
    total, kill_after, restart_after = 200, 60, 110
    node = await cluster.create_node()
    pods = await make_pods(cluster, node, total, "storm")
    operator = spawn(
        processes,
        base_config(cluster.namespace, receiver.url),
        tmp_path / "op",
        control_plane.kubeconfig_path,
        self_signed=True,
    )
    await operator.start()
    await wait_for(lambda: _leader(cluster.client, cluster.namespace), what="a leader")

    storm = Storm(cluster, concurrency=8)
    running = asyncio.create_task(storm.run(pods))
    await storm.wait_done(kill_after)
    await operator.kill()
    killed_at = time.monotonic()
    evicted_when_killed = len(storm.replies)
    await storm.wait_done(restart_after)
    await operator.start()
    restarted_at = time.monotonic()
    await running
    assert all(status == 201 for status in storm.replies.values()), Counter(storm.replies.values())

    found = await all_settled(cluster.client, cluster.namespace, pods, timeout=240)
    recovered = time.monotonic() - restarted_at
    check_one_record_per_pod(found, pods)
    by_webhook = [r for r in found if int(r["spec"].get("attempts") or 0) >= 1]
    by_backstop = [r for r in found if int(r["spec"].get("attempts") or 0) == 0]
    assert all(r["spec"]["reason"] == "EvictionByEvictionAPI" for r in by_backstop)
    assert by_backstop, "the webhook was down for a while; the backstop should have found something"

    repeats = check_deliveries_once(receiver, found, killed_at)
    assert repeats <= 4, "more repeats than deliveries a worker pool can have under way"
    events = Counter(
        e["involvedObject"]["name"] for e in await evictwatch_events(cluster.client, cluster.namespace)
    )
    assert set(events) == set(pods) and set(events.values()) == {1}, "one Event per evicted Pod"
    assert await operator.metric("evictwatch_records_lost_total") == 0
    print(
        f"\nSIGKILL storm: {total} evicted ({evicted_when_killed} before the kill, "
        f"{restart_after - evicted_when_killed} or so while down), {len(found)} recorded "
        f"({len(by_webhook)} by the webhook, {len(by_backstop)} by the backstop), 0 lost; "
        f"{len(receiver.requests)} HTTP deliveries for {len(found)} records ({repeats} repeated after the "
        f"kill); all settled {recovered:.1f} s after the restart"
    )


async def _leader(kube: AsyncClient, namespace: str) -> str | None:
    try:
        lease = await kube.get(Lease, "evictwatch", namespace=namespace)
    except ApiError:
        return None
    return lease.spec.holderIdentity if lease.spec is not None else None


# ---- 2. kube-apiserver restarted under the operator -------------------------------------------
async def test_apiserver_restart_mid_storm(
    control_plane: ControlPlane,
    cluster: Cluster,
    receiver: TimedReceiver,
    processes: list[OperatorProcess],
    tmp_path: Path,
) -> None:
    total, restart_after = 60, 20
    node = await cluster.create_node()
    pods = await make_pods(cluster, node, total, "api")
    # As deployed: certificate files, the webhook configuration made by someone else (the chart).
    certs = webhook_certificates(tmp_path / "tls")
    config = base_config(cluster.namespace, receiver.url, webhook=certs.webhook_settings())
    operator = spawn(processes, config, tmp_path / "op", control_plane.kubeconfig_path)
    await operator.start()
    await register_webhook(cluster, config, operator.webhook_port, certs.ca.cert_pem)
    pid = operator.pid
    await wait_for(lambda: _leader(cluster.client, cluster.namespace), what="a leader")

    # Most Pods go while the API server restarts (the drain retrying what it could not reach);
    # the last ones only once it is back, so something is sure to be delivered after it.
    during, after = pods[: total - 10], pods[total - 10 :]
    storm = Storm(cluster, concurrency=4)
    running = asyncio.create_task(storm.run(during))
    await storm.wait_done(restart_after)
    down_at = time.monotonic()
    await asyncio.to_thread(control_plane.restart_apiserver)
    up_at = time.monotonic()
    await running
    await storm.run(after)
    assert len(storm.replies) == total
    assert all(status == 201 for status in storm.replies.values()), Counter(storm.replies.values())

    found = await all_settled(cluster.client, cluster.namespace, pods, timeout=180)
    settled_at = time.monotonic()
    check_one_record_per_pod(found, pods)
    assert operator.running and operator.pid == pid and operator.starts == 1, "the operator restarted"
    repeats = check_deliveries_once(receiver, found, up_at)
    late = [r.arrived for r in receiver.requests if r.arrived > up_at]
    assert late, "nothing was delivered after the API server came back"
    log = operator.stderr()
    assert "reconnecting" in log or "lease round failed" in log, "the outage went unnoticed?"
    print(
        f"\nkube-apiserver restart: {total} evicted ({storm.retries} client retries during the outage), "
        f"{len(found)} recorded, 0 lost, {repeats} repeated deliveries; the API server was down "
        f"{up_at - down_at:.1f} s, everything settled {settled_at - up_at:.1f} s after it came back, "
        f"first delivery {late[0] - up_at:.1f} s after; operator pid unchanged"
    )


# ---- 3. two replicas behind one URL -----------------------------------------------------------
async def test_two_replicas_share_the_webhook_and_fail_over(
    control_plane: ControlPlane,
    cluster: Cluster,
    receiver: TimedReceiver,
    processes: list[OperatorProcess],
    tmp_path: Path,
) -> None:
    certs = webhook_certificates(tmp_path / "tls")
    config = base_config(cluster.namespace, receiver.url, webhook=certs.webhook_settings())
    lease_seconds = config["controller"]["leaderElection"]["leaseDurationSeconds"]
    renew_seconds = config["controller"]["leaderElection"]["renewSeconds"]
    replicas = [
        spawn(processes, config, tmp_path / name, control_plane.kubeconfig_path, name=name)
        for name in ("replica-a", "replica-b")
    ]
    await asyncio.gather(*(replica.start() for replica in replicas))
    proxy = await TcpProxy([("127.0.0.1", r.webhook_port) for r in replicas]).start()
    try:
        await register_webhook(cluster, config, proxy.port, certs.ca.cert_pem)
        leader = await wait_for(lambda: _leader(cluster.client, cluster.namespace), what="a leader")
        node = await cluster.create_node()
        pods = await make_pods(cluster, node, 40, "twin")
        before, after = pods[:30], pods[30:]

        storm = Storm(cluster, concurrency=10)
        await storm.run(before)
        found = await all_settled(cluster.client, cluster.namespace, before)
        check_one_record_per_pod(found, before)
        served = {
            r.name: await r.metric("evictwatch_webhook_requests_total", decision="recorded") for r in replicas
        }
        assert all(count > 0 for count in served.values()), f"one replica served nothing: {served}"
        assert sum(served.values()) == len(before), served
        assert len(receiver.requests) == len(before), "a notification was sent twice"
        assert all(int(r["spec"]["attempts"]) == 1 for r in found)

        # The leader dies without a word; the other takes the Lease when it expires.
        dead = next(r for r in replicas if r.name == leader)
        survivor = next(r for r in replicas if r.name != leader)
        await dead.kill()
        killed_at = time.monotonic()

        async def taken_over() -> bool:
            return await _leader(cluster.client, cluster.namespace) == survivor.name

        await wait_for(
            taken_over, timeout=lease_seconds * 3, interval=0.1, what="the survivor to take the Lease"
        )
        takeover = time.monotonic() - killed_at
        assert takeover <= lease_seconds + renew_seconds, f"takeover took {takeover:.1f} s"

        await Storm(cluster, concurrency=5).run(after)
        found = await all_settled(cluster.client, cluster.namespace, pods)
        settled = time.monotonic() - killed_at
        check_one_record_per_pod(found, pods)
        repeats = check_deliveries_once(receiver, found, killed_at)
        assert await survivor.metric("evictwatch_webhook_requests_total", decision="recorded") == served[
            survivor.name
        ] + len(after)
        print(
            f"\ntwo replicas: {len(pods)} evicted, {len(found)} recorded, 0 lost; webhook calls per replica "
            f"before the kill {served}, proxy connections {dict(proxy.connections)}; "
            f"{len(receiver.requests)} HTTP deliveries ({repeats} repeated); the survivor took the Lease "
            f"{takeover:.1f} s after the SIGKILL (leaseDurationSeconds {lease_seconds}) and had settled "
            f"the {len(after)} later evictions {settled:.1f} s after it"
        )
    finally:
        await proxy.stop()


# ---- 4. a sink down for minutes, and one that never comes back --------------------------------
async def test_sink_outage_resumes_and_dead_sink_fails_alone(
    control_plane: ControlPlane,
    cluster: Cluster,
    processes: list[OperatorProcess],
    tmp_path: Path,
) -> None:
    flaky = TimedReceiver(port=free_port())  # not listening yet: the outage has begun
    healthy = await TimedReceiver().start()
    dead_url = f"http://127.0.0.1:{free_port()}/never"
    config = base_config(cluster.namespace, flaky.url)
    config["sinks"]["http"][0].update(backoffSeconds=0.5, maxBackoffSeconds=5, maxAttempts=100)
    config["sinks"]["http"].append(
        {
            "name": "dead",
            "url": dead_url,
            "backoffSeconds": 0.2,
            "maxAttempts": 3,
            "filter": {"namespaces": [cluster.namespace]},
        }
    )
    config["sinks"]["slack"] = [
        {
            "name": "ops",
            "url": healthy.url,
            "backoffSeconds": 0.2,
            "filter": {"namespaces": [cluster.namespace]},
        }
    ]
    operator = spawn(processes, config, tmp_path / "op", control_plane.kubeconfig_path, self_signed=True)
    try:
        await operator.start()
        node = await cluster.create_node()
        pods = await make_pods(cluster, node, 10, "outage")
        outage_started = time.monotonic()
        await Storm(cluster, concurrency=5).run(pods)

        # The others are not held back: delivered (or given up) while the outage goes on.
        others = ("metrics", "log", "events", "slack:ops")
        found = await all_settled(cluster.client, cluster.namespace, pods, sinks=others, timeout=60)
        unblocked = time.monotonic() - outage_started
        for record in found:
            deliveries = record["status"]["deliveries"]
            assert deliveries["http:audit"]["state"] == "Pending", deliveries["http:audit"]

        async def dead_given_up() -> bool:
            found = await records(cluster.client, cluster.namespace)
            return all(
                (r["status"].get("deliveries") or {}).get("http:dead", {}).get("state") == "Failed"
                for r in found
            )

        await wait_for(dead_given_up, timeout=30, what="the dead sink marked Failed")
        for record in await records(cluster.client, cluster.namespace):
            dead = record["status"]["deliveries"]["http:dead"]
            assert dead["attempts"] == 3 and "http:dead" in dead["lastError"], dead
            assert "127.0.0.1" not in dead["lastError"], "the sink's URL leaked into the record"
        assert len(healthy.requests) == len(pods)

        await asyncio.sleep(max(0.0, outage_started + OUTAGE_SECONDS - time.monotonic()))
        tries = await operator.metric("evictwatch_sink_failures_total", sink="http:audit")
        await flaky.start()  # same port: the sink is back
        back_at = time.monotonic()
        found = await all_settled(cluster.client, cluster.namespace, pods, timeout=60)
        recovered = time.monotonic() - back_at
        assert recovered <= 5 + 15, f"deliveries resumed only {recovered:.1f} s after the sink came back"
        check_one_record_per_pod(found, pods)
        assert sorted(flaky.keys()) == sorted(f"{r['metadata']['uid']}:Evicted" for r in found)
        assert len(flaky.requests) == len(pods), "a delivery was repeated after the outage"
        attempts = [r["status"]["deliveries"]["http:audit"]["attempts"] for r in found]
        assert min(attempts) > 3, "the sink was not retried during the outage"
        assert len(healthy.requests) == len(pods)
        print(
            f"\nsink outage of {OUTAGE_SECONDS:.0f} s: {len(pods)} evicted and recorded; the other sinks "
            f"were "
            f"delivered {unblocked:.1f} s after the storm began; {tries:.0f} failed tries to the down sink "
            f"(attempts per record {min(attempts)}-{max(attempts)}), all {len(pods)} delivered once "
            f"{recovered:.1f} s after it came back; the dead sink Failed after 3 attempts"
        )
    finally:
        await flaky.stop()
        await healthy.stop()


# ---- 5. RBAC taken away while running ---------------------------------------------------------
async def chart_rbac(kube: AsyncClient, namespace: str, release: str) -> tuple[list[dict[str, Any]], str]:
    """Apply the chart's ServiceAccount and RBAC (only those) for ``release``; return them and a token."""
    text = template(CHART, release, namespace, helm=ensure_helm())
    docs = [doc for doc in yaml.safe_load_all(text) if doc]
    wanted = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    rbac = [doc for doc in docs if doc["kind"] in wanted]
    for doc in rbac:
        await kube.apply(codecs.from_dict(doc), field_manager="evictwatch-fault-test")
    account = next(doc for doc in rbac if doc["kind"] == "ServiceAccount")["metadata"]["name"]
    return rbac, account


async def service_account_token(cluster: Cluster, namespace: str, account: str) -> str:
    async with cluster.http() as http:
        reply = await http.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        )
    reply.raise_for_status()
    return str(reply.json()["status"]["token"])


async def can(cluster: Cluster, user: str, verb: str, resource: str, namespace: str) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "resourceAttributes": {"verb": verb, "resource": resource, "namespace": namespace},
        },
    }
    async with cluster.http() as http:
        reply = await http.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=review)
    reply.raise_for_status()
    return bool(reply.json()["status"].get("allowed"))


async def test_rbac_removed_at_run_time_never_blocks_and_counts_the_loss(
    control_plane: ControlPlane,
    kube: AsyncClient,
    cluster: Cluster,
    receiver: TimedReceiver,
    processes: list[OperatorProcess],
    tmp_path: Path,
) -> None:
    release = unique("ew-rbac")
    release_ns = await create_namespace(kube, release)
    rbac: list[dict[str, Any]] = []
    try:
        rbac, account = await chart_rbac(kube, release_ns, release)
        user = f"system:serviceaccount:{release_ns}:{account}"
        token = await service_account_token(cluster, release_ns, account)
        certs = webhook_certificates(tmp_path / "tls")
        config = base_config(
            cluster.namespace,
            receiver.url,
            webhook=certs.webhook_settings(),
            self={"namespace": release_ns},
        )
        operator = spawn(
            processes, config, tmp_path / "op", control_plane.kubeconfig_for_token(token, user=release)
        )
        await operator.start()
        settings = parse_config(config).webhook
        await register_webhook(cluster, config, operator.webhook_port, certs.ca.cert_pem)
        node = await cluster.create_node()
        pods = await make_pods(cluster, node, 4, "rbac")
        storm = Storm(cluster, concurrency=1)
        await storm.run(pods[:1])
        await all_settled(cluster.client, cluster.namespace, pods[:1])

        binding = next(doc for doc in rbac if doc["kind"] == "ClusterRoleBinding")["metadata"]["name"]
        await kube.delete(ClusterRoleBinding, binding)

        async def refused() -> bool:
            return not await can(cluster, user, "get", "pods", cluster.namespace)

        await wait_for(refused, what="the API server to stop authorising the operator")
        await storm.run(pods[1:])
        timeout = settings.timeoutSeconds
        assert all(storm.replies[p] == 201 for p in pods), storm.replies
        slowest = max(storm.latencies[p] for p in pods[1:])
        assert slowest < timeout, f"an eviction took {slowest:.1f} s with the operator's RBAC gone"

        async def counted() -> float | None:
            return await operator.metric("evictwatch_records_lost_total", source="EvictionAPI") or None

        assert await wait_for(counted, what="the loss counted") == len(pods) - 1
        assert await operator.metric("evictwatch_webhook_requests_total", decision="lost") == len(pods) - 1
        errors = [
            line
            for line in operator.log_lines()
            if line.get("level") == "error" and "LOST the eviction attempt" in line.get("message", "")
        ]
        assert sorted(line["pod"] for line in errors) == sorted(pods[1:]), errors
        assert all("403" in line["message"] or "forbidden" in line["message"].lower() for line in errors)

        # RBAC back: the backstop finds what the webhook could not record (Terminating, DisruptionTarget).
        await kube.apply(
            codecs.from_dict(next(doc for doc in rbac if doc["kind"] == "ClusterRoleBinding")),
            field_manager="evictwatch-fault-test",
        )
        restored_at = time.monotonic()
        found = await all_settled(cluster.client, cluster.namespace, pods, timeout=90)
        check_one_record_per_pod(found, pods)
        backstopped = sorted(r["spec"]["pod"]["name"] for r in found if r["spec"]["attempts"] == 0)
        assert backstopped == sorted(pods[1:])
        print(
            f"\nRBAC removed: {len(pods) - 1} evictions allowed in at most {slowest * 1000:.0f} ms "
            f"(webhook timeout {timeout} s), {len(pods) - 1} counted in evictwatch_records_lost_total and "
            f"logged at error level; with RBAC restored the backstop recorded them "
            f"{time.monotonic() - restored_at:.1f} s later"
        )
    finally:
        for doc in rbac:
            kind = {"ClusterRole": ClusterRole, "ClusterRoleBinding": ClusterRoleBinding}.get(doc["kind"])
            if kind is not None:
                with contextlib.suppress(ApiError):
                    await kube.delete(kind, doc["metadata"]["name"])
        await kube.delete(Namespace, release_ns)


# ---- 6. leadership lost and regained while deliveries wait for a retry --------------------------
async def test_pending_retries_survive_losing_and_regaining_the_lease(
    control_plane: ControlPlane,
    kube: AsyncClient,
    cluster: Cluster,
    processes: list[OperatorProcess],
    tmp_path: Path,
) -> None:
    flaky = TimedReceiver(port=free_port())  # down until the end
    config = base_config(cluster.namespace, flaky.url)
    config["sinks"]["http"][0].update(backoffSeconds=0.5, maxBackoffSeconds=2, maxAttempts=100)
    lease_seconds = config["controller"]["leaderElection"]["leaseDurationSeconds"]
    operator = spawn(processes, config, tmp_path / "op", control_plane.kubeconfig_path, self_signed=True)
    try:
        await operator.start()
        await wait_for(lambda: _leader(kube, cluster.namespace), what="a leader")
        node = await cluster.create_node()
        pods = await make_pods(cluster, node, 3, "lease")
        await Storm(cluster, concurrency=3).run(pods)
        await all_settled(kube, cluster.namespace, pods, sinks=("metrics", "log", "events"), timeout=60)

        # Someone else holds the Lease for a while (a partition, a stuck API call): the operator
        # steps down, then takes the Lease back when it expires.
        deadline = time.monotonic() + lease_seconds + 2
        while time.monotonic() < deadline:
            lease = await kube.get(Lease, "evictwatch", namespace=cluster.namespace)
            assert lease.spec is not None
            lease.spec.holderIdentity = "intruder"
            lease.spec.renewTime = datetime.datetime.now(datetime.UTC)
            with contextlib.suppress(ApiError):
                await kube.replace(lease)
            await asyncio.sleep(1.0)
        await wait_for(
            lambda: _is_leader(kube, cluster.namespace, operator.name),
            timeout=lease_seconds * 3,
            what="the operator to take the Lease back",
        )
        assert "stepping down" in operator.stderr()

        # The sink comes back: the deliveries that were waiting for a retry go out.
        await flaky.start()
        back_at = time.monotonic()
        found = await all_settled(kube, cluster.namespace, pods, timeout=30)
        check_one_record_per_pod(found, pods)
        assert len(flaky.requests) == len(pods)
        print(
            f"\nlease lost and regained: {len(pods)} deliveries waiting for a retry went out "
            f"{time.monotonic() - back_at:.1f} s after the sink came back"
        )
    finally:
        await flaky.stop()


async def _is_leader(kube: AsyncClient, namespace: str, name: str) -> bool:
    return await _leader(kube, namespace) == name
