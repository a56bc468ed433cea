"""Context for a record: the owner chain, the Node, the PodDisruptionBudgets, the Events.

Reads only; every read that fails for lack of the object leaves that part out rather than
failing the settlement (a ReplicaSet deleted since, a Node gone with the drain).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.resources.apps_v1 import DaemonSet, Deployment, ReplicaSet, StatefulSet
from lightkube.resources.batch_v1 import CronJob, Job
from lightkube.resources.core_v1 import Event, Node, Pod
from lightkube.resources.policy_v1 import PodDisruptionBudget

from ..kube.client import is_not_found
from ..model.selector import matches

OWNER_KINDS: dict[str, Any] = {
    "ReplicaSet": ReplicaSet,
    "Deployment": Deployment,
    "StatefulSet": StatefulSet,
    "DaemonSet": DaemonSet,
    "Job": Job,
    "CronJob": CronJob,
}
_NODE_LABELS = ("topology.kubernetes.io/zone", "node.kubernetes.io/instance-type", "kubernetes.io/hostname")
_MAX_OWNER_DEPTH = 4


async def _get(
    client: AsyncClient, resource: Any, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    try:
        obj = (
            await client.get(resource, name, namespace=namespace)
            if namespace
            else await client.get(resource, name)
        )
    except ApiError as error:
        if is_not_found(error):
            return None
        raise
    data: dict[str, Any] = obj.to_dict()
    return data


async def live_pod(client: AsyncClient, namespace: str, name: str) -> dict[str, Any] | None:
    return await _get(client, Pod, name, namespace)


def _controller_ref(metadata: Mapping[str, Any]) -> Mapping[str, Any] | None:
    refs = metadata.get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller"):
            return dict(ref)
    return dict(refs[0]) if refs else None


async def owner_chain(
    client: AsyncClient, namespace: str, first: Mapping[str, Any] | None
) -> list[dict[str, str]]:
    """From the Pod's controlling owner up to the top controller (ReplicaSet -> Deployment ...)."""
    chain: list[dict[str, str]] = []
    ref = first
    while ref and len(chain) < _MAX_OWNER_DEPTH:
        kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
        chain.append({k: str(ref[k]) for k in ("apiVersion", "kind", "name", "uid") if ref.get(k)})
        resource = OWNER_KINDS.get(kind)
        if resource is None:
            break
        obj = await _get(client, resource, name, namespace)
        if obj is None:
            break
        ref = _controller_ref(obj.get("metadata") or {})
    return chain


async def node_info(client: AsyncClient, name: str) -> dict[str, Any] | None:
    if not name:
        return None
    node = await _get(client, Node, name)
    if node is None:
        return {"name": name}
    labels = (node.get("metadata") or {}).get("labels") or {}
    return {
        "name": name,
        "labels": {key: labels[key] for key in _NODE_LABELS if key in labels},
        "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
    }


async def list_budgets(client: AsyncClient, namespace: str) -> list[dict[str, Any]]:
    """Every PDB of the namespace, as plain dicts."""
    return [pdb.to_dict() async for pdb in client.list(PodDisruptionBudget, namespace=namespace)]


def budgets_selecting(budgets: list[dict[str, Any]], labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """The PDBs whose selector matches the Pod's labels, with their current status."""
    found = []
    for data in budgets:
        selector = (data.get("spec") or {}).get("selector")
        if not selector or not matches(selector, labels):
            continue
        status = data.get("status") or {}
        found.append(
            {
                "name": (data.get("metadata") or {}).get("name", ""),
                "disruptionsAllowed": int(status.get("disruptionsAllowed") or 0),
                "currentHealthy": int(status.get("currentHealthy") or 0),
                "desiredHealthy": int(status.get("desiredHealthy") or 0),
                "expectedPods": int(status.get("expectedPods") or 0),
            }
        )
    return found


async def pod_events(client: AsyncClient, namespace: str, pod_name: str) -> list[dict[str, Any]]:
    events = []
    async for event in client.list(
        Event, namespace=namespace, fields={"involvedObject.kind": "Pod", "involvedObject.name": pod_name}
    ):
        events.append(event.to_dict())
    return events
