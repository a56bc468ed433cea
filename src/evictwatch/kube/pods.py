"""The webhook's Pod lookup: the review never carries the Pod, so it is read (as plain JSON)."""

from __future__ import annotations

from urllib.parse import quote

from ..model.podfacts import pod_info_from_json
from ..model.record import PodInfo
from .api import JsonApi
from .errors import NotFound


async def lookup_pod(api: JsonApi, namespace: str, name: str) -> PodInfo:
    """The Pod as it is now, or a ``PodInfo`` with ``exists=False`` when there is none."""
    try:
        # The name comes from the Eviction, which nothing has validated before webhooks run.
        pod = await api.request(
            "GET", f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"
        )
    except NotFound:
        return PodInfo(name=name, namespace=namespace, exists=False)
    return pod_info_from_json(pod)
