"""What a Pod's own status says about a disruption (no I/O): kubelet evictions, DisruptionTarget.

The kubelet's node-pressure eviction leaves ``phase: Failed``, ``reason: Evicted`` and a
message such as "The node was low on resource: memory. Threshold quantity: 100Mi,
available: 20Mi. Container app was using 180Mi, request is 0, has larger consumption of
memory." Its ephemeral-storage limit eviction leaves the same phase and reason but no
condition at all, so phase and reason alone make a kubelet eviction. The other disrupting
components leave a ``DisruptionTarget`` condition whose reason names them (KEP-3329); a reason
not known here is kept verbatim under source ``Other``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .hooks import HOOKS_ANNOTATION
from .outcome import disruption_target, source_of_reason
from .record import OwnerRef, PodInfo, Sighting
from .types import Source

_RESOURCE = re.compile(r"low on resource: ([A-Za-z0-9._-]+?)\.?(?:\s|$)")
_USAGE = re.compile(r"Container (\S+) was using (\S+?),")
_THRESHOLD = re.compile(r"Threshold quantity: (\S+?), available: (\S+?)\.")


def parse_pressure(message: str) -> dict[str, str]:
    """The starved resource and the usage figures from a kubelet eviction message."""
    found: dict[str, str] = {}
    if match := _RESOURCE.search(message):
        found["resource"] = match.group(1)
    usages = [f"{name}={amount}" for name, amount in _USAGE.findall(message)]
    if match := _THRESHOLD.search(message):
        usages.insert(0, f"threshold={match.group(1)} available={match.group(2)}")
    if usages:
        found["usage"] = "; ".join(usages)
    return found


def pod_info_from_json(pod: Mapping[str, Any]) -> PodInfo:
    metadata = pod.get("metadata") or {}
    owner = None
    for ref in metadata.get("ownerReferences") or []:
        if ref.get("controller") or owner is None:
            owner = OwnerRef(
                kind=str(ref.get("kind", "")),
                name=str(ref.get("name", "")),
                uid=str(ref.get("uid", "")),
                api_version=str(ref.get("apiVersion", "")),
            )
    return PodInfo(
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace", "")),
        uid=str(metadata.get("uid", "")),
        labels=dict(metadata.get("labels") or {}),
        node_name=str((pod.get("spec") or {}).get("nodeName") or ""),
        owner=owner,
        phase=str((pod.get("status") or {}).get("phase") or ""),
        hooks_annotation=_hooks_annotation(metadata),
    )


def _hooks_annotation(metadata: Mapping[str, Any]) -> str:
    annotations = metadata.get("annotations")
    value = annotations.get(HOOKS_ANNOTATION) if isinstance(annotations, Mapping) else None
    return value[:1024] if isinstance(value, str) else ""


def is_kubelet_eviction(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Failed" and status.get("reason") == "Evicted"


def sighting_from_pod(pod: Mapping[str, Any], now: str) -> Sighting | None:
    """The disruption a Pod shows, if any: kubelet eviction first, then DisruptionTarget."""
    status = pod.get("status") or {}
    target = disruption_target(pod)
    when = str((target or {}).get("lastTransitionTime") or now)
    info = pod_info_from_json(pod)
    if is_kubelet_eviction(pod):
        message = str(status.get("message") or "")
        return Sighting(
            pod=info,
            source=Source.KUBELET,
            time=when,
            reason="Evicted",
            message=message,
            pressure=parse_pressure(message),
        )
    if target is None:
        return None
    reason = str(target.get("reason") or "")
    # An unknown reason is a door that opened after this code was written: keep it as it is.
    return Sighting(
        pod=info,
        source=source_of_reason(reason),
        time=when,
        reason=reason,
        message=str(target.get("message") or ""),
    )
