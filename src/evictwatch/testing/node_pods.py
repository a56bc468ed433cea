"""Manifests of Pods that really run on the real node, and waits on what the kubelet reports.

There is no scheduler, so every Pod names its node; there is no registry, so every container
runs the locally imported busybox image and never pulls. The default command stops on SIGTERM
after ``stop_seconds``, which makes a graceful termination something a test can measure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightkube import AsyncClient
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Pod

from ..records.resource import PodEviction
from .cluster import wait_for
from .node_binaries import BUSYBOX_IMAGE


def graceful_command(stop_seconds: int) -> list[str]:
    """Run until SIGTERM, then take ``stop_seconds`` to stop, as a server draining its work."""
    script = f"trap 'sleep {stop_seconds}; exit 0' TERM; while true; do sleep 1; done"
    return ["/bin/sh", "-c", script]


def pod_spec(
    node: str,
    *,
    command: list[str] | None = None,
    resources: Mapping[str, Any] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    mounts: list[dict[str, Any]] | None = None,
    ready_after: int = 0,
    grace_seconds: int = 10,
) -> dict[str, Any]:
    """A one-container Pod spec bound to ``node`` (``ready_after`` delays readiness by seconds)."""
    container: dict[str, Any] = {
        "name": "app",
        "image": BUSYBOX_IMAGE,
        "imagePullPolicy": "Never",
        "command": command or graceful_command(1),
    }
    if resources:
        container["resources"] = dict(resources)
    if mounts:
        container["volumeMounts"] = mounts
    if ready_after:
        container["readinessProbe"] = {
            "exec": {"command": ["/bin/true"]},
            "initialDelaySeconds": ready_after,
            "periodSeconds": 1,
        }
    spec: dict[str, Any] = {
        "nodeName": node,
        "containers": [container],
        "terminationGracePeriodSeconds": grace_seconds,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    if volumes:
        spec["volumes"] = volumes
    return spec


def deployment(
    name: str, namespace: str, labels: Mapping[str, str], spec: Mapping[str, Any], replicas: int
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": dict(spec)},
        },
    }


async def create_pod(
    client: AsyncClient,
    name: str,
    namespace: str,
    spec: Mapping[str, Any],
    labels: Mapping[str, str] | None = None,
) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": dict(spec),
    }
    await client.create(from_dict(manifest))


def is_ready(pod: Pod) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return bool(pod.status and pod.status.phase == "Running") and any(
        c.type == "Ready" and c.status == "True" for c in conditions
    )


async def wait_running(
    client: AsyncClient,
    namespace: str,
    *,
    count: int,
    labels: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> list[Pod]:
    """Wait until ``count`` Pods (matching ``labels``) are Running and Ready, as the kubelet says."""

    async def probe() -> list[Pod] | None:
        pods = [p async for p in client.list(Pod, namespace=namespace, labels=dict(labels or {}))]
        ready = [
            p for p in pods if is_ready(p) and p.metadata is not None and not p.metadata.deletionTimestamp
        ]
        return ready if len(ready) >= count else None

    found: list[Pod] = await wait_for(
        probe, timeout=timeout, what=f"{count} Running and Ready Pods in {namespace}"
    )
    return found


async def kubelet_record(client: AsyncClient, namespace: str, pod: str, *, timeout: float) -> dict[str, Any]:
    """The record of ``pod`` once it has an outcome (the kubelet's evictions are not Pending long)."""

    async def probe() -> dict[str, Any] | None:
        async for item in client.list(PodEviction, namespace=namespace):
            data: dict[str, Any] = item.to_dict()
            if data["spec"]["pod"]["name"] == pod and (data.get("status") or {}).get("outcome") not in (
                None,
                "Pending",
            ):
                return data
        return None

    return await wait_for(probe, timeout=timeout, interval=0.5, what=f"a settled record of {pod}")


async def wait_evicted(client: AsyncClient, namespace: str, name: str, *, timeout: float = 60) -> Pod:
    """Wait until the kubelet has written the Pod Failed with reason Evicted."""

    async def probe() -> Pod | None:
        pod = await client.get(Pod, name, namespace=namespace)
        return pod if pod.status and pod.status.phase == "Failed" and pod.status.reason == "Evicted" else None

    found: Pod = await wait_for(probe, timeout=timeout, interval=0.5, what=f"the kubelet to evict {name}")
    return found
