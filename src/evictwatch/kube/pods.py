"""The webhook's Pod lookup: the review never carries the Pod, so it is read (as plain JSON)."""

from __future__ import annotations

from urllib.parse import quote

from lightkube import ApiError

from ..model.podfacts import pod_info_from_json
from ..model.record import PodInfo
from .client import is_not_found
from .raw import JsonApi


async def lookup_pod(api: JsonApi, namespace: str, name: str) -> PodInfo:
    """The Pod as it is now, or a ``PodInfo`` with ``exists=False`` when there is none."""
    try:
        # The name comes from the Eviction, which nothing has validated before webhooks run.
        pod = await api.request(
            "GET", f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"
        )
    except ApiError as error:
        if is_not_found(error):
            return PodInfo(name=name, namespace=namespace, exists=False)
        raise
    return pod_info_from_json(pod)
