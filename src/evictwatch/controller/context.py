"""Context for a record: the owner chain, the Node, the PodDisruptionBudgets, the Events.

Reads only; every read that fails for lack of the object leaves that part out rather than
failing the settlement (a ReplicaSet deleted since, a Node gone with the drain). The reads are
plain JSON through the operator's aiohttp client (:class:`JsonApi`): a storm settles thousands
of records, about five reads each, and lightkube's typed httpx2 path cost twice the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightkube import ApiError

from ..kube.client import is_not_found
from ..kube.raw import JsonApi
from ..model.selector import matches

OWNER_KINDS: dict[str, str] = {
    "ReplicaSet": "/apis/apps/v1/namespaces/{namespace}/replicasets/{name}",
    "Deployment": "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
    "StatefulSet": "/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
    "DaemonSet": "/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}",
    "Job": "/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
    "CronJob": "/apis/batch/v1/namespaces/{namespace}/cronjobs/{name}",
}
"""The owners followed up the chain, by kind: the API path of one."""
_NODE_LABELS = ("topology.kubernetes.io/zone", "node.kubernetes.io/instance-type", "kubernetes.io/hostname")
_MAX_OWNER_DEPTH = 4


async def _get(api: JsonApi, path: str) -> dict[str, Any] | None:
    try:
        return await api.request("GET", path)
    except ApiError as error:
        if is_not_found(error):
            return None
        raise


async def live_pod(api: JsonApi, namespace: str, name: str) -> dict[str, Any] | None:
    return await _get(api, f"/api/v1/namespaces/{namespace}/pods/{name}")


def _controller_ref(metadata: Mapping[str, Any]) -> Mapping[str, Any] | None:
    refs = metadata.get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller"):
            return dict(ref)
    return dict(refs[0]) if refs else None


async def owner_chain(api: JsonApi, namespace: str, first: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """From the Pod's controlling owner up to the top controller (ReplicaSet -> Deployment ...)."""
    chain: list[dict[str, str]] = []
    ref = first
    while ref and len(chain) < _MAX_OWNER_DEPTH:
        kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
        chain.append({k: str(ref[k]) for k in ("apiVersion", "kind", "name", "uid") if ref.get(k)})
        path = OWNER_KINDS.get(kind)
        if path is None:
            break
        obj = await _get(api, path.format(namespace=namespace, name=name))
        if obj is None:
            break
        ref = _controller_ref(obj.get("metadata") or {})
    return chain


async def node_info(api: JsonApi, name: str) -> dict[str, Any] | None:
    if not name:
        return None
    node = await _get(api, f"/api/v1/nodes/{name}")
    if node is None:
        return {"name": name}
    labels = (node.get("metadata") or {}).get("labels") or {}
    return {
        "name": name,
        "labels": {key: labels[key] for key in _NODE_LABELS if key in labels},
        "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
    }


async def list_budgets(api: JsonApi, namespace: str) -> list[dict[str, Any]]:
    """Every PDB of the namespace, as plain dicts."""
    return await _list(api, f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets", {})


async def _list(api: JsonApi, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every item, page by page (500 at a time)."""
    items: list[dict[str, Any]] = []
    query = {**params, "limit": "500"}
    while True:
        page = await api.request("GET", path, params=query)
        items.extend(page.get("items") or [])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items
        query["continue"] = token


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


async def pod_events(api: JsonApi, namespace: str, pod_name: str) -> list[dict[str, Any]]:
    selector = f"involvedObject.kind=Pod,involvedObject.name={pod_name}"
    return await _list(api, f"/api/v1/namespaces/{namespace}/events", {"fieldSelector": selector})
