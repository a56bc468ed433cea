"""Reading Pods: the webhook's lookup and the conversion into the model's :class:`PodInfo`."""

from __future__ import annotations

from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Pod

from ..model.record import OwnerRef, PodInfo
from .client import is_not_found


def pod_info_from(pod: Pod) -> PodInfo:
    """Keep what a record needs of a Pod: identity, labels, node, controlling owner, phase."""
    meta = pod.metadata
    assert meta is not None
    owner = None
    for ref in meta.ownerReferences or []:
        if ref.controller or owner is None:
            owner = OwnerRef(kind=ref.kind, name=ref.name, uid=ref.uid, api_version=ref.apiVersion)
    return PodInfo(
        name=meta.name or "",
        namespace=meta.namespace or "",
        uid=meta.uid or "",
        labels=dict(meta.labels or {}),
        node_name=(pod.spec.nodeName if pod.spec else None) or "",
        owner=owner,
        phase=(pod.status.phase if pod.status else None) or "",
    )


async def lookup_pod(client: AsyncClient, namespace: str, name: str) -> PodInfo:
    """The Pod as it is now, or a ``PodInfo`` with ``exists=False`` when there is none."""
    try:
        pod = await client.get(Pod, name, namespace=namespace)
    except ApiError as error:
        if is_not_found(error):
            return PodInfo(name=name, namespace=namespace, exists=False)
        raise
    return pod_info_from(pod)
