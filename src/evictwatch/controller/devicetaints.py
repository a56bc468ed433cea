"""The device-taint context of a record: which claim, device and taint made the Pod go.

Read at settle time, only for records whose sources include ``DeviceTaintManager`` (a rare
door, so plain reads and no cache): the Pod's ResourceClaims, the ResourceSlices of their
devices' drivers, and the DeviceTaintRules. Everything is read through ``resource.k8s.io/v1``
(Kubernetes 1.34+); where that API, a claim or the rules are missing (an older cluster, a claim
deleted with its Pod) the part is left out, and the settlement goes on without it.

:func:`device_taint_context` is the one entry point the settler calls.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ..kube.api import JsonApi
from ..kube.client import is_not_found, status_code
from ..kube.errors import ApiError
from ..model.devicetaints import allocated_devices, claim_names, device_taint_causes, is_claim_of
from ..model.types import Source

log = logging.getLogger("evictwatch.controller")

RESOURCE_API = "/apis/resource.k8s.io/v1"


async def _read(api: JsonApi, path: str, params: dict[str, str] | None = None) -> dict[str, Any] | None:
    """GET one object or list; None when it (or the whole API) is not there."""
    try:
        return await api.request("GET", path, params=params)
    except ApiError as error:  # an API not served answers a plain 404 page
        if is_not_found(error):
            return None
        raise


async def _claims(
    api: JsonApi, namespace: str, pod_uid: str, pod: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """The Pod's claims: by name from the live Pod, else every claim reserved for or owned by its uid."""
    base = f"{RESOURCE_API}/namespaces/{quote(namespace, safe='')}/resourceclaims"
    if pod is not None:
        found = [await _read(api, f"{base}/{quote(name, safe='')}") for name in claim_names(pod)]
        return [claim for claim in found if claim is not None]
    listed = await _read(api, base)
    return [claim for claim in (listed or {}).get("items") or [] if is_claim_of(claim, pod_uid)]


async def device_taint_context(
    api: JsonApi, namespace: str, spec: Mapping[str, Any], pod: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """The NoExecute device taints behind a DeviceTaintManager eviction, for ``status.deviceTaints``.

    ``pod`` is the live Pod of the record's name, or None; a Pod of another uid is not used.
    Returns [] for records of any other door, without a single read.
    """
    if str(Source.DEVICE_TAINT_MANAGER) not in (spec.get("sources") or [spec.get("source")]):
        return []
    pod_uid = str((spec.get("pod") or {}).get("uid") or "")
    if pod is not None and ((pod.get("metadata") or {}).get("uid") or "") != pod_uid:
        pod = None
    try:
        return await _causes(api, namespace, spec, pod_uid, pod)
    except ApiError as error:
        if status_code(error) != 403:
            raise
        # The chart grants these reads only with doors.deviceTaints: the record goes without them.
        log.warning(
            "cannot read the device taints behind %s/%s: %s (grant get/list on resource.k8s.io "
            "resourceclaims, resourceslices and devicetaintrules)",
            namespace,
            (spec.get("pod") or {}).get("name", ""),
            error,
            extra={"namespace": namespace, "pod": (spec.get("pod") or {}).get("name", "")},
        )
        return []


async def _causes(
    api: JsonApi, namespace: str, spec: Mapping[str, Any], pod_uid: str, pod: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    claims = await _claims(api, namespace, pod_uid, pod)
    drivers = sorted({device["driver"] for claim in claims for device in allocated_devices(claim)})
    slices: list[dict[str, Any]] = []
    for driver in drivers:
        listed = await _read(
            api, f"{RESOURCE_API}/resourceslices", {"fieldSelector": f"spec.driver={driver}"}
        )
        slices.extend((listed or {}).get("items") or [])
    rules: list[dict[str, Any]] = []
    if drivers:
        rules = ((await _read(api, f"{RESOURCE_API}/devicetaintrules")) or {}).get("items") or []
    causes = device_taint_causes(claims, slices, rules)
    if not causes:
        log.info(
            "no NoExecute device taint found for %s/%s (claims: %s)",
            namespace,
            (spec.get("pod") or {}).get("name", ""),
            ", ".join(str((c.get("metadata") or {}).get("name")) for c in claims) or "none",
            extra={"namespace": namespace, "pod": (spec.get("pod") or {}).get("name", "")},
        )
    return causes
