"""Which device taint made kube-controller-manager delete a Pod (DRA, no I/O).

The device-taint eviction controller (``DRADeviceTaints``, GA in Kubernetes 1.37) deletes a Pod
when a device allocated to one of its ResourceClaims has a ``NoExecute`` taint the claim does
not tolerate. The taint is either in the ResourceSlice that publishes the device
(``spec.devices[].taints``) or comes from a DeviceTaintRule whose selector (driver, pool,
device; empty parts match all) picks the device. The Pod itself only says
``DisruptionTarget: DeletionByDeviceTaintManager``; these functions put the claim, the device
and the taint next to it, from the objects the controller layer reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

NO_EXECUTE = "NoExecute"


def claim_names(pod: Mapping[str, Any]) -> list[str]:
    """The ResourceClaims a Pod uses: named in its spec, or generated from a template (status)."""
    names: list[str] = []
    for entry in (pod.get("spec") or {}).get("resourceClaims") or []:
        if entry.get("resourceClaimName"):
            names.append(str(entry["resourceClaimName"]))
    for entry in (pod.get("status") or {}).get("resourceClaimStatuses") or []:
        if entry.get("resourceClaimName"):
            names.append(str(entry["resourceClaimName"]))
    return list(dict.fromkeys(names))


def is_claim_of(claim: Mapping[str, Any], pod_uid: str) -> bool:
    """Whether a claim is reserved for (or, generated from a template, owned by) the Pod ``pod_uid``."""
    reserved = (claim.get("status") or {}).get("reservedFor") or []
    owners = (claim.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == pod_uid for ref in [*reserved, *owners])


def allocated_devices(claim: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The devices allocated to a claim: request, driver, pool, device, and their tolerations."""
    allocation = (claim.get("status") or {}).get("allocation") or {}
    found = []
    for result in (allocation.get("devices") or {}).get("results") or []:
        found.append(
            {
                "request": str(result.get("request") or ""),
                "driver": str(result.get("driver") or ""),
                "pool": str(result.get("pool") or ""),
                "device": str(result.get("device") or ""),
                "tolerations": list(result.get("tolerations") or []),
            }
        )
    return found


def tolerates_forever(tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """A toleration that matches the taint and sets no time limit: that taint evicts nobody."""
    for toleration in tolerations:
        if toleration.get("effect") not in (None, "", taint.get("effect")):
            continue
        if toleration.get("key") not in (None, "", taint.get("key")):
            continue
        exists = toleration.get("operator") == "Exists" or not toleration.get("key")
        if not exists and str(toleration.get("value") or "") != str(taint.get("value") or ""):
            continue
        if toleration.get("tolerationSeconds") is None:
            return True
    return False


def _taint_json(taint: Mapping[str, Any]) -> dict[str, str]:
    data = {"key": str(taint.get("key") or ""), "effect": str(taint.get("effect") or "")}
    if taint.get("value"):
        data["value"] = str(taint["value"])
    if taint.get("timeAdded"):
        data["timeAdded"] = str(taint["timeAdded"])
    return data


def slice_taints(
    slices: Iterable[Mapping[str, Any]], driver: str, pool: str, device: str
) -> list[tuple[str, Mapping[str, Any]]]:
    """``(slice name, taint)`` for every taint on the device in the slices that publish it."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    for item in slices:
        spec = item.get("spec") or {}
        if spec.get("driver") != driver or (spec.get("pool") or {}).get("name") != pool:
            continue
        for published in spec.get("devices") or []:
            if published.get("name") == device:
                name = str((item.get("metadata") or {}).get("name") or "")
                found.extend((name, taint) for taint in published.get("taints") or [])
    return found


def rule_selects(rule: Mapping[str, Any], driver: str, pool: str, device: str) -> bool:
    """Whether a DeviceTaintRule's selector picks the device (no selector picks none)."""
    selector = (rule.get("spec") or {}).get("deviceSelector")
    if selector is None:
        return False
    wanted = {"driver": driver, "pool": pool, "device": device}
    return all(selector.get(part) in (None, value) for part, value in wanted.items())


def device_taint_causes(
    claims: Iterable[Mapping[str, Any]],
    slices: Sequence[Mapping[str, Any]],
    rules: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Every untolerated NoExecute taint on a device of the Pod's claims, as the record keeps it.

    Each entry names the claim, the request, the device (driver/pool/device), the taint, and
    where the taint came from: the ResourceSlice (``slice``) or a DeviceTaintRule (``rule``).
    """
    causes: list[dict[str, Any]] = []
    for claim in claims:
        claim_name = str((claim.get("metadata") or {}).get("name") or "")
        for allocated in allocated_devices(claim):
            driver, pool, device = allocated["driver"], allocated["pool"], allocated["device"]
            origins: list[tuple[str, str, Mapping[str, Any]]] = [
                ("slice", name, taint) for name, taint in slice_taints(slices, driver, pool, device)
            ]
            origins += [
                (
                    "rule",
                    str((rule.get("metadata") or {}).get("name") or ""),
                    (rule.get("spec") or {}).get("taint") or {},
                )
                for rule in rules
                if rule_selects(rule, driver, pool, device)
            ]
            for origin, name, taint in origins:
                if taint.get("effect") != NO_EXECUTE or tolerates_forever(allocated["tolerations"], taint):
                    continue
                causes.append(
                    {
                        "claim": claim_name,
                        "request": allocated["request"],
                        "driver": driver,
                        "pool": pool,
                        "device": device,
                        "taint": _taint_json(taint),
                        origin: name,
                    }
                )
    return causes
