"""Pre-eviction hooks on the real control plane: held with 429 until the hook is done.

The evicting client here is the Eviction API called in a loop the way ``kubectl drain`` does
it (try again after 5 s on a 429). The hook is a local HTTP server that answers 202 while it
"works" and 200 when done; it records every call, its Idempotency-Key and how many were in
flight at once.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event, Namespace

from evictwatch import telemetry
from evictwatch.operator import Operator
from evictwatch.records.resource import PodEviction
from evictwatch.sinks.prehooks import HANDLERS
from evictwatch.testing.cluster import Cluster, HttpReply, unique, wait_for
from evictwatch.testing.fixtures import StartOperator
from evictwatch.testing.hookserver import HookServer
from evictwatch.views import describe

KEY = b"hooks-test-key"
DRAIN_RETRY_SECONDS = 5.0
"""kubectl drain's pause between two evictions of a Pod that answered 429."""


@pytest.fixture
async def hook() -> AsyncIterator[HookServer]:
    server = await HookServer().start()
    yield server
    await server.stop()


def hooked(
    cluster: Cluster, url: str, *, timeout: float = 300, retry: float = 1.0, **more: Any
) -> dict[str, Any]:
    """The operator's config: one HTTP hook for every Pod labelled app=cache in the namespace."""
    return {
        "self": {"namespace": cluster.namespace},
        "capture": {"namespaces": [cluster.namespace]},
        "controller": {"leaderElection": {"leaseDurationSeconds": 4, "renewSeconds": 1}},
        "watchers": {"enabled": False},
        "hooks": [
            {
                "name": "flush-cache",
                "url": url,
                "timeoutSeconds": timeout,
                "retryAfterSeconds": retry,
                "podSelector": {"matchLabels": {"app": "cache"}},
            }
        ],
        **more,
    }


@dataclass
class Drain:
    """What an evicting client saw, each reply with when it came (monotonic)."""

    replies: list[tuple[float, HttpReply]] = field(default_factory=list)

    @property
    def held(self) -> list[HttpReply]:
        return [reply for _, reply in self.replies if reply.status == 429]


async def drain(
    cluster: Cluster, pod: str, *, every: float = DRAIN_RETRY_SECONDS, limit: float = 90
) -> Drain:
    """Evict ``pod`` until it is allowed, pausing ``every`` seconds after a 429, as drain does."""
    seen = Drain()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        reply = await cluster.evict(pod)
        seen.replies.append((time.monotonic(), reply))
        if reply.status != 429:
            return seen
        await asyncio.sleep(every)
    raise AssertionError(f"{pod} still held after {limit:.0f} s: {seen.replies[-1][1].message}")


async def record_of(kube: AsyncClient, namespace: str, pod: str) -> dict[str, Any] | None:
    async for item in kube.list(PodEviction, namespace=namespace):
        data = item.to_dict()
        if data["spec"]["pod"]["name"] == pod:
            return data
    return None


async def hook_state(kube: AsyncClient, namespace: str, pod: str, state: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        record = await record_of(kube, namespace, pod)
        hooks = ((record or {}).get("status") or {}).get("hooks") or []
        return record if hooks and hooks[0].get("state") == state else None

    return await wait_for(probe, timeout=30, what=f"hook of {pod} {state}")


async def events_for(kube: AsyncClient, namespace: str, pod: str) -> dict[str, str]:
    found = {}
    async for event in kube.list(Event, namespace=namespace):
        if event.involvedObject.name == pod:
            found[str(event.reason)] = str(event.message)
    return found


def counter(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


async def start(start_operator: StartOperator, config: dict[str, Any], **options: Any) -> Operator:
    return await start_operator(config, record_key=KEY, **options)


# ---- the drain waits for the hook ---------------------------------------------------------------
async def test_a_drain_waits_for_the_hook_and_goes_through_once_it_is_done(
    start_operator: StartOperator, cluster: Cluster, kube: AsyncClient, hook: HookServer
) -> None:
    await start(start_operator, hooked(cluster, hook.url, retry=2.0))
    plain = await cluster.create_pod(labels={"app": "shop"})
    pod = await cluster.create_pod(labels={"app": "cache"})
    name = str(pod.metadata.name)
    done_before = counter(telemetry.HOOK_RESULTS, "flush-cache", "Done")

    # A Pod without hooks is answered exactly as before: allowed at once, no hook called.
    assert (await cluster.evict(str(plain.metadata.name))).status == 201

    seen = await drain(cluster, name)
    first = seen.replies[0][1]
    assert first.status == 429, first
    assert "evictwatch: waiting for pre-eviction hook flush-cache (started 0 s ago, at most 300 s more)" in (
        first.message
    )
    assert seen.replies[-1][1].status == 201
    assert len(seen.held) >= 2  # the hook works 10 s; drain asks every 5 s
    await wait_for(lambda: _gone(cluster, name), timeout=20, what=f"{name} deleted")
    assert hook.done_at is not None
    released = seen.replies[-1][0] - hook.done_at
    print(f"\nreleased {released:.2f} s after the hook said done (drain retries every 5 s)")

    record = await hook_state(kube, cluster.namespace, name, "Done")
    assert record["spec"]["hooks"] == ["flush-cache"]
    hold = record["spec"]["hold"]
    assert hold["released"] == "HooksDone"
    assert hold["heldAttempts"] == len(seen.held)
    (progress,) = record["status"]["hooks"]
    assert progress["calls"] == len(hook.calls) >= 2
    assert progress["startTime"] and progress["endTime"]
    described = describe(record)  # what `evictwatch describe` prints
    assert "Hooks:         released (HooksDone) for" in described
    assert f"{len(seen.held)} attempts answered 429" in described
    assert f"flush-cache              Done after {progress['calls']} calls, started" in described
    assert {key for _, key in hook.calls} == {f"{pod.metadata.uid}/flush-cache"}
    assert hook.most_in_flight == 1
    assert hook.bodies[0]["spec"]["pod"]["name"] == name  # the record, as JSON
    assert counter(telemetry.HOOK_RESULTS, "flush-cache", "Done") == done_before + 1

    events = await wait_for(
        lambda: _both(kube, cluster.namespace, name), timeout=20, what="EvictionHeld and EvictionReleased"
    )
    assert "flush-cache" in events["EvictionHeld"]
    assert "flush-cache Done" in events["EvictionReleased"]
    plain_record = await record_of(kube, cluster.namespace, str(plain.metadata.name))
    assert plain_record is not None and "hold" not in plain_record["spec"]


async def _gone(cluster: Cluster, name: str) -> bool:
    return await cluster.pod_or_none(name) is None


async def _both(kube: AsyncClient, namespace: str, pod: str) -> dict[str, str] | None:
    events = await events_for(kube, namespace, pod)
    return events if {"EvictionHeld", "EvictionReleased"} <= set(events) else None


async def test_a_hook_that_never_finishes_holds_for_its_timeout_and_no_longer(
    start_operator: StartOperator, cluster: Cluster, kube: AsyncClient, hook: HookServer
) -> None:
    hook.work_seconds = float("inf")
    timeout = 8.0
    await start(start_operator, hooked(cluster, hook.url, timeout=timeout, retry=1.0))
    pod = await cluster.create_pod(labels={"app": "cache"})
    name = str(pod.metadata.name)
    seen = await drain(cluster, name, every=1.0, limit=40)
    started = seen.replies[0][0]
    allowed_at = seen.replies[-1][0]
    assert seen.replies[-1][1].status == 201
    # Every 429 came before the timeout; the first attempt after it went through.
    assert all(when - started < timeout + 0.5 for when, reply in seen.replies if reply.status == 429)
    assert allowed_at - started >= timeout - 0.5
    assert allowed_at - started < timeout + 3.0, "held longer than timeoutSeconds"
    record = await hook_state(kube, cluster.namespace, name, "TimedOut")
    assert record["spec"]["hold"]["released"] == "TimedOut"
    assert hook.calls, "the hook was never called"
    assert "at most" in seen.held[-1].message


async def test_a_dry_run_gets_the_real_answer_and_starts_no_hook(
    start_operator: StartOperator, cluster: Cluster, kube: AsyncClient, hook: HookServer
) -> None:
    await start(start_operator, hooked(cluster, hook.url))
    pod = await cluster.create_pod(labels={"app": "cache"})
    name = str(pod.metadata.name)
    reply = await cluster.evict(name, dry_run_query=True)
    assert reply.status == 429, reply
    assert "waiting for pre-eviction hook flush-cache" in reply.message
    await asyncio.sleep(2)
    assert hook.calls == []
    assert await record_of(kube, cluster.namespace, name) is None
    assert await cluster.pod_or_none(name) is not None


async def test_an_unknown_hook_name_is_reported_and_holds_nothing(
    start_operator: StartOperator, cluster: Cluster, kube: AsyncClient, hook: HookServer
) -> None:
    await start(start_operator, hooked(cluster, hook.url))
    pod = await cluster.create_pod(
        labels={"app": "shop"}, annotations={"evictwatch.io/pre-eviction-hooks": "flush-cash"}
    )
    name = str(pod.metadata.name)
    assert (await cluster.evict(name)).status == 201

    async def reported() -> dict[str, Any] | None:
        record = await record_of(kube, cluster.namespace, name)
        return record if ((record or {}).get("status") or {}).get("unknownHooks") else None

    record = await wait_for(reported, timeout=20, what="the unknown hook reported")
    assert record["spec"]["unknownHooks"] == ["flush-cash"]
    assert "hold" not in record["spec"]
    events = await wait_for(
        lambda: _has(kube, cluster.namespace, name, "UnknownPreEvictionHook"), timeout=20, what="the Event"
    )
    assert "flush-cash" in events["UnknownPreEvictionHook"]
    assert hook.calls == []


async def _has(kube: AsyncClient, namespace: str, pod: str, reason: str) -> dict[str, str] | None:
    events = await events_for(kube, namespace, pod)
    return events if reason in events else None


async def test_an_annotation_asks_for_a_python_hook(
    start_operator: StartOperator, cluster: Cluster, kube: AsyncClient, tmp_path: Path
) -> None:
    HANDLERS.clear()
    handler = tmp_path / "flush.py"
    handler.write_text(
        textwrap.dedent(
            """
            import asyncio
            import evictwatch

            SEEN = []

            @evictwatch.before_eviction("snapshot")
            async def snapshot(record):
                SEEN.append(record.spec.pod.name)
                await asyncio.sleep(1)
            """
        )
    )
    config = {
        "self": {"namespace": cluster.namespace},
        "capture": {"namespaces": [cluster.namespace]},
        "controller": {"leaderElection": {"leaseDurationSeconds": 4, "renewSeconds": 1}},
        "watchers": {"enabled": False},
        "hooks": [{"name": "snapshot", "retryAfterSeconds": 1}],
    }
    try:
        await start(start_operator, config, handler_files=[str(handler)])
        pod = await cluster.create_pod(annotations={"evictwatch.io/pre-eviction-hooks": "snapshot"})
        name = str(pod.metadata.name)
        seen = await drain(cluster, name, every=1.0, limit=30)
        assert seen.held and seen.replies[-1][1].status == 201
        record = await hook_state(kube, cluster.namespace, name, "Done")
        assert record["status"]["hooks"][0]["calls"] == 1
    finally:
        HANDLERS.clear()


# ---- safe in a cluster ----------------------------------------------------------------------------
def replicas_config(cluster: Cluster, url: str) -> dict[str, Any]:
    config = hooked(cluster, url, retry=1.0)
    config["controller"]["leaderElection"]["leaseName"] = unique("hooks")
    return config


async def test_two_replicas_call_the_hook_once(
    start_operator: StartOperator, cluster: Cluster, kube: AsyncClient, hook: HookServer
) -> None:
    hook.work_seconds = 4.0
    config = replicas_config(cluster, hook.url)
    await start(start_operator, config)
    await start(start_operator, config)
    pod = await cluster.create_pod(labels={"app": "cache"})
    name = str(pod.metadata.name)
    seen = await drain(cluster, name, every=1.0, limit=40)
    assert seen.replies[-1][1].status == 201
    record = await hook_state(kube, cluster.namespace, name, "Done")
    assert hook.most_in_flight == 1
    assert {key for _, key in hook.calls} == {f"{pod.metadata.uid}/flush-cache"}
    assert record["status"]["hooks"][0]["calls"] == len(hook.calls)
    gaps = [b - a for (a, _), (b, _) in zip(hook.calls, hook.calls[1:], strict=False)]
    assert all(gap >= 0.9 for gap in gaps), f"asked again sooner than retryAfterSeconds: {gaps}"


async def test_a_restart_mid_hold_resumes_the_same_hook(
    start_operator: StartOperator, cluster: Cluster, kube: AsyncClient, hook: HookServer
) -> None:
    hook.work_seconds = 6.0
    config = replicas_config(cluster, hook.url)
    first = await start(start_operator, config)
    pod = await cluster.create_pod(labels={"app": "cache"})
    name = str(pod.metadata.name)
    assert (await cluster.evict(name)).status == 429
    await wait_for(lambda: _calls(hook, 2), timeout=20, what="two hook calls")
    before = (await hook_state(kube, cluster.namespace, name, "Running"))["status"]["hooks"][0]
    await first.stop()
    calls_at_stop = len(hook.calls)
    await start(start_operator, config)
    record = await hook_state(kube, cluster.namespace, name, "Done")
    after = record["status"]["hooks"][0]
    assert after["startTime"] == before["startTime"]  # resumed, not started again
    # The count goes on from the last one written (state changes are written, plain 202s
    # every 30 s: those since the last write before the stop are not counted).
    assert after["calls"] == before["calls"] + len(hook.calls) - calls_at_stop
    assert len(hook.calls) > calls_at_stop
    assert {key for _, key in hook.calls} == {f"{pod.metadata.uid}/flush-cache"}
    assert hook.most_in_flight == 1
    assert (await cluster.evict(name)).status == 201


async def _calls(hook: HookServer, count: int) -> bool:
    return len(hook.calls) >= count


async def test_fail_closed_namespaces_wait_while_evictwatch_is_down(
    start_operator: StartOperator, cluster: Cluster, kube: AsyncClient, hook: HookServer
) -> None:
    label = "evictwatch.io/fail-closed"
    closed = unique("closed")
    await kube.create(Namespace(metadata=ObjectMeta(name=closed, labels={label: "true"})))
    try:
        config = hooked(cluster, hook.url, webhook={"failClosedNamespaceLabel": label})
        config["capture"] = {"namespaces": [cluster.namespace, closed]}
        operator = await start(start_operator, config)
        open_pod = await cluster.create_pod()
        closed_pod = await cluster.create_pod(namespace=closed)
        assert operator.webhook_server is not None
        await operator.webhook_server.stop()  # evictwatch is down; its registration stays
        refused = await cluster.evict(str(closed_pod.metadata.name), namespace=closed)
        assert refused.status >= 500, refused
        assert "failed calling webhook" in refused.message
        assert (await cluster.evict(str(open_pod.metadata.name))).status == 201  # Ignore: let through
    finally:
        await kube.delete(Namespace, closed)
