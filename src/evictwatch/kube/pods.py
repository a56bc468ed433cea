"""The webhook's Pod lookup: the review never carries the Pod, so it is read (as plain JSON)."""

from __future__ import annotations

from lightkube import ApiError, AsyncClient

from ..model.podfacts import pod_info_from_json
from ..model.record import PodInfo
from .client import is_not_found
from .raw import get_json


async def lookup_pod(client: AsyncClient, namespace: str, name: str) -> PodInfo:
    """The Pod as it is now, or a ``PodInfo`` with ``exists=False`` when there is none."""
    try:
        pod = await get_json(client, f"/api/v1/namespaces/{namespace}/pods/{name}")
    except ApiError as error:
        if is_not_found(error):
            return PodInfo(name=name, namespace=namespace, exists=False)
        raise
    return pod_info_from_json(pod)
