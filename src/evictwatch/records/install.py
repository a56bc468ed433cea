"""Install the PodEviction CRD when it is missing, and wait until the API serves it."""

from __future__ import annotations

import asyncio
import logging

from lightkube import ApiError, AsyncClient
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

from ..kube.client import from_manifest, is_not_found, status_code
from . import crd

log = logging.getLogger(__name__)


class CrdMissing(RuntimeError):
    """The CRD is absent and cannot be installed by this identity."""


async def ensure_crd(client: AsyncClient, *, timeout: float = 30.0) -> bool:
    """Create the CRD if absent; True when this call created it. Waits for Established."""
    created = False
    try:
        await client.get(CustomResourceDefinition, crd.CRD_NAME)
    except ApiError as error:
        if not is_not_found(error):
            raise
        try:
            await client.create(
                from_manifest(CustomResourceDefinition, crd.crd_manifest()), field_manager="evictwatch"
            )
        except ApiError as create_error:
            if status_code(create_error) == 403:
                raise CrdMissing(
                    f"the CRD {crd.CRD_NAME} is not installed and this identity may not create it: apply "
                    "the chart's crds/ (or deploy/manifests/10-crd.yaml), or run once with more rights"
                ) from None
            raise
        created = True
        log.info("installed the CRD %s", crd.CRD_NAME)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        current = await client.get(CustomResourceDefinition, crd.CRD_NAME)
        conditions = current.status.conditions if current.status else None
        if any(c.type == "Established" and c.status == "True" for c in conditions or []):
            return created
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"the CRD {crd.CRD_NAME} was not Established within {timeout:.0f} s")
        await asyncio.sleep(0.1)
