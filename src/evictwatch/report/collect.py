"""Read the records a report covers: one paged list of PodEvictions, filtered here.

The API server cannot select a custom resource by ``spec`` fields or by time, so the list
is of every record (all namespaces, or one) in pages, and the window and node are applied
to each item as it arrives; only the records kept are held in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..kube.api import JsonApi
from ..model.podeviction import record_path
from .window import Window, in_window

PAGE_SIZE = 500


def record_node(record: Mapping[str, Any]) -> str:
    """The node the Pod was on: ``spec.pod.nodeName``, else the controller's ``status.node.name``."""
    spec = record.get("spec")
    status = record.get("status")
    pod = spec.get("pod") if isinstance(spec, Mapping) else None
    name = pod.get("nodeName") if isinstance(pod, Mapping) else None
    if isinstance(name, str) and name:
        return name
    node = status.get("node") if isinstance(status, Mapping) else None
    name = node.get("name") if isinstance(node, Mapping) else None
    return name if isinstance(name, str) else ""


def keep(record: Mapping[str, Any], window: Window, node: str | None = None) -> bool:
    """Whether a report of ``window`` (and of ``node``, when given) includes ``record``."""
    if node and record_node(record) != node:
        return False
    return in_window(record, window)


def plain(item: Any) -> dict[str, Any]:
    """A listed object as a plain dict (lightkube's generic objects are dict subclasses)."""
    return {str(key): value for key, value in dict(item).items()}


async def collect(
    client: Any,
    window: Window,
    *,
    namespace: str | None = None,
    node: str | None = None,
    page_size: int = PAGE_SIZE,
) -> list[dict[str, Any]]:
    """The records of ``window`` in ``namespace`` (default: all namespaces), on ``node`` if given;
    ``client`` names the cluster (a lightkube client or a kubeconfig), read through the one stack."""
    api = JsonApi(client)
    try:
        items = api.list_items(record_path(namespace or ""), page_size=page_size)
        return [record async for record in items if keep(record, window, node)]
    finally:
        await api.close()
