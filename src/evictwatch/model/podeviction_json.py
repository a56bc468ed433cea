"""JSON to :class:`~evictwatch.model.podeviction.PodEviction` and back: the one codec of the record.

Read defensively (a field of the wrong type reads as absent, never an error); written in the
CRD's shape with empty values left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .hooks import progress_from_status
from .podeviction import (
    API_VERSION,
    KIND,
    Budget,
    Delivery,
    Hold,
    Metadata,
    NodeFacts,
    PodEviction,
    Pressure,
    Spec,
    Status,
    Why,
)
from .record import OwnerRef, PodInfo, pod_to_json, requester_to_json
from .types import Component, DeleteOptions, Requester, ServiceAccountRef, Source, outcome_of

# ---- reading JSON defensively ----------------------------------------------------------------


def _map(value: Any) -> Mapping[str, Any]:
    if type(value) is dict:  # the common case, without the Mapping ABC's slower check
        return value
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


def _labels(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in _map(value).items()}


def _maps(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _enum(kind: type[Any], value: Any, default: Any) -> Any:
    try:
        return kind(value)
    except ValueError:
        return default


def _owner(value: Any) -> OwnerRef | None:
    data = _map(value)
    if not _str(data.get("name")):
        return None
    return OwnerRef(
        _str(data.get("kind")), _str(data.get("name")), _str(data.get("uid")), _str(data.get("apiVersion"))
    )


def _owner_to_json(owner: OwnerRef) -> dict[str, str]:
    pairs = (
        ("apiVersion", owner.api_version),
        ("kind", owner.kind),
        ("name", owner.name),
        ("uid", owner.uid),
    )
    return {key: value for key, value in pairs if value}


def _dropped(data: Mapping[str, Any]) -> dict[str, Any]:
    """Without the empty values (``""``, ``None``, ``{}``, ``[]``): absent is how the API says it."""
    return {key: value for key, value in data.items() if value not in ("", None, {}, [])}


# ---- decoding the parts ----------------------------------------------------------------------


def _requester(value: Any) -> Requester | None:
    data = _map(value)
    if not data:
        return None
    account = _map(data.get("serviceAccount"))
    return Requester(
        username=_str(data.get("username")),
        uid=_str(data.get("uid")),
        groups=_strs(data.get("groups")),
        service_account=ServiceAccountRef(_str(account.get("namespace")), _str(account.get("name")))
        if _str(account.get("name"))
        else None,
        field_manager=_str(data.get("fieldManager")),
        component=_enum(Component, data.get("component"), Component.UNKNOWN),
        pod_name=_str(data.get("podName")),
    )


def _delete_options(value: Any) -> DeleteOptions:
    data = _map(value)
    preconditions = _map(data.get("preconditions"))
    return DeleteOptions(
        grace_period_seconds=_int(data.get("gracePeriodSeconds")),
        precondition_uid=_str(preconditions.get("uid")) or None,
        precondition_resource_version=_str(preconditions.get("resourceVersion")) or None,
        propagation_policy=_str(data.get("propagationPolicy")) or None,
    )


def _spec(value: Any, namespace: str) -> Spec:
    data = _map(value)
    pod = _map(data.get("pod"))
    pressure = _map(data.get("pressure"))
    found = pod.get("found")
    return Spec(
        pod=PodInfo(
            name=_str(pod.get("name")),
            namespace=namespace,
            uid=_str(pod.get("uid")),
            labels=_labels(pod.get("labels")),
            node_name=_str(pod.get("nodeName")),
            owner=_owner(pod.get("owner")),
            phase=_str(pod.get("phase")),
            exists=found if isinstance(found, bool) else True,
        ),
        source=_enum(Source, data.get("source"), Source.EVICTION_API),
        sources=_strs(data.get("sources")),
        requester=_requester(data.get("requester")),
        requesters=tuple(
            found for found in (_requester(item) for item in _maps(data.get("requesters"))) if found
        ),
        policy_version=_str(data.get("policyVersion")),
        delete_options=_delete_options(data.get("deleteOptions")),
        attempts=max(_int(data.get("attempts")) or 0, 0),
        first_attempt_time=_str(data.get("firstAttemptTime")),
        last_attempt_time=_str(data.get("lastAttemptTime")),
        reason=_str(data.get("reason")),
        message=_str(data.get("message")),
        pressure=Pressure(
            _str(pressure.get("resource")), _str(pressure.get("usage")), _str(pressure.get("message"))
        )
        if pressure
        else None,
        missing_pods=_strs(data.get("missingPods")),
        hooks=_strs(data.get("hooks")),
        unknown_hooks=_strs(data.get("unknownHooks")),
        hold=_hold(data.get("hold")),
    )


def _hold(value: Any) -> Hold | None:
    data = _map(value)
    if not data:
        return None
    return Hold(
        _str(data.get("since")),
        max(_int(data.get("heldAttempts")) or 0, 0),
        _str(data.get("released")),
        _str(data.get("releasedTime")),
    )


def _status(value: Any) -> Status:
    data = _map(value)
    why = _map(data.get("why"))
    node = _map(data.get("node"))
    unschedulable = node.get("unschedulable")
    return Status(
        outcome=outcome_of(data.get("outcome")),
        outcome_time=_str(data.get("outcomeTime")),
        outcome_reason=_str(data.get("outcomeReason")),
        why=Why(*(_str(why.get(k)) for k in ("component", "reason", "message", "eventTime")))
        if why
        else None,
        owners=tuple(o for o in (_owner(item) for item in _maps(data.get("owners"))) if o is not None),
        node=NodeFacts(
            _str(node.get("name")),
            _labels(node.get("labels")),
            unschedulable if isinstance(unschedulable, bool) else None,
        )
        if node
        else None,
        disruption_budgets=tuple(
            Budget(
                _str(b.get("name")),
                *(
                    _int(b.get(k))
                    for k in ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods")
                ),
            )
            for b in _maps(data.get("disruptionBudgets"))
        ),
        deliveries={
            str(sink): Delivery(
                _str(d.get("state")),
                _int(d.get("attempts")) or 0,
                _str(d.get("lastError")),
                _str(d.get("time")),
                _str(d.get("outcome")),
            )
            for sink, d in _map(data.get("deliveries")).items()
            if isinstance(d, Mapping)
        },
        observed_attempts=_int(data.get("observedAttempts")),
        observed_generation=_int(data.get("observedGeneration")),
        hooks=tuple(progress_from_status(data).values()),
        unknown_hooks=_strs(data.get("unknownHooks")),
    )


# ---- encoding the parts ----------------------------------------------------------------------


def _spec_to_json(spec: Spec) -> dict[str, Any]:
    options = spec.delete_options
    preconditions = _dropped(
        {"uid": options.precondition_uid, "resourceVersion": options.precondition_resource_version}
    )
    return _dropped(
        {
            "pod": pod_to_json(spec.pod),
            "source": str(spec.source),
            "sources": list(spec.sources),
            "requester": requester_to_json(spec.requester) if spec.requester is not None else None,
            "requesters": [requester_to_json(r) for r in spec.requesters],
            "policyVersion": spec.policy_version,
            "deleteOptions": _dropped(
                {
                    "gracePeriodSeconds": options.grace_period_seconds,
                    "preconditions": preconditions,
                    "propagationPolicy": options.propagation_policy,
                }
            ),
            "attempts": spec.attempts,
            "firstAttemptTime": spec.first_attempt_time,
            "lastAttemptTime": spec.last_attempt_time,
            "reason": spec.reason,
            "message": spec.message,
            "pressure": _dropped(vars(spec.pressure)) if spec.pressure is not None else None,
            "missingPods": list(spec.missing_pods),
            "hooks": list(spec.hooks),
            "unknownHooks": list(spec.unknown_hooks),
            "hold": _dropped(
                {
                    "since": spec.hold.since,
                    "heldAttempts": spec.hold.held_attempts,
                    "released": spec.hold.released,
                    "releasedTime": spec.hold.released_time,
                }
            )
            if spec.hold is not None
            else None,
        }
    ) | {"attempts": spec.attempts}


def _status_to_json(status: Status) -> dict[str, Any]:
    why = status.why
    node = status.node
    return _dropped(
        {
            "outcome": str(status.outcome),
            "outcomeTime": status.outcome_time,
            "outcomeReason": status.outcome_reason,
            "why": _dropped(
                {
                    "component": why.component,
                    "reason": why.reason,
                    "message": why.message,
                    "eventTime": why.event_time,
                }
            )
            if why is not None
            else None,
            "owners": [_owner_to_json(owner) for owner in status.owners],
            "node": _dropped(
                {"name": node.name, "labels": dict(node.labels), "unschedulable": node.unschedulable}
            )
            if node is not None
            else None,
            "disruptionBudgets": [
                _dropped(
                    {
                        "name": b.name,
                        "disruptionsAllowed": b.disruptions_allowed,
                        "currentHealthy": b.current_healthy,
                        "desiredHealthy": b.desired_healthy,
                        "expectedPods": b.expected_pods,
                    }
                )
                for b in status.disruption_budgets
            ],
            "deliveries": {
                sink: _dropped(
                    {
                        "state": d.state,
                        "attempts": d.attempts,
                        "lastError": d.last_error,
                        "time": d.time,
                        "outcome": d.outcome,
                    }
                )
                for sink, d in status.deliveries.items()
            },
            "observedAttempts": status.observed_attempts,
            "observedGeneration": status.observed_generation,
            "hooks": [progress.to_json() for progress in status.hooks],
            "unknownHooks": list(status.unknown_hooks),
        }
    )


# ---- the record ------------------------------------------------------------------------------


def decode(obj: Mapping[str, Any]) -> PodEviction:
    """The record in ``obj`` (as the API returns it); never raises, see the module's docstring."""
    meta = _map(obj.get("metadata"))
    namespace = _str(meta.get("namespace"))
    return PodEviction(
        metadata=Metadata(
            name=_str(meta.get("name")),
            namespace=namespace,
            uid=_str(meta.get("uid")),
            resource_version=_str(meta.get("resourceVersion")),
            creation_timestamp=_str(meta.get("creationTimestamp")),
            labels=_labels(meta.get("labels")),
            annotations=_labels(meta.get("annotations")),
        ),
        spec=_spec(obj.get("spec"), namespace),
        status=_status(obj.get("status")),
    )


def encode(record: PodEviction) -> dict[str, Any]:
    """The record as the API takes it (what is empty is left out; ``attempts`` always given)."""
    meta = record.metadata
    metadata = _dropped(
        {
            "name": meta.name,
            "namespace": meta.namespace,
            "uid": meta.uid,
            "resourceVersion": meta.resource_version,
            "creationTimestamp": meta.creation_timestamp,
            "labels": dict(meta.labels),
            "annotations": dict(meta.annotations),
        }
    )
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": _spec_to_json(record.spec),
        "status": _status_to_json(record.status),
    }
