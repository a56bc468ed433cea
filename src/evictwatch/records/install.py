"""Install the PodEviction CRD when it is missing, and wait until the API serves it."""

from __future__ import annotations

import asyncio
import logging

from ..kube.api import JsonApi
from ..kube.errors import Forbidden, NotFound
from . import crd

_CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

log = logging.getLogger(__name__)


class CrdMissing(RuntimeError):
    """The CRD is absent and cannot be installed by this identity."""


async def ensure_crd(api: JsonApi, *, timeout: float = 30.0) -> bool:
    """Create the CRD if absent; True when this call created it. Waits for Established."""
    created = False
    path = f"{_CRDS}/{crd.CRD_NAME}"
    try:
        await api.request("GET", path)
    except NotFound:
        try:
            await api.request("POST", _CRDS, crd.crd_manifest(), {"fieldManager": "evictwatch"})
        except Forbidden:
            raise CrdMissing(
                f"the CRD {crd.CRD_NAME} is not installed and this identity may not create it: apply "
                "the chart's crds/ (or deploy/manifests/10-crd.yaml), or run once with more rights"
            ) from None
        created = True
        log.info("installed the CRD %s", crd.CRD_NAME)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        current = await api.request("GET", path)
        conditions = (current.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return created
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"the CRD {crd.CRD_NAME} was not Established within {timeout:.0f} s")
        await asyncio.sleep(0.1)
